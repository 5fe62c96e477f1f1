"""Decay of a dropped capability: how fast, how deep, and what brings it back.

A model trains on a mix of toy languages; one language X (with the translations into
it) is then dropped, or replayed at a small fraction p, while training continues on the
rest. We measure how fast X's held-out loss and accuracy decay (fits, half-lives, the
weight-decay clock), how deep the erasure goes (forgetting, relearning savings against
a fresh model and against a model that never saw X, readout-only recovery, per-layer
linear probes), and how that depends on shared structure (cases A-D of
toymodels/tasks/languages.py), model size and regularisation. Protocol, run graph and
definitions: docs/ood_decay.md.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from studies.common import study_main
from toymodels import plotting
from toymodels.analysis import decay
from toymodels.analysis.similarity import linear_probe_r2, normalized_score, ridge_fit
from toymodels.analysis.stats import aggregate
from toymodels.model import TransformerConfig
from toymodels.results import read_rows, write_rows
from toymodels.schedule import Event, Mixture
from toymodels.sweep import RunSpec, final_params, load_rows, run_sweep
from toymodels.tasks import make_task
from toymodels.tasks.languages import held_out_tasks, language_suite
from toymodels.train import TrainConfig, abstract_model

NAME = "ood_decay"

# ---------------------------------------------------------------- presets
# sizes: (label, n_layers, d_model); regs: (label, weight decay, dropout[, learning rate]),
# the preset's lr where a point names none. The FIRST size
# and the FIRST regularisation point make the base cell, the only one that runs every
# role and every replay fraction p. Every other size (at the base regularisation) and
# every other regularisation point (at the base size) runs pre + drop(p=0) only: that is
# all the half-life-vs-size and half-life-vs-clock figures need, at a fifth of the cost.
# steps: (phase 1, phase 2 = the decay window, phase 3 = relearning). Phase 3 has phase
# 1's length so that relearning and first learning (the pre run) share one compiled
# program and one horizon for the savings measures.
PRESETS = {
    "smoke": dict(cases=("A", "B", "C", "D"), n_languages=3, seeds=2,
                  sizes=(("1L-d32", 1, 32), ("1L-d16", 1, 16)),
                  regs=(("wd0.1", 0.1, 0.0),),
                  ps=(0.0, 0.01), steps=(60, 60, 60),
                  lr=3e-3, batch_size=32, warmup=10, n_evals=(6, 8), eval_batch=32,
                  fewshot=(10, 10)),
    "paper": dict(cases=("A", "B", "C", "D"), n_languages=5, seeds=5,
                  # width at one layer (16, 32, 64) and depth at d32 (1, 2 layers): 5k-57k parameters
                  sizes=(("1L-d32", 1, 32), ("1L-d16", 1, 16), ("2L-d32", 2, 32), ("1L-d64", 1, 64)),
                  regs=(("wd0.1", 0.1, 0.0), ("wd0", 0.0, 0.0), ("wd1", 1.0, 0.0),
                        ("wd0.1+do0.1", 0.1, 0.1), ("wd0.1+lr1e-3", 0.1, 0.0, 1e-3)),
                  # ln2/(lr*wd) = 231 (wd 1) and 2310 (wd 0.1) steps: both inside the 2400-step window
                  ps=(0.0, 0.001, 0.01, 0.05), steps=(600, 2400, 600),
                  lr=3e-3, batch_size=32, warmup=50, n_evals=(16, 24), eval_batch=96,
                  # few-example recovery: (examples of X, steps) from drop_p0 and from never2
                  fewshot=(10, 100)),
}

CRITERION = 0.9        # relearning target: this fraction of X's accuracy just before the drop
CENSOR = 3.0           # fitted half-lives beyond this many decay windows count as not reached
NO_DECAY = 0.1         # a curve that got worse by less than this fraction of its start did not decay
OFF = 2 ** 30          # an event step no run reaches: the event never fires
MODULUS = 10           # a, b in [0, 10): two-digit sums, 20 held-out pairs (a, b)
A_LENGTH = 12


# ---------------------------------------------------------------- the languages
@functools.lru_cache(maxsize=16)
def suite(case: str, n_languages: int):
    """(training tasks, eval-only tasks, X's tasks, X's own language) of one case.

    X is the last language, L = n - 1. In C and D the kept languages translate around
    a ring, and translations INTO X (from language 0 and from the middle language m)
    are part of X: their target side is X's surface form, so keeping them would keep
    training X. D holds the pair (m, L) out (eval-only, both directions): its zero-shot
    accuracy measures knowledge of X that was never trained directly.
    """
    x, mid = n_languages - 1, (n_languages - 1) // 2
    fields = dict(n_languages=n_languages, modulus=MODULUS)
    if case == "A":
        fields["length"] = A_LENGTH
    ring = [(i, (i + 1) % x) for i in range(x)]
    pairs, held = None, ()
    if case == "C":
        pairs = ring + [(0, x), (mid, x)]
    elif case == "D":
        fields["held_out_pair"] = (mid, x)
        pairs = ring + [(0, x)]
        held = held_out_tasks(**fields)
    train = language_suite(case, pairs=pairs, **fields)
    x_lang = f"{'A' if case == 'A' else 'B'}{x}"
    x_tasks = tuple(n for n, _ in train if n == x_lang or n.endswith(f"-{x}"))
    return train, held, x_tasks, x_lang


def model_config(p: dict, n_layers: int, d_model: int) -> TransformerConfig:
    """One vocabulary and context size for every case, so a size's init is one program."""
    tasks = [t for c in p["cases"] for part in suite(c, p["n_languages"])[:2] for _, t in part]
    return TransformerConfig(n_layers=n_layers, d_model=d_model, n_heads=4,
                             vocab_size=max(t.vocab.size for t in tasks),
                             max_seq_len=max(t.seq_len for t in tasks))


@functools.lru_cache(maxsize=32)
def n_params(cfg: TransformerConfig) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(abstract_model(cfg)[1])))


