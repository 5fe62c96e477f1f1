"""Part "wu_band": the band-k gap on D_1 at more than one learning rate, with more seeds.

In the main part D_1's band gap does not vanish at k = 10 (the window the target reads) and
is larger there than at k = 2 or 5; its band runs train at vanilla's rate, 3 seeds. This
part trains, at each rate of ``WuBand.lr_factors`` (x the D_p base rate) and ``seeds`` seeds,
vanilla, myopic (k = 0) and every band k of ``bands``, and reports the gap against vanilla
at the same rate and seed. The runs are the main part's D_1 runs where they coincide (same
ids and configs), so a folder holding both trains them once.

Two checks of why a band stops short: the long runs (family ``wu_long``: vanilla, myopic and
``long_bands`` at the first rate for ``long_steps``) tell a band that learns slowly from one
that stalls; and every trained model's attention mass by distance (self, the target's window
of ``n_terms`` links, beyond it) shows where its attention went.

Two causal checks of what makes a band stall. Training: ``far_bands`` retrained at every
rate with the key path (family ``wu_key``) or the value path (``wu_value``) of the links
beyond the band at full gradient (``TrainConfig.myopic_far``); if far keys that no query
beyond the band may teach are what stalls a band, restoring the key path alone closes its gap. Evaluation: every
model at the first rate scored with its attention beyond the window masked, per layer
(``wu_band_mask.csv``): how much of a band's loss the attention it sends beyond the window
costs.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from studies.myopia.grid import reference, spec
from studies.myopia.measure import eval_batch
from studies.myopia.presets import NA, Preset
from studies.myopia.tables import LOSS, POINT_KEYS, label
from toymodels.analyses import AnalysisCache
from toymodels.analysis.attention import mass_by_distance
from toymodels.analysis.stats import aggregate, bounds_by, pearson_ci
from toymodels.hooks import Intervention, forward, run_with_interventions
from toymodels.results import read_rows, write_rows
from toymodels.runspec import RunSpec
from toymodels.store import load_models
from toymodels.tables import final_rows, held_out
from toymodels.tasks.base import metrics

PLAN = Path("analyses/wu_band_plan.csv")   # the part's rates and seeds, written once its runs are trained
ATTENTION = Path("analyses/wu_band_attention.csv")   # every run's attention mass by distance
MASK = Path("analyses/wu_band_mask.csv")   # every first-rate run's loss with far attention masked
LONG = "wu_long"                           # the long runs' family tag
FAR = {"key": "wu_key", "value": "wu_value"}   # restored path beyond the band -> its runs' family
REGIONS = ("self", "window", "beyond")     # distance 0, 1..n_terms, more than n_terms back
BOUNDS = bounds_by("quantity", {"L_band": LOSS, "L_vanilla": LOSS, "L": LOSS})


def specs(P: Preset) -> list[RunSpec]:
    W = P.wu_band
    point = reference(P, "wu")
    runs = []
    for f in W.lr_factors:
        for seed in range(W.seeds):
            runs += [spec(P, point, "vanilla", seed, f), spec(P, point, "myopic", seed, f)]
            runs += [spec(P, point, "myopic", seed, f, band=k) for k in W.bands]
    return runs + long_specs(P) + far_specs(P)


def long_specs(P: Preset) -> list[RunSpec]:
    """Vanilla, myopic and each long band at the first rate, ``long_steps`` long."""
    W = P.wu_band
    if not W.long_steps:
        return []
    point = dataclasses.replace(reference(P, "wu"), family=LONG)
    kw = dict(base="wu", steps=W.long_steps, overrides=(("grad_diagnostics", False),))
    return [spec(P, point, arm, seed, W.lr_factors[0], band=k, **kw) for seed in range(W.seeds)
            for arm, k in (("vanilla", NA), ("myopic", NA), *(("myopic", b) for b in W.long_bands))]


def far_specs(P: Preset) -> list[RunSpec]:
    """Each of ``far_bands`` at every rate with one path beyond the band restored."""
    W = P.wu_band
    return [spec(P, dataclasses.replace(reference(P, "wu"), family=family), "myopic", seed, f,
                 band=k, base="wu", steps=P.family_steps("wu"), overrides=(("myopic_far", path),))
            for f in W.lr_factors for path, family in FAR.items() for k in W.far_bands for seed in range(W.seeds)]


def plan_rows(P: Preset) -> list[dict]:
    return [dict(lr_factor=f, seeds=P.wu_band.seeds, bands=" ".join(map(str, P.wu_band.bands)))
            for f in P.wu_band.lr_factors]


def _k(r: dict) -> int:
    """A run's band k: 0 for myopic, NA for vanilla."""
    return r["band"] if r["arm"] == "band" else 0 if r["arm"] == "myopic" else NA


