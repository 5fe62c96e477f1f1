"""Part "convergence": the text size sweep and multiplication trained far longer than the
main preset's budgets.

The main preset's text models (3000 steps) and multiplication models (3000 steps) were still
improving when they stopped, so their myopia gaps are the gaps at that budget. This part
trains the same sizes, arms, tasks and filler counts for ``Convergence.steps`` (text) and
``mult_steps`` (one cosine schedule over the whole budget, evaluations log-spaced), at fixed
learning rates: each arm's rate chosen on validation by the main preset's grid at its
budget (``lr_factors``, ``mult_lr_factors``; figures/myopia/lr_choice.csv). At the text
reference size, vanilla and myopic also train at each other's rate (``check_factors``),
which says whether the ordering of the arms depends on that choice. The convergence evidence
is the curve itself and vanilla's change over the last doubling of steps. Vanilla
multiplication also trains for ``mult_plateau_steps`` (its own cosine schedule; family
``mult_plateau``), to say at which budget its exact match stops rising at each filler count.
"""

from __future__ import annotations

import math
from pathlib import Path

from studies.myopia.grid import Point
from studies.myopia.grid import spec as grid_spec
from studies.myopia.presets import BASE_LR, Convergence, Preset
from studies.myopia.tables import chosen_factors, final_table, gap_table
from toymodels.analysis.stats import aggregate, bounds_by
from toymodels.results import read_rows, write_rows
from toymodels.runspec import RunSpec
from toymodels.tables import final_rows, held_out

FAMILY = "text_long"     # the family tags of this part's runs (the main tables leave them out)
MULT = "mult_long"
PLATEAU = "mult_plateau"   # vanilla multiplication at mult_plateau_steps
CHOICE = Path("analyses/convergence_lr.csv")   # the rates the part trained at (out-relative)
ARMS = ("vanilla", "myopic", "bigram", "local")


def points(C: Convergence, length: int) -> list[Point]:
    return [Point(FAMILY, f"L{L}d{d}-T{length}", "text", (("length", length),), L, d, ARMS, reference=i == 0,
                  length=length) for i, (L, d) in enumerate(C.sizes)]


def mult_points(P: Preset, family: str = MULT) -> list[Point]:
    digits, base = P.mult
    return [Point(family, f"{digits}x{digits}b{base}-F{f}", "multiplication", (("digits", digits), ("fillers", f),
                                                                            ("base", base)),
                  *P.mult_model, ("vanilla", "myopic"), reference=f == P.fillers[0], fillers=f) for f in P.fillers]


def choice_rows(C: Convergence) -> list[dict]:
    """The rates each arm trains at, written next to the results (``CHOICE``) for the summary."""
    return ([dict(task=FAMILY, arm=arm, lr_factor=f, lr=BASE_LR["text"] * f) for arm, f in C.lr_factors]
            + [dict(task=fam, arm=arm, lr_factor=f, lr=BASE_LR["mult"] * f) for fam in (MULT, PLATEAU)
               for arm, f in C.mult_lr_factors])


def spec(P: Preset, C: Convergence, point: Point, arm: str, seed: int, factor: float) -> RunSpec:
    """One run of ``arm`` at ``factor`` x its family's base rate (a local run fine-tunes the
    vanilla run of its seed, as in the main grid), without gradient diagnostics."""
    mult = point.family in (MULT, PLATEAU)
    rates = dict(C.mult_lr_factors if mult else C.lr_factors)
    steps = {MULT: C.mult_steps, PLATEAU: C.mult_plateau_steps}.get(point.family, C.steps)
    return grid_spec(P, point, arm, seed, factor, vanilla_factor=rates["vanilla"],
                     base="mult" if mult else "text", steps=steps,
                     overrides=(("n_evals", C.n_evals), ("eval_batch", C.eval_batch), ("grad_diagnostics", False)))


def specs(P: Preset) -> list[RunSpec]:
    C = P.convergence
    lr = dict(C.lr_factors)
    out = []
    for point in points(C, P.text_length):
        for seed in range(C.seeds):
            for arm in ARMS:
                out.append(spec(P, C, point, arm, seed, lr["myopic" if arm == "myopic" else "vanilla"]))
            if point.reference:   # each tuned arm at the other's rate too
                out += [spec(P, C, point, arm, seed, f) for arm in ("vanilla", "myopic") for f in C.check_factors
                        if f != lr[arm]]
    mult_lr = dict(C.mult_lr_factors)
    if C.mult_steps:
        out += [spec(P, C, point, arm, seed, mult_lr[arm]) for point in mult_points(P) for seed in range(C.mult_seeds)
                for arm in ("vanilla", "myopic")]
    if C.mult_plateau_steps:
        out += [spec(P, C, point, "vanilla", seed, mult_lr["vanilla"]) for point in mult_points(P, PLATEAU)
                for seed in range(C.mult_seeds)]
    return out