# ---------------------------------------------------------------- the run graph
# Per cell (case, size, regularisation, seed); every phase starts from the previous
# phase's final parameters with a fresh AdamW and the same warmup:
#   pre            phase 1: full mix from a random init (also the fresh-learning baseline:
#                  same mix, share of X, schedule and horizon as relearning)
#   never1         phase 1: the mix without X (X's replay fraction 0 from step 0)
#   drop_p{p}      phase 2 from pre: X replayed at fraction p (p = 0: dropped)
#   joint          phase 2 from pre: full mix (upper bound; controls the optimizer restart)
#   never2         phase 2 from never1: still without X ("never": S1 + S2 steps without X)
#   relearn        phase 3 from drop_p0: full mix again
#   never_relearn  phase 3 from never2: full mix (the control that never saw X)
#   fewshot        from drop_p0: X alone, from a fixed pool of n examples (preset "fewshot")
#   never_fewshot  from never2: the same n examples

# Every role uses the same events (one "replay" per X task), so a case's runs differ
# only in per-run values and share compiled programs.
FULL_ROLES = ("pre", "never1", "drop", "joint", "never2", "relearn", "never_relearn", "fewshot", "never_fewshot")

# A sweep groups runs by their whole TrainConfig, while the compiled program ignores
# chunk_steps (and a run's numbers never depend on it: data keys are fold_in(seed, step)).
# A distinct chunk_steps per "lane" therefore splits roles into sweep groups of equal
# size (two runs per cell), which reuse one compiled program instead of compiling one
# per group size, and keeps a phase-3 run out of the group of the phase-2 run it starts from.
CHUNK = 500


def _lanes(ps) -> dict[str, int]:
    lanes = {"pre": 0, "never1": 0}
    for i, p in enumerate(ps):          # two replay fractions per lane
        lanes[f"drop_p{p:g}"] = 1 + i // 2
    last = 1 + (len(ps) - 1) // 2
    lanes.update(joint=last + 1, never2=last + 1, relearn=last + 2, never_relearn=last + 2)
    lanes.update(fewshot=last + 3, never_fewshot=last + 3)
    return lanes


AXIS_LANES = {"pre": 20, "drop_p0": 21}   # size- and regularisation-axis cells


def specs(preset: str) -> list[RunSpec]:
    p = PRESETS[preset]
    if 0.0 not in p["ps"]:
        raise ValueError(f"preset {preset!r}: ps must include 0 (the full drop that relearn starts from)")
    base_size, base_reg = p["sizes"][0], p["regs"][0]
    out = []
    for case in p["cases"]:
        for size in p["sizes"]:
            for reg in p["regs"]:
                if size != base_size and reg != base_reg:
                    continue
                axis = "base" if (size, reg) == (base_size, base_reg) else ("size" if reg == base_reg else "reg")
                for seed in range(p["seeds"]):
                    out += cell(p, case, size, reg, seed, axis)
    return out


