"""Part 2, the sharing axis: where a dropped language can decay.

Knob languages (toymodels/tasks/languages.py): every language writes "a + b = c" in the digits
form after its own tag; X (the last language) keeps a fraction ``sharing`` of its 12 content
tokens on the base language K0's ids (0: a private copy of every token, 1: K0's very tokens).
Arms, by what the kept languages compute on that surface:
  same       a + b, like X: at sharing 1 X differs from K0 by its tag alone, so persistence is
             expected by construction (the positive control of no decay)
  interfere  a + b + 1: the same surface mapped to different answers, so training the kept
             languages trains against X wherever X shares their tokens
  two_task   one kept language computing |a - b|: two related tasks, drop one
Per (arm, sharing, seed), every run from the same init seed:
  pre    the full mix until X's exact match on its trained pairs reaches CRITERION_EXACT
         (checked every STOP_EVERY steps, at most ``max_pre`` steps; the step is recorded)
  drop   from pre: the mix without X for ``window`` steps, log-spaced evaluations
  joint  from pre: the full mix for ``control_window`` steps (the run that never dropped X)
  never  from the init: the kept languages alone for ``control_window`` steps (the never-saw-X floor)
  early  (``early_window`` > 0) from pre: the drop run's first ``early_window`` steps (same seed,
         data and rate), a checkpoint close in time to pre for activation patching
X is evaluated on its held-out pairs (task K{x}) and on its trained pairs (K{x}_train, an
eval-only copy); exact match (both answer digits right) is the headline metric.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np

from studies.ood_decay.presets import CHUNK, CRITERION_EXACT, MODULUS, Sharing
from toymodels.analysis import decay
from toymodels.analysis.stats import aggregate, survival
from toymodels.model import TransformerConfig
from toymodels.params import n_params
from toymodels.runspec import RunSpec
from toymodels.schedule import NEVER, Event, Mixture
from toymodels.tables import held_out, index_runs
from toymodels.tasks.languages import LanguageTask, answer, language_suite
from toymodels.trainconfig import TrainConfig

ARMS = {"same": "add", "interfere": "add1", "two_task": "absdiff"}   # arm -> what the kept languages compute
ROLES = ("pre", "drop", "joint", "never")
STOP_EVERY = 25
ACC = (0.0, 1.0)


def arm_suite(arm: str, sharing: float, n_languages: int):
    """(training tasks, X's name, the eval-only task name of X's trained pairs) of one arm."""
    if arm not in ARMS:
        raise ValueError(f"arm={arm!r}: choose one of {', '.join(ARMS)}")
    n = 2 if arm == "two_task" else n_languages
    train = language_suite("knob", n_languages=n, modulus=MODULUS, similarity=sharing,
                           functions=(ARMS[arm],) * (n - 1) + ("add",))
    return train, train[-1][0], f"{train[-1][0]}_train"


def arm_tasks(arm: str, sharing: float, n_languages: int):
    train, x, x_train = arm_suite(arm, sharing, n_languages)
    return tuple(train) + ((x_train, dataclasses.replace(dict(train)[x], eval_pairs="train")),)


def model_of(tasks, n_layers: int, d_model: int) -> TransformerConfig:
    """The model of one arm's tasks (they share one vocabulary and context)."""
    return TransformerConfig(n_layers=n_layers, d_model=d_model, n_heads=4,
                             vocab_size=tasks[0][1].vocab.size, max_seq_len=tasks[0][1].seq_len)


def arm_model(S: Sharing, tasks) -> TransformerConfig:
    return model_of(tasks, S.n_layers, S.d_model)