def band_rows(finals: list[dict], plan: list[dict], family: str = "wu") -> list[dict]:
    """Per rate and seed of ``plan``, and k: L_band and gap = L_band - L_vanilla at the same
    rate and seed (k = 0: the myopic run at that rate), and L_vanilla (k = NA). ``finals`` may be any step's rows of
    one step per run (the long runs' curves pass each eval step's)."""
    seeds = {p["lr_factor"]: p["seeds"] for p in plan}
    loss = {(label(r), r["lr_factor"], r["seed"], r["step"]): r for r in finals
            if r["family"] == family and r["metric"] == "loss" and r["beta"] == -1 and r["p"] == 1.0
            and r["seed"] < seeds.get(r["lr_factor"], 0)}
    rows = []
    for (arm, f, s, step), r in loss.items():
        van = loss.get(("vanilla", f, s, step))
        base = {k: r[k] for k in POINT_KEYS} | {"lr_factor": f, "k": _k(r), "seed": s, "step": step}
        if arm == "vanilla":
            rows.append({**base, "quantity": "L_vanilla", "value": r["value"]})
        if van is None or not (arm == "myopic" or arm.startswith("band")):
            continue
        rows += [{**base, "quantity": "L_band", "value": r["value"]},
                 {**base, "quantity": "gap", "value": r["value"] - van["value"]}]
    return rows


def attention_rows(P: Preset, out: Path) -> list[dict]:
    """Every run's attention mass per (layer, head, distance), over the eval batch's queries
    whose whole window exists (t > n_terms); cached per (family, rate)."""
    cache = AnalysisCache(out, "wu_band_attention")
    groups: dict[str, list[RunSpec]] = {}
    for s in specs(P):
        t = dict(s.tags)
        groups.setdefault(f"{t['family']}-lr{t['lr_factor']:.4g}", []).append(s)
    return [r for key, runs in sorted(groups.items())
            for r in cache.rows(key, runs, functools.partial(_attention, out, runs))]


def _attention(out: Path, runs: list[RunSpec]) -> list[dict]:
    batch = eval_batch(runs[0])
    window = runs[0].tasks[0][1].n_terms
    rows = []
    for s, model in zip(runs, load_models(out, runs)):
        t = dict(s.tags)
        _, cache = forward(model, batch.inputs, ("blocks.*.attn.pattern",))
        for layer in range(model.cfg.n_layers):
            mass = mass_by_distance(cache[f"blocks.{layer}.attn.pattern"], min_query=window + 1)
            for head, per_d in enumerate(mass):
                rows += [dict(run=s.run_id, family=t["family"], lr_factor=t["lr_factor"], k=_k(t), seed=t["seed"],
                              window=window, layer=layer, head=head, distance=d, mass=float(m))
                         for d, m in enumerate(per_d)]
    return rows


def mask_rows(P: Preset, out: Path) -> list[dict]:
    """Every run at the first rate: its held-out loss as trained and with the attention beyond
    the target's window masked (scores -inf for links more than ``n_terms`` back) in one layer
    or all (``masked``); cached per family."""
    cache = AnalysisCache(out, "wu_band_mask")
    groups: dict[str, list[RunSpec]] = {}
    for s in specs(P):
        t = dict(s.tags)
        if t["lr_factor"] == float(f"{P.wu_band.lr_factors[0]:.4g}"):
            groups.setdefault(t["family"], []).append(s)
    return [r for key, runs in sorted(groups.items())
            for r in cache.rows(key, runs, functools.partial(_masked_losses, out, runs))]


