import dataclasses

import jax
import numpy as np
import pytest

from toymodels.config import ConfigError
from toymodels.model import TransformerConfig
from toymodels.params import param_paths
from toymodels.programs import clear_program_caches, programs_built
from toymodels.runspec import RunSpec
from toymodels.store import final_params, load_rows
from toymodels.sweep import NonFiniteRuns, grid, run_sweep
from toymodels.tasks import make_task
from toymodels.train import Trainer
from toymodels.trainconfig import TrainConfig

M = TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=8, max_seq_len=8)
TASKS = (("markov", make_task("markov", vocab_size=8, length=8)),)


def _specs(steps=12):
    return [RunSpec(f"s{p['seed']}_lr{p['lr']}_wd{p['wd']}", M,
                    TrainConfig(steps=steps, batch_size=4, n_evals=2, seed=p["seed"], lr=p["lr"],
                                weight_decay=p["wd"]), TASKS, tags=(("wd", p["wd"]),))
            for p in grid(seed=[0, 1, 2], lr=[1e-3, 3e-3], wd=[0.0, 0.1])]


def test_grid_is_the_cartesian_product():
    assert grid(a=[1, 2], b="xy") == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]


def test_twelve_runs_train_as_one_compiled_program_and_rerun_skips_them(tmp_path, capsys):
    clear_program_caches()   # shared per architecture: other tests may have used it
    specs = _specs()
    run_sweep(specs, tmp_path, progress=True)
    assert "1 group(s)" in capsys.readouterr().out
    assert programs_built() == 1                           # one program built for all 12 runs
    trainer = Trainer(specs[0].model, specs[0].train, dict(TASKS))
    programs = trainer.programs(trainer.runs(seeds=list(range(12))))
    assert programs_built() == 1                           # ... and it is the one just used
    # jax's own count of compiled variants of each jitted function
    assert programs.chunk._cache_size() == 1 and programs.init._cache_size() == 1
    assert programs.evaluate._cache_size() == 1
    rows = load_rows(tmp_path)
    assert len({r["run"] for r in rows}) == 12
    assert {r["wd"] for r in rows} == {0.0, 0.1}            # tags reach the rows
    run_sweep(specs, tmp_path, progress=True)
    assert "12 complete, 0 to train" in capsys.readouterr().out


def test_group_labels_split_batching_but_never_change_numbers(tmp_path, capsys):
    specs = _specs()[:2]
    run_sweep(specs, tmp_path / "one", progress=True)
    assert "1 group(s)" in capsys.readouterr().out
    labelled = [dataclasses.replace(s, group=f"g{i}") for i, s in enumerate(specs)]
    run_sweep(labelled, tmp_path / "two", progress=True)
    assert "2 group(s)" in capsys.readouterr().out
    a, b = load_rows(tmp_path / "one"), load_rows(tmp_path / "two")
    assert [(r["run"], r["step"], r["task"], r["metric"]) for r in a] == \
        [(r["run"], r["step"], r["task"], r["metric"]) for r in b]
    np.testing.assert_allclose([r["value"] for r in a], [r["value"] for r in b], atol=1e-5)
    # the label is not part of a run's config: the labelled specs are complete in the first folder
    run_sweep(labelled, tmp_path / "one", progress=True)
    assert "2 complete, 0 to train" in capsys.readouterr().out


def test_reused_run_id_with_other_config_is_refused(tmp_path):
    spec = _specs()[0]
    run_sweep([spec], tmp_path, progress=False)
    other = dataclasses.replace(spec, train=dataclasses.replace(spec.train, steps=20))
    with pytest.raises(ConfigError, match=r"(?s)different config.*train.steps: the saved one has 12, this run has 20"):
        run_sweep([other], tmp_path, progress=False)
    # a checkpoint of the id (here: its results deleted, as after a kill before they were written)
    # lives in another group folder: refused too, naming the field and the folder
    for f in (tmp_path / "runs" / spec.run_id).iterdir():
        f.unlink()
    with pytest.raises(ConfigError, match=r"(?s)checkpoint in .*groups/\w+ .*train.steps: the saved one has 12"):
        run_sweep([other], tmp_path, progress=False)
    assert len(list((tmp_path / "groups").iterdir())) == 1


