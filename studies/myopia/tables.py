"""Summary tables: the learning-rate grids, final held-out metrics, myopia gaps at each arm's
chosen rate, the gap as a function of the band k, training curves, gradient diagnostics,
per-position losses, probes, and the anchors next to Wu et al.'s numbers. Every interval
respects its quantity's range (losses >= 0, accuracies in [0, 1], R^2 <= 1, cosines in
[-1, 1]; differences unbounded); groups of <= 5 seeds list their per-seed values."""

from __future__ import annotations

import math
from pathlib import Path

from studies.myopia.measure import CHOICE, POSITIONS, PROBES, VAL
from studies.myopia.measure import arm_factor as factor_of
from studies.myopia.presets import ARMS, FAMILIES
from toymodels.analysis.stats import aggregate, bounds_by
from toymodels.results import read_rows, write_rows
from toymodels.tables import final_rows, held_out, select

POINT_KEYS = ("family", "point", "n_layers", "d_model", "params", "p", "fillers", "length")
FINAL_KEYS = POINT_KEYS + ("arm", "beta", "band", "lr_factor", "metric")
LOSS = (0.0, math.inf)
R2 = (-math.inf, 1.0)
# gaps.csv: losses and exp(gap) are >= 0; the gap, the local bonus, the context benefit and
# the gap's share of it are differences: unbounded.
GAP_BOUNDS = {**{f"L_{arm}": LOSS for arm in ARMS}, "exp_gap": LOSS, "L_myopic_at_vanilla_lr": LOSS}
TABLE_BOUNDS = {"final": bounds_by("metric"), "gaps": bounds_by("quantity", GAP_BOUNDS),
                "band": bounds_by("quantity", {"L_band": LOSS}), "curves": bounds_by("metric"),
                "grad_diagnostics": bounds_by("metric"), "positions": LOSS, "probes": R2}


def label(r: dict) -> str:
    """A run's arm as the gap tables name it: vanilla, myopic, bigram, local, band<k>, beta<b>."""
    return {"band": f"band{r['band']}", "beta": f"beta{r['beta']:g}"}.get(r["arm"], r["arm"])


def chosen_factors(choice: list[dict]) -> dict[tuple[str, str], float]:
    return {(c["task"], c["arm"]): c["lr_factor"] for c in choice}


def at_chosen(rows: list[dict], chosen: dict) -> list[dict]:
    """The rows of runs trained at their arm's chosen rate (the grid's other rates left out)."""
    return [r for r in rows if r["lr_factor"] == factor_of(chosen, r["family"], r["arm"])]


def gap_rows(finals: list[dict], chosen: dict) -> list[dict]:
    """Per seed, every arm at its chosen rate: gap = L_myopic - L_vanilla, its share of the
    context benefit, exp(gap), the local bonus L_vanilla - L_local; at the reference points
    also the myopic arm at vanilla's rate."""
    loss = {(r["family"], r["point"], label(r), r["lr_factor"], r["seed"]): r["value"]
            for r in finals if r["metric"] == "loss"}
    attrs = {(r["family"], r["point"]): {k: r[k] for k in POINT_KEYS} for r in finals}
    rows = []
    for (fam, point), a in attrs.items():
        fv, fm = factor_of(chosen, fam, "vanilla"), factor_of(chosen, fam, "myopic")
        for s in sorted({k[4] for k in loss if k[:2] == (fam, point)}):
            L = {arm: loss.get((fam, point, arm, fm if arm == "myopic" else fv, s)) for arm in ARMS}
            van, myo = L["vanilla"], L["myopic"]
            if van is None or myo is None:
                continue
            vals = {"L_vanilla": van, "L_myopic": myo, "gap": myo - van, "exp_gap": math.exp(myo - van)}
            if L["bigram"] is not None:
                vals.update(L_bigram=L["bigram"], context_benefit=L["bigram"] - van,
                            gap_share=(myo - van) / (L["bigram"] - van))
            if L["local"] is not None:
                vals.update(L_local=L["local"], local_bonus=van - L["local"])
            if (same := loss.get((fam, point, "myopic", fv, s))) is not None:
                vals.update(L_myopic_at_vanilla_lr=same, gap_at_vanilla_lr=same - van)
            rows += [{**a, "seed": s, "quantity": q, "value": v} for q, v in vals.items()]
    return rows


def band_rows(finals: list[dict], chosen: dict) -> list[dict]:
    """Per seed and band k (all at vanilla's rate): L_band and gap = L_band - L_vanilla; k = 0 is
    the myopic arm at vanilla's rate (a grid run). Band runs at other rates (part "wu_band")
    are left out."""
    loss = {(r["family"], r["point"], label(r), r["lr_factor"], r["seed"]): r for r in finals
            if r["metric"] == "loss" and r["lr_factor"] == factor_of(chosen, r["family"], "vanilla")}
    rows = []
    for (fam, point, arm, f, s), r in loss.items():
        if not arm.startswith("band"):
            continue
        van = loss.get((fam, point, "vanilla", f, s))
        for k, run in ((r["band"], r), (0, loss.get((fam, point, "myopic", f, s)))):
            if van is not None and run is not None:
                base = {k2: r[k2] for k2 in POINT_KEYS} | {"k": k, "seed": s}
                rows += [{**base, "quantity": "L_band", "value": run["value"]},
                         {**base, "quantity": "gap", "value": run["value"] - van["value"]}]
    unique = {(r["family"], r["point"], r["k"], r["seed"], r["quantity"]): r for r in rows}   # k = 0 once per seed
    return list(unique.values())