def cell(p: dict, case: str, size, reg, seed: int, axis: str) -> list[RunSpec]:
    train, held, x_tasks, x_lang = suite(case, p["n_languages"])
    (size_label, n_layers, d_model), (reg_label, wd, dropout, *reg_lr) = size, reg
    lr = reg_lr[0] if reg_lr else p["lr"]
    model = dataclasses.replace(model_config(p, n_layers, d_model), dropout=dropout)
    tasks = tuple(train) + tuple(held)
    names = tuple(n for n, _ in train)
    prefix = f"{case}_{size_label}_{reg_label}_s{seed}"
    lanes = _lanes(p["ps"]) if axis == "base" else AXIS_LANES

    def role_spec(role: str, x_share: float | None, init: str = "", replay: float | str = ""):
        """x_share: X's fraction of every batch from step 0; None: X keeps its natural share."""
        # index into steps: 0 = phase 1, 1 = the decay window, 2 = relearning
        phase = {"pre": 0, "never1": 0, "relearn": 2, "never_relearn": 2}.get(role, 1)
        run_id = f"{role}_p{replay:g}" if role == "drop" else role
        events = tuple(Event("replay", t, OFF if x_share is None else 0, (x_share or 0.0) / len(x_tasks))
                       for t in x_tasks)
        tc = TrainConfig(steps=p["steps"][phase], batch_size=p["batch_size"], lr=lr, weight_decay=wd,
                         warmup_steps=p["warmup"], lr_schedule="constant", n_evals=p["n_evals"][1 if phase == 1 else 0],
                         eval_spacing="log", eval_batch=p["eval_batch"], seed=seed,
                         chunk_steps=CHUNK - lanes[run_id])
        run_tasks, mixture = tasks, Mixture(names, events=events)
        if role.endswith("fewshot"):
            # X's own language alone, from a fixed pool shared by every seed (one program per case)
            n_examples, steps = p["fewshot"]
            pool = make_task("pool", base=dict(train)[x_lang], n=n_examples, seed=0)
            run_tasks, mixture = tasks + ((f"{x_lang}-pool", pool),), Mixture((f"{x_lang}-pool",))
            tc = dataclasses.replace(tc, steps=steps, warmup_steps=max(1, steps // 10), n_evals=p["n_evals"][0])
        tags = dict(case=case, size=size_label, params=n_params(model), n_layers=n_layers, reg=reg_label,
                    axis=axis, role=role, p=replay, x_lang=x_lang, zeroshot=" ".join(n for n, _ in held))
        return RunSpec(f"{prefix}_{run_id}", model, tc, run_tasks, mixture,
                       tags=tuple(tags.items()), init_from=f"{prefix}_{init}" if init else "")

    if axis != "base":
        return [role_spec("pre", None), role_spec("drop", 0.0, "pre", 0.0)]
    return ([role_spec("pre", None), role_spec("never1", 0.0)]
            + [role_spec("drop", q, "pre", q) for q in p["ps"]]
            + [role_spec("joint", None, "pre"), role_spec("never2", 0.0, "never1"),
               role_spec("relearn", None, "drop_p0"), role_spec("never_relearn", None, "never2")]
            + ([role_spec("fewshot", None, "drop_p0"), role_spec("never_fewshot", None, "never2")]
               if p.get("fewshot") else []))


# ---------------------------------------------------------------- the run
# After training, the final models of pre, every drop, joint and never2 (plus a random-init
# model per case, size and seed) are measured on X's eval sequences:
#   probe_r2     per layer: test R^2 of a linear ridge probe from resid_post at every scored
#                position of X to the one-hot token that position must produce;
#   native_acc   X's accuracy through the model's own unembedding, on the same sequences;
#   refit_acc    (base cell: pre, drop_p0, never2, random) X's accuracy after refitting the
#                unembedding alone (a new linear map with a bias, i.e. W_U and the final norm's
#                bias) on the frozen final residual stream, fit to the training mix (every
#                mixture task, train split) by ridge regression onto one-hot tokens. It answers
#                "gone or only gated?" with a converged readout, without a training run per model.
MEASURED = ("pre", "drop", "joint", "never2")
REFIT = {("pre", ""), ("drop", 0.0), ("never2", ""), ("random", "")}
MEASURE_SEED = 2024
PROBE_SEQS = 256       # eval sequences of X
REFIT_SEQS = 64        # training sequences per mixture task for the readout refit
MEASURE_CHUNK = 16     # models per forward pass


def run(preset: str, out: Path, progress: bool = True) -> None:
    all_specs = specs(preset)
    run_sweep(all_specs, out, progress=progress)
    measure_models([s for s in all_specs if dict(s.tags)["role"] in MEASURED], Path(out))


def measure_batches(spec: RunSpec):
    """(inputs (N, T), scored (N, T) bool, targets (N, T), is_x (N,)) of the refit mix then X's eval set,
    padded at the end to the model's context (causal: padding never reaches a scored position)."""
    tasks, T = dict(spec.tasks), spec.model.max_seq_len
    key = jax.random.key(MEASURE_SEED)
    parts = [(tasks[n].sample(jax.random.fold_in(key, i + 1), REFIT_SEQS, split="train"), False)
             for i, n in enumerate(spec.mixture.tasks)]
    parts.append((tasks[dict(spec.tags)["x_lang"]].sample(key, PROBE_SEQS, split="eval"), True))

    def pad(x):
        return np.pad(np.asarray(x), ((0, 0), (0, T - x.shape[1])))
    return (np.concatenate([pad(b.inputs) for b, _ in parts]),
            np.concatenate([pad(b.mask) for b, _ in parts]) > 0,
            np.concatenate([pad(b.targets) for b, _ in parts]),
            np.concatenate([np.full(b.inputs.shape[0], x) for b, x in parts]))


@functools.lru_cache(maxsize=16)
def residuals(cfg: TransformerConfig):
    """params (E, ...), inputs (N, T), rows (R,), cols (R,) -> (E, L + 1, R, D): resid_post of
    every layer, then the final (normed) residual, at the given positions; one program."""
    from flax import nnx

    from toymodels.hooks import run_with_cache
    graphdef = abstract_model(cfg)[0]
    names = [f"blocks.{i}.resid_post" for i in range(cfg.n_layers)] + ["final"]

    def one(params, inputs, rows, cols):
        _, cache = run_with_cache(nnx.merge(graphdef, params), inputs, names)
        return jnp.stack([cache[n][rows, cols] for n in names])
    return jax.jit(jax.vmap(one, in_axes=(0, None, None, None)))


@functools.lru_cache(maxsize=64)
def random_params(cfg: TransformerConfig, seed: int):
    from flax import nnx

    from toymodels.model import init_model
    return nnx.state(init_model(cfg, seed), nnx.Param)


def refit_readout(Z_train, y_train, Z_test, y_test, alpha: float = 1e-3) -> float:
    """Test accuracy of a new linear unembedding (weights and bias) fit to the frozen features
    by ridge regression onto one-hot tokens, decoded by argmax: closed form, so every model gets
    a converged readout in one SVD (alpha is relative to the features' mean eigenvalue)."""
    classes, y = np.unique(y_train, return_inverse=True)
    Zc = Z_train - Z_train.mean(axis=0)
    scale = max(float(np.sum(Zc ** 2)) / Z_train.shape[1], 1e-30)
    W, b = ridge_fit(Z_train, np.eye(len(classes))[y], alpha * scale)
    pred = classes[np.argmax(Z_test @ W + b, axis=1)]
    return float(np.mean(pred == np.asarray(y_test)))


def model_measures(acts_KRD, W_U, scored, targets, is_x, refit: bool) -> list[tuple[str, object, float]]:
    """(measure, layer, value) rows of one model; acts_KRD: resid_posts then final at the scored rows."""
    y = targets[scored]
    x_rows = is_x[np.nonzero(scored)[0]]
    onehot = (y[x_rows][:, None] == np.unique(y[x_rows])[None, :]).astype(np.float64)
    out = [("probe_r2", li, linear_probe_r2(a[x_rows], onehot)) for li, a in enumerate(acts_KRD[:-1])]
    final = acts_KRD[-1]
    out.append(("native_acc", "", float(np.mean(np.argmax(final[x_rows] @ W_U, axis=1) == y[x_rows]))))
    if refit:
        out.append(("refit_acc", "", refit_readout(final[~x_rows], y[~x_rows], final[x_rows], y[x_rows])))
    return out


def measure_models(measured: list[RunSpec], out: Path) -> None:
    """Rows per model under out/measures/ (one file per model, so a rerun measures only what is
    missing); a random-init model per (case, size, seed) is the probes' zero."""
    folder = out / "measures"
    todo: dict[tuple, list[RunSpec]] = {}
    for s in measured:
        if not (folder / f"{s.run_id}.csv").exists():
            todo.setdefault((dict(s.tags)["case"], dataclasses.replace(s.model, dropout=0.0)), []).append(s)
    for (case, cfg), members in todo.items():
        seeds = sorted({s.train.seed for s in members})
        rand = jax.tree.map(lambda *xs: jnp.stack(xs), *[random_params(cfg, seed) for seed in seeds])
        params = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), final_params(out, members), rand)
        inputs, scored, targets, is_x = measure_batches(members[0])
        rows, cols = np.nonzero(scored)
        # MEASURE_CHUNK models at a time (the last chunk padded): bounded memory, one program
        n = jax.tree.leaves(params)[0].shape[0]
        extra = -n % MEASURE_CHUNK
        padded = jax.tree.map(lambda x, k=extra: jnp.concatenate([x, jnp.repeat(x[-1:], k, axis=0)]), params)
        chunks = [jax.tree.map(lambda x, i=i: x[i:i + MEASURE_CHUNK], padded) for i in range(0, n, MEASURE_CHUNK)]
        acts = np.concatenate([np.asarray(residuals(cfg)(c, inputs, rows, cols), dtype=np.float64)
                               for c in chunks])[:n]
        W_U = np.asarray(params["W_U"][...])
        labelled = [({k: dict(s.tags)[k] for k in ("case", "axis", "size", "reg", "role", "p")},
                     s.train.seed, folder / f"{s.run_id}.csv") for s in members]
        labelled += [({**labelled[0][0], "axis": "", "reg": "", "role": "random", "p": ""}, seed,
                      folder / f"{case}_{labelled[0][0]['size']}_s{seed}_random.csv") for seed in seeds]
        for i, (label, seed, path) in enumerate(labelled):
            if label["role"] == "random" and path.exists():
                continue
            refit = (label["role"], label["p"]) in REFIT and label["axis"] in ("base", "")
            write_rows(path, [{**label, "seed": seed, "measure": m, "layer": layer, "value": v}
                              for m, layer, v in model_measures(acts[i], W_U[i], scored, targets, is_x, refit)])


