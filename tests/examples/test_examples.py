"""The runnable examples run: each script end to end in its own process, as a reader would
start it, writing into a temporary folder; and the task defined outside the library trains."""

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# In its own process: registering "majority" here would add a task without a SPECS entry to
# this worker's registry (tests/toymodels/tasks/test_tasks.py checks that every task has one).
OUTSIDE_TASK = """
import jax, numpy as np
import my_task  # registers "majority"
from toymodels.config import ConfigError
from toymodels.model import TransformerConfig
from toymodels.tasks import make_task
from toymodels.train import Trainer
from toymodels.trainconfig import TrainConfig

task = make_task("majority", length=5)
batch = task.sample(jax.random.key(0), 64)
bits = np.asarray(batch.inputs)[:, :5]
np.testing.assert_array_equal(np.asarray(batch.targets)[:, -1], (bits.sum(1) > 2).astype(int))
try:
    make_task("majority", length=4)
    raise SystemExit("an even length was accepted")
except ConfigError as e:
    assert "length must be odd" in str(e)
model = TransformerConfig(n_layers=1, d_model=32, n_heads=2, vocab_size=3, max_seq_len=task.seq_len)
trainer = Trainer(model, TrainConfig(steps=150, batch_size=64, lr=3e-3, n_evals=2), {"majority": task})
loss = trainer.train(progress=False).history["majority"]["loss"][0]
print("loss", loss[0], loss[-1])
assert loss[-1] < 0.7 * loss[0], loss
"""


def _run(script: str, out: Path) -> str:
    """Run an example (a file name, or code with -c) as a reader would, in a new process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(EXAMPLES.parent), str(EXAMPLES),
                                                       os.environ.get("PYTHONPATH", "")]))
    args = [str(EXAMPLES / script), str(out)] if script.endswith(".py") else ["-c", script]
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, env=env,
                          cwd=out.parent)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_compile_and_inspect(tmp_path):
    stdout = _run("compile_and_inspect.py", tmp_path / "out")
    assert "compiled == interpreter on all 120 inputs" in stdout
    assert (tmp_path / "out" / "reverse_attention.png").stat().st_size > 0


def test_study_results(tmp_path):
    stdout = _run("study_results.py", tmp_path / "qs")
    accs = [float(line.split()[-1]) for line in stdout.splitlines() if "recomputed from the weights" in line]
    assert len(accs) == 3 and min(accs) > 0.9, stdout
    assert (tmp_path / "qs" / "figures" / "sort_accuracy.png").stat().st_size > 0


def test_train_and_look_inside(tmp_path):
    stdout = _run("train_and_look_inside.py", tmp_path / "out")
    assert "held-out accuracy" in stdout
    assert (tmp_path / "out" / "attention.png").stat().st_size > 0


def test_task_defined_outside_the_library_trains(tmp_path):
    assert "loss" in _run(OUTSIDE_TASK, tmp_path / "out")
