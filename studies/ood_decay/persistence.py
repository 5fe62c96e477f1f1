"""Part 3, what makes a dropped capability persist: one factor at a time around a base cell.

The base cell is a regime where X decays (``Persistence.arm`` at ``Persistence.sharing``; the
paper preset: ``same`` at sharing 0, where X writes a + b on private tokens, the kept languages
compute a + b on theirs, and a model that never saw X scores 0 on it, so the floor is 0). Every
run is trained to the criterion first (X exact >= CRITERION_EXACT on its trained pairs); then
X is dropped for ``window`` steps. One factor changes at a time:
  size       the model (n_layers, d_model), learning rate tuned per size: every size's phase 1
             runs at each of ``tune_lrs`` and the preset names the one that reached the
             criterion fastest (persistence_tune.csv checks the choice); phases 1 and 2 use it
  extra      phase-1 steps past the criterion (the full mix, before the drop)
  lr2        the phase-2 learning rate (phase 1 at the base lr)
  sgd        phase 2 by plain gradient descent (TrainConfig.optimizer "sgd") at each lr
  replay     the fraction of X kept in the phase-2 mix
  wd_data    decoupled weight decay in phase 2, with the kept data
  wd_only    decoupled weight decay with no data gradient at all (objective "none"): the pure
             shrinkage the weight-decay clock ln 2 / (lr * wd) stands for
Every drop run records its parameter displacement ||theta_t - theta_drop|| at each evaluation
(TrainConfig.displacement), so half-lives are reported in steps and in displacement.
"""

from __future__ import annotations

import math

import numpy as np

from studies.ood_decay.presets import CHUNK, CRITERION_EXACT, Persistence
from studies.ood_decay.sharing import STOP_EVERY, arm_tasks, model_of
from toymodels.analysis import decay
from toymodels.analysis.stats import aggregate, survival
from toymodels.params import n_params
from toymodels.runspec import RunSpec
from toymodels.schedule import NEVER, Event, Mixture
from toymodels.tables import held_out, index_runs
from toymodels.trainconfig import TrainConfig

FACTORS = ("size", "extra", "lr2", "sgd", "replay", "wd_data", "wd_only")
EARLY = 60   # steps after the drop over which kept_min_early looks for a disruption of the kept languages
ACC = (0.0, 1.0)


def check(S: Persistence) -> None:
    """One clear error per bad value, before anything trains."""
    if not S.sizes:
        raise ValueError("persistence sizes: at least one (label, n_layers, d_model, lr); the first is the base")
    for label, _, _, lr in S.sizes:
        if lr not in S.tune_lrs:
            raise ValueError(f"persistence size {label!r}: lr {lr!r} is not one of tune_lrs {S.tune_lrs} "
                             "(the tuned lr is chosen from the runs at tune_lrs)")
    for name, values, lo, hi in (("replay", S.replay, 0.0, 1.0), ("lr2", S.lr2, 0.0, math.inf),
                                 ("sgd", S.sgd, 0.0, math.inf), ("wd_data", S.wd_data, 0.0, math.inf),
                                 ("wd_only", S.wd_only, 0.0, math.inf), ("extra", S.extra, 1, math.inf)):
        for v in values:
            if not (lo <= v <= hi) or (name in ("lr2", "sgd") and v == 0):
                raise ValueError(f"persistence {name}={v!r}: allowed {'(' if name in ('lr2', 'sgd') else '['}"
                                 f"{lo}, {hi}]")


def variants(S: Persistence) -> list[tuple[str, str, dict]]:
    """(factor, value label, what changes) of every drop run but the base: keys size (a label of
    S.sizes), extra, lr2, optimizer, replay, weight_decay, objective."""
    out = [("size", label, dict(size=label)) for label, *_ in S.sizes[1:]]
    out += [("extra", f"{n}", dict(extra=n)) for n in S.extra]
    out += [("lr2", f"{lr:g}", dict(lr2=lr)) for lr in S.lr2]
    out += [("sgd", f"{lr:g}", dict(optimizer="sgd", lr2=lr)) for lr in S.sgd]
    out += [("replay", f"{p:g}", dict(replay=p)) for p in S.replay]
    out += [("wd_data", f"{wd:g}", dict(weight_decay=wd)) for wd in S.wd_data]
    out += [("wd_only", f"{wd:g}", dict(weight_decay=wd, objective="none")) for wd in S.wd_only]
    return out