# ---------------------------------------------------------------- the metrics
# Every summary number is a mean over seeds with its 95% t-interval and n (analysis.stats);
# values that are not finite (a fit that failed, a criterion never reached) are left out
# of the mean, and n_runs says how many runs were measured.
LABELS = ("case", "axis", "size", "params", "n_layers", "reg", "weight_decay", "dropout", "p")


def summarize(out: Path, table_dir: Path) -> None:
    rows = [r for r in load_rows(out) if r["task"] != "train"]
    runs = index_runs(rows)
    measures = [r for f in sorted((Path(out) / "measures").glob("*.csv")) for r in read_rows(f)]
    fits = fit_rows(runs)
    tables = {
        "decay_curves": decay_curves(runs),
        "fits": aggregate_finite(fits, LABELS + ("wd_clock", "metric", "quantity")),
        "scaling": scaling_rows(fits),
        "forgetting": aggregate_finite(forgetting_rows(runs), LABELS + ("convention", "quantity")),
        "savings": aggregate_finite(savings_rows(runs) + fewshot_rows(runs), LABELS + ("quantity",)),
        "readout": readout_table(measures),
        "probes": probe_table(measures),
        "zeroshot": zeroshot_curves(runs),
    }
    for name, table in tables.items():
        if table:   # e.g. no zero-shot table without case D
            write_rows(Path(table_dir) / f"{name}.csv", table)


def index_runs(rows) -> dict[str, dict]:
    """run id -> {"tags": labels, "curves": {(task, metric): (steps, values)}}."""
    runs: dict[str, dict] = {}
    for r in rows:
        rec = runs.setdefault(r["run"], {"tags": {k: r[k] for k in r if k not in
                                                  ("step", "tokens", "task", "metric", "value")},
                                         "points": {}})
        rec["points"].setdefault((r["task"], r["metric"]), []).append((r["step"], r["value"]))
    for rec in runs.values():
        rec["curves"] = {k: tuple(np.asarray(v, dtype=np.float64).T) for k, v in
                         ((k, sorted(pts)) for k, pts in rec.pop("points").items())}
    return runs


def x_curve(rec: dict, metric: str = "acc"):
    return rec["curves"][(rec["tags"]["x_lang"], metric)]


def cells(runs) -> dict[tuple, dict[str, dict]]:
    """(case, size, reg, seed) -> role (drops as drop_p{p}) -> run record."""
    out: dict[tuple, dict] = {}
    for rec in runs.values():
        t = rec["tags"]
        role = f"drop_p{t['p']:g}" if t["role"] == "drop" else t["role"]
        out.setdefault((t["case"], t["size"], t["reg"], t["seed"]), {})[role] = rec
    return out


def labels(rec: dict) -> dict:
    return {k: rec["tags"][k] for k in LABELS}


def aggregate_finite(rows, keys) -> list[dict]:
    rows = list(rows)
    finite = [r for r in rows if math.isfinite(r["value"])]
    counts: dict[tuple, int] = {}
    for r in rows:
        counts[tuple(r[k] for k in keys)] = counts.get(tuple(r[k] for k in keys), 0) + 1
    return [{**a, "n_runs": counts[tuple(a[k] for k in keys)]} for a in aggregate(finite, keys)]


def decay_curves(runs) -> list[dict]:
    """X's held-out accuracy and loss against steps since the drop (phase-2 runs)."""
    rows = []
    for rec in runs.values():
        if rec["tags"]["role"] in ("drop", "joint", "never2"):
            for metric in ("acc", "loss"):
                t, v = x_curve(rec, metric)
                rows += [{**labels(rec), "role": rec["tags"]["role"], "metric": metric, "step": int(s), "value": y}
                         for s, y in zip(t, v)]
    return aggregate(rows, LABELS + ("role", "metric", "step"))