def curve_rows(rows: list[dict], chosen: dict) -> list[dict]:
    """Held-out loss (and exact match, token tasks) over training, per point and arm at its chosen
    rate, for the families whose budget the docs discuss (text, multiplication, D_p)."""
    keep = [r for r in held_out(rows) if r["family"] in ("text", "mult", "wu") and r["arm"] in ARMS
            and r["metric"] in ("loss", "exact") and not (r["family"] == "text" and r["metric"] == "exact")]
    return aggregate(at_chosen(keep, chosen), POINT_KEYS + ("arm", "metric", "step", "tokens"),
                     bounds=TABLE_BOUNDS["curves"], points=True)


def final_table(finals: list[dict]) -> list[dict]:
    """Final held-out metrics per point, arm, beta, band and lr factor (gradient diagnostics apart)."""
    return aggregate([r for r in finals if not r["metric"].startswith("offdiag")], FINAL_KEYS,
                     bounds=TABLE_BOUNDS["final"], points=True)


def gap_table(finals: list[dict], chosen: dict) -> list[dict]:
    return aggregate(gap_rows(finals, chosen), POINT_KEYS + ("quantity",), bounds=TABLE_BOUNDS["gaps"], points=True)


def band_table(finals: list[dict], chosen: dict) -> list[dict]:
    return aggregate(band_rows(finals, chosen), POINT_KEYS + ("k", "quantity"), bounds=TABLE_BOUNDS["band"],
                     points=True)


def diagnostics_table(rows: list[dict], chosen: dict) -> list[dict]:
    """Off-diagonal gradient diagnostics over training, vanilla runs at vanilla's chosen rate."""
    diag = [r for r in at_chosen(select(rows, arm="vanilla"), chosen) if r["metric"].startswith("offdiag")]
    return aggregate(diag, POINT_KEYS + ("metric", "step"), bounds=TABLE_BOUNDS["grad_diagnostics"], points=True)


def positions_table(rows: list[dict]) -> list[dict]:
    return aggregate(rows, ("family", "point", "arm", "position"), bounds=TABLE_BOUNDS["positions"], points=True)


def probes_table(rows: list[dict]) -> list[dict]:
    return aggregate(rows, ("arm", "layer", "name"), bounds=TABLE_BOUNDS["probes"], points=True)


def summarize(out: Path, table_dir: Path, rows: list[dict]) -> None:
    """The main part's tables from the folder's ``rows`` (nothing where the main part was not
    run)."""
    if not (out / CHOICE).exists():
        return
    rows = [r for r in rows if r["family"] in FAMILIES]   # part "convergence"'s families apart
    choice = read_rows(out / CHOICE)
    chosen = chosen_factors(choice)
    finals = final_rows(held_out(rows))
    write_rows(table_dir / "lr_grid.csv", read_rows(out / VAL))
    write_rows(table_dir / "lr_choice.csv", choice)
    write_rows(table_dir / "final.csv", final_table(finals))
    write_rows(table_dir / "gaps.csv", gap_table(finals, chosen))
    write_rows(table_dir / "band.csv", band_table(finals, chosen))
    write_rows(table_dir / "curves.csv", curve_rows(rows, chosen))
    write_rows(table_dir / "grad_diagnostics.csv", diagnostics_table(rows, chosen))
    write_rows(table_dir / "positions.csv", positions_table(read_rows(out / POSITIONS)))
    write_rows(table_dir / "probes.csv", probes_table(read_rows(out / PROBES)))
    write_rows(table_dir / "anchors.csv", anchors(read_rows(table_dir / "final.csv"),
                                                  read_rows(table_dir / "probes.csv"), chosen))


# Wu, Morris & Levine 2024: the numbers this study is compared with (their D_p task and
# their multiplication task, 5x5 digits, 10 fillers, fine-tuned GPT-2 124M).
ANCHORS = [
    ("D_1 vanilla loss (Huber)", ("wu", "vanilla", "loss"), "~0.01"),
    ("D_1 myopic loss (Huber)", ("wu", "myopic", "loss"), "~1.26"),
    ("D_1 layer-1 probe R^2 of sin(freq x), vanilla", ("probe", 1, "vanilla"), "~0.98"),
    ("D_1 layer-1 probe R^2 of sin(freq x), myopic", ("probe", 1, "myopic"), "(low)"),
    ("multiplication, most fillers, vanilla exact match", ("mult", "vanilla", "exact"), "0.99 (5x5, F=10)"),
    ("multiplication, most fillers, myopic exact match", ("mult", "myopic", "exact"), "0.06 (5x5, F=10)"),
]


def anchors(final: list[dict], probes: list[dict], chosen: dict) -> list[dict]:
    """Our numbers next to Wu et al.'s (ANCHORS), at each arm's chosen rate, from the summary tables."""
    mult_f = max((r["fillers"] for r in final if r["family"] == "mult"), default=None)
    rows = []
    for name, key, theirs in ANCHORS:
        if key[0] == "probe":
            sel = select(probes, layer=key[1], arm=key[2])
        else:
            fam, arm, metric = key
            sel = [r for r in select(final, family=fam, arm=arm, metric=metric, lr_factor=factor_of(chosen, fam, arm))
                   if (fam != "wu" or r["p"] == 1.0) and (fam != "mult" or r["fillers"] == mult_f)]
        if sel:
            r = sel[0]
            rows.append(dict(quantity=name, ours=r["mean"], lo=r["lo"], hi=r["hi"], n=r["n"], wu_et_al_2024=theirs))
    return rows
