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
