"""Summary tables: means with 95% intervals over seeds (seed pairs, scramble keys, decompiler
seeds), each interval kept inside its quantity's range."""

from __future__ import annotations

import math
from pathlib import Path

from studies.compiled_vs_trained.fair import fair_tables
from studies.compiled_vs_trained.fair_twins import twins_table
from studies.compiled_vs_trained.grid import twin_task
from studies.compiled_vs_trained.interchange import interchange_pooled, interchange_summary, with_roles
from studies.compiled_vs_trained.measure import (
    DECOMPILER_ANALYSIS,
    FAIR_ANALYSIS,
    FAIR_TWINS_ANALYSIS,
    INTERCHANGE_ANALYSIS,
    PROGRAM_ANALYSIS,
    heldout_ceiling,
    read_table,
)
from studies.compiled_vs_trained.presets import ANCHORS, MATCH
from toymodels.analysis.stats import METRIC_BOUNDS, aggregate, bounds_by, seed_means
from toymodels.results import write_rows

TABLE_DIGITS = 6   # significant digits in the committed tables

# Ranges of the study's quantities (stats.METRIC_BOUNDS): debiased CKA, an unbiased estimate
# that can dip below 0 for unrelated layers, is only bounded above; Procrustes distance of
# unit-norm activations is at most sqrt 2; every held-out R^2 is at most 1; mlp_minus_affine,
# a difference of two R^2, is unbounded. Accuracies, CKA, weight fractions, decompiler
# scores: [0, 1]; norms and stable ranks: >= 0. Values a float error past a bound (the CKA
# of a net and its scramble is 1 +- 1e-15) are clipped by stats.aggregate.
BOUNDS = {**METRIC_BOUNDS, **{f"{m}_partial": b for m, b in METRIC_BOUNDS.items()}}
VARIABLE_BOUNDS = {q: (-math.inf, 1.0) for q in ("r2_to_sop_birth", "r2_to_sop_final", "r2_to_sop_max",
                                                 "r2_from_sop_final")}
FRACTION = (0.0, 1.0)    # decompiler scores, s_i / s_0
by_metric = bounds_by("metric", BOUNDS)
by_quantity = bounds_by("quantity", VARIABLE_BOUNDS)


def summarize(out: Path, table_dir: Path) -> None:
    def read(analysis, name, bounds):
        return read_table(out, analysis, name)

    def write(name, rows):
        write_rows(table_dir / f"{name}.csv", rows, digits=TABLE_DIGITS if name in ROUNDED else None)

    def table(name, rows, keys):
        write(name, aggregate(rows, keys, bounds=TABLE_BOUNDS[name], points=True))

    acc = with_ceiling(read(PROGRAM_ANALYSIS, "accuracy", by_metric))
    if acc:   # part "main" ran here
        _main_tables(out, acc, read, write, table)
    iia = with_roles(read_table(out, INTERCHANGE_ANALYSIS, "rows"))
    if iia:
        write("interchange", iia)
        write("interchange_summary", interchange_summary(iia))
        write("interchange_pooled", interchange_pooled(iia))
    fair = read_table(out, FAIR_ANALYSIS, "programs")
    if fair:
        for name, rows in fair_tables(fair).items():
            write(name, rows)
        write("decompiler_fair_dataset", read_table(out, FAIR_ANALYSIS, "dataset"))
    fair_twins = read_table(out, FAIR_TWINS_ANALYSIS, "rows")
    if fair_twins:
        write("decompiler_fair_twins", twins_table(fair_twins))
        write("decompiler_fair_twins_programs", read_table(out, FAIR_TWINS_ANALYSIS, "programs"))


