"""The accelerator suite: ``python -m toymodels.bench --suite gpu [--out suite.json]``.

Four measurements, one JSON record each (printed, and written to ``--out``):

1. ``ensemble``: E tiny models (default 256; 2L d128 seq64 batch64, the bench's ``tiny``)
   trained as one program, fp32 (on GPUs XLA's default precision lets fp32 dots use TF32);
   tokens/s and MFU against the device's fp32, TF32 and bf16 peaks.
2. ``ensemble_bf16``: the same with ``TrainConfig(precision="bf16")`` (bf16 compute, fp32
   master weights and optimizer state).
3. ``torch_loop``: the PyTorch peer (``../shared/peers/torch_toygpt.py``, loaded unchanged)
   looping over the same E models on the same device, eager; its batches are moved to the
   device and every step ends in a device synchronisation so that its clock counts the work.
   Skipped, with the reason recorded, when torch or the peer script is missing.
4. ``studies``: the wall time of each study's preset (``--study-preset``, default ``paper``)
   run in its own process under a per-study time limit; a study cut off at its limit is
   recorded with ``completed: false``, which states the slice that was timed.

On CPU it runs at whatever sizes it is given (the test suite runs a few micro models), so
the suite is exercised before an accelerator is lent.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from toymodels.flops import device_peaks, flop_counts
from toymodels.model import TransformerConfig
from toymodels.tasks import make_task
from toymodels.train import Trainer
from toymodels.trainconfig import TrainConfig

STUDIES = ("ood_decay", "myopia", "compiled_vs_trained", "backdoors", "dictionaries", "elicitation")


def ensemble(E: int, dims: tuple, precision: str, steps: int, k: int) -> dict:
    """Train E models of ``dims`` = (layers, d_model, heads, seq, batch, vocab) as one program."""
    L, d, H, T, B, V = dims
    mcfg = TransformerConfig(n_layers=L, d_model=d, n_heads=H, vocab_size=V, max_seq_len=T)
    tcfg = TrainConfig(steps=10 ** 6, batch_size=B, lr=1e-3, weight_decay=0.1, precision=precision)
    task = make_task("markov", vocab_size=V, length=T, data_seed=1234, temperature=2.0)
    trainer = Trainer(mcfg, tcfg, {"markov": task})
    runs = trainer.runs(seeds=list(range(E)))
    chunk = trainer.programs(runs).chunk
    state = trainer.init(runs)
    params, opt, step = state.params, state.opt, 0
    t0 = time.perf_counter()
    params, opt, loss = chunk(params, opt, runs, None, step, k)
    loss.block_until_ready()
    first = time.perf_counter() - t0
    step += k
    times = []
    for _ in range(max(1, steps // k) + 1):   # the first of these is a warm-up
        t0 = time.perf_counter()
        params, opt, loss = chunk(params, opt, runs, None, step, k)
        loss.block_until_ready()
        times.append(time.perf_counter() - t0)
        step += k
    times = times[1:]
    n_params = sum(int(np.prod(x.shape[1:])) for x in jax.tree.leaves(params))
    tps = E * B * T * k * len(times) / sum(times)
    return {"runs": E, "precision": precision, "tokens_per_s": round(tps, 1), "params_per_model": n_params,
            "step_ms_median": round(1e3 * statistics.median(times) / k, 3),
            "compile_s": round(max(0.0, first - statistics.median(times)), 3), "timed_steps": k * len(times),
            "final_loss": round(float(np.mean(np.asarray(loss))), 4), "loss_floor": round(task.entropy_rate, 4),
            **flop_counts(L, d, V, T, n_params)}


_TORCH_SHIM = r'''
import importlib.util, sys, time, torch
peer, device = sys.argv[1], sys.argv[2]
sys.argv = [peer] + sys.argv[3:]
spec = importlib.util.spec_from_file_location("torch_toygpt", peer)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)           # parses the peer's arguments; defines, does not run
torch.set_default_device(device)
batch = mod.MarkovTask.batch
mod.MarkovTask.batch = lambda self, *a: tuple(t.to(device) for t in batch(self, *a))
build = mod.build_loop_trainer
def synced(a, models):
    step = build(a, models)
    def run(batches):
        out = step(batches)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return out
    return run
mod.build_loop_trainer = synced
mod.main(mod.ARGS)
'''


def torch_loop(peer: str | None, python: str, E: int, dims: tuple, steps: int, device: str) -> dict:
    """The PyTorch peer looping over E models on ``device`` (eager), through a shim that moves
    its batches to the device and synchronises after every step."""
    if not peer or not Path(peer).exists():
        return {"skipped": f"no peer script at {peer!r}"}
    probe = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True)
    if probe.returncode:
        return {"skipped": f"{python} has no torch"}
    L, d, H, T, B, V = dims
    args = (f"--layers {L} --d-model {d} --heads {H} --seq-len {T} --batch {B} --vocab {V} --steps {steps} "
            f"--warmup-steps 2 --ensemble {E} --ensemble-mode loop --no-compile").split()
    proc = subprocess.run([python, "-c", _TORCH_SHIM, peer, device, *args], capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        return {"skipped": f"peer failed: {proc.stderr[-500:]}"}
    r = json.loads(lines[-1])
    return {"runs": E, "device": device, "tokens_per_s": r["tokens_per_s"], "step_ms_median": r["step_ms_median"],
            "final_loss": r["final_loss"], "torch": r["torch"]}


def study_times(preset: str, limit_s: float, studies=STUDIES) -> list[dict]:
    """Wall time of each study's ``preset``, each in its own process, cut off at ``limit_s``."""
    rows = []
    for name in studies:
        out = tempfile.mkdtemp(prefix=f"suite-{name}-")
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", f"studies.{name}", "--preset", preset, "--out", out,
                                   "--no-progress"], capture_output=True, text=True, timeout=limit_s)
            done, rc = proc.returncode == 0, proc.returncode
        except subprocess.TimeoutExpired:
            done, rc = False, None
        rows.append({"study": name, "preset": preset, "wall_s": round(time.perf_counter() - t0, 1),
                     "completed": done, "returncode": rc, "limit_s": limit_s})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def with_mfu(rec: dict, peaks: dict, cpu_peak_gflops: float | None) -> dict:
    """``rec`` plus its MFU (6N convention) against each known peak."""
    if "tokens_per_s" not in rec:
        return rec
    flops = rec.get("flops_per_token_6N")
    if flops is None:
        return rec
    achieved = flops * rec["tokens_per_s"] / 1e12   # TFLOP/s
    rec["tflops_6N"] = round(achieved, 4)
    for name, peak in peaks.items():
        rec[f"mfu_{name}"] = round(achieved / peak, 4)
    if cpu_peak_gflops:
        rec["mfu_cpu_fp32_gemm"] = round(achieved * 1e3 / cpu_peak_gflops, 4)
    return rec


