"""Training-speed benchmark: ``python -m toymodels.bench [--case NAME] [--json]``.

Cases match ../shared/peers/torch_toygpt.py in model and data (pre-LN, tanh-GELU
4x MLP, learned positions, untied bias-free unembedding, N(0, 0.02) init with
residual projections N(0, 0.02/sqrt(2L)), AdamW lr 1e-3 betas (0.9, 0.95) wd 0.1
on all params, fp32, the same random bigram chain) and follow its timing and
FLOP conventions (shared/peers/README.md), with one difference that can only
cost us: a timed step here is the product's training chunk, so it INCLUDES
sampling the batch on device (the peer samples on the host, off the clock).
``data_ms`` reports that sampling cost on its own.

``--suite gpu`` runs the accelerator suite instead (``toymodels.bench_gpu``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from toymodels import enable_compilation_cache
from toymodels.bench_gpu import suite_main
from toymodels.flops import flop_counts
from toymodels.model import TransformerConfig
from toymodels.runs import runs_devices
from toymodels.tasks import make_task
from toymodels.train import Trainer
from toymodels.trainconfig import TrainConfig

CASES = {
    #            layers d_model heads seq batch vocab runs  myopic
    "tiny":        (2, 128, 4, 64, 64, 64, 1, False),
    "small":       (4, 256, 8, 128, 32, 128, 1, False),
    "tiny_x8":     (2, 128, 4, 64, 64, 64, 8, False),
    "micro_x32":   (2, 64, 4, 32, 32, 32, 32, False),
    "tiny_myopic": (2, 128, 4, 64, 64, 64, 1, True),
}
TIMED_STEPS = {"tiny": 100, "small": 40, "tiny_x8": 20, "micro_x32": 100, "tiny_myopic": 100}
STEPS_PER_CALL = {"tiny": 10, "small": 5, "tiny_x8": 5, "micro_x32": 10, "tiny_myopic": 10}


def measure_peak_gflops(n: int = 2048, reps: int = 5) -> float:
    """Practical fp32 matmul peak of this backend (median of ``reps`` large GEMMs)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    mm = jax.jit(lambda x, y: x @ y)
    mm(a, a).block_until_ready()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        mm(a, a).block_until_ready()
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def run_case(name: str, peak_gflops: float | None, steps: int | None = None) -> dict:
    """Time one case's training chunks (and data sampling alone); tokens/s, MFU, compile time."""
    L, d, H, T, B, V, E, myopic = CASES[name]
    k = STEPS_PER_CALL[name]
    timed = steps or TIMED_STEPS[name]
    n_calls = max(1, timed // k)
    mcfg = TransformerConfig(n_layers=L, d_model=d, n_heads=H, vocab_size=V, max_seq_len=T)
    tcfg = TrainConfig(steps=10 ** 6, batch_size=B, lr=1e-3, weight_decay=0.1, myopic=myopic)
    task = make_task("markov", vocab_size=V, length=T, data_seed=1234, temperature=2.0)
    trainer = Trainer(mcfg, tcfg, {"markov": task})
    runs = trainer.runs(seeds=list(range(E)))
    chunk = trainer.programs(runs).chunk
    state = trainer.init(runs)
    jax.block_until_ready(state.params)

    params, opt, step = state.params, state.opt, 0
    t0 = time.perf_counter()
    params, opt, loss = chunk(params, opt, runs, None, step, k)
    loss.block_until_ready()
    first_call = time.perf_counter() - t0
    step += k
    warm = [first_call]
    for _ in range(2):
        t0 = time.perf_counter()
        params, opt, loss = chunk(params, opt, runs, None, step, k)
        loss.block_until_ready()
        warm.append(time.perf_counter() - t0)
        step += k
    times, losses = [], []
    for _ in range(n_calls):
        t0 = time.perf_counter()
        params, opt, loss = chunk(params, opt, runs, None, step, k)
        loss.block_until_ready()
        times.append(time.perf_counter() - t0)
        losses.append(float(np.mean(loss)))
        step += k

    sample = jax.jit(jax.vmap(lambda key: task.sample(key, B)))
    keys = jax.random.split(jax.random.key(0), E)
    jax.block_until_ready(sample(keys))
    data_t = []
    for i in range(10):
        t0 = time.perf_counter()
        jax.block_until_ready(sample(jax.random.split(jax.random.key(i + 1), E)))
        data_t.append(time.perf_counter() - t0)

    n_params = sum(int(np.prod(x.shape[1:])) for x in jax.tree.leaves(params))
    med_step = statistics.median(times) / k
    tps = E * B * T * k * len(times) / sum(times)
    fl = flop_counts(L, d, V, T, n_params)
    out = {
        "impl": "toymodels-jax", "case": name,
        "tokens_per_s": round(tps, 1),
        "step_ms_median": round(1e3 * med_step, 3),
        "compile_s": round(max(0.0, first_call - med_step * k), 3),
        "first_call_s": round(first_call, 3),
        "data_ms_median": round(1e3 * statistics.median(data_t), 3),
        "final_loss": round(losses[-1], 4), "loss_floor": round(task.entropy_rate, 4),
        "params": n_params, "runs": E, "devices": len(runs_devices(runs)), "steps_per_call": k,
        "timed_steps": k * len(times),
        **fl,
        "mfu_6N": None, "mfu_detailed": None, "peak_gflops": peak_gflops,
        "backend": jax.default_backend(), "device": str(jax.devices()[0].device_kind),
        "jax": jax.__version__, "python": platform.python_version(),
    }
    if peak_gflops:
        out["mfu_6N"] = round(fl["flops_per_token_6N"] * tps / 1e9 / peak_gflops, 4)
        out["mfu_detailed"] = round(fl["flops_per_token_detailed"] * tps / 1e9 / peak_gflops, 4)
    return out


# The peer's command line for each case (../shared/peers/torch_toygpt.py), same model and data.
PEER_ARGS = {
    "tiny": "--layers 2 --d-model 128 --heads 4 --seq-len 64 --batch 64 --vocab 64 --steps 100 --warmup-steps 5",
    "small": "--layers 4 --d-model 256 --heads 8 --seq-len 128 --batch 32 --vocab 128 --steps 40 --warmup-steps 3",
    "tiny_x8": "--layers 2 --d-model 128 --heads 4 --seq-len 64 --batch 64 --vocab 64 --steps 20 --warmup-steps 3 "
               "--ensemble 8",
    "micro_x32": "--layers 2 --d-model 64 --heads 4 --seq-len 32 --batch 32 --vocab 32 --steps 20 --warmup-steps 3 "
                 "--ensemble 32",
}


def side_by_side(cases, peer_py: str, peer_python: str, repeats: int, peak: float, threads: int) -> list[dict]:
    """Round-robin our cases and the peer's (eager, torch.compile; loop and vmap for ensembles).

    Each measurement runs in its own process; the 1-minute load average before it is
    recorded so runs taken on a busy machine can be discarded.
    """
    rows = []
    for rep in range(repeats):
        for case in cases:
            ours = [sys.executable, "-m", "toymodels.bench", "--case", case, "--json", "--peak-gflops", str(peak)]
            variants = [("toymodels", ours)]
            if CASES[case][6] > 1:   # an ensemble: also on one CPU device, to show what the per-core layout buys
                variants.append(("toymodels 1 device", ["env", "TOYMODELS_CPU_DEVICES=1", *ours]))
            if case in PEER_ARGS:
                modes = ["loop", "vmap"] if "--ensemble" in PEER_ARGS[case] else [None]
                for mode in modes:
                    for comp in ("--no-compile", "--compile"):
                        extra = ([f"--ensemble-mode={mode}"] if mode else []) + [comp]
                        variants.append((f"torch {'compile' if comp == '--compile' else 'eager'}"
                                         + (f" {mode}" if mode else ""),
                                         [peer_python, peer_py, *PEER_ARGS[case].split(), "--threads", str(threads),
                                          "--peak-gflops", str(peak), *extra]))
            for impl, cmd in variants:
                load = os.getloadavg()[0]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
                if proc.returncode or not line:
                    print(f"{case} {impl}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                    continue
                r = json.loads(line[-1])
                rows.append({"case": case, "impl": impl, "repeat": rep, "load_before": round(load, 2),
                             "tokens_per_s": r["tokens_per_s"], "step_ms": r["step_ms_median"],
                             "compile_s": r.get("compile_s"), "mfu_6N": r.get("mfu_6N")})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def summarise(rows: list[dict]) -> str:
    """Median tokens/s (min-max) per case and implementation, as a Markdown table."""
    lines = ["| case | implementation | tokens/s median (min-max) | step ms | compile s | MFU 6N | n |",
             "|---|---|---|---|---|---|---|"]
    keys = sorted({(r["case"], r["impl"]) for r in rows}, key=lambda k: (list(CASES).index(k[0]), k[1]))
    for case, impl in keys:
        rs = [r for r in rows if (r["case"], r["impl"]) == (case, impl)]
        tps = [r["tokens_per_s"] for r in rs]
        def med(k, rs=rs):
            return statistics.median([r[k] for r in rs if r[k] is not None] or [float("nan")])
        lines.append(f"| {case} | {impl} | {statistics.median(tps):,.0f} ({min(tps):,.0f}-{max(tps):,.0f}) | "
                     f"{med('step_ms'):.1f} | {med('compile_s'):.1f} | {100 * med('mfu_6N'):.1f} % | {len(rs)} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    """``python -m toymodels.bench``: run the cases (or round-robin them with the PyTorch peer)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", action="append", choices=sorted(CASES),
                   help="case to run (repeatable); default: all")
    p.add_argument("--json", action="store_true", help="print only one JSON line per case")
    p.add_argument("--peak-gflops", type=float, default=None,
                   help="fp32 matmul peak for MFU; default: measured here")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default per case)")
    p.add_argument("--cold", action="store_true",
                   help="use an empty compilation cache, so compile_s is a cold compile")
    p.add_argument("--peer", metavar="TORCH_TOYGPT_PY",
                   help="also run the PyTorch peer script, round-robin with ours, and print a median table")
    p.add_argument("--peer-python", default="python3", help="interpreter with torch for --peer")
    p.add_argument("--repeats", type=int, default=3, help="round-robin repeats with --peer")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads with --peer")
    g = p.add_argument_group("--suite gpu (toymodels.bench_gpu)")
    g.add_argument("--suite", choices=["gpu"], help="run the accelerator suite instead of the cases")
    g.add_argument("--runs", type=int, default=256, help="models trained as one program")
    g.add_argument("--dims", default="", help="layers,d_model,heads,seq,batch,vocab (default: tiny, 2,128,4,64,64,64)")
    g.add_argument("--studies", default="all", help="comma-separated studies to time, all or none")
    g.add_argument("--study-preset", choices=["smoke", "paper"], default="paper", help="preset each study runs")
    g.add_argument("--study-limit-s", type=float, default=600.0, help="time limit per study, seconds")
    g.add_argument("--out", default="", help="also write the suite's results to this JSON file")
    a = p.parse_args(argv)
    if a.suite:
        if a.runs < 1:
            p.error(f"--runs={a.runs}: expected at least 1 model")
        a.peer = a.peer or str(Path("..") / "shared" / "peers" / "torch_toygpt.py")
        enable_compilation_cache(tempfile.mkdtemp(prefix="toymodels-jaxcache-") if a.cold else None)
        suite_main(a)
        return
    if a.peer:
        peak = a.peak_gflops or 206.8
        rows = side_by_side(a.case or list(CASES), a.peer, a.peer_python, a.repeats, peak, a.threads)
        print(summarise(rows))
        return

    enable_compilation_cache(tempfile.mkdtemp(prefix="toymodels-jaxcache-") if a.cold else None)
    peak = a.peak_gflops or measure_peak_gflops()
    for name in a.case or list(CASES):
        res = run_case(name, peak, a.steps)
        res["load_avg_1m"] = round(os.getloadavg()[0], 2)
        if a.json:
            print(json.dumps(res), flush=True)
        else:
            print(f"{name:12s} {res['tokens_per_s']:>10,.0f} tok/s  {res['devices']} dev  "
                  f"step {res['step_ms_median']:8.2f} ms  "
                  f"compile {res['compile_s']:5.2f} s  MFU(6N) {100 * (res['mfu_6N'] or 0):5.1f} %  "
                  f"data {res['data_ms_median']:.2f} ms  loss {res['final_loss']:.3f} "
                  f"(floor {res['loss_floor']:.3f})", file=sys.stdout, flush=True)


if __name__ == "__main__":
    main()