def template_exact(split: str = "train") -> float:
    """The exact match of the best constant answer on X's pairs of ``split`` (X computes a + b in
    every arm, on one pair split): a model that writes the template and one fixed number, the
    floor every exact-match figure shows."""
    task = LanguageTask(case="knob", modulus=MODULUS)
    ids = task.pair_ids(split)
    c = answer("add", ids // task.modulus, ids % task.modulus)
    return max(Counter(c.tolist()).values()) / len(ids)


def specs(S: Sharing) -> list[RunSpec]:
    for s in S.sharing:
        if not 0.0 <= s <= 1.0:
            raise ValueError(f"sharing={s!r}: a fraction of X's content tokens in [0, 1]")
    if not 0 <= S.early_window < S.window:
        raise ValueError(f"early_window={S.early_window!r}: 0 (none) or a step count below window={S.window}")
    out = []
    for arm in S.arms:
        for s in S.sharing:
            tasks = arm_tasks(arm, s, S.n_languages)
            model = arm_model(S, tasks)
            for seed in range(S.seeds):
                out += cell(S, arm, s, seed, tasks, model)
    return out


def cell(S: Sharing, arm: str, s: float, seed: int, tasks, model) -> list[RunSpec]:
    x, x_train = tasks[-2][0], tasks[-1][0]
    names = tuple(n for n, _ in tasks[:-1])
    prefix = f"sharing_{arm}_s{s:g}_seed{seed}"
    base = TrainConfig(steps=S.window, batch_size=S.batch_size, lr=S.lr, weight_decay=0.0, warmup_steps=S.warmup,
                       lr_schedule="constant", n_evals=S.n_evals, eval_spacing="log", eval_batch=S.eval_batch,
                       seed=seed, chunk_steps=CHUNK)

    def spec(role: str, drop_x: bool, init: str = "", **train):
        mixture = Mixture(names, events=(Event("replay", x, 0 if drop_x else NEVER, 0.0),))
        tags = dict(part="sharing", arm=arm, sharing=s, role=role, x_lang=x, x_train=x_train,
                    params=n_params(model), window=S.window)
        return RunSpec(f"{prefix}_{role}", model, dataclasses.replace(base, **train), tasks, mixture,
                       tags=tuple(tags.items()), init_from=f"{prefix}_{init}" if init else "",
                       group=f"sharing_{role}")
    control = dict(steps=S.control_window or S.window)
    return [spec("pre", False, steps=S.max_pre, n_evals=8, eval_spacing="linear",
                 stop_when=f"{x_train}.exact>={CRITERION_EXACT}", stop_every=STOP_EVERY),
            spec("drop", True, "pre"), spec("joint", False, "pre", **control), spec("never", True, **control)] + \
        ([spec("early", True, "pre", steps=S.early_window, n_evals=2)] if S.early_window else [])


# ---------------------------------------------------------------- tables
def stop_steps(rows) -> dict[str, tuple[int, bool]]:
    """run -> (step it met its stop criterion or its last step, whether it met it)."""
    return {r["run"]: (int(r["step"]), bool(r["value"])) for r in rows
            if r["task"] == "train" and r["metric"] == "stopped"}


def cells(runs) -> dict[tuple, dict[str, dict]]:
    """(arm, sharing, seed) -> role -> run record, for the sharing runs of ``runs``."""
    out: dict[tuple, dict] = {}
    for rid, rec in runs.items():
        t = rec["tags"]
        if t.get("part") == "sharing":
            out.setdefault((t["arm"], float(t["sharing"]), int(t["seed"])), {})[t["role"]] = {**rec, "run": rid}
    return out


def _final(rec, task, metric="exact") -> float:
    return float(rec["curves"][(task, metric)][1][-1])


def seed_rows(rows) -> list[dict]:
    """sharing.csv: one row per (arm, sharing, seed). half_life_steps: steps after the drop until
    X's exact match on its trained pairs first falls to half its value at the drop (linear
    interpolation between evaluations); a run that never gets there is censored at its window
    (``censored`` 1, half_life_steps = the window length), never averaged as if observed."""
    runs, stops = index_runs(held_out(rows)), stop_steps(rows)
    out = []
    for (arm, s, seed), roles in sorted(cells(runs).items()):
        if not set(ROLES) <= set(roles):
            continue
        pre, drop = roles["pre"], roles["drop"]
        x, x_train = pre["tags"]["x_lang"], pre["tags"]["x_train"]
        t, r = drop["curves"][(x_train, "exact")]
        hl = decay.half_life_crossing(t, r, final=0.0) if r[0] > 0 else math.nan
        kept = [k for (k, m) in drop["curves"] if m == "exact" and k not in (x, x_train)]
        out.append({"arm": arm, "sharing": s, "seed": seed, "pre_steps": stops[pre["run"]][0],
                    "pre_met": int(stops[pre["run"]][1]), "pre_exact": _final(pre, x_train),
                    "pre_exact_heldout": _final(pre, x), "final_exact": _final(drop, x_train),
                    "final_exact_heldout": _final(drop, x), "joint_exact": _final(roles["joint"], x_train),
                    "never_exact": _final(roles["never"], x_train),
                    "never_exact_heldout": _final(roles["never"], x),
                    "kept_exact": float(np.mean([_final(drop, k) for k in kept])),
                    "template_exact": template_exact(),
                    "half_life_steps": float(t[-1] - t[0]) if math.isnan(hl) else hl,
                    "censored": int(math.isnan(hl)), "window": float(t[-1] - t[0])})
    return out


QUANTITIES = ("pre_exact", "pre_exact_heldout", "final_exact", "final_exact_heldout", "joint_exact",
              "never_exact", "never_exact_heldout", "kept_exact", "template_exact", "pre_steps")


def summary_rows(per_seed) -> list[dict]:
    """sharing_summary.csv: mean, 95% interval (bounded to [0, 1] for exact match; steps >= 0), n and
    per-seed values of every per-seed quantity but the half-life (see survival_rows)."""
    long = [{"arm": r["arm"], "sharing": r["sharing"], "quantity": q, "value": r[q]} for r in per_seed
            for q in QUANTITIES]
    return aggregate(long, ("arm", "sharing", "quantity"), points=True,
                     bounds=lambda k: (0.0, math.inf) if k["quantity"] == "pre_steps" else ACC)


def survival_rows(per_seed, n_points: int = 40) -> list[dict]:
    """sharing_survival.csv: per (arm, sharing), the Kaplan-Meier fraction of seeds whose X has not
    yet lost half its exact match, on a log grid of steps after the drop; censored runs stay at risk
    until their window ends."""
    out = []
    groups: dict[tuple, list[dict]] = {}
    for r in per_seed:
        groups.setdefault((r["arm"], r["sharing"]), []).append(r)
    for (arm, s), rs in sorted(groups.items()):
        window = max(r["window"] for r in rs)
        steps = np.unique(np.r_[0.0, np.geomspace(1.0, window, n_points)])
        d = [r["half_life_steps"] for r in rs]
        surv = survival(d, [not r["censored"] for r in rs], steps)
        out += [{"arm": arm, "sharing": s, "step": float(t), "surviving": float(v), "n": len(rs),
                 "n_censored": sum(r["censored"] for r in rs)} for t, v in zip(steps, surv)]
    return out


def curve_rows(rows) -> list[dict]:
    """sharing_curves.csv: X's exact match on its trained pairs after the drop (drop and joint), mean
    and bounded interval over seeds per (arm, sharing, role, step)."""
    long = []
    for (arm, s, _), roles in cells(index_runs(held_out(rows))).items():
        for role in ("drop", "joint"):
            if role in roles:
                t, v = roles[role]["curves"][(roles[role]["tags"]["x_train"], "exact")]
                long += [{"arm": arm, "sharing": s, "role": role, "step": int(a), "value": float(b)}
                         for a, b in zip(t, v)]
    return aggregate(long, ("arm", "sharing", "role", "step"), bounds=ACC, points=True)


def tables(rows) -> dict[str, list[dict]]:
    """Every sharing table of a results folder's rows (empty when it has no sharing runs)."""
    per_seed = seed_rows(rows)
    if not per_seed:
        return {}
    return {"sharing": per_seed, "sharing_summary": summary_rows(per_seed),
            "sharing_survival": survival_rows(per_seed), "sharing_curves": curve_rows(rows)}
