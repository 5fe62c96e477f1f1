import dataclasses

import pytest

from toymodels.config import ConfigError
from toymodels.model import TransformerConfig
from toymodels.sweep import RunSpec, grid, load_rows, run_sweep
from toymodels.tasks import make_task
from toymodels.train import TrainConfig, Trainer, _init_programs, _programs

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
    _programs.cache_clear()
    _init_programs.cache_clear()   # shared per architecture: other tests may have used it
    specs = _specs()
    run_sweep(specs, tmp_path, progress=True)
    assert "1 group(s)" in capsys.readouterr().out
    assert _programs.cache_info().misses == 1              # one program built for all 12 runs
    trainer = Trainer(specs[0].model, specs[0].train, dict(TASKS))
    _, init, _, chunk, evaluate = trainer._fns(trainer.runs(seeds=list(range(12))))
    assert _programs.cache_info().misses == 1              # ... and it is the one just used
    assert chunk._cache_size() == 1 and init._cache_size() == 1 and evaluate._cache_size() == 1
    rows = load_rows(tmp_path)
    assert len({r["run"] for r in rows}) == 12
    assert {r["wd"] for r in rows} == {0.0, 0.1}            # tags reach the rows
    run_sweep(specs, tmp_path, progress=True)
    assert "12 complete, 0 to train" in capsys.readouterr().out


def test_reused_run_id_with_other_config_is_refused(tmp_path):
    spec = _specs()[0]
    run_sweep([spec], tmp_path, progress=False)
    other = dataclasses.replace(spec, train=dataclasses.replace(spec.train, steps=20))
    with pytest.raises(ConfigError, match="different config"):
        run_sweep([other], tmp_path, progress=False)


def test_duplicate_and_bad_run_ids_are_refused(tmp_path):
    spec = _specs()[0]
    with pytest.raises(ConfigError, match="unique"):
        run_sweep([spec, spec], tmp_path, progress=False)
    with pytest.raises(ConfigError, match="run_id"):
        dataclasses.replace(spec, run_id="a/b")
