"""Summary tables: final held-out metrics, myopia gaps, gradient diagnostics, per-position
losses, probes, and the anchors next to Wu et al.'s numbers. Every interval respects its
quantity's range (losses >= 0, accuracies in [0, 1], R^2 <= 1; differences unbounded)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from studies.myopia.measure import POSITIONS, PROBES
from studies.myopia.presets import ARMS
from toymodels.analysis.stats import aggregate, bounds_by
from toymodels.results import read_rows, write_rows
from toymodels.store import load_rows
from toymodels.tables import final_rows, held_out, select

POINT_KEYS = ("family", "point", "n_layers", "d_model", "params", "p", "fillers", "length")
FINAL_KEYS = POINT_KEYS + ("arm", "beta", "lr_factor", "metric")
LOSS = (0.0, math.inf)
R2 = (-math.inf, 1.0)
# gaps.csv: losses and exp(gap) are >= 0 and a chosen learning-rate factor > 0; the gap, the
# local bonus, the context benefit and the gap's share of it are differences: unbounded.
GAP_BOUNDS = {**{f"L_{arm}": LOSS for arm in ARMS}, "exp_gap": LOSS, "lr_best_vanilla": LOSS,
              "lr_best_myopic": LOSS}
# the bounds of every table but anchors.csv, which is derived from final.csv and probes.csv
TABLE_BOUNDS = {"final": bounds_by("metric"), "gaps": bounds_by("quantity", GAP_BOUNDS),
                "grad_diagnostics": bounds_by("metric"), "positions": LOSS, "probes": R2}


def gap_rows(finals: list[dict]) -> list[dict]:
    """Per seed: gap = L_myopic - L_vanilla, its share of the context benefit, exp(gap),
    the local bonus L_vanilla - L_local, both at matched lr and with each arm's best lr."""
    loss = {(r["family"], r["point"], r["arm"], r["lr_factor"], r["seed"]): r["value"]
            for r in finals if r["metric"] == "loss"}
    attrs = {(r["family"], r["point"]): {k: r[k] for k in POINT_KEYS} for r in finals}
    seeds = sorted({k[4] for k in loss})
    rows = []
    for fp, a in attrs.items():
        def L(arm, f=1.0, s=None):
            return loss.get((*fp, arm, f, s))
        factors = sorted({k[3] for k in loss if k[:2] == fp and k[2] == "myopic"})
        # each arm's best lr factor (by its seed mean), where lr is tuned
        best = {arm: min(factors, key=lambda f: np.mean([L(arm, f, s) for s in seeds if L(arm, f, s) is not None]))
                for arm in ("vanilla", "myopic")} if len(factors) > 1 else {}
        for s in seeds:
            van, myo, big, loc = L("vanilla", s=s), L("myopic", s=s), L("bigram", s=s), L("local", s=s)
            if van is None or myo is None:
                continue
            vals = {"L_vanilla": van, "L_myopic": myo, "gap": myo - van, "exp_gap": math.exp(myo - van)}
            if big is not None:
                vals.update(L_bigram=big, context_benefit=big - van, gap_share=(myo - van) / (big - van))
            if loc is not None:
                vals.update(L_local=loc, local_bonus=van - loc)
            if len(factors) > 1:
                vals.update(gap_tuned=L("myopic", best["myopic"], s) - L("vanilla", best["vanilla"], s),
                            lr_best_vanilla=best["vanilla"], lr_best_myopic=best["myopic"])
            rows += [{**a, "seed": s, "quantity": q, "value": v} for q, v in vals.items()]
    return rows


def final_table(finals: list[dict]) -> list[dict]:
    """Final held-out metrics per point, arm, beta and lr factor (gradient diagnostics apart)."""
    return aggregate([r for r in finals if not r["metric"].startswith("offdiag")], FINAL_KEYS,
                     bounds=TABLE_BOUNDS["final"], points=True)


def gap_table(finals: list[dict]) -> list[dict]:
    return aggregate(gap_rows(finals), POINT_KEYS + ("quantity",), bounds=TABLE_BOUNDS["gaps"], points=True)