def specs(S: Persistence) -> list[RunSpec]:
    check(S)
    tasks = arm_tasks(S.arm, S.sharing, S.n_languages)
    x, x_train = tasks[-2][0], tasks[-1][0]
    names = tuple(n for n, _ in tasks[:-1])
    sizes = {label: (n_layers, d_model, lr) for label, n_layers, d_model, lr in S.sizes}
    base_size = S.sizes[0][0]

    def mixture(p: float) -> Mixture:
        return Mixture(names, events=(Event("replay", x, NEVER if p is None else 0, p or 0.0),))

    def model(label):
        return model_of(tasks, *sizes[label][:2])

    def train(seed, **kw) -> TrainConfig:
        return TrainConfig(**{**dict(batch_size=S.batch_size, weight_decay=0.0, warmup_steps=S.warmup,
                                     lr_schedule="constant", eval_batch=S.eval_batch, seed=seed,
                                     chunk_steps=CHUNK), **kw})

    def tags(**kw):
        return tuple(dict(part="persistence", arm=S.arm, sharing=S.sharing, x_lang=x, x_train=x_train, **kw).items())

    out = []
    for seed in range(S.seeds):
        for label, *_ in S.sizes:   # phase 1 of every size at every tuning lr
            for lr in S.tune_lrs:
                out.append(RunSpec(f"persist_{label}_lr{lr:g}_seed{seed}_pre", model(label),
                                   train(seed, steps=S.max_pre, lr=lr, n_evals=8, eval_spacing="linear",
                                         stop_when=f"{x_train}.exact>={CRITERION_EXACT}", stop_every=STOP_EVERY),
                                   tasks, mixture(None), tags=tags(role="pre", size=label, lr=lr,
                                                                   params=n_params(model(label))),
                                   group=f"persist_pre_{label}"))
        for n in S.extra:   # phase 1 continued past the criterion, from the base size's pre
            lr = sizes[base_size][2]
            out.append(RunSpec(f"persist_extra{n}_seed{seed}_phase1", model(base_size),
                               train(seed, steps=n, lr=lr, n_evals=2), tasks, mixture(None),
                               tags=tags(role="phase1", extra=n), group="persist_extra_phase1",
                               init_from=f"persist_{base_size}_lr{lr:g}_seed{seed}_pre"))
        for factor, value, change in [("base", "base", {})] + variants(S):
            label = change.get("size", base_size)
            lr1 = sizes[label][2]
            source = (f"persist_extra{change['extra']}_seed{seed}_phase1" if "extra" in change
                      else f"persist_{label}_lr{lr1:g}_seed{seed}_pre")
            tc = train(seed, steps=S.window, lr=change.get("lr2", lr1), n_evals=S.n_evals, eval_spacing="log",
                       weight_decay=change.get("weight_decay", 0.0), optimizer=change.get("optimizer", "adamw"),
                       objective=change.get("objective", "data"), displacement=True)
            out.append(RunSpec(f"persist_{factor}_{value}_seed{seed}_drop", model(label), tc, tasks,
                               mixture(change.get("replay", 0.0)),
                               tags=tags(role="drop", factor=factor, level=value, size=label,
                                         params=n_params(model(label)), lr1=lr1, lr2=tc.lr, optimizer=tc.optimizer,
                                         replay=change.get("replay", 0.0), weight_decay=tc.weight_decay,
                                         objective=tc.objective, extra=change.get("extra", 0)),
                               init_from=source, group=f"persist_drop_{label}_{tc.optimizer}_{tc.objective}"))
    return out