def run_suite(*, runs: int = 256, dims: tuple = (2, 128, 4, 64, 64, 64), steps: int = 50, k: int = 10,
              peer: str | None = None, peer_python: str = "python3", study_preset: str = "paper",
              study_limit_s: float = 600.0, studies=STUDIES, cpu_peak_gflops: float | None = None) -> dict:
    """Every measurement of the suite, as one dict (see the module docstring)."""
    dev = jax.devices()[0]
    peaks = device_peaks(dev.device_kind) if dev.platform == "gpu" else {}
    out = {"device": dev.device_kind, "platform": dev.platform, "jax": jax.__version__, "peaks_tflops": peaks,
           "dims": dict(zip(("layers", "d_model", "heads", "seq", "batch", "vocab"), dims))}
    for name, precision in (("ensemble", "fp32"), ("ensemble_bf16", "bf16")):
        out[name] = with_mfu(ensemble(runs, dims, precision, steps, k), peaks, cpu_peak_gflops)
        print(json.dumps({name: out[name]}), flush=True)
    torch_device = "cuda" if dev.platform == "gpu" else "cpu"
    out["torch_loop"] = torch_loop(peer, peer_python, runs, dims, max(3, steps // 5), torch_device)
    if "tokens_per_s" in out["torch_loop"]:
        out["torch_loop"]["flops_per_token_6N"] = out["ensemble"]["flops_per_token_6N"]
        with_mfu(out["torch_loop"], peaks, cpu_peak_gflops)
        for name in ("ensemble", "ensemble_bf16"):
            out[name]["x_torch_loop"] = round(out[name]["tokens_per_s"] / out["torch_loop"]["tokens_per_s"], 2)
    print(json.dumps({"torch_loop": out["torch_loop"]}), flush=True)
    out["studies"] = study_times(study_preset, study_limit_s, studies) if studies else []
    return out


def suite_main(a) -> None:
    """``--suite gpu`` of ``python -m toymodels.bench`` (arguments parsed there)."""
    dims = tuple(int(x) for x in a.dims.split(",")) if a.dims else (2, 128, 4, 64, 64, 64)
    if len(dims) != 6 or min(dims) < 1:
        raise SystemExit(f"error: --dims={a.dims!r}: expected six positive numbers "
                         "layers,d_model,heads,seq,batch,vocab")
    studies = [] if a.studies == "none" else (STUDIES if a.studies == "all" else tuple(a.studies.split(",")))
    unknown = sorted(set(studies) - set(STUDIES))
    if unknown:
        raise SystemExit(f"error: --studies: unknown {', '.join(unknown)}; choose from {', '.join(STUDIES)}, "
                         "all or none")
    steps = a.steps or 50
    res = run_suite(runs=a.runs, dims=dims, steps=steps, k=min(10, steps), peer=a.peer, peer_python=a.peer_python,
                    study_preset=a.study_preset, study_limit_s=a.study_limit_s, studies=studies,
                    cpu_peak_gflops=a.peak_gflops)
    res["load_avg_1m"] = round(os.getloadavg()[0], 2)
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res))