def diagnostics_table(rows: list[dict]) -> list[dict]:
    """Off-diagonal gradient diagnostics over training, vanilla runs at the matched lr."""
    diag = [r for r in select(rows, arm="vanilla", lr_factor=1.0) if r["metric"].startswith("offdiag")]
    return aggregate(diag, POINT_KEYS + ("metric", "step"), bounds=TABLE_BOUNDS["grad_diagnostics"], points=True)


def positions_table(rows: list[dict]) -> list[dict]:
    return aggregate(rows, ("family", "point", "arm", "position"), bounds=TABLE_BOUNDS["positions"], points=True)


def probes_table(rows: list[dict]) -> list[dict]:
    return aggregate(rows, ("arm", "layer", "name"), bounds=TABLE_BOUNDS["probes"], points=True)


def summarize(out: Path, table_dir: Path) -> None:
    rows = load_rows(out)
    finals = final_rows(held_out(rows))
    write_rows(table_dir / "final.csv", final_table(finals))
    write_rows(table_dir / "gaps.csv", gap_table(finals))
    write_rows(table_dir / "grad_diagnostics.csv", diagnostics_table(rows))
    write_rows(table_dir / "positions.csv", positions_table(read_rows(out / POSITIONS)))
    write_rows(table_dir / "probes.csv", probes_table(read_rows(out / PROBES)))
    write_rows(table_dir / "anchors.csv", anchors(read_rows(table_dir / "final.csv"),
                                                  read_rows(table_dir / "probes.csv")))


# Wu, Morris & Levine 2024: the numbers this study is compared with.
ANCHORS = [
    ("wu p=1 vanilla loss (Huber)", ("wu", "p1", "vanilla", "loss"), "~0.01"),
    ("wu p=1 myopic loss (Huber)", ("wu", "p1", "myopic", "loss"), "~1.26"),
    ("wu p=0.1 myopic loss / p", ("wu", "p0.1", "myopic", "loss/p"), "~1.0-1.3"),
    ("wu p=0.01 myopic loss / p", ("wu", "p0.01", "myopic", "loss/p"), "~1.0-1.3"),
    ("wu layer-1 probe R^2 of sin(freq x), vanilla", ("probe", 1, "vanilla"), "~0.98"),
    ("wu layer-1 probe R^2 of sin(freq x), myopic", ("probe", 1, "myopic"), "(low)"),
    ("multiplication, most fillers, vanilla exact match", ("mult", "maxF", "vanilla", "exact"), "0.99 (5x5, F=10)"),
    ("multiplication, most fillers, myopic exact match", ("mult", "maxF", "myopic", "exact"), "0.06 (5x5, F=10)"),
    ("multiplication, fewest fillers > 0, vanilla exact match", ("mult", "minF", "vanilla", "exact"),
     "~0.37 (5x5, F=5)"),
    ("multiplication, fewest fillers > 0, myopic exact match", ("mult", "minF", "myopic", "exact"),
     "~0.37 (5x5, F=5)"),
]


def anchors(final: list[dict], probes: list[dict]) -> list[dict]:
    """Our numbers next to Wu et al.'s (ANCHORS), from the final.csv and probes.csv tables."""
    point_of = {r["fillers"]: r["point"] for r in final if r["family"] == "mult"}
    fillers = sorted(f for f in point_of if f > 0)
    mult_point = {"maxF": point_of[fillers[-1]], "minF": point_of[fillers[0]]} if fillers else {}
    rows = []
    for label, key, theirs in ANCHORS:
        if key[0] == "probe":
            sel = select(probes, layer=key[1], arm=key[2])
            scale = 1.0
        else:
            fam, point, arm, metric = key
            per_p = metric == "loss/p"
            sel = select(final, family=fam, point=mult_point.get(point, point), arm=arm, lr_factor=1.0,
                         metric="loss" if per_p else metric)
            scale = 1.0 / sel[0]["p"] if per_p and sel else 1.0
        if sel:
            r = sel[0]
            rows.append(dict(quantity=label, ours=r["mean"] * scale, lo=r["lo"] * scale, hi=r["hi"] * scale,
                             n=r["n"], wu_et_al_2024=theirs))
    return rows