def _main_tables(out: Path, acc, read, write, table) -> None:
    """The twins' and the token-split decompilers' tables (part "main")."""
    table("twin_accuracy", acc, ("family", "program", "source", "width", "metric"))
    layers = read(PROGRAM_ANALYSIS, "layers", by_metric)
    table("layers", layers, ("comparison", "family", "program", "partner", "width", "layer_index", "layer_label",
                             "final", "metric"))
    table("positions", read(PROGRAM_ANALYSIS, "positions", by_metric),
          ("comparison", "family", "program", "width", "layer_index", "layer_label", "position", "metric"))
    var = variable_summary(read(PROGRAM_ANALYSIS, "variables", by_metric))
    table("variables", var, ("family", "program", "width", "sop", "sop_kind", "birth_layer", "quantity"))
    # pooled over programs and matrices within a seed: the seed is the unit
    weights = read(PROGRAM_ANALYSIS, "weights", by_metric)
    write("weights", seed_means(weights, ("source", "width", "matrix_kind", "metric"),
                                bounds=TABLE_BOUNDS["weights"], points=True))
    table("spectra", read(PROGRAM_ANALYSIS, "spectra", FRACTION),
          ("program", "source", "width", "matrix", "matrix_kind", "index"))
    by_size = decompiler_by_size(read(DECOMPILER_ANALYSIS, "heldout", FRACTION))
    write("decompiler", by_size)
    twin_table = decompiler_on_twins(read(DECOMPILER_ANALYSIS, "twins", FRACTION),
                                     read_table(out, DECOMPILER_ANALYSIS, "probes"))
    write("decompiler_twins", twin_table)
    write("decompiler_dataset", read_table(out, DECOMPILER_ANALYSIS, "dataset"))
    write("summary", summary_rows(acc, layers, var, by_size, twin_table))


def with_ceiling(acc: list[dict]) -> list[dict]:
    """Accuracy rows plus, per program, its held-out ceiling (source "ceiling") and, per
    trained run, ``reached`` = held-out accuracy >= MATCH x ceiling (0/1): matched as far
    as the training split allows."""
    ceiling = {p: heldout_ceiling(twin_task(p)) for p in sorted({r["program"] for r in acc})}
    out = list(acc)
    for r in acc:
        if r["source"] == "compiled" and r["metric"] == "acc":
            out.append(dict(r, source="ceiling", value=ceiling[r["program"]]))
        if r["source"] == "trained" and r["metric"] == "acc":
            out.append(dict(r, metric="reached", value=float(r["value"] >= MATCH * ceiling[r["program"]])))
    return out


def variable_summary(rows: list[dict]) -> list[dict]:
    """Per (program, width, seed, variable): r2_to_sop at the layer where the compiled net
    first holds the variable (birth) and at the final layer, the best r2_to_sop over
    layers, and r2_from_sop at the final layer."""
    by: dict[tuple, list[dict]] = {}
    for r in rows:
        by.setdefault((r["family"], r["program"], r["width"], r["seed"], r["sop"], r["sop_kind"]), []).append(r)
    out = []
    for (family, program, width, seed, sop, kind), rs in by.items():
        to = sorted((r for r in rs if r["metric"] == "r2_to_sop"), key=lambda r: r["layer_index"])
        frm = [r for r in rs if r["metric"] == "r2_from_sop" and r["final"]]
        base = dict(family=family, program=program, width=width, seed=seed, sop=sop, sop_kind=kind,
                    birth_layer=to[0]["layer_index"])
        vals = dict(r2_to_sop_birth=to[0]["value"], r2_to_sop_max=max(r["value"] for r in to))
        vals.update(("r2_to_sop_final", r["value"]) for r in to if r["final"])
        vals.update(("r2_from_sop_final", r["value"]) for r in frm)
        out += [dict(base, quantity=q, value=v) for q, v in vals.items()]
    return out


def decompiler_by_size(rows: list[dict]) -> list[dict]:
    """Per (train weights, test weights, size, metric): the fraction of held-out programs
    right within each decompiler seed, then mean and interval across seeds; size "all"
    pools sizes. ``programs``: how many programs each row is over."""
    rows = rows + [dict(r, n_lines="all") for r in rows]
    table = seed_means(rows, ("train_weights", "test_weights", "n_lines", "metric"), bounds=FRACTION, points=True)
    counts: dict[tuple, set] = {}
    for r in rows:
        counts.setdefault((r["train_weights"], r["test_weights"], r["n_lines"]), set()).add(r["program"])
    return [dict(r, programs=len(counts[(r["train_weights"], r["test_weights"], r["n_lines"])])) for r in table]