def far_mask(T: int, window: int) -> Intervention:
    """An edit of attention scores that leaves links at most ``window`` back as they are and
    removes every link further back (score -inf)."""
    lag_TS = np.arange(T)[:, None] - np.arange(T)[None, :]
    return Intervention(1.0, jnp.asarray(np.where(lag_TS > window, -np.inf, 0.0), jnp.float32))


def _masked_losses(out: Path, runs: list[RunSpec]) -> list[dict]:
    batch = eval_batch(runs[0])
    task = runs[0].tasks[0][1]
    far = far_mask(batch.inputs.shape[1], task.n_terms)
    rows = []
    for s, model in zip(runs, load_models(out, runs)):
        t = dict(s.tags)
        layers = [f"blocks.{i}.attn.scores" for i in range(model.cfg.n_layers)]
        for masked, names in (("none", []), *((f"layer{i}", [n]) for i, n in enumerate(layers)), ("all", layers)):
            pred = run_with_interventions(model, batch.inputs, dict.fromkeys(names, far))
            rows.append(dict(run=s.run_id, family=t["family"], lr_factor=t["lr_factor"], k=_k(t), seed=t["seed"],
                             masked=masked, loss=float(metrics(pred, batch, task.loss)["loss"])))
    return rows


def mask_table(rows: list[dict]) -> list[dict]:
    """Per (family, rate, k, masked): the loss ``L`` and ``gain`` = L(as trained) - L(masked), so
    a positive gain is loss the far attention costs."""
    plain = {r["run"]: r["loss"] for r in rows if r["masked"] == "none"}
    keys = ("family", "lr_factor", "k", "masked")
    tidy = [{**{k: r[k] for k in keys}, "quantity": q, "value": v} for r in rows
            for q, v in (("L", r["loss"]), ("gain", plain[r["run"]] - r["loss"]))]
    return aggregate(tidy, keys + ("quantity",), bounds=BOUNDS, points=True)


def far_rows(finals: list[dict], plan: list[dict]) -> list[dict]:
    """Per rate of ``plan``, far run (``path`` key or value) and, for reference, the plain run
    of the same k (``path`` none): its loss ``L``, ``gap`` against vanilla at the same rate and
    seed and, for the far runs, ``vs_plain`` = L - L(plain band k) at the same rate and seed."""
    seeds = {p["lr_factor"]: p["seeds"] for p in plan}
    loss = {(r["family"], label(r), r["lr_factor"], r["seed"]): r for r in finals
            if r["metric"] == "loss" and r["beta"] == -1 and r["p"] == 1.0 and r["seed"] < seeds.get(r["lr_factor"], 0)}
    paths = {family: path for path, family in FAR.items()}
    rows = []
    for (family, arm, f, seed), r in loss.items():
        if family not in paths:
            continue
        k = _k(r)
        van, plain = loss.get(("wu", "vanilla", f, seed)), loss.get(("wu", "myopic" if k == 0 else arm, f, seed))
        if van is None or plain is None:
            continue
        base = dict(lr_factor=f, k=k, seed=seed)
        for path, run in ((paths[family], r), ("none", plain)):
            rows += [dict(base, path=path, quantity="L", value=run["value"]),
                     dict(base, path=path, quantity="gap", value=run["value"] - van["value"])]
        rows.append(dict(base, path=paths[family], quantity="vs_plain", value=r["value"] - plain["value"]))
    # the plain run once per (rate, k, seed)
    unique = {(r["lr_factor"], r["path"], r["k"], r["seed"], r["quantity"]): r for r in rows}
    return list(unique.values())


