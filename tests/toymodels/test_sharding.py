import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from toymodels.store import final_params, load_rows

sys.path.insert(0, str(Path(__file__).parents[1] / "multiprocess"))
import sweep_worker  # noqa: E402  (its SPECS: the sweep the processes train)


def _flags(devices: int) -> str:
    """This process's XLA flags (the suite's compile settings) with a forced host device count."""
    return f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()


def test_multidevice_suite_in_its_own_process():
    """The runs axis sharded over 4 (forced host) devices gives the single-device numbers."""
    env = {**os.environ, "XLA_FLAGS": _flags(devices=4), "TOYMODELS_MULTIDEVICE": "1"}
    tests = Path(__file__).parents[1]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider",
                           str(tests / "multidevice")], env=env, capture_output=True, text=True, cwd=tests.parent)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "5 passed" in proc.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(out: Path, process_id: int, num_processes: int, port: int, devices: int) -> subprocess.Popen:
    worker = Path(__file__).parents[1] / "multiprocess" / "sweep_worker.py"
    env = {**os.environ, "XLA_FLAGS": _flags(devices), "JAX_PLATFORMS": "cpu"}
    log = open(out / f"log_{process_id}.txt", "w")
    return subprocess.Popen([sys.executable, str(worker), str(out), str(process_id), str(num_processes), str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2])


def test_two_processes_train_a_sweep_exactly_as_one_process_does(tmp_path):
    """jax.distributed on CPU: 2 processes x 2 devices train a sweep the way ``--distributed`` does
    (run_sweep's mesh spans both processes); process 0's results equal one 4-device process's bit
    for bit, a rerun restores the group's checkpoint in both processes, and callbacks run on process 0."""
    multi, single = tmp_path / "multi", tmp_path / "single"
    multi.mkdir()
    single.mkdir()
    port = _free_port()
    procs = [_launch(multi, i, 2, port, devices=2) for i in range(2)] + [_launch(single, 0, 1, 0, devices=4)]
    deadline = time.monotonic() + 240
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    logs = {f"{d.name}/{f.name}": f.read_text()[-3000:] for d in (multi, single) for f in sorted(d.glob("log_*"))}
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(f"== {k}\n{v}" for k, v in logs.items())
    for name, text in logs.items():
        assert "resuming from step 20" in text and "done" in text, name
    specs = sweep_worker.SPECS
    a, b = load_rows(multi / "results"), load_rows(single / "results")
    assert {r["run"] for r in a} == {s.run_id for s in specs} and a == b   # every row, every value, exactly
    for x, y in zip(jax.tree.leaves(final_params(multi / "results", specs)),
                    jax.tree.leaves(final_params(single / "results", specs))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    events = [json.loads((multi / f"events_{i}.json").read_text()) for i in range(2)]
    assert events[1] == [] and [e["step"] for e in events[0]] == [10, 20]   # callbacks on process 0 only
    assert events[0] == json.loads((single / "events_0.json").read_text())
    for e in events[0]:
        assert e["run_ids"] == [s.run_id for s in specs]   # no padding run
        for i, run in enumerate(e["run_ids"]):
            got = {(r["task"], r["metric"]): r["value"] for r in a if r["run"] == run and r["step"] == e["step"]}
            assert got.pop(("train", "train_loss")) == np.float32(e["train_loss"][i])
            assert got == {(t, m): np.float32(v[i]) for t, ms in e["evals"].items() for m, v in ms.items()}
