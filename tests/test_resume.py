"""Kill a training process with SIGKILL mid-run, rerun the same command: same numbers as never killed."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toymodels.checkpoint import Checkpointer, params_equal
from toymodels.cli import parse_train_args, train_specs
from toymodels.config import ConfigError
from toymodels.sweep import load_model

ARGS = ["--tasks", "markov", "--task_set", "markov.vocab_size=8", "markov.length=8",
        "--model.n_layers", "1", "--model.d_model", "16", "--model.n_heads", "2",
        "--train.steps", "400", "--train.chunk_steps", "10", "--train.n_evals", "8",
        "--train.batch_size", "8", "--seeds", "0", "1", "--no-progress", "--checkpoint_every_s", "0"]


def _cmd(out):
    return [sys.executable, "-m", "toymodels.train", *ARGS, "--out", str(out)]


def _ckpt_steps(out):
    groups = list((Path(out) / "groups").glob("*"))
    return sorted(int(p.name) for g in groups for p in g.iterdir() if p.name.isdigit()) if groups else []


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
        assert params_equal(load_model(tmp_path / "whole", spec), load_model(tmp_path / "killed", spec))


def test_checkpoint_of_another_config_is_refused(tmp_path):
    from toymodels.checkpoint import fit
    from toymodels.model import TransformerConfig
    from toymodels.tasks import make_task
    from toymodels.train import TrainConfig, Trainer
    tasks = {"m": make_task("markov", vocab_size=8, length=8)}
    m = TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=8, max_seq_len=8)
    t = TrainConfig(steps=10, batch_size=4, n_evals=1)
    tr = Trainer(m, t, tasks)
    fit(tr, tr.runs(), tmp_path, progress=False)
    other = Trainer(m, TrainConfig(steps=10, batch_size=4, n_evals=1, lr=5e-4), tasks)
    with pytest.raises(ConfigError, match=r"(?s)different config.*train.lr"):
        fit(other, other.runs(), tmp_path, progress=False)
    assert Checkpointer(tmp_path, {}).latest_step() == 10
