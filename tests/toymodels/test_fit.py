"""Kill a training process with SIGKILL mid-run, rerun the same command: same numbers as never killed."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from toymodels.checkpoint import Checkpointer
from toymodels.cli import parse_train_args, train_specs
from toymodels.config import ConfigError
from toymodels.fit import fit
from toymodels.model import TransformerConfig
from toymodels.store import load_model
from toymodels.tasks import make_task
from toymodels.train import Trainer
from toymodels.trainconfig import TrainConfig

ARGS = ["--tasks", "markov", "--task_set", "markov.vocab_size=8", "markov.length=8",
        "--model.n_layers", "1", "--model.d_model", "16", "--model.n_heads", "2",
        "--train.steps", "400", "--train.chunk_steps", "10", "--train.n_evals", "8",
        "--train.batch_size", "8", "--seeds", "0", "1", "--no-progress", "--checkpoint_every_s", "0"]
TASKS = {"m": make_task("markov", vocab_size=8, length=8)}
M = TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=8, max_seq_len=8)


def _cmd(out):
    return [sys.executable, "-m", "toymodels", *ARGS, "--out", str(out)]


def _ckpt_steps(out):
    groups = list((Path(out) / "groups").glob("*"))
    return sorted(int(p.name) for g in groups for p in g.iterdir() if p.name.isdigit()) if groups else []


def _params_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_killed_run_resumes_to_identical_results(tmp_path):
    env = {**os.environ, "TOYMODELS_JAX_CACHE": str(tmp_path / "jaxcache")}
    subprocess.run(_cmd(tmp_path / "whole"), check=True, env=env, capture_output=True)

    proc = subprocess.Popen(_cmd(tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not _ckpt_steps(tmp_path / "killed"):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = _ckpt_steps(tmp_path / "killed")
    assert done_at_kill and max(done_at_kill) < 400, "the kill must land mid-training"
    assert not list((tmp_path / "killed").glob("runs/*/metrics.csv"))

    resumed = subprocess.run(_cmd(tmp_path / "killed"), check=True, env=env, capture_output=True, text=True)
    assert "resuming from step" in resumed.stdout

    for spec in train_specs(parse_train_args(ARGS)):
        a = (tmp_path / "whole" / "runs" / spec.run_id / "metrics.csv").read_text()
        b = (tmp_path / "killed" / "runs" / spec.run_id / "metrics.csv").read_text()
        assert a == b
        assert _params_equal(load_model(tmp_path / "whole", spec), load_model(tmp_path / "killed", spec))


class _Killed(Exception):
    pass


def test_fit_resumes_from_its_checkpoint_to_the_uninterrupted_numbers(tmp_path, capsys):
    trainer = Trainer(M, TrainConfig(steps=20, batch_size=4, n_evals=2, chunk_steps=5), TASKS)
    runs = trainer.runs(seeds=[0, 1])
    straight = fit(trainer, runs, tmp_path / "a", progress=False)
    ckpt = Checkpointer(tmp_path / "b", trainer.describe(runs))   # the config fit writes

    def killed_at_10(state, log):
        if state.step == 10:
            ckpt.save(state, log)
            raise _Killed
    with pytest.raises(_Killed):
        trainer.train(runs, progress=False, on_chunk=killed_at_10)
    ckpt.close()
    resumed = fit(trainer, runs, tmp_path / "b", progress=False)
    assert "resuming from step 10" in capsys.readouterr().out
    assert _params_equal(straight.state.params, resumed.state.params)
    np.testing.assert_array_equal(straight.history["m"]["loss"], resumed.history["m"]["loss"])
    np.testing.assert_array_equal(straight.train_loss, resumed.train_loss)
    assert list(resumed.chunk_ends) == [5, 10, 15, 20] and list(resumed.eval_steps) == [0, 10, 20]


def test_checkpoint_of_another_config_is_refused(tmp_path):
    t = TrainConfig(steps=10, batch_size=4, n_evals=1)
    tr = Trainer(M, t, TASKS)
    fit(tr, tr.runs(), tmp_path, progress=False)
    other = Trainer(M, TrainConfig(steps=10, batch_size=4, n_evals=1, lr=5e-4), TASKS)
    with pytest.raises(ConfigError, match=r"(?s)different config.*train.lr"):
        fit(other, other.runs(), tmp_path, progress=False)
    assert Checkpointer(tmp_path, {}).latest_step() == 10