def test_a_damaged_run_is_rewritten_from_its_groups_checkpoint_and_stale_temporaries_go(tmp_path, capsys):
    specs = _specs()[:2]
    run_sweep(specs, tmp_path, progress=False)
    run = tmp_path / "runs" / specs[0].run_id
    whole = (run / "metrics.csv").read_text()
    (run / "metrics.csv").write_text(whole[: len(whole) // 2])   # cut mid-line
    stale = [run / ".metrics.csv.ab12cd34.tmp", tmp_path / ".repro.json.x_y_z_w_.tmp"]
    kept = tmp_path / "notes.tmp"
    for p in stale + [kept]:
        p.write_text("x")
    capsys.readouterr()
    run_sweep(specs, tmp_path, progress=False)
    said = capsys.readouterr().out
    assert f"run {specs[0].run_id}: {run / 'metrics.csv'} does not match done.json" in said and "retraining" in said
    assert "resuming from step 12" in said            # its group's final checkpoint: nothing retrained
    assert (run / "metrics.csv").read_text() == whole
    assert not any(p.exists() for p in stale) and kept.exists()


def test_a_diverging_run_is_named_and_kept_out_while_the_rest_of_its_group_is_written(tmp_path, capsys):
    ok, bad = _specs()[:2]
    bad = dataclasses.replace(bad, run_id="boom", train=dataclasses.replace(bad.train, lr=1e6))
    with pytest.raises(NonFiniteRuns, match=r"'boom': non-finite training loss during steps \d+\.\.\d+"):
        run_sweep([ok, bad], tmp_path, progress=False)
    assert {r["run"] for r in load_rows(tmp_path)} == {ok.run_id}
    assert not (tmp_path / "runs" / "boom").exists()
    with pytest.raises(ConfigError, match="'boom'"):    # a ConfigError: the command line exits with the message
        run_sweep([ok, bad], tmp_path, progress=True)
    assert "1 complete, 1 to train" in capsys.readouterr().out


def test_duplicate_run_ids_are_refused(tmp_path):
    spec = _specs()[0]
    with pytest.raises(ConfigError, match="unique"):
        run_sweep([spec, spec], tmp_path, progress=False)


# -- runs that start from (init_from) or read (teacher) other runs of the sweep --------------

M2 = TransformerConfig(n_layers=2, d_model=16, n_heads=2, vocab_size=8, max_seq_len=8)
COPY = make_task("copy", length=3, n_symbols=7)   # 6 positions, vocab 8


def _spec(run_id, steps=30, **kw):
    train = dict(steps=steps, batch_size=8, n_evals=1, lr=3e-3)
    train.update({k: kw.pop(k) for k in list(kw) if k in ("trainable", "context", "seed")})
    return RunSpec(run_id, M2, TrainConfig(**train), (("copy", COPY),), **kw)


def test_sweep_runs_start_from_and_read_other_runs(tmp_path):
    specs = [
        _spec("probe", trainable="W_U", init_from="base"),       # listed before its parent on purpose
        _spec("local", context="teacher", teacher="base", init_from="base", steps=10),
        _spec("base", seed=1),
        _spec("base2", seed=2),
    ]
    run_sweep(specs, tmp_path, progress=False)
    base, probe = (final_params(tmp_path, [s]) for s in (specs[2], specs[0]))
    changed = {k for k, a, b in zip(param_paths(base), jax.tree.leaves(base), jax.tree.leaves(probe))
               if not np.array_equal(a, b)}
    assert changed == {"W_U"}                         # everything else is the parent's final state
    assert {r["run"] for r in load_rows(tmp_path)} == {"probe", "local", "base", "base2"}


def test_sweep_dependency_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a run of this sweep"):
        run_sweep([_spec("a", init_from="nope")], tmp_path, progress=False)
    with pytest.raises(ConfigError, match="cycle"):
        run_sweep([_spec("a", init_from="b"), _spec("b", init_from="a")], tmp_path, progress=False)
    wide = dataclasses.replace(_spec("w"), model=dataclasses.replace(M2, d_model=32))
    with pytest.raises(ConfigError, match="different model architecture"):
        run_sweep([wide, _spec("a", init_from="w")], tmp_path, progress=False)


def test_a_sweep_under_a_stop_criterion_records_where_each_run_stopped(tmp_path):
    specs = [RunSpec(f"s{s}", M, TrainConfig(steps=20, batch_size=4, n_evals=2, seed=s, lr=lr, stop_every=5,
                                             stop_when="markov.loss<=2.05"), TASKS)
             for s, lr in ((0, 3e-2), (1, 1e-6))]
    run_sweep(specs, tmp_path, progress=False)
    stopped = {r["run"]: (r["step"], r["value"]) for r in load_rows(tmp_path) if r["metric"] == "stopped"}
    assert stopped["s1"] == (20, 0.0)                  # lr 1e-6: never gets below the threshold
    assert stopped["s0"][1] == 1.0 and stopped["s0"][0] % 5 == 0 and stopped["s0"][0] < 20