def _late_change(rows: list[dict]) -> list[dict]:
    """Per vanilla run: the change of each held-out metric (loss; exact match of multiplication)
    from the eval nearest half the final step to the final one (``late_<metric>``: how much the
    last doubling of steps still moved it), and the final held-out minus training loss."""
    by_run: dict[str, dict] = {}
    for r in rows:   # training: the chunk-mean "train_loss" (task "train")
        if r["arm"] == "vanilla" and r["metric"] in ("loss", "exact", "train_loss"):
            by_run.setdefault(r["run"], {}).setdefault(r["metric"], {})[r["step"]] = r
    out = []
    for runs in by_run.values():
        held = runs["loss"]
        last = max(held)
        half = min(held, key=lambda s: abs(math.log((s + 1) / (last + 1) * 2)))
        base = {k: held[last][k] for k in ("family", "point", "n_layers", "d_model", "params", "p", "fillers",
                                             "length", "lr_factor", "seed")}
        for metric in ("loss", "exact"):
            if metric in runs and not (base["family"] == FAMILY and metric == "exact"):
                curve = runs[metric]
                out.append({**base, "quantity": f"late_{metric}", "value": curve[last]["value"] - curve[half]["value"],
                            "from_step": half, "to_step": last})
        if "train_loss" in runs:
            t_last = max(runs["train_loss"])
            out.append({**base, "quantity": "heldout_minus_train",
                        "value": held[last]["value"] - runs["train_loss"][t_last]["value"],
                        "from_step": t_last, "to_step": last})
    return out


def _filler_effect(finals: list[dict]) -> list[dict]:
    """Per multiplication family, arm and seed: held-out exact match with the most fillers minus
    with the fewest (a seed-matched difference: its interval is the plain t-interval)."""
    exact = {(r["family"], r["arm"], r["fillers"], r["seed"]): r["value"] for r in finals
             if r["family"] in (MULT, PLATEAU) and r["metric"] == "exact"}
    out = []
    for fam, arm in sorted({k[:2] for k in exact}):
        fillers = sorted({k[2] for k in exact if k[:2] == (fam, arm)})
        if len(fillers) < 2:
            continue
        fewest, most = fillers[0], fillers[-1]
        for seed in sorted({k[3] for k in exact if k[:2] == (fam, arm)}):
            if (fam, arm, fewest, seed) in exact and (fam, arm, most, seed) in exact:
                out.append(dict(family=fam, arm=arm, fillers_from=fewest, fillers_to=most, seed=seed,
                                quantity="exact_with_minus_without",
                                value=exact[(fam, arm, most, seed)] - exact[(fam, arm, fewest, seed)]))
    return out


def summarize(out: Path, table_dir: Path, rows: list[dict]) -> None:
    """Write the part's tables, from the folder's ``rows``, into ``table_dir`` (nothing where the
    part was not run)."""
    if not (out / CHOICE).exists():
        return
    rows = [r for r in rows if r["family"] in (FAMILY, MULT, PLATEAU)]
    write_rows(table_dir / "convergence_lr.csv", read_rows(out / CHOICE))
    for name, table in tables(rows, chosen_factors(read_rows(out / CHOICE))).items():
        if table:   # the filler table needs two filler counts
            write_rows(table_dir / name, table)


def tables(rows: list[dict], chosen: dict[tuple[str, str], float]) -> dict[str, list[dict]]:
    """The part's summary tables: final held-out metrics per arm and rate, gaps at the chosen
    rates, the curves (held-out loss and exact match, training loss), vanilla's late change,
    and multiplication's filler effect per budget and arm."""
    finals = final_rows(held_out(rows))
    curves = [r for r in rows if r["metric"] in ("loss", "train_loss", "exact")
              and not (r["family"] == FAMILY and r["metric"] == "exact")]
    keys = ("family", "point", "n_layers", "d_model", "params", "fillers", "arm", "lr_factor", "task", "metric",
            "step", "tokens")
    late_keys = ("family", "point", "n_layers", "d_model", "params", "fillers", "lr_factor", "quantity", "from_step",
                 "to_step")
    return {"convergence_final.csv": final_table(finals),
            "convergence_gaps.csv": gap_table(finals, chosen),
            "convergence_curves.csv": aggregate(curves, keys, bounds=bounds_by("metric"), points=True),
            "convergence_late.csv": aggregate(_late_change(rows), late_keys, points=True),
            "convergence_fillers.csv": aggregate(_filler_effect(finals), ("family", "arm", "fillers_from", "fillers_to",
                                                                        "quantity"), points=True)}
