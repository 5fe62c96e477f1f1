import dataclasses
import json
import shutil

import jax
import numpy as np
import pytest

from toymodels.config import ConfigError
from toymodels.model import TransformerConfig
from toymodels.results import write_json, write_record
from toymodels.runspec import RunSpec
from toymodels.schedule import Event, Mixture
from toymodels.store import (check_run, complete, final_params, foreign_entries, load_model, load_models,
                              load_rows, remove_results, run_spec)
from toymodels.sweep import run_sweep
from toymodels.tasks import make_task
from toymodels.trainconfig import TrainConfig

M = TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=8, max_seq_len=8)
TASKS = (("markov", make_task("markov", vocab_size=8, length=8)),)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Three runs in two groups (a lone wider-batch run forms its own group)."""
    out = tmp_path_factory.mktemp("sweep")
    specs = [RunSpec(f"r{i}", M, TrainConfig(steps=6, batch_size=4 if i < 2 else 8, n_evals=1, seed=i), TASKS)
             for i in range(3)]
    run_sweep(specs, out, progress=False)
    return out, specs


def test_complete_knows_finished_runs_and_refuses_a_reused_id(sweep):
    out, specs = sweep
    assert all(complete(out, s) for s in specs)
    assert not complete(out, dataclasses.replace(specs[0], run_id="new"))
    with pytest.raises(ConfigError, match=r"(?s)different config.*train.lr: the saved one has 0.001, this run has 0.5"):
        complete(out, dataclasses.replace(specs[0], train=dataclasses.replace(specs[0].train, lr=0.5)))


def test_load_rows_reads_all_or_some_runs(sweep):
    out, _ = sweep
    rows = load_rows(out)
    assert {r["run"] for r in rows} == {"r0", "r1", "r2"}
    assert {r["run"] for r in load_rows(out, ["r2"])} == {"r2"}
    assert {"step", "task", "metric", "value"} <= set(rows[0])


def test_final_params_stack_runs_across_groups_and_models_match_them(sweep):
    out, specs = sweep
    order = [specs[2], specs[0], specs[1]]
    stacked = final_params(out, order)
    assert jax.tree.leaves(stacked)[0].shape[0] == 3
    models = load_models(out, order)
    assert len(models) == 3
    for i, spec in enumerate(order):
        one = jax.tree.leaves(load_model(out, spec))
        for a, b, c in zip(one, jax.tree.leaves(models[i]), jax.tree.leaves(stacked)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(c[i]))
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(models[0]))   # numpy: slicing compiles nothing
    assert not np.array_equal(np.asarray(jax.tree.leaves(models[1])[0]), np.asarray(jax.tree.leaves(models[2])[0]))


def test_load_models_needs_one_architecture(sweep):
    out, specs = sweep
    wide = dataclasses.replace(specs[0], model=dataclasses.replace(M, d_model=32))
    with pytest.raises(ConfigError, match="one architecture"):
        load_models(out, [specs[1], wide])


def _copy(sweep, tmp_path):
    out, specs = sweep
    shutil.copytree(out, tmp_path / "out")
    return tmp_path / "out", specs


def test_a_run_counts_as_complete_only_while_its_records_verify(sweep, tmp_path, capsys):
    out, specs = _copy(sweep, tmp_path)
    run = out / "runs" / "r0"
    text = (run / "metrics.csv").read_text()
    cut_at_line = text[: text.index("\n", len(text) // 2) + 1]
    for name, damaged in [("metrics.csv", cut_at_line), ("metrics.csv", text[:-7]), ("metrics.csv", ""),
                          ("config.json", (run / "config.json").read_text()[:40]), ("config.json", None),
                          ("done.json", None)]:
        keep = (run / name).read_bytes()
        if damaged is None:
            (run / name).unlink()
        else:
            (run / name).write_text(damaged)
        assert not complete(out, specs[0]) and name in check_run(out, specs[0])
        assert {r["run"] for r in load_rows(out)} == {"r1", "r2"}            # skipped ...
        assert "skipping 1 incomplete run" in capsys.readouterr().err         # ... and said
        with pytest.raises(ConfigError, match=f"run 'r0' .* not complete: .*{name}"):
            load_rows(out, ["r0"])                                            # asked for: refused
        with pytest.raises(ConfigError, match=f"not complete: .*{name}"):
            load_model(out, specs[0])
        (run / name).write_bytes(keep)
        assert complete(out, specs[0])


def test_models_are_loaded_only_for_the_config_they_were_trained_with(sweep):
    out, specs = sweep
    other = dataclasses.replace(specs[0], train=dataclasses.replace(specs[0].train, lr=0.5))
    for load in (lambda: load_model(out, other), lambda: load_models(out, [other]), lambda: final_params(out, [other])):
        with pytest.raises(ConfigError, match=r"(?s)different config.*train.lr: the saved one has 0.001"):
            load()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")   # orbax's unread futures
def test_a_damaged_final_checkpoint_is_refused_naming_its_folder(sweep, tmp_path):
    out, specs = _copy(sweep, tmp_path)
    group = json.loads((out / "runs" / "r2" / "config.json").read_text())["group"]
    final = out / "groups" / group / "6"
    biggest = max((p for p in final.rglob("*") if p.is_file() and "state" in p.parts), key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[:10])
    with pytest.raises(ConfigError, match=f"(?s)checkpoint step 6 in .*{group} does not restore.*Delete .*r2"):
        load_model(out, specs[2])
    assert final.is_dir()   # a reader moves nothing


def test_remove_results_deletes_only_what_a_sweep_wrote(sweep, tmp_path):
    out, _ = _copy(sweep, tmp_path)
    (out / "analyses" / "probes").mkdir(parents=True)
    (out / "analyses" / "probes" / "k.csv").write_text("a\n1\n")
    (out / "analyses" / "positions.csv").write_text("a\n1\n")
    (out / "figures").mkdir()
    for name in ("curves.csv", "curves.png", "curves.pdf", ".curves.png.abcd1234.tmp"):
        (out / "figures" / name).write_text("x")
    (out / ".repro.json.k2j3h4g5.tmp").write_text("{")
    for stray in (out / "runs" / "r0" / "thesis.tex", out / "figures" / "notes.txt", out / "thesis.tex"):
        stray.write_text("years of work")
        with pytest.raises(ConfigError, match=f"{stray.name}; refusing to clear it"):
            remove_results(out, out / "figures")
        assert stray.read_text() == "years of work" and (out / "repro.json").exists()   # nothing was deleted
        stray.unlink()
    assert foreign_entries(out) == [out / "figures"]   # without the study's table folder, figures/ is not ours
    remove_results(out, out / "figures")
    assert out.is_dir() and not list(out.iterdir())


def test_a_model_loads_by_run_id_as_by_its_spec(sweep):
    out, specs = sweep
    for spec in (specs[1], specs[2]):
        assert run_spec(out, spec.run_id) == spec
        for a, b in zip(jax.tree.leaves(load_model(out, spec.run_id)), jax.tree.leaves(load_model(out, spec))):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ConfigError, match=r"no run 'r9' in .*runs: runs there: r0, r1, r2"):
        load_model(out, "r9")
    with pytest.raises(ConfigError, match="no run '../r0'"):
        load_model(out, "../r0")


def test_run_spec_rebuilds_nested_tasks_tuples_events_and_tags(tmp_path):
    tasks = (("lang", make_task("language", held_out_pair=(1, 2))),
             ("few", make_task("pool", base=make_task("copy", length=4), n=3)))
    spec = RunSpec("x", M, TrainConfig(steps=6, eval_at=(2, 4), trainable="W_U"), tasks,
                   Mixture(("lang", "few"), (1.0, 2.0), (Event("drop", "few", 3),)), tags=(("pair", (1, 2)),))
    run_dir = tmp_path / "runs" / "x"
    write_json(run_dir / "config.json", {**spec.config(), "group": "0" * 12, "index": 0, "group_size": 1})
    write_record(run_dir, ("config.json",))
    assert run_spec(tmp_path, "x") == spec
    (run_dir / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="not complete: .*config.json does not match"):
        run_spec(tmp_path, "x")