def decompiler_on_twins(rows: list[dict], probes: list[dict]) -> list[dict]:
    """Per (train weights, source, width, metric): the fraction of fountain nets decoded
    right within each decompiler seed, then mean and interval across seeds, over programs
    the decompiler never saw; ``applicable`` of ``nets`` fit its input."""
    table = seed_means([r for r in rows if not r["seen_in_training"]], ("train_weights", "source", "width", "metric"),
                       bounds=FRACTION, points=True)
    for r in table:
        sel = [p for p in probes if (p["source"], p["width"]) == (r["source"], r["width"])
               and not p["seen_in_training"]]
        r.update(applicable=sum(p["applicable"] for p in sel), nets=len(sel))
    return table


def summary_rows(acc, layers, var, by_size, twin_table) -> list[dict]:
    """The headline numbers, each a mean over programs within a seed (seed pair for
    trained_vs_trained, scramble key for compiled_vs_scrambled), with an interval across seeds."""
    rows = []

    def add(section, table, keys):
        for r in table:
            rows.append(dict(section=section, quantity=" ".join(f"{k}={r[k]}" for k in keys),
                             mean=r["mean"], lo=r["lo"], hi=r["hi"], n=r["n"], values=r.get("values", "")))

    twin_acc = [r for r in acc if r["source"] == "trained"]
    keys = ("family", "width", "metric")
    add("twin held-out accuracy", seed_means(twin_acc, keys, bounds=by_metric), keys)
    keys = ("comparison", "width", "metric")
    add("final layer", seed_means([r for r in layers if r["final"]], keys, bounds=by_metric, points=True), keys)
    # against the other-program null, on the programs that have one (the same programs on both sides)
    paired = {r["program"] for r in layers if r["comparison"] == "compiled_vs_other_program"}
    add("final layer, programs with an other-program null",
        seed_means([r for r in layers if r["final"] and r["program"] in paired], keys, bounds=by_metric, points=True),
        keys)
    keys = ("sop_kind", "width", "quantity")
    add("RASP variables", seed_means(var, keys, bounds=by_quantity), keys)
    add("decompiler, held-out programs", [r for r in by_size if r["n_lines"] == "all"],
        ("train_weights", "test_weights", "metric"))
    add("decompiler on fountain nets", twin_table, ("train_weights", "source", "width", "metric"))
    for label, metric, theirs, ref in ANCHORS:
        ours = [r for r in by_size if (r["train_weights"], r["test_weights"], r["n_lines"], r["metric"])
                == ("clean", "clean", "all", metric)]
        if ours:
            rows.append(dict(section="anchor", quantity=f"{label}: {theirs:.0%} ({ref})",
                             mean=ours[0]["mean"], lo=ours[0]["lo"], hi=ours[0]["hi"], n=ours[0]["n"],
                             values=ours[0].get("values", "")))
    return rows


def quantity_fields(row: dict) -> dict:
    """A summary row's ``quantity`` ("comparison=... width=... metric=...") as a dict."""
    return dict(p.split("=", 1) for p in row["quantity"].split())


def summary_bounds(row: dict):
    """The range of a summary row's quantity (its ``metric=`` or ``quantity=`` part; an
    anchor row is the decompiler score it sits next to): for recomputing intervals."""
    if row["section"] == "anchor":
        return next(BOUNDS[m] for label, m, _, _ in ANCHORS if row["quantity"].startswith(f"{label}:"))
    parts = quantity_fields(row)
    return BOUNDS.get(parts["metric"]) if "metric" in parts else VARIABLE_BOUNDS.get(parts.get("quantity"))


# Every summary table's bounds (by row), and the tables written with TABLE_DIGITS digits:
# what ``summarize`` writes, and what recomputes a committed table's intervals (stats.rebound).
TABLE_BOUNDS = {"twin_accuracy": by_metric, "layers": by_metric, "positions": by_metric, "variables": by_quantity,
                "weights": by_metric, "spectra": FRACTION, "decompiler": FRACTION, "decompiler_twins": FRACTION,
                "summary": summary_bounds}
ROUNDED = ("layers", "positions", "variables", "spectra")
