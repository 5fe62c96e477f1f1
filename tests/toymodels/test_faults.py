"""Fault injection: kill the training command at random points, damage each kind of file a
results folder holds, rerun. Nothing may be lost: every result equals an uninterrupted
run's, or is refused with a message naming the file (docs/reliability.md)."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from toymodels.cli import parse_train_args, train_specs
from toymodels.config import ConfigError
from toymodels.results import record_problem
from toymodels.store import final_params, load_model
from toymodels.sweep import run_sweep

ARGS = ["--tasks", "markov", "--task_set", "markov.vocab_size=8", "markov.length=8",
        "--model.n_layers", "1", "--model.d_model", "16", "--model.n_heads", "2",
        "--train.steps", "200", "--train.chunk_steps", "10", "--train.n_evals", "5",
        "--train.batch_size", "8", "--seeds", "0", "1", "--no-progress", "--checkpoint_every_s", "0"]
SPECS = train_specs(parse_train_args(ARGS))
# orbax leaves a failed read's futures unretrieved; they are garbage, not failures
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run of ARGS (in this process: the same program as the command)."""
    out = tmp_path_factory.mktemp("reference")
    run_sweep(SPECS, out, progress=False, checkpoint_every_s=0)
    return out


def _ckpt_steps(out: Path) -> list[int]:
    return sorted(int(p.name) for p in out.glob("groups/*/*") if p.name.isdigit())


def _same_results(a: Path, b: Path) -> None:
    for spec in SPECS:
        assert record_problem(b / "runs" / spec.run_id) is None
        for name in ("metrics.csv", "config.json"):
            assert (a / "runs" / spec.run_id / name).read_text() == (b / "runs" / spec.run_id / name).read_text()
    for x, y in zip(jax.tree.leaves(final_params(a, SPECS)), jax.tree.leaves(final_params(b, SPECS))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _leftovers(out: Path) -> list[Path]:
    """Temporaries of atomic writes and of orbax saves."""
    return [p for p in out.rglob("*") if p.name.endswith(".tmp") or "orbax-checkpoint-tmp" in p.name]


def test_random_kills_then_a_rerun_end_with_the_uninterrupted_results(reference, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "toymodels", *ARGS, "--out", str(out)]
    env = {**os.environ, "TOYMODELS_JAX_CACHE": str(tmp_path / "jaxcache")}
    rng = random.Random(20240611)
    # one kill at a random moment of start-up, then two at random training steps (the last
    # near the end: in the final save or while the run records are written)
    plan = [(None, rng.uniform(0.5, 3.0)), (rng.randrange(20, 120, 10), rng.uniform(0, 0.3)),
            (rng.randrange(150, 210, 10), rng.uniform(0, 0.3))]
    for target, delay in plan:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while target is not None and time.time() < deadline and proc.poll() is None \
                and not any(s >= target for s in _ckpt_steps(out)):
            time.sleep(0.02)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        print(f"killed (target step {target}, +{delay:.2f}s): checkpoints {_ckpt_steps(out)}, "
              f"records {sorted(p.parent.name for p in out.glob('runs/*/done.json'))}")   # shown on failure
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    _same_results(reference, out)
    assert not _leftovers(out)


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes({"half": data[: len(data) // 2], "empty": b""}[how]) if how != "delete" else path.unlink()


@pytest.mark.parametrize("name,how", [("metrics.csv", "half"), ("metrics.csv", "empty"), ("config.json", "half"),
                                      ("config.json", "delete"), ("done.json", "half"), ("done.json", "delete")])
def test_a_damaged_run_record_is_refused_when_read_and_rewritten_by_a_rerun(reference, tmp_path, capsys, name, how):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    bad = out / "runs" / SPECS[0].run_id / name
    _damage(bad, how)
    with pytest.raises(ConfigError, match=f"not complete: {bad}"):
        load_model(out, SPECS[0])
    run_sweep(SPECS, out, progress=False, checkpoint_every_s=0)
    said = capsys.readouterr().out
    assert f"run {SPECS[0].run_id}: " in said and "retraining it" in said
    assert "resuming from step 200" in said   # rewritten from the group's final checkpoint
    _same_results(reference, out)


def test_a_damaged_checkpoint_is_refused_when_read_and_skipped_by_a_rerun(reference, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    final = next(out.glob("groups/*/200"))
    biggest = max((p for p in final.rglob("*") if p.is_file() and "state" in p.parts), key=lambda p: p.stat().st_size)
    _damage(biggest, "half")
    with pytest.raises(ConfigError, match=f"(?s)checkpoint step 200 in {final.parent} does not restore.*Delete "):
        load_model(out, SPECS[0])
    shutil.rmtree(out / "runs" / SPECS[0].run_id)   # what the message says to do
    run_sweep(SPECS, out, progress=False, checkpoint_every_s=0)
    said = capsys.readouterr().out
    assert "checkpoint step 200" in said and "damaged-200" in said and "resuming from step 190" in said
    _same_results(reference, out)


def test_a_damaged_repro_record_is_rewritten(reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    _damage(out / "repro.json", "half")
    run_sweep(SPECS, out, progress=False)
    assert json.loads((out / "repro.json").read_text())["code_version"]
    _same_results(reference, out)
