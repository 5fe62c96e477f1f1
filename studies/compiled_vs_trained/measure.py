"""Post-training analyses: per program, the compiled net, its scrambles and its twins
(accuracy, layer and per-position comparisons, RASP variables, weight statistics); and the
decompilers on held-out programs and on the fountain programs' nets."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from studies.compiled_vs_trained.grid import (
    decompile_task,
    programs,
    twin_model,
    twin_task,
)
from studies.compiled_vs_trained.presets import MATCH, MLP_HIDDEN, Preset
from toymodels.analyses import AnalysisCache
from toymodels.analysis import twins
from toymodels.analysis.activations import collect, input_features
from toymodels.analysis.similarity import linear_cka, partial_out, procrustes_distance
from toymodels.decompile import greedy_decode, weight_tokens
from toymodels.decompile.evaluate import score
from toymodels.decompile.tokens import program_tokens
from toymodels.decompile.weights import fits
from toymodels.hooks import forward
from toymodels.model import init_model
from toymodels.results import read_rows
from toymodels.runspec import RunSpec
from toymodels.scramble import scramble
from toymodels.store import load_model, load_models
from toymodels.tasks.base import SPLITS
from toymodels.tasks.rasp_io import resolve_program

PROGRAM_ANALYSIS = "program"          # one entry per program
PROGRAM_TABLES = ("accuracy", "layers", "positions", "variables", "weights", "spectra")
# The nulls every similarity is read against, at the reference width: a twin never trained
# (init seeds offset so that no null shares a twin's initial weights), a trained twin of
# another program that reads the same inputs through the same layers, and the input alone
# (one-hot token + position at every layer).
NULLS = ("compiled_vs_random_init", "compiled_vs_other_program", "compiled_vs_input_only")
NULL_INIT_SEED = 1000
DECOMPILER_ANALYSIS = "decompiler"    # one entry: every decompiler
DECOMPILER_TABLES = ("heldout", "twins", "probes", "dataset")
FAIR_ANALYSIS = "decompiler_fair"     # one entry per decompiler run and per retrieval baseline (fair.py)
INTERCHANGE_ANALYSIS = "interchange"  # one entry per library program (interchange.py)
FAIR_TWINS_ANALYSIS = "decompiler_fair_twins"   # the fair decompilers on fair programs' twins (fair_twins.py)
ANALYSIS_TABLES = {PROGRAM_ANALYSIS: PROGRAM_TABLES, DECOMPILER_ANALYSIS: DECOMPILER_TABLES,
                   FAIR_ANALYSIS: ("programs", "dataset"), INTERCHANGE_ANALYSIS: ("rows",),
                   FAIR_TWINS_ANALYSIS: ("rows", "programs")}
WEIGHT_STATS = ("frobenius", "sparsity", "effective_rank_frac", "stable_rank")


# ----------------------------------------------------------------------------- the cache
def cached_tables(out: Path, analysis: str, key: str, config, compute) -> dict[str, list[dict]]:
    """The tables of one analysis entry (``compute()`` -> {table: rows}), each cached as the
    ``AnalysisCache`` entry ``<key>.<table>``; all are recomputed if any is missing or stale."""
    cache = AnalysisCache(out, analysis)
    names = ANALYSIS_TABLES[analysis]
    got = {t: cache.get(f"{key}.{t}", config) for t in names}
    if any(rows is None for rows in got.values()):
        tables = compute()
        got = {t: cache.put(f"{key}.{t}", config, tables[t]) for t in names}
    return got


def read_table(out: Path, analysis: str, table: str) -> list[dict]:
    """One table's rows over every entry of an analysis, in key order (``summarize`` knows
    no preset, so it reads whichever entries ``run`` completed: those with a record)."""
    folder = AnalysisCache(out, analysis).folder
    keys = sorted(p.name[:-len(f".{table}.json")] for p in folder.glob(f"*.{table}.json"))
    return [r for k in keys for r in read_rows(folder / f"{k}.{table}.csv")]


# ----------------------------------------------------------------------------- one program
def inputs(task, max_inputs: int) -> np.ndarray:
    """BOS + tokens of every table row (train and eval), a seeded subset if more than max_inputs."""
    x = np.concatenate([task.table(s)[0] for s in SPLITS])
    if len(x) > max_inputs:
        x = x[np.sort(np.random.default_rng(0).permutation(len(x))[:max_inputs])]
    return np.concatenate([np.zeros((len(x), 1), np.int32), x], axis=1)


def analyse_program(P: Preset, out: Path, family: str, program: str, twin_runs: dict[float, list[RunSpec]],
                    partner: str | None = None, partner_runs: list[RunSpec] = ()) -> dict[str, list]:
    """Accuracy, layer comparisons, per-position CKA, variable R^2 and weight statistics of
    one program's compiled net, its scrambles and its twins (``twin_runs``: width -> runs by
    seed), and the nulls (``NULLS``; ``partner``: the program whose reference-width twins
    ``partner_runs`` are the other-program null, None for none). At the reference width every
    pooled measure is also computed with token and position identity partialled out of both
    sides (metric ``<name>_partial``). Every comparison uses the same inputs."""
    task = twin_task(program)
    compiled = task.compile()
    x = inputs(task, P.max_inputs)
    L = x.shape[1] - 1
    ref = collect(compiled.model, x, positions="non_bos")
    base = dict(family=family, program=program)
    # per-position, MLP and partialled comparisons at one width only: they cost the most per width
    ref_width = P.ref_width
    Z = input_features(x, compiled.cfg.vocab_size, positions="non_bos")
    tables = {k: [] for k in PROGRAM_TABLES}
    showcase = program == programs(P)[0][1]

    def add_layers(rows, partner="", **tags):
        for r in rows:
            (tables["positions"] if r["position"] != "all" else tables["layers"]).append(
                {**base, "partner": partner, **tags, **r})

    def add_weights(model, **tags):
        w, s = weight_rows(model)
        tables["weights"] += [{**base, **tags, **r} for r in w]
        if showcase:
            tables["spectra"] += [{**base, **tags, **r} for r in s]

    tables["accuracy"] += [{**base, "source": "compiled", "width": 1.0, "seed": 0, "metric": k, "value": v}
                           for k, v in heldout_accuracy(compiled.model, task).items()]
    add_weights(compiled.model, source="compiled", width=1.0, seed=0)
    for s in range(P.seeds):
        scr = scramble(compiled.model, s)
        add_layers(compare_layers(ref, collect(scr, x, positions="non_bos"), L, partial=Z),
                   comparison="compiled_vs_scrambled", width=1.0, seed=s)
        add_weights(scr, source="scrambled", width=1.0, seed=s)
    for width in P.widths:
        models = load_models(out, twin_runs[width])
        acts = [collect(m, x, positions="non_bos") for m in models]
        for s, (m, a) in enumerate(zip(models, acts)):
            tables["accuracy"] += [{**base, "source": "trained", "width": width, "seed": s, "metric": k, "value": v}
                                   for k, v in heldout_accuracy(m, task).items()]
            add_layers(compare_layers(ref, a, L, mlp=width == ref_width, mlp_steps=P.mlp_steps,
                                      positions=width == ref_width, partial=Z if width == ref_width else None),
                       comparison="compiled_vs_trained", width=width, seed=s)
            tables["variables"] += [{**base, "width": width, "seed": s, **r}
                                    for r in variable_rows(a, compiled, ref)]
            add_weights(m, source="trained", width=width, seed=s)
        for k, (i, j) in enumerate(itertools.combinations(range(len(acts)), 2)):
            # the seed column of a pair row is the pair's index: pairs are the units
            add_layers(compare_layers(acts[i], acts[j], L, positions=width == ref_width,
                                      partial=Z if width == ref_width else None),
                       comparison="trained_vs_trained", width=width, seed=k)
    for comparison, seed, acts in null_activations(P, out, program, x, Z, ref, ref_width, partner, partner_runs):
        add_layers(compare_layers(ref, acts, L, positions=False, partial=Z), comparison=comparison,
                   width=ref_width, seed=seed, partner=partner if comparison == "compiled_vs_other_program" else "")
    return tables


def null_activations(P: Preset, out: Path, program: str, x: np.ndarray, Z: np.ndarray, ref: dict,
                     ref_width: float, partner: str | None, partner_runs: list[RunSpec]):
    """(comparison, seed, activations on ``x``) of every null (``NULLS``), laid out as ``ref``."""
    for s in range(P.seeds):
        yield "compiled_vs_random_init", s, collect(init_model(twin_model(program, ref_width), NULL_INIT_SEED + s),
                                                    x, positions="non_bos")
    if partner is not None:
        for s, m in enumerate(load_models(out, partner_runs)):
            yield "compiled_vs_other_program", s, collect(m, x, positions="non_bos")
    yield "compiled_vs_input_only", 0, {name: Z for name in ref}


def heldout_accuracy(model, task, max_train: int = 2048) -> dict[str, float]:
    """Token accuracy and whole-sequence exact match on the held-out table rows, token
    accuracy on (at most max_train) training rows, and matched = held-out accuracy >= MATCH.
    Numerical programs are read by rounding the output to the nearest value the program
    takes on its table, so 'correct' means what it means for a categorical argmax."""
    ev, tr = task.full_batch("eval"), task.full_batch("train")
    n_eval = ev.inputs.shape[0]
    # one forward over both splits: one compile per architecture
    x = np.concatenate([np.asarray(ev.inputs), np.asarray(tr.inputs)[:max_train]])
    y = np.concatenate([np.asarray(ev.targets), np.asarray(tr.targets)[:max_train]])[:, 1:]
    pred = np.asarray(forward(model, x)[0])[:, 1:]
    if task.numerical:
        values = np.unique(np.concatenate([task.table(s)[1].ravel() for s in SPLITS]))
        ok = values[np.abs(pred[..., 0:1] - values).argmin(-1)] == y[..., 0]
    else:
        ok = pred.argmax(-1) == y
    acc = float(ok[:n_eval].mean())
    return dict(acc=acc, exact=float(ok[:n_eval].all(1).mean()), matched=float(acc >= MATCH),
                train_acc=float(ok[n_eval:].mean()))


def heldout_ceiling(task) -> float:
    """Share of held-out (row, position) targets whose class occurs among the training
    targets: what a twin can be expected to get right from its training split. A class no
    training row has is never predicted (``count``'s all-equal row, count 5, is held out,
    so its ceiling is 59/60). Numerical programs can extrapolate: 1."""
    if task.numerical:
        return 1.0
    seen = np.unique(task.table("train")[1])
    return float(np.isin(task.table("eval")[1], seen).mean())


def layer_label(name: str, has_mlp: bool) -> str:
    """blocks.0.resid_pre -> embed, blocks.1.resid_mid -> 1.attn, blocks.1.resid_post -> 1.mlp."""
    parts = name.split(".")
    if parts[-1] == "resid_pre":
        return "embed"
    return f"{parts[1]}.{'attn' if parts[-1] == 'resid_mid' or not has_mlp else 'mlp'}"


def compare_layers(ref: dict, other: dict, n_positions: int, *, mlp: bool = False, mlp_steps: int = 1000,
                   positions: bool = True, partial: np.ndarray | None = None) -> list[dict]:
    """``other``'s residual layers against ``ref``'s (activation dicts from ``collect`` with
    positions="non_bos"): rows of layer, layer_index, layer_label, final (1 at the last
    layer), position ("all" = pooled; 1..n_positions) and metric, value.

    Pooled metrics: cka, debiased_cka, procrustes, affine_r2_to_ref (other -> ref),
    affine_r2_from_ref, and with ``mlp`` mlp_r2_to_ref and mlp_minus_affine (MLP minus
    affine R^2, other -> ref). Per position (with ``positions``): cka, procrustes. With
    ``partial`` (rows x features, e.g. ``input_features``), the pooled metrics other than the
    MLP's again, as ``<metric>_partial``, on both sides with ``partial`` partialled out.
    Undefined values (a side constant) are dropped.
    """
    names = list(ref)
    has_mlp = any(n.endswith("resid_mid") for n in names)
    rows = []

    def row(i, position, metric, value):
        return dict(layer=names[i], layer_index=i, layer_label=layer_label(names[i], has_mlp),
                    final=int(i == len(names) - 1), position=position, metric=metric, value=float(value))

    pooled = twins.compare(other, ref, mlp=mlp, hidden=MLP_HIDDEN, steps=mlp_steps, lr=3e-3, mlp_max_rows=4096)
    for i, r in enumerate(pooled):
        vals = dict(cka=r["cka"], debiased_cka=r["debiased_cka"], procrustes=r["procrustes"],
                    affine_r2_to_ref=r["affine_r2_a_to_b"], affine_r2_from_ref=r["affine_r2_b_to_a"])
        if mlp:
            vals.update(mlp_r2_to_ref=r["mlp_r2_a_to_b"], mlp_minus_affine=r["mlp_r2_a_to_b"] - r["affine_r2_a_to_b"])
        rows += [row(i, "all", k, v) for k, v in vals.items()]
    if partial is not None:
        resid_ref = {n: partial_out(ref[n], partial) for n in names}
        resid_other = {n: partial_out(other[n], partial) for n in names}
        # a side the input explains entirely (the compiled embedding) leaves nothing to compare
        keep = [n for n in names if resid_ref[n].any() and resid_other[n].any()]
        resid = twins.compare({n: resid_other[n] for n in keep}, {n: resid_ref[n] for n in keep}) if keep else []
        for n, r in zip(keep, resid):
            vals = dict(cka=r["cka"], debiased_cka=r["debiased_cka"], procrustes=r["procrustes"],
                        affine_r2_to_ref=r["affine_r2_a_to_b"], affine_r2_from_ref=r["affine_r2_b_to_a"])
            rows += [row(names.index(n), "all", f"{k}_partial", v) for k, v in vals.items()]
    if positions:
        for i, name in enumerate(names):
            for p in range(n_positions):
                # rows are (input, position) batch-major: position p + 1 is every n_positions-th row
                X, Y = other[name][p::n_positions], ref[name][p::n_positions]
                rows.append(row(i, p + 1, "cka", linear_cka(X, Y)))
                try:
                    rows.append(row(i, p + 1, "procrustes", procrustes_distance(X, Y)))
                except ValueError:   # a side constant at this position: undefined
                    pass
    return [r for r in rows if np.isfinite(r["value"])]


def variable_rows(trained_acts: dict, compiled, compiled_acts: dict) -> list[dict]:
    """Affine R^2 between each twin layer and each RASP variable's compiled code, where the
    code varies: r2_to_sop (twin layer -> code) and r2_from_sop (code -> twin layer)."""
    names = list(compiled_acts)
    rows = []
    for r in twins.variable_r2(trained_acts, compiled, compiled_acts):
        if r["varies"]:
            i = names.index(r["layer"])
            rows += [dict(layer=r["layer"], layer_index=i, final=int(i == len(names) - 1), sop=r["sop"],
                          sop_kind=r["kind"], metric=k, value=r[k]) for k in ("r2_to_sop", "r2_from_sop")]
    return rows


def matrix_kind(name: str) -> str:
    """blocks.1.attn.head0.QK -> attn.QK, blocks.0.mlp.W_in -> mlp.W_in, W_E -> W_E."""
    parts = [p for p in name.split(".") if not p.isdigit() and not p.startswith("head") and p != "blocks"]
    return ".".join(parts)


def weight_rows(model) -> tuple[list[dict], list[dict]]:
    """(one row per matrix and statistic, one row per matrix and singular value s_i / s_0)."""
    stats, spectra = [], []
    for r in twins.weight_summary(model):
        kind = matrix_kind(r["name"])
        vals = dict(frobenius=r["frobenius"], sparsity=r["sparsity"], stable_rank=r["stable_rank"],
                    effective_rank_frac=r["effective_rank"] / min(r["shape"]))
        stats += [dict(matrix=r["name"], matrix_kind=kind, metric=k, value=v) for k, v in vals.items()]
        s = r["singular_values"]
        spectra += [dict(matrix=r["name"], matrix_kind=kind, index=i, value=float(v / s[0]) if s[0] > 0 else 0.0)
                    for i, v in enumerate(s)]
    return stats, spectra


# ----------------------------------------------------------------------------- the decompilers
def n_lines(tokens) -> int:
    """Program size: SOp lines (every line ends with its encoding token)."""
    return sum(t in ("cat", "num") for t in tokens)


def analyse_decompiler(P: Preset, out: Path, dec_runs: list[RunSpec],
                       twin_runs: dict[tuple[str, float], list[RunSpec]]) -> dict[str, list]:
    """Every decompiler (``dec_runs``) on the held-out programs (clean and scrambled weights)
    and on the fountain programs' compiled nets, scrambles and twins (``twin_runs``:
    (program, width) -> runs by seed)."""
    tasks = {w: decompile_task(P, w == "scrambled") for w in ("clean", "scrambled")}
    layout, W, S = tasks["clean"].layout, P.dec_weight_tokens, P.dec_program_tokens + 1
    seen = {tuple(e["tokens"]) for e in tasks["clean"].programs("train")}
    # The fountain twins' weight tokens, padded to the decompiler's input length.
    probes, x_rows = [], []
    for family, program in programs(P):
        if family != "fountain":
            continue
        compiled = twin_task(program).compile()
        toks = tuple(program_tokens(resolve_program(program)[0]))
        nets = [("compiled", 1.0, 0, compiled.model), ("scrambled", 1.0, 0, scramble(compiled.model, 0))]
        for width in P.widths:
            nets += [("trained", width, s, m) for s, m in enumerate(load_models(out, twin_runs[(program, width)]))]
        for source, width, seed, net in nets:
            x = weight_tokens(net, layout) if fits(net.cfg, layout) else None
            ok = x is not None and len(x) <= W
            probes.append(dict(program=program, n_lines=n_lines(toks), source=source, width=width,
                               twin_seed=seed, seen_in_training=int(toks in seen), applicable=int(ok)))
            x_rows.append(np.pad(x, ((0, W - len(x)), (0, 0))) if ok else None)
    heldout, twin_rows = [], []
    for spec in dec_runs:
        tags = dict(spec.tags)
        model = load_model(out, spec)
        for test, task in tasks.items():
            entries = task.programs("eval")
            decoded = greedy_decode(model, task.weights("eval"), layout, max_len=S)
            for e, d in zip(entries, decoded):
                heldout += [dict(train_weights=tags["weights"], test_weights=test, seed=tags["seed"], program=e["id"],
                                 n_lines=n_lines(e["tokens"]), n_ops=e["n_ops"], metric=k, value=v)
                            for k, v in score(d, e["tokens"]).items()]
        idx = [i for i, x in enumerate(x_rows) if x is not None]
        decoded = greedy_decode(model, np.stack([x_rows[i] for i in idx]), layout, max_len=S) if idx else []
        by_row = dict(zip(idx, decoded))
        for i, p in enumerate(probes):
            if i not in by_row:
                continue
            true = program_tokens(resolve_program(p["program"])[0])
            twin_rows += [dict(p, train_weights=tags["weights"], seed=tags["seed"], metric=k, value=v)
                          for k, v in score(by_row[i], true).items()]
    return {"heldout": heldout, "twins": twin_rows, "probes": probes, "dataset": dataset_rows(tasks["clean"])}


def dataset_rows(task) -> list[dict]:
    """What the decompiler was trained and tested on: programs kept per split, their mean
    size, and how many of the programs tried were skipped and why."""
    rows = [dict(quantity=f"{s} programs", value=len(task.programs(s))) for s in SPLITS]
    for s in SPLITS:
        entries = task.programs(s)
        rows += [dict(quantity=f"{s} mean SOp lines", value=float(np.mean([n_lines(e["tokens"]) for e in entries]))),
                 dict(quantity=f"{s} mean n_ops", value=float(np.mean([e["n_ops"] for e in entries]))),
                 dict(quantity=f"{s} mean weight tokens", value=float(np.mean([e["n_weights"] for e in entries])))]
    rows += [dict(quantity=k, value=v) for k, v in task.stats().items() if k not in SPLITS]
    return rows