def attention_regions(rows: list[dict]) -> list[dict]:
    """Per run and layer: the head-mean mass on self, the window and beyond it, and the largest
    single head's mass beyond it."""
    first: dict[tuple, dict] = {}
    heads: dict[tuple, dict] = {}
    for r in rows:
        key = (r["run"], r["layer"])
        first.setdefault(key, r)
        region = "self" if r["distance"] == 0 else "window" if r["distance"] <= r["window"] else "beyond"
        heads.setdefault(key, {}).setdefault(r["head"], dict.fromkeys(REGIONS, 0.0))[region] += r["mass"]
    out = []
    for key, per_head in heads.items():
        r, hs = first[key], list(per_head.values())
        base = {k: r[k] for k in ("family", "lr_factor", "k", "seed", "layer")}
        out += [{**base, "quantity": q, "value": sum(h[q] for h in hs) / len(hs)} for q in REGIONS]
        out.append({**base, "quantity": "beyond_max_head", "value": max(h["beyond"] for h in hs)})
    return out


def summarize(out: Path, table_dir: Path, rows: list[dict]) -> None:
    """Write ``wu_band.csv`` (and, where they were trained and measured, ``wu_band_long.csv``,
    ``wu_band_attention.csv`` and the gap against the attention beyond the window per run,
    ``wu_band_gap_vs_attention.csv``, with its correlation, ``..._r.csv``, the causal checks
    ``wu_band_far.csv`` and ``wu_band_mask.csv``) from the folder's ``rows``; nothing where
    the part was not run."""
    if not (out / PLAN).exists():
        return
    plan = read_rows(out / PLAN)
    held = held_out(rows)
    keys = POINT_KEYS + ("lr_factor", "k", "quantity")
    gaps = band_rows(final_rows(held), plan)
    write_rows(table_dir / "wu_band.csv", aggregate(gaps, keys, bounds=BOUNDS, points=True))
    curves = band_rows(held, plan[:1], family=LONG)
    if curves:
        write_rows(table_dir / "wu_band_long.csv", aggregate(curves, keys + ("step",), points=True,
                                                             bounds=BOUNDS))
    if (out / ATTENTION).exists():
        regions = attention_regions(read_rows(out / ATTENTION))
        keys = ("family", "lr_factor", "k", "layer", "quantity")
        write_rows(table_dir / "wu_band_attention.csv", aggregate(regions, keys, bounds=(0.0, 1.0), points=True))
        points = gap_vs_attention(gaps, regions)
        write_rows(table_dir / "wu_band_gap_vs_attention.csv", points)
        write_rows(table_dir / "wu_band_gap_vs_attention_r.csv", correlations(points))
    far = far_rows(final_rows(held), plan)
    if far:
        write_rows(table_dir / "wu_band_far.csv", aggregate(far, ("lr_factor", "path", "k", "quantity"), bounds=BOUNDS,
                                                            points=True))
    if (out / MASK).exists():
        write_rows(table_dir / "wu_band_mask.csv", mask_table(read_rows(out / MASK)))


def gap_vs_attention(gaps: list[dict], regions: list[dict]) -> list[dict]:
    """Per main-budget run (myopic and bands) and layer: its gap and the head-mean attention
    mass beyond the window."""
    beyond = {(r["lr_factor"], r["k"], r["seed"], r["layer"]): r["value"] for r in regions
              if r["family"] == "wu" and r["quantity"] == "beyond"}
    layers = sorted({key[3] for key in beyond})
    return [dict(lr_factor=g["lr_factor"], k=g["k"], seed=g["seed"], layer=layer, gap=g["value"],
                 beyond=beyond[(g["lr_factor"], g["k"], g["seed"], layer)])
            for g in gaps if g["quantity"] == "gap" for layer in layers
            if (g["lr_factor"], g["k"], g["seed"], layer) in beyond]


def correlations(points: list[dict]) -> list[dict]:
    """Per layer: Pearson's r between the gap and the mass beyond the window over the band runs
    (k >= 1, every rate and seed), with its Fisher-z 95 % interval."""
    out = []
    for layer in sorted({p["layer"] for p in points}):
        sel = [p for p in points if p["layer"] == layer and p["k"] >= 1]
        if len(sel) >= 4:
            r, lo, hi = pearson_ci([p["beyond"] for p in sel], [p["gap"] for p in sel])
            out.append(dict(layer=layer, runs="bands k >= 1", n=len(sel), r=r, lo=lo, hi=hi))
    return out