# ---------------------------------------------------------------- tables
def _stops(rows) -> dict[str, tuple[int, bool]]:
    return {r["run"]: (int(r["step"]), bool(r["value"])) for r in rows
            if r["task"] == "train" and r["metric"] == "stopped"}


def tune_rows(rows) -> list[dict]:
    """persistence_tune.csv: one row per (size, lr, seed) of phase 1: steps to the criterion
    (``pre_steps``; the last step when never met) and whether it was met."""
    stops = _stops(rows)
    out = []
    for rid, rec in sorted(index_runs(held_out(rows)).items()):
        t = rec["tags"]
        if t.get("part") == "persistence" and t["role"] == "pre":
            step, met = stops[rid]
            out.append(dict(size=t["size"], params=int(t["params"]), lr=float(t["lr"]), seed=int(t["seed"]),
                            pre_steps=step, met=int(met)))
    return out


def tune_summary(per_seed, chosen: dict[str, float]) -> list[dict]:
    """persistence_tune_summary.csv: per (size, lr) the median steps to the criterion, seeds met,
    ``chosen`` (the preset's lr for that size) and ``fastest`` (all seeds met and the lowest median)."""
    groups: dict[tuple, list[dict]] = {}
    for r in per_seed:
        groups.setdefault((r["size"], r["lr"]), []).append(r)
    out = []
    for (size, lr), rs in groups.items():
        out.append(dict(size=size, params=rs[0]["params"], lr=lr, n=len(rs), n_met=sum(r["met"] for r in rs),
                        median_pre_steps=float(np.median([r["pre_steps"] for r in rs])),
                        values=" ".join(str(r["pre_steps"]) for r in rs), chosen=int(chosen.get(size) == lr)))
    for size in {r["size"] for r in out}:
        mine = [r for r in out if r["size"] == size and r["n_met"] == r["n"]]
        best = min(mine, key=lambda r: r["median_pre_steps"])["lr"] if mine else None
        for r in out:
            if r["size"] == size:
                r["fastest"] = int(r["lr"] == best)
    return sorted(out, key=lambda r: (r["params"], r["size"], r["lr"]))


def _at(t, v, step) -> float:
    """v linearly interpolated at ``step`` (t ascending)."""
    return float(np.interp(step, t, v))


def seed_rows(rows) -> list[dict]:
    """persistence.csv: one row per (factor, level, seed) of the drop runs. half_life_steps: steps
    after the drop until X's exact match on its trained pairs first falls to half its value at
    the drop (censored at the window: ``censored`` 1, never averaged); half_life_displacement:
    ||theta - theta_drop|| at that step (at the window's end when censored); kept_min_early: the
    kept languages' lowest held-out exact match (mean over them) at an evaluation in the first
    EARLY steps after the drop (the disruption of switching optimizer or rate); late_change: X's
    exact match at the window's end minus at its middle (has X settled by the end?)."""
    stops = _stops(rows)
    runs = index_runs(held_out(rows) + [r for r in rows if r["metric"] == "displacement"])
    out = []
    for _, rec in sorted(runs.items()):
        t = rec["tags"]
        if t.get("part") != "persistence" or t["role"] != "drop":
            continue
        x, x_train = t["x_lang"], t["x_train"]
        steps, exact = rec["curves"][(x_train, "exact")]
        dsteps, disp = rec["curves"][("train", "displacement")]
        hl = decay.half_life_crossing(steps, exact, final=0.0) if exact[0] > 0 else math.nan
        window = float(steps[-1] - steps[0])
        censored = math.isnan(hl)
        at = window if censored else hl
        kept = [k for (k, m) in rec["curves"] if m == "exact" and k not in (x, x_train, "train")]
        kept_curve = np.mean([rec["curves"][(k, "exact")][1] for k in kept], axis=0)
        pre_steps = stops.get(f"persist_{t['size']}_lr{float(t['lr1']):g}_seed{t['seed']}_pre", (math.nan,))[0]
        out.append(dict(factor=t["factor"], level=t["level"], seed=int(t["seed"]), arm=t["arm"],
                        sharing=float(t["sharing"]), size=t["size"],
                        params=int(t["params"]), lr1=float(t["lr1"]), lr2=float(t["lr2"]), optimizer=t["optimizer"],
                        replay=float(t["replay"]), weight_decay=float(t["weight_decay"]), objective=t["objective"],
                        extra=int(t["extra"]), pre_steps=pre_steps, pre_exact=float(exact[0]),
                        final_exact=float(exact[-1]), final_exact_heldout=float(rec["curves"][(x, "exact")][1][-1]),
                        kept_exact=float(kept_curve[-1]),
                        kept_min_early=float(np.min(kept_curve[steps - steps[0] <= EARLY])),
                        late_change=float(exact[-1] - _at(steps, exact, steps[0] + window / 2)),
                        half_life_steps=at, censored=int(censored), window=window,
                        half_life_displacement=_at(dsteps, disp, steps[0] + at), final_displacement=float(disp[-1])))
    return out