def fit_one(t, r, lr: float, wd: float, worse: int = -1) -> dict[str, float]:
    """Both decay fits of one curve, the AIC choice, and the model-free half-life.

    ``worse``: the direction in which the metric gets worse (-1: accuracy falls, +1: loss rises).
    A fitted half-life beyond CENSOR decay windows is an extrapolation of a curve that
    barely moved: it is reported as not reached (inf), which leaves it out of the means
    (n counts the rest) while half_life_reached records the fraction of runs that got there.
    So is the half-life of a curve that did not get worse by NO_DECAY of its start over the
    window (the mean of its last quarter against its first point): a fit to a curve that
    holds or improves times noise, not decay.
    """
    try:
        cmp = decay.fit_decay(t, r)
    except OverflowError:
        # fit_power_law's half-life t0 (2^(1/beta) - 1) overflows when beta -> 0 (a flat curve):
        # keep the exponential, which is the only usable fit then.
        e = decay.fit_exponential(t, r)
        failed = dataclasses.replace(e, kind="power_law", half_life=math.nan, converged=False)
        cmp = decay.DecayComparison(e, failed, "exponential" if e.converged else None, math.inf)
    window = float(t[-1] - t[0])
    # No decay for a fit to time: the curve stays within 1% of its own scale, or it did not
    # get worse by NO_DECAY of its start (mean of its last quarter against its first point).
    worsened = worse * (np.mean(r[-max(1, len(r) // 4):]) - r[0])
    no_decay = np.ptp(r) <= 0.01 * np.max(np.abs(r)) + 1e-12 or worsened <= NO_DECAY * abs(r[0])

    def censored(h):
        return math.inf if no_decay or h > CENSOR * window else h
    best = cmp.best
    hl = censored(best.half_life) if best is not None else math.nan
    return {"half_life": hl, "log10_half_life": math.log10(hl) if 0 < hl < math.inf else math.nan,
            "half_life_reached": float(hl <= window),
            "floor": best.floor if best is not None else math.nan,
            "depth": best.r0 - best.floor if best is not None else math.nan,
            "half_life_exponential": censored(cmp.exponential.half_life),
            "half_life_power_law": censored(cmp.power_law.half_life),
            "prefers_power_law": math.nan if cmp.preferred is None else float(cmp.preferred == "power_law"),
            "delta_aic": cmp.delta_aic, "half_life_crossing": decay.half_life_crossing(t, r),
            "wd_clock": decay.weight_decay_half_life(lr, wd)}


def fit_rows(runs) -> list[dict]:
    """One row per (drop run, metric, quantity): the per-seed values behind fits.csv."""
    rows = []
    for run_id, rec in runs.items():
        if rec["tags"]["role"] != "drop":
            continue
        for metric in ("acc", "loss"):
            f = fit_one(*x_curve(rec, metric), rec["tags"]["lr"], rec["tags"]["weight_decay"],
                        worse=-1 if metric == "acc" else 1)
            clock = f.pop("wd_clock")
            rows += [{**labels(rec), "run": run_id, "wd_clock": clock, "metric": metric, "quantity": q,
                      "value": v} for q, v in f.items()]
    return rows


def scaling_rows(fits) -> list[dict]:
    """Half-life ~ params^slope over every seed's (params, half-life of X accuracy) of drop(p=0)
    at the base regularisation: all sizes, and the width series (the base size's depth) alone."""
    points: dict[str, list] = {}
    for r in fits:
        if (r["quantity"], r["metric"], r["p"]) == ("half_life", "acc", 0) and r["axis"] in ("base", "size"):
            points.setdefault(r["case"], []).append((r["params"], r["n_layers"], r["axis"] == "base", r["value"]))
    rows = []
    for case, pts in sorted(points.items()):
        base_layers = {nl for _, nl, is_base, _ in pts if is_base}
        for series, keep in (("all sizes", lambda nl: True), ("width", lambda nl, b=base_layers: nl in b)):
            x, y = zip(*[(pa, hl) for pa, nl, _, hl in pts if keep(nl) and math.isfinite(hl)] or [(0, 0)])
            try:
                fit = decay.power_law_exponent(x, y)
                vals = dict(slope=fit.slope, lo=fit.ci_lo, hi=fit.ci_hi, intercept=fit.intercept)
            except ValueError:   # fewer than 3 usable points or a single size
                vals = dict(slope=math.nan, lo=math.nan, hi=math.nan, intercept=math.nan)
            rows.append({"case": case, "series": series, "metric": "acc", "quantity": "half_life_exponent",
                         **vals, "n": sum(v > 0 for v in y), "n_sizes": len({v for v in x if v > 0})})
    return rows


def kept_acc(rec) -> np.ndarray:
    """Mean accuracy over the kept tasks (the training mix without X's tasks) at every eval step."""
    tags = rec["tags"]
    train, _, x_tasks, _ = suite(tags["case"], int(tags["x_lang"][1:]) + 1)   # X is the last language
    return np.mean([rec["curves"][(name, "acc")][1] for name, _ in train if name not in x_tasks], axis=0)


def forgetting_rows(runs) -> list[dict]:
    """Forgetting of X's accuracy over the pre + drop curve, in both conventions:
    peak = best accuracy up to the drop minus final (Chaudhry et al. 2018),
    first_last = accuracy at the drop minus final (Avalanche); final = end of phase 2.
    Also backward transfer (Lopez-Paz & Ranzato 2017) with the two phases as the two tasks
    (X, then the kept mix): R[i, j] = accuracy on j at the end of phase i, BWT = R[1, X] -
    R[0, X] = -first_last for X; ``quantity = kept_change`` is R[1, kept] - R[0, kept]."""
    rows = []
    for roles in cells(runs).values():
        pre = roles.get("pre")
        for role, rec in roles.items():
            if not role.startswith("drop_p") or pre is None:
                continue
            a_pre, a_drop = x_curve(pre)[1], x_curve(rec)[1]
            curve = np.concatenate([a_pre, a_drop[1:]])   # a_drop[0] re-measures pre's final model
            at = len(a_pre) - 1
            for conv, fn in (("peak", decay.forgetting_peak), ("first_last", decay.forgetting_first_last)):
                rows.append({**labels(rec), "convention": conv, "quantity": "forgetting", "value": fn(curve, at)})
            kept = kept_acc(rec)
            R = [[a_drop[0], kept[0]], [a_drop[-1], kept[-1]]]
            rows += [{**labels(rec), "convention": "bwt", "quantity": "bwt", "value": decay.backward_transfer(R)},
                     {**labels(rec), "convention": "bwt", "quantity": "kept_change", "value": float(kept[-1] - kept[0])}]
    return rows


def savings_rows(runs, criterion: float = CRITERION) -> list[dict]:
    """Relearning X (full mix, from drop_p0) against first learning on the full mix from a random
    init (the pre run: same mix, share of X, schedule and horizon) and against the never-X
    control (never_relearn). Criterion: ``criterion`` x X's accuracy at the end of phase 1."""
    rows = []
    for roles in cells(runs).values():
        if not {"pre", "relearn", "never_relearn"} <= set(roles):
            continue
        (t_f, a_f), (t_r, a_r), (t_n, a_n) = (x_curve(roles[k]) for k in ("pre", "relearn", "never_relearn"))
        level = criterion * a_f[-1]
        horizon = min(t_f[-1], t_r[-1], t_n[-1])
        q = {"steps_fresh": decay.steps_to_criterion(t_f, a_f, level),
             "steps_never": decay.steps_to_criterion(t_n, a_n, level),
             "steps_relearn": decay.steps_to_criterion(t_r, a_r, level),
             "savings_vs_fresh": decay.savings(t_f, a_f, t_r, a_r, level),
             "savings_vs_never": decay.savings(t_n, a_n, t_r, a_r, level),
             "area_savings_vs_fresh": decay.area_savings(t_f, a_f, t_r, a_r, level, horizon=horizon),
             "area_savings_vs_never": decay.area_savings(t_n, a_n, t_r, a_r, level, horizon=horizon)}
        rows += [{**labels(roles["relearn"]), "quantity": k, "value": v} for k, v in q.items()]
    return rows


def fewshot_rows(runs) -> list[dict]:
    """Recovery of X from a handful of examples (base cell): X's held-out accuracy after training
    on X's fixed pool alone, from drop_p0 (``fewshot_dropped``) and from never2
    (``fewshot_never``), next to X's accuracy at the end of pre and of drop_p0;
    ``fewshot_recovery`` = (dropped - never) / (pre - never): 0 = the examples teach no more than
    to a model that never saw X, 1 = back to the pre-drop accuracy."""
    rows = []
    for roles in cells(runs).values():
        if not {"pre", "drop_p0", "fewshot", "never_fewshot"} <= set(roles):
            continue
        acc = {k: float(x_curve(roles[k])[1][-1]) for k in ("pre", "drop_p0", "fewshot", "never_fewshot")}
        q = {"fewshot_dropped": acc["fewshot"], "fewshot_never": acc["never_fewshot"],
             "fewshot_before_pre": acc["pre"], "fewshot_before_drop": acc["drop_p0"],
             "fewshot_recovery": float(normalized_score(acc["fewshot"], acc["never_fewshot"], acc["pre"]))}
        rows += [{**labels(roles["fewshot"]), "quantity": k, "value": v} for k, v in q.items()]
    return rows


MEASURE_KEYS = ("case", "axis", "size", "reg", "role", "p")


def readout_table(measures) -> list[dict]:
    """Is X gone or only gated? X's accuracy through each model's own unembedding (native) and
    through a refit one (refit), and the refit recovery of the dropped model, normalised
    between the never-X model (0) and the pre-drop model (1), each refit the same way."""
    by_cell: dict[tuple, dict] = {}
    for r in measures:
        if r["measure"] in ("native_acc", "refit_acc"):
            role = f"drop_p{r['p']:g}" if r["role"] == "drop" else r["role"]
            by_cell.setdefault((r["case"], r["size"], r["seed"]), {})[(role, r["measure"], r["reg"])] = r
    rows = []
    for (case, size, seed), got in by_cell.items():
        base = [k for k in got if k[1] == "refit_acc" and k[0] == "drop_p0"]
        if not base:
            continue
        reg = base[0][2]
        label = {"case": case, "axis": "base", "size": size, "reg": reg}
        q = {f"{m.split('_')[0]}_{role}": got[(role, m, rg)]["value"] for role, m, rg in got if rg in (reg, "")}
        if {"refit_drop_p0", "refit_never2", "refit_pre"} <= set(q):
            q["refit_recovery"] = float(normalized_score(q["refit_drop_p0"], q["refit_never2"], q["refit_pre"]))
        rows += [{**label, "quantity": k, "value": v} for k, v in q.items()]
    return aggregate_finite(rows, ("case", "axis", "size", "reg", "quantity"))


def probe_table(measures) -> list[dict]:
    """Per-layer probe R^2, raw and normalised: random init of the same seed = 0, pre = 1."""
    probes = [r for r in measures if r["measure"] == "probe_r2"]
    random = {(r["case"], r["size"], r["seed"], r["layer"]): r["value"] for r in probes if r["role"] == "random"}
    pre = {(r["case"], r["size"], r["reg"], r["seed"], r["layer"]): r["value"] for r in probes if r["role"] == "pre"}
    rows = []
    for r in probes:
        if r["role"] == "random":
            continue
        lo = random.get((r["case"], r["size"], r["seed"], r["layer"]), math.nan)
        hi = pre.get((r["case"], r["size"], r["reg"], r["seed"], r["layer"]), math.nan)
        key = {k: r[k] for k in MEASURE_KEYS + ("layer",)}
        rows += [{**key, "quantity": "r2", "value": r["value"]},
                 {**key, "quantity": "normalized", "value": float(normalized_score(r["value"], lo, hi))}]
    return aggregate_finite(rows, MEASURE_KEYS + ("layer", "quantity"))


def zeroshot_curves(runs) -> list[dict]:
    """Case D: accuracy on the held-out translation pair (and on X itself) over the whole
    training history, phase offsets added: pre -> drop_p0 -> relearn, and pre -> joint."""
    rows = []
    for roles in cells(runs).values():
        if not {"pre", "drop_p0", "relearn", "joint"} <= set(roles) or not roles["pre"]["tags"]["zeroshot"]:
            continue
        s1 = x_curve(roles["pre"])[0][-1]
        s2 = x_curve(roles["drop_p0"])[0][-1]
        tasks = roles["pre"]["tags"]["zeroshot"].split() + [roles["pre"]["tags"]["x_lang"]]
        for role, offset in (("pre", 0), ("drop_p0", s1), ("relearn", s1 + s2), ("joint", s1)):
            rec = roles[role]
            for task in tasks:
                t, v = rec["curves"][(task, "acc")]
                rows += [{**labels(roles["pre"]), "role": role, "task": task, "metric": "acc",
                          "step": int(offset + s), "value": y} for s, y in zip(t, v)]
    return aggregate(rows, ("case", "axis", "size", "reg", "role", "task", "metric", "step"))


# ---------------------------------------------------------------- the figures
def figures(table_dir: Path) -> list[Path]:
    table_dir = Path(table_dir)
    tables = {p.stem: read_rows(p) for p in sorted(table_dir.glob("*.csv"))}
    return (fig_decay(tables, table_dir) + fig_forgetting(tables, table_dir) + fig_half_life_params(tables, table_dir)
            + fig_wd_clock(tables, table_dir) + fig_savings(tables, table_dir) + fig_zeroshot(tables, table_dir))


def _sel(rows, **eq):
    return [r for r in rows if all(r[k] == v for k, v in eq.items())]


def _cases(rows):
    return sorted({r["case"] for r in rows}) or ["-"]


def _band(ax, rows, x_key, label, shift=0, **kw):
    rows = sorted(rows, key=lambda r: r[x_key])
    if not rows:
        return
    x = np.asarray([r[x_key] for r in rows], dtype=float) + shift
    plotting.band(ax, x, *(np.asarray([r[k] for r in rows]) for k in ("mean", "lo", "hi")),
                  n=min(r["n"] for r in rows), label=label, **kw)


def _legend(ax, **kw):
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def _empty(ax, what):
    ax.text(0.5, 0.5, f"no {what} in this preset", ha="center", va="center", transform=ax.transAxes)


def fig_decay(tables, d) -> list[Path]:
    """X's held-out accuracy (top) and loss (bottom) after the drop, base cell, per case."""
    rows = _sel(tables.get("decay_curves", []), axis="base")
    cases = _cases(rows)
    fig, axes = plotting.figure(ncols=len(cases), nrows=2)
    for j, case in enumerate(cases):
        for i, metric in enumerate(("acc", "loss")):
            ax, sel = axes[i, j], _sel(rows, case=case, metric=metric)
            for p in sorted({r["p"] for r in sel if r["role"] == "drop"}):
                _band(ax, _sel(sel, role="drop", p=p), "step", f"p={p:g}", shift=1)
            _band(ax, _sel(sel, role="joint"), "step", "joint (kept X)", shift=1, color="0.5", ls="--")
            _band(ax, _sel(sel, role="never2"), "step", "never saw X", shift=1, color="k", ls=":")
            ax.set_xscale("log")
            ax.set_xlabel("steps since drop + 1")
            ax.set_ylabel(f"X held-out {metric}")
            if metric == "acc":
                ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"case {case}" if i == 0 else "")
    _legend(axes[0, 0])
    fig.suptitle("decay of the dropped language X (replayed at fraction p); mean, 95% t-interval")
    return plotting.save(fig, d / "decay_curves")


def fig_forgetting(tables, d) -> list[Path]:
    """Forgetting vs replay fraction, one panel per convention (base cell)."""
    rows = _sel(tables.get("forgetting", []), axis="base")
    fig, axes = plotting.figure(ncols=2)
    titles = {"peak": "peak: best acc up to the drop - final", "first_last": "first_last: acc at the drop - final"}
    for ax, (conv, title) in zip(axes[0], titles.items()):
        ps = sorted({r["p"] for r in rows})
        for case in _cases(rows):
            sel = sorted(_sel(rows, case=case, convention=conv), key=lambda r: r["p"])
            if sel:
                x = np.asarray([ps.index(r["p"]) for r in sel])
                plotting.band(ax, x, *(np.asarray([r[q] for r in sel]) for q in ("mean", "lo", "hi")),
                              n=min(r["n"] for r in sel), label=f"case {case}", marker="o")
        ax.set_xticks(range(len(ps)), [f"{p:g}" for p in ps])
        ax.set_ylim(-1.02, 1.02)
        ax.set_xlabel("replay fraction p of X")
        ax.set_ylabel("forgetting of X accuracy")
        ax.set_title(title)
    _legend(axes[0, 0])
    fig.suptitle("forgetting at the end of the decay window; mean, 95% t-interval")
    return plotting.save(fig, d / "forgetting")


def fig_half_life_params(tables, d) -> list[Path]:
    """Half-life of X's accuracy vs parameter count (drop p=0, base regularisation), log-log."""
    rows = [r for r in _sel(tables.get("fits", []), metric="acc", quantity="log10_half_life", p=0)
            if r["axis"] in ("base", "size")]
    scaling = {(r["case"], r["series"]): r for r in tables.get("scaling", [])}
    cases = _cases(rows)
    fig, axes = plotting.figure(ncols=len(cases))
    for j, case in enumerate(cases):
        ax = axes[0, j]
        sel = sorted(_sel(rows, case=case), key=lambda r: r["params"])
        for nl, marker in sorted({(r["n_layers"], "os^D"[(r["n_layers"] - 1) % 4]) for r in sel}):
            pts = _sel(sel, n_layers=nl)
            x = np.asarray([r["params"] for r in pts], dtype=float)
            m, lo, hi = (10 ** np.asarray([r[k] for r in pts]) for k in ("mean", "lo", "hi"))
            ax.errorbar(x, m, yerr=[m - lo, hi - m], fmt=marker, capsize=3,
                        label=f"{nl} layer(s) (n={min(r['n'] for r in pts)})")
        fit = scaling.get((case, "all sizes"))
        if fit and sel and math.isfinite(fit["slope"]):
            x = np.geomspace(sel[0]["params"], sel[-1]["params"], 20)
            ax.plot(x, np.exp(fit["intercept"]) * x ** fit["slope"], color="0.4",
                    label=f"slope {fit['slope']:.2f} [{fit['lo']:.2f}, {fit['hi']:.2f}]")
        if sel:   # two-seed intervals on a log scale can span decades: frame the means
            means = [10 ** r["mean"] for r in sel]
            ax.set_ylim(min(means) / 10, max(means) * 10)
        else:
            _empty(ax, "size axis")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel("half-life of X accuracy (steps)")
        ax.set_title(f"case {case}")
        _legend(ax, fontsize=6)
    fig.suptitle("half-life vs size (AIC-preferred fit; geometric mean, 95% t-interval)")
    return plotting.save(fig, d / "half_life_vs_params")


def fig_wd_clock(tables, d) -> list[Path]:
    """Measured half-life vs the weight-decay clock ln2/(lr wd); wd = 0 sits at the right edge."""
    rows = [r for r in _sel(tables.get("fits", []), metric="acc", quantity="log10_half_life", p=0)
            if r["axis"] in ("base", "reg")]
    fig, axes = plotting.figure(width=4.2)
    ax = axes[0, 0]
    finite = [r["wd_clock"] for r in rows if math.isfinite(r["wd_clock"])]
    right = 4 * max(finite + [10 ** r["mean"] for r in rows] + [1.0])   # where wd = 0 is drawn
    for k, case in enumerate(_cases(rows)):
        sel = _sel(rows, case=case)
        color = plotting.PALETTE[k % len(plotting.PALETTE)]
        for r in sel:
            x = r["wd_clock"] if math.isfinite(r["wd_clock"]) else right
            m, lo, hi = 10 ** r["mean"], 10 ** r["lo"], 10 ** r["hi"]
            ax.errorbar([x], [m], yerr=[[m - lo], [hi - m]], fmt="s" if r["dropout"] else "o", color=color,
                        capsize=3, label=f"{case}" if r is sel[0] else None)
    lim = np.geomspace(1, right, 10)
    ax.plot(lim, lim, color="0.6", ls="--", label="half-life = clock")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(1, right)
    ax.set_xlabel("weight-decay clock ln2/(lr wd) (steps; right edge: wd = 0)")
    ax.set_ylabel("half-life of X accuracy (steps)")
    ax.set_title("squares: with dropout")
    _legend(ax)
    return plotting.save(fig, d / "half_life_vs_wd_clock")


def fig_savings(tables, d) -> list[Path]:
    """Relearning savings, readout-only recovery, per-layer probes and few-example recovery of X, base cell."""
    sav, ro, pr = (tables.get(k, []) for k in ("savings", "readout", "probes"))
    fig, axes = plotting.figure(ncols=4, width=3.8)
    cases = _cases(sav + ro + pr)

    def bars(ax, rows, quantities):
        w = 0.8 / len(quantities)
        for i, q in enumerate(quantities):
            sel = [next(iter(_sel(rows, case=c, quantity=q)), None) for c in cases]
            x = np.arange(len(cases)) + (i - (len(quantities) - 1) / 2) * w
            m = np.asarray([r["mean"] if r else np.nan for r in sel])
            err = [[r["mean"] - r["lo"] if r else 0 for r in sel], [r["hi"] - r["mean"] if r else 0 for r in sel]]
            n = min([r["n"] for r in sel if r] or [0])
            ax.bar(x, m, w, yerr=err, capsize=2, label=f"{q} (n={n})")
        ax.set_xticks(np.arange(len(cases)), [f"case {c}" for c in cases])
        ax.axhline(0, color="k", lw=0.5)
        _legend(ax, fontsize=6)

    bars(axes[0, 0], _sel(sav, axis="base"), ("savings_vs_fresh", "savings_vs_never",
                                             "area_savings_vs_fresh", "area_savings_vs_never"))
    axes[0, 0].set_title("relearning savings (criterion: 90% of pre-drop acc)")
    bars(axes[0, 1], ro, ("native_pre", "native_drop_p0", "refit_drop_p0", "refit_never2", "refit_pre",
                          "refit_random"))
    axes[0, 1].set_title("X accuracy, own vs refit unembedding")
    bars(axes[0, 3], _sel(sav, axis="base"), ("fewshot_before_pre", "fewshot_before_drop", "fewshot_dropped",
                                             "fewshot_never"))
    axes[0, 3].set_title("X accuracy: before, and after training on a few examples of X")
    ax = axes[0, 2]
    base = [r for r in _sel(pr, quantity="normalized", axis="base") if r["role"] in ("drop", "never2")
            and r["p"] in (0, "")]
    for k, case in enumerate(sorted({r["case"] for r in base})):
        color = plotting.PALETTE[k % len(plotting.PALETTE)]
        for role, ls in (("drop", "-"), ("never2", ":")):
            _band(ax, _sel(base, case=case, role=role), "layer",
                  f"{case} {'drop p=0' if role == 'drop' else 'never saw X'}", color=color, ls=ls, marker="o")
    if not base:
        _empty(ax, "probes")
    ax.axhline(1, color="0.6", lw=0.5)
    ax.axhline(0, color="0.6", lw=0.5)
    ax.set_ylim(-0.5, 1.5)
    ax.set_xticks(sorted({r["layer"] for r in base}))
    ax.set_xlabel("layer (resid_post)")
    ax.set_ylabel("probe R^2 (0 random init, 1 pre-drop)")
    ax.set_title("linear probes of X's next answer token")
    _legend(ax, fontsize=6)
    return plotting.save(fig, d / "savings_readout_probes")


def fig_zeroshot(tables, d) -> list[Path]:
    """Case D: held-out translation accuracy over all of training, dropped vs kept X."""
    rows = _sel(tables.get("zeroshot", []), axis="base")
    fig, axes = plotting.figure(width=5.0)
    ax = axes[0, 0]
    tasks = sorted({r["task"] for r in rows})
    for k, task in enumerate(tasks):
        color = plotting.PALETTE[k % len(plotting.PALETTE)]
        sel = _sel(rows, task=task)
        for role, ls in (("pre", "-"), ("drop_p0", "-"), ("relearn", "-"), ("joint", "--")):
            _band(ax, _sel(sel, role=role), "step", f"{task} {role}" if role in ("pre", "joint") else None,
                  color=color, ls=ls)
    for role in ("drop_p0", "relearn"):
        starts = [r["step"] for r in rows if r["role"] == role]
        if starts:
            ax.axvline(min(starts), color="0.6", lw=0.8)
    if not rows:
        _empty(ax, "case D")
    ax.set_xlabel("training step (phases: pre | drop X | relearn; dashed: X kept)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("held-out accuracy")
    ax.set_title("case D: zero-shot translation of the held-out pair")
    _legend(ax, fontsize=6)
    return plotting.save(fig, d / "zeroshot_translation")


if __name__ == "__main__":
    study_main(sys.modules[__name__])
