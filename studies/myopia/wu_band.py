"""Part "wu_band": the band-k gap on D_1 at more than one learning rate, with more seeds.

In the main part D_1's band gap does not vanish at k = 10 (the window the target reads) and
is larger there than at k = 2 or 5; its band runs train at vanilla's rate, 3 seeds. This
part trains, at each rate of ``WuBand.lr_factors`` (x the D_p base rate) and ``seeds`` seeds,
vanilla, myopic (k = 0) and every band k of ``bands``, and reports the gap against vanilla
at the same rate and seed. The runs are the main part's D_1 runs where they coincide (same
ids and configs), so a folder holding both trains them once.
"""

from __future__ import annotations

from pathlib import Path

from studies.myopia.grid import points, spec
from studies.myopia.presets import Preset
from studies.myopia.tables import LOSS, POINT_KEYS, label
from toymodels.analysis.stats import aggregate, bounds_by
from toymodels.results import read_rows, write_rows
from toymodels.runspec import RunSpec
from toymodels.tables import final_rows, held_out

PLAN = Path("analyses/wu_band_plan.csv")   # the part's rates and seeds, written once its runs are trained


def specs(P: Preset) -> list[RunSpec]:
    W = P.wu_band
    point = next(pt for pt in points(P, ("wu",)) if pt.reference)
    runs = []
    for f in W.lr_factors:
        for seed in range(W.seeds):
            runs += [spec(P, point, "vanilla", seed, f), spec(P, point, "myopic", seed, f)]
            runs += [spec(P, point, "myopic", seed, f, band=k) for k in W.bands]
    return runs


def plan_rows(P: Preset) -> list[dict]:
    return [dict(lr_factor=f, seeds=P.wu_band.seeds, bands=" ".join(map(str, P.wu_band.bands)))
            for f in P.wu_band.lr_factors]


def band_rows(finals: list[dict], plan: list[dict]) -> list[dict]:
    """Per rate and seed of ``plan``, and k: L_band and gap = L_band - L_vanilla at the same
    rate and seed (k = 0: the myopic run at that rate)."""
    seeds = {p["lr_factor"]: p["seeds"] for p in plan}
    loss = {(label(r), r["lr_factor"], r["seed"]): r for r in finals
            if r["family"] == "wu" and r["metric"] == "loss" and r["beta"] == -1 and r["p"] == 1.0
            and r["seed"] < seeds.get(r["lr_factor"], 0)}
    rows = []
    for (arm, f, s), r in loss.items():
        van = loss.get(("vanilla", f, s))
        if van is None or not (arm == "myopic" or arm.startswith("band")):
            continue
        base = {k: r[k] for k in POINT_KEYS} | {"lr_factor": f, "k": r["band"] if arm != "myopic" else 0, "seed": s}
        rows += [{**base, "quantity": "L_band", "value": r["value"]},
                 {**base, "quantity": "gap", "value": r["value"] - van["value"]}]
    return rows


def summarize(out: Path, table_dir: Path, rows: list[dict]) -> None:
    """Write ``wu_band.csv`` from the folder's ``rows`` (nothing where the part was not run)."""
    if not (out / PLAN).exists():
        return
    finals = final_rows(held_out(rows))
    rows = band_rows(finals, read_rows(out / PLAN))
    write_rows(table_dir / "wu_band.csv", aggregate(rows, POINT_KEYS + ("lr_factor", "k", "quantity"),
                                                    bounds=bounds_by("quantity", {"L_band": LOSS}), points=True))