QUANTITIES = ("pre_exact", "final_exact", "final_exact_heldout", "kept_exact", "kept_min_early", "late_change",
              "final_displacement")


def _bounds(key: dict):
    """Exact matches in [0, 1], late_change in [-1, 1], log10 half-lives unbounded, the rest >= 0."""
    q = key["quantity"]
    if "exact" in q or q == "kept_min_early":
        return ACC
    if q == "late_change":
        return (-1.0, 1.0)
    return None if q.startswith("log10") else (0.0, math.inf)


def summary_rows(per_seed) -> list[dict]:
    """persistence_summary.csv, per (factor, level): the Kaplan-Meier median half-life in steps
    (``km_median``; NaN when more than half the seeds are censored: "longer than the window"),
    n_censored, and for the other quantities the mean, 95% interval (exact match inside [0, 1],
    displacement >= 0), n and per-seed values. Half-lives in displacement are summarised over the
    uncensored seeds only (n says how many)."""
    keys = ("factor", "level", "size", "params", "lr1", "lr2", "optimizer", "replay", "weight_decay", "objective",
            "extra")
    long = [{**{k: r[k] for k in keys}, "quantity": q, "value": r[q]} for r in per_seed for q in QUANTITIES]
    long += [{**{k: r[k] for k in keys}, "quantity": "half_life_displacement", "value": r["half_life_displacement"]}
             for r in per_seed if not r["censored"]]
    long += [{**{k: r[k] for k in keys}, "quantity": "log10_half_life_steps",
              "value": math.log10(max(r["half_life_steps"], 1.0))} for r in per_seed if not r["censored"]]
    out = aggregate(long, keys + ("quantity",), points=True, bounds=_bounds)
    groups: dict[tuple, list[dict]] = {}
    for r in per_seed:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    for r in out:   # every row says how many of its group's seeds were censored
        r["n_censored"] = sum(g["censored"] for g in groups[tuple(r[k] for k in keys)])
    for key, rs in groups.items():
        d = [r["half_life_steps"] for r in rs]
        grid = np.unique(np.r_[0.0, d])
        surv = survival(d, [not r["censored"] for r in rs], grid)
        below = grid[surv <= 0.5]
        out.append({**dict(zip(keys, key)), "quantity": "km_median_half_life_steps",
                    "mean": float(below[0]) if below.size else math.nan, "lo": math.nan, "hi": math.nan,
                    "n": len(rs), "n_censored": sum(r["censored"] for r in rs),
                    "values": " ".join((">" if r["censored"] else "") + f"{r['half_life_steps']:.4g}" for r in rs)})
    return out


def tables(rows) -> dict[str, list[dict]]:
    """Every persistence table of a results folder's rows (empty when it has none); the lr each
    size used is read from its drop runs."""
    per_seed = seed_rows(rows)
    tune = tune_rows(rows)
    if not per_seed and not tune:
        return {}
    chosen = {r["size"]: r["lr1"] for r in per_seed}
    return {"persistence": per_seed, "persistence_summary": summary_rows(per_seed) if per_seed else [],
            "persistence_tune": tune, "persistence_tune_summary": tune_summary(tune, chosen)}
