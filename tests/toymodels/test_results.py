import json
import os

import numpy as np
import pytest

from toymodels import results
from toymodels.trainlog import TrainLog, TrainState


def test_rows_round_trip(tmp_path):
    rows = [{"run": "a", "step": 1, "task": "copy", "metric": "loss", "value": 0.5},
            {"run": "b", "step": 2, "task": "copy", "metric": "acc", "value": 1.0}]
    results.write_rows(tmp_path / "m.csv", rows)
    assert results.read_rows(tmp_path / "m.csv") == rows


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "table.csv"
    results.atomic_write_text(path, "old\n")

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        results.atomic_write_text(path, "new\n")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_write_json_writes_numpy_values_as_numbers(tmp_path):
    results.write_json(tmp_path / "a.json", {"b": np.float32(0.5), "a": np.arange(2), "c": (1, 2)})
    text = (tmp_path / "a.json").read_text()
    assert json.loads(text) == {"a": [0, 1], "b": 0.5, "c": [1, 2]} and text.index('"a"') < text.index('"b"')


def test_train_rows_one_row_per_run_step_task_metric():
    log = TrainLog({0: {"copy": {"loss": np.asarray([2.0, 3.0])}}, 4: {"copy": {"loss": np.asarray([1.0, 1.5])}}},
                   [np.asarray([1.2, 2.2])], [4])
    res = log.result(TrainState({}, {}, 4), n_runs=2, seconds=0.0)

    class Runs:
        seed, lr, weight_decay, dropout = np.asarray([0, 1]), np.asarray([1e-3, 2e-3]), np.zeros(2), np.zeros(2)
    rows = results.train_rows(res, Runs, ["a", "b"], tokens_per_step=10)
    assert len(rows) == 2 * (2 + 1)
    b4 = [r for r in rows if (r["run"], r["step"], r["task"]) == ("b", 4, "copy")][0]
    assert (b4["value"], b4["tokens"], b4["lr"], b4["seed"]) == (1.5, 40, 2e-3, 1)
    assert [r["value"] for r in rows if r["task"] == "train"] == [1.2, 2.2]


def test_repro_record_names_code_packages_and_devices():
    rec = results.repro_record()
    assert rec["code_version"] == results.code_version() and rec["packages"]["jax"]
    assert rec["device_count"] >= 1 and rec["backend"]


def test_record_vouches_for_its_files_and_names_the_one_that_changed(tmp_path):
    results.write_rows(tmp_path / "metrics.csv", [{"run": "a", "step": i, "value": 0.5} for i in range(11)])
    results.write_json(tmp_path / "config.json", {"lr": 1e-3})
    assert "done.json is missing" in results.record_problem(tmp_path)
    results.write_record(tmp_path, ("metrics.csv", "config.json"), rows=11)
    assert results.record_problem(tmp_path) is None
    text = (tmp_path / "metrics.csv").read_text()
    for damaged in (text[: text.index("\n", len(text) // 2) + 1], text[: len(text) // 2], ""):
        (tmp_path / "metrics.csv").write_text(damaged)   # cut at a line end, mid-line, emptied
        assert "metrics.csv does not match done.json" in results.record_problem(tmp_path)
    (tmp_path / "metrics.csv").write_text(text)
    assert results.record_problem(tmp_path) is None
    (tmp_path / "config.json").unlink()
    assert "config.json is missing" in results.record_problem(tmp_path)
    (tmp_path / "done.json").write_text('{"files": ')
    assert "done.json is damaged" in results.record_problem(tmp_path)
    assert "does not exist" in results.record_problem(tmp_path / "nope")


def test_a_killed_writes_temporaries_go_when_its_file_is_next_written(tmp_path):
    stale = [tmp_path / ".table.csv.ab12_xyz.tmp", tmp_path / ".table.csv.q9w8e7r6.tmp"]
    kept = [tmp_path / ".other.csv.ab12_xyz.tmp", tmp_path / "notes.tmp", tmp_path / ".table.csv.tmp"]
    for p in stale + kept:
        p.write_text("x")
    results.atomic_write_text(tmp_path / "table.csv", "a\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["table.csv"] + [p.name for p in kept])
    assert results.clean_stale_tmp(tmp_path) == [kept[0]]   # only the mkstemp pattern, any file
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["table.csv", "notes.tmp", ".table.csv.tmp"])


def test_train_rows_record_where_each_run_stopped():
    log = TrainLog({0: {"copy": {"acc": np.asarray([0.1, 0.2])}}, 8: {"copy": {"acc": np.asarray([0.9, 0.5])}}},
                   [np.asarray([1.2, 2.2])], [8])
    log.stop_step = np.asarray([4, 2**30], np.int32)
    res = log.result(TrainState({}, {}, 8), n_runs=2, seconds=0.0)

    class Runs:
        seed, lr, weight_decay, dropout = np.asarray([0, 1]), np.asarray([1e-3, 2e-3]), np.zeros(2), np.zeros(2)
    stopped = [(r["run"], r["step"], r["value"]) for r in results.train_rows(res, Runs, ["a", "b"], 10, stopping=True)
               if r["metric"] == "stopped"]
    assert stopped == [("a", 4, 1.0), ("b", 8, 0.0)]
    assert not [r for r in results.train_rows(res, Runs, ["a", "b"], 10) if r["metric"] == "stopped"]
