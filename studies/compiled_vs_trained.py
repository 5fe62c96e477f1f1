"""Compiled vs trained: do transformers trained on a RASP program's behaviour represent it
the way the compiled network does, and can a decompiler read programs out of weights?

Twins. For every library program and a set of fountain programs, transformers with the
compiled net's depth, heads and (0.5x, 1x, 2x) residual / head / MLP widths are trained
on the program's input/output table (task ``rasp_io``, BOS + 5 tokens), several seeds
each, for a fixed step budget. Held-out accuracy is reported for every run, matched or
not. Twins keep the compiled architecture: bidirectional, ReLU, no biases and no layer
norm, so a twin's residual stream is the same kind of object as the compiled one (a
pre-LN twin would be a different architecture whose stream is rescaled before every
read). Without LN the default init (std 0.02) leaves the stream near zero and counting
programs (hist, sort_freq) stall; an init std of 1/sqrt(d_model) trains them.

Comparisons, at every residual layer (after the embedding, after each attention and
MLP sub-layer), pooled over non-BOS positions and per position:
  compiled_vs_trained    each twin against the compiled net
  trained_vs_trained     twins of one program and width across seeds: the reference level
  compiled_vs_scrambled  the compiled net against function-preserving scrambles of
                         itself: the sanity check (CKA 1, Procrustes distance 0)
with linear and debiased CKA, orthogonal Procrustes distance, held-out affine (ridge)
R^2 both ways and a small MLP's R^2 (twin -> compiled; the nonlinear-minus-affine gap),
per RASP variable the affine R^2 between a twin layer and the variable's compiled code,
and weight statistics (norms, sparsity, ranks, singular values) of all three kinds of net.

Decompiler. A causal transformer reads a compiled fountain program's weight tokens and
writes its program (task ``decompile``); one trained on clean weights and one on
scrambled weights, several seeds each. Scored by exact match and functional
equivalence on held-out programs, by program size, on clean and scrambled weights, and
applied to the fountain twins (whose programs it never saw in training).

Sections: presets, the grid, the run, the metrics, the summary tables, the figures.
"""

from __future__ import annotations

import functools
import itertools
import math
import sys
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from studies.common import study_main
from toymodels import plotting
from toymodels.analysis import twins
from toymodels.analysis.stats import aggregate
from toymodels.config import ConfigError
from toymodels.decompile import (
    exact_match,
    functionally_equivalent,
    greedy_decode,
    weight_tokens,
)
from toymodels.decompile.tokens import program_tokens
from toymodels.decompile.weights import fits
from toymodels.model import TransformerConfig
from toymodels.results import read_rows, write_rows
from toymodels.scramble import scramble
from toymodels.sweep import RunSpec, final_params, load_model, run_sweep
from toymodels.tasks import make_task
from toymodels.tasks.base import SPLITS
from toymodels.tasks.rasp_io import LIBRARY, MAX_ENUMERATED, N_SAMPLED, resolve_program
from toymodels.train import TrainConfig, abstract_model

NAME = "compiled_vs_trained"

# ----------------------------------------------------------------------------- presets
PRESETS = {
    # Every figure at low resolution in about 3 CPU minutes.
    "smoke": dict(library=("reverse", "frac_prevs"), n_fountain=2, widths=(1.0,), seeds=2, steps=600,
                  max_inputs=256, mlp_steps=300,
                  dec_programs=120, dec_extra_train=0, dec_eval=16, dec_weight_tokens=64, dec_program_tokens=48,
                  dec_d_model=32, dec_layers=1, dec_steps=150, dec_seeds=2),
    # CPU-sized: every library program (all compile at length 5), 30 fountain programs, and
    # the decompiler on the decompile task's default dataset (2000 fountain programs tried).
    # Its weight-token cap is 64, not the task's 128: the sequence is 113 positions instead
    # of 193, 3.5x cheaper a step on CPU, at the cost of the ~10% largest programs.
    "paper": dict(library=tuple(LIBRARY), n_fountain=30, widths=(0.5, 1.0, 2.0), seeds=3, steps=2000,
                  max_inputs=512, mlp_steps=1000,
                  dec_programs=2000, dec_extra_train=8000, dec_eval=200, dec_weight_tokens=64,
                  dec_program_tokens=48, dec_d_model=64, dec_layers=2, dec_steps=4000, dec_seeds=3),
}
LENGTH = 5              # input tokens after BOS (shuffle_dyck2 is built for 4)
EVAL_FRAC = 0.25        # of a program's input table held out, at most MAX_EVAL rows
MAX_EVAL = 512
TWIN_LR = 1e-2          # one budget for every program: measured to fit reverse, sort,
TWIN_BATCH = 64         # is_palindrome, count_less_freq in 2000 steps on all 3 seeds
MATCH = 0.99            # held-out token accuracy at which a twin "matches" its program
MLP_HIDDEN = 64
ANCHORS = (  # decompilers of Tracr-compiled nets in the literature (their own program sets)
    ("TraDe exact match", "exact", 0.30, "Thurnherr & Riesen 2024 (arXiv 2410.00061)"),
    ("TraDe functionally equivalent", "equivalent", 0.73, "Thurnherr & Riesen 2024 (arXiv 2410.00061)"),
    ("meta-model fully correct", "exact", 0.60,
     "Langosco et al. 2024, 'Towards Meta-Models for Automated Interpretability' (1-9 op programs)"),
)


# ----------------------------------------------------------------------------- the grid
def slug(program: str) -> str:
    return program.replace(":", "_").replace("@", "_at")


def twin_task(program: str):
    """The ``rasp_io`` task of a twin: BOS + LENGTH tokens, a quarter of the table held out."""
    _, vocab, max_len = resolve_program(program)
    length = min(LENGTH, max_len)
    n = len(set(vocab)) ** length
    rows = n if n <= MAX_ENUMERATED else N_SAMPLED
    return make_task("rasp_io", program=program, length=length, n_eval=min(MAX_EVAL, int(rows * EVAL_FRAC)))


def _fountain_ok(name: str) -> bool:
    """Compiles to at least one layer, and its output depends on the input (a constant
    program gives twins nothing to learn and the comparisons nothing to compare)."""
    try:
        task = twin_task(name)
        compiled = task.compile()
    except ConfigError:
        return False
    y = np.concatenate([task.table(s)[1] for s in SPLITS])
    return compiled.n_layers >= 1 and len(np.unique(y, axis=0)) > 1


@functools.lru_cache(maxsize=8)
def _usable_heldout(task, n: int) -> tuple[str, ...]:
    out = []
    for e in task.programs("eval"):
        name = f"fountain:{e['seed']}:{e['n_ops']}"
        if len(out) < n and _fountain_ok(name):
            out.append(name)
    if len(out) < n:
        raise ConfigError(f"n_fountain={n}: only {len(out)} of the decompiler's {len(task.programs('eval'))} "
                          "held-out programs are usable twins; raise dec_eval")
    return tuple(out)


def fountain_programs(preset: str) -> tuple[str, ...]:
    """The first n_fountain usable programs of the decompiler's held-out split: programs of
    the decompiler's own distribution that it never saw (the split is by distinct token
    sequence), so it can be applied to their compiled nets and to their twins alike."""
    return _usable_heldout(decompile_task(preset, scrambled=False, extra=False), PRESETS[preset]["n_fountain"])


def programs(preset: str) -> list[tuple[str, str]]:
    """(family, program name) pairs; the first library program is the spectra showcase."""
    P = PRESETS[preset]
    return ([("library", p) for p in P["library"]]
            + [("fountain", p) for p in fountain_programs(preset)])


def twin_model(program: str, width: float) -> TransformerConfig:
    compiled = twin_task(program).compile()
    d = max(1, round(compiled.d_model * width))
    # Without LN the default init (0.02) keeps the stream near zero and counting programs
    # stall (docs/compiled_vs_trained.md); unit-variance pre-activations train them.
    return twins.twin_config(compiled, width, init_std=round(1 / math.sqrt(d), 4))


def _twin_id(program: str, width: float, seed: int) -> str:
    return f"twin-{slug(program)}-w{width:g}-s{seed}"


def decompile_task(preset: str, scrambled: bool, extra: bool = True):
    """The decompiler's task; ``extra=False`` leaves out the extra training programs (same
    held-out split, which is all ``fountain_programs`` reads: much cheaper to build)."""
    P = PRESETS[preset]
    return make_task("decompile", n_programs=P["dec_programs"], n_eval=P["dec_eval"], scrambled=scrambled,
                     max_weight_tokens=P["dec_weight_tokens"], max_program_tokens=P["dec_program_tokens"],
                     extra_train=P["dec_extra_train"] if extra else 0)


def specs(preset: str) -> list[RunSpec]:
    P = PRESETS[preset]
    out = []
    steps = P["steps"]
    for family, program in programs(preset):
        task = twin_task(program)
        compiled = task.compile()
        for width in P["widths"]:
            model = twin_model(program, width)
            for seed in range(P["seeds"]):
                train = TrainConfig(steps=steps, batch_size=TWIN_BATCH, lr=TWIN_LR, weight_decay=0.0,
                                    warmup_steps=steps // 10, lr_schedule="cosine", grad_clip=1.0, seed=seed,
                                    n_evals=6, eval_batch=64)
                tags = dict(kind="twin", family=family, program=program, width=width, seed=seed,
                            n_layers=compiled.n_layers, d_compiled=compiled.d_model, d_model=model.d_model)
                out.append(RunSpec(_twin_id(program, width, seed), model, train, (("twin", task),),
                                   tags=tuple(tags.items())))
    steps = P["dec_steps"]
    for weights in ("clean", "scrambled"):
        task = decompile_task(preset, weights == "scrambled")
        # causal: it writes the program token by token after reading the weights
        model = TransformerConfig(n_layers=P["dec_layers"], d_model=P["dec_d_model"], n_heads=4,
                                  vocab_size=task.vocab.size, max_seq_len=task.seq_len, input_kind="vectors",
                                  d_input=task.d_input)
        for seed in range(P["dec_seeds"]):
            train = TrainConfig(steps=steps, batch_size=32, lr=3e-3, weight_decay=0.01, warmup_steps=steps // 20,
                                lr_schedule="cosine", grad_clip=1.0, seed=seed, n_evals=4, eval_batch=64)
            tags = dict(kind="decompiler", weights=weights, seed=seed)
            out.append(RunSpec(f"decompiler-{weights}-s{seed}", model, train, (("decompile", task),),
                               tags=tuple(tags.items())))
    return out


# ----------------------------------------------------------------------------- the run
def run(preset: str, out: Path, progress: bool = True) -> None:
    all_specs = specs(preset)
    run_sweep(all_specs, out, progress=progress)
    twin_specs: dict[tuple[str, float], list[RunSpec]] = {}   # (program, width) -> runs by seed
    for s in all_specs:
        t = dict(s.tags)
        if t["kind"] == "twin":
            twin_specs.setdefault((t["program"], t["width"]), []).append(s)
    for family, program in programs(preset):
        done = out / "analysis" / slug(program) / "done"
        if done.exists():
            continue
        tables = analyse_program(preset, out, family, program, twin_specs)
        for name, rows in tables.items():
            write_rows(done.parent / f"{name}.csv", rows)
        done.write_text("")
    if not (out / "analysis" / "decompiler" / "done").exists():
        tables = analyse_decompiler(preset, out, [s for s in all_specs if dict(s.tags)["kind"] == "decompiler"],
                                    twin_specs)
        for name, rows in tables.items():
            write_rows(out / "analysis" / "decompiler" / f"{name}.csv", rows)
        (out / "analysis" / "decompiler" / "done").write_text("")


def _models(out: Path, specs_: list[RunSpec]) -> list:
    params = jax.tree.map(np.asarray, final_params(out, specs_))   # numpy: slicing compiles nothing
    graphdef = abstract_model(specs_[0].model)[0]
    return [nnx.merge(graphdef, jax.tree.map(lambda x, i=i: x[i], params)) for i in range(len(specs_))]


def _inputs(task, max_inputs: int) -> np.ndarray:
    """BOS + tokens of every table row (train and eval), a seeded subset if more than max_inputs."""
    x = np.concatenate([task.table(s)[0] for s in SPLITS])
    if len(x) > max_inputs:
        x = x[np.sort(np.random.default_rng(0).permutation(len(x))[:max_inputs])]
    return np.concatenate([np.zeros((len(x), 1), np.int32), x], axis=1)


def analyse_program(preset: str, out: Path, family: str, program: str, twin_specs: dict) -> dict[str, list]:
    """Accuracy, layer comparisons, per-position CKA, variable R^2 and weight statistics of
    one program's compiled net, its scrambles and its twins."""
    P = PRESETS[preset]
    task = twin_task(program)
    compiled = task.compile()
    inputs = _inputs(task, P["max_inputs"])
    L = inputs.shape[1] - 1
    ref = twins.collect(compiled.model, inputs, positions="non_bos")
    base = dict(family=family, program=program)
    # per-position and MLP comparisons at one width only: they cost the most per width
    ref_width = 1.0 if 1.0 in P["widths"] else P["widths"][0]
    tables = {k: [] for k in ("accuracy", "layers", "positions", "variables", "weights", "spectra")}
    showcase = program == programs(preset)[0][1]

    def add_layers(rows, **tags):
        for r in rows:
            (tables["positions"] if r["position"] != "all" else tables["layers"]).append({**base, **tags, **r})

    def add_weights(model, **tags):
        w, s = weight_rows(model)
        tables["weights"] += [{**base, **tags, **r} for r in w]
        if showcase:
            tables["spectra"] += [{**base, **tags, **r} for r in s]

    tables["accuracy"] += [{**base, "source": "compiled", "width": 1.0, "seed": 0, "metric": k, "value": v}
                           for k, v in heldout_accuracy(compiled.model, task).items()]
    add_weights(compiled.model, source="compiled", width=1.0, seed=0)
    for s in range(P["seeds"]):
        scr = scramble(compiled.model, s)
        add_layers(compare_layers(ref, twins.collect(scr, inputs, positions="non_bos"), L),
                   comparison="compiled_vs_scrambled", width=1.0, seed=s)
        add_weights(scr, source="scrambled", width=1.0, seed=s)
    for width in P["widths"]:
        models = _models(out, twin_specs[(program, width)])
        acts = [twins.collect(m, inputs, positions="non_bos") for m in models]
        for s, (m, a) in enumerate(zip(models, acts)):
            tables["accuracy"] += [{**base, "source": "trained", "width": width, "seed": s, "metric": k, "value": v}
                                   for k, v in heldout_accuracy(m, task).items()]
            add_layers(compare_layers(ref, a, L, mlp=width == ref_width, mlp_steps=P["mlp_steps"],
                                      positions=width == ref_width),
                       comparison="compiled_vs_trained", width=width, seed=s)
            tables["variables"] += [{**base, "width": width, "seed": s, **r}
                                    for r in variable_rows(a, compiled, ref)]
            add_weights(m, source="trained", width=width, seed=s)
        for k, (i, j) in enumerate(itertools.combinations(range(len(acts)), 2)):
            # the seed column of a pair row is the pair's index: pairs are the units
            add_layers(compare_layers(acts[i], acts[j], L, positions=width == ref_width),
                       comparison="trained_vs_trained", width=width, seed=k)
    return tables


def analyse_decompiler(preset: str, out: Path, dec_specs: list[RunSpec], twin_specs: dict) -> dict[str, list]:
    """Every decompiler on the held-out programs (clean and scrambled weights) and on the
    fountain programs' compiled nets, scrambles and twins."""
    P = PRESETS[preset]
    tasks = {w: decompile_task(preset, w == "scrambled") for w in ("clean", "scrambled")}
    layout, W, S = tasks["clean"].layout, P["dec_weight_tokens"], P["dec_program_tokens"] + 1
    seen = {tuple(e["tokens"]) for e in tasks["clean"].programs("train")}
    # The fountain twins' weight tokens, padded to the decompiler's input length.
    probes, x_rows = [], []
    for family, program in programs(preset):
        if family != "fountain":
            continue
        compiled = twin_task(program).compile()
        toks = tuple(program_tokens(resolve_program(program)[0]))
        nets = [("compiled", 1.0, 0, compiled.model), ("scrambled", 1.0, 0, scramble(compiled.model, 0))]
        for width in P["widths"]:
            nets += [("trained", width, s, m) for s, m in enumerate(_models(out, twin_specs[(program, width)]))]
        for source, width, seed, net in nets:
            x = weight_tokens(net, layout) if fits(net.cfg, layout) else None
            ok = x is not None and len(x) <= W
            probes.append(dict(program=program, n_lines=_n_lines(toks), source=source, width=width,
                               twin_seed=seed, seen_in_training=int(toks in seen), applicable=int(ok)))
            x_rows.append(np.pad(x, ((0, W - len(x)), (0, 0))) if ok else None)
    heldout, twin_rows = [], []
    for spec in dec_specs:
        tags = dict(spec.tags)
        model = load_model(out, spec)
        for test, task in tasks.items():
            entries = task.programs("eval")
            decoded = greedy_decode(model, task.weights("eval"), layout, max_len=S)
            for e, d in zip(entries, decoded):
                heldout += [dict(train_weights=tags["weights"], test_weights=test, seed=tags["seed"], program=e["id"],
                                 n_lines=_n_lines(e["tokens"]), n_ops=e["n_ops"], metric=k, value=v)
                            for k, v in score_decoding(d, e["tokens"]).items()]
        idx = [i for i, x in enumerate(x_rows) if x is not None]
        decoded = greedy_decode(model, np.stack([x_rows[i] for i in idx]), layout, max_len=S) if idx else []
        by_row = dict(zip(idx, decoded))
        for i, p in enumerate(probes):
            if i not in by_row:
                continue
            true = program_tokens(resolve_program(p["program"])[0])
            twin_rows += [dict(p, train_weights=tags["weights"], seed=tags["seed"], metric=k, value=v)
                          for k, v in score_decoding(by_row[i], true).items()]
    return {"heldout": heldout, "twins": twin_rows, "probes": probes,
            "dataset": dataset_rows(tasks["clean"])}


def dataset_rows(task) -> list[dict]:
    """What the decompiler was trained and tested on: programs kept per split, their mean
    size, and how many of the programs tried were skipped and why."""
    rows = [dict(quantity=f"{s} programs", value=len(task.programs(s))) for s in SPLITS]
    for s in SPLITS:
        entries = task.programs(s)
        rows += [dict(quantity=f"{s} mean SOp lines", value=float(np.mean([_n_lines(e["tokens"]) for e in entries]))),
                 dict(quantity=f"{s} mean n_ops", value=float(np.mean([e["n_ops"] for e in entries]))),
                 dict(quantity=f"{s} mean weight tokens", value=float(np.mean([e["n_weights"] for e in entries])))]
    rows += [dict(quantity=k, value=v) for k, v in task.stats().items() if k not in SPLITS]
    return rows


# ----------------------------------------------------------------------------- the metrics
_FORWARD: dict = {}


def _outputs(model, x) -> np.ndarray:
    """The model's outputs, jitted once per architecture (eager calls compile every op)."""
    graphdef, state = nnx.split(model)
    if model.cfg not in _FORWARD:
        _FORWARD[model.cfg] = jax.jit(lambda s, x_: nnx.merge(graphdef, s)(x_))
    return np.asarray(_FORWARD[model.cfg](state, x))


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
    pred = _outputs(model, x)[:, 1:]
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


def _layer_label(name: str, has_mlp: bool) -> str:
    parts = name.split(".")
    if parts[-1] == "resid_pre":
        return "embed"
    return f"{parts[1]}.{'attn' if parts[-1] == 'resid_mid' or not has_mlp else 'mlp'}"


def compare_layers(ref: dict, other: dict, n_positions: int, *, mlp: bool = False, mlp_steps: int = 1000,
                   positions: bool = True) -> list[dict]:
    """``other``'s residual layers against ``ref``'s (activation dicts from ``twins.collect``
    with positions="non_bos"): rows of layer, layer_index, layer_label, final (1 at the last
    layer), position ("all" = pooled; 1..n_positions) and metric, value.

    Pooled metrics: cka, debiased_cka, procrustes, affine_r2_to_ref (other -> ref),
    affine_r2_from_ref, and with ``mlp`` mlp_r2_to_ref and mlp_minus_affine (MLP minus
    affine R^2, other -> ref). Per position (with ``positions``): cka, procrustes.
    """
    names = list(ref)
    has_mlp = any(n.endswith("resid_mid") for n in names)
    rows = []

    def row(i, position, metric, value):
        return dict(layer=names[i], layer_index=i, layer_label=_layer_label(names[i], has_mlp),
                    final=int(i == len(names) - 1), position=position, metric=metric, value=float(value))

    pooled = twins.compare(other, ref, mlp=mlp, hidden=MLP_HIDDEN, steps=mlp_steps, lr=3e-3, mlp_max_rows=4096)
    for i, r in enumerate(pooled):
        vals = dict(cka=r["cka"], debiased_cka=r["debiased_cka"], procrustes=r["procrustes"],
                    affine_r2_to_ref=r["affine_r2_a_to_b"], affine_r2_from_ref=r["affine_r2_b_to_a"])
        if mlp:
            vals.update(mlp_r2_to_ref=r["mlp_r2_a_to_b"], mlp_minus_affine=r["mlp_r2_a_to_b"] - r["affine_r2_a_to_b"])
        rows += [row(i, "all", k, v) for k, v in vals.items()]
    if positions:
        from toymodels.analysis.similarity import linear_cka
        for i, name in enumerate(names):
            for p in range(n_positions):
                # rows are (input, position) batch-major: position p + 1 is every n_positions-th row
                X, Y = other[name][p::n_positions], ref[name][p::n_positions]
                rows.append(row(i, p + 1, "cka", linear_cka(X, Y)))
                rows.append(row(i, p + 1, "procrustes", _procrustes(X, Y)))
    return [r for r in rows if np.isfinite(r["value"])]


def _procrustes(X, Y) -> float:
    from toymodels.analysis.similarity import procrustes_distance
    try:
        return procrustes_distance(X, Y)
    except ValueError:   # a side constant at this position: undefined, dropped
        return float("nan")


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


WEIGHT_STATS = ("frobenius", "sparsity", "effective_rank_frac", "stable_rank")


def _matrix_kind(name: str) -> str:
    """blocks.1.attn.head0.QK -> attn.QK, blocks.0.mlp.W_in -> mlp.W_in, W_E -> W_E."""
    parts = [p for p in name.split(".") if not p.isdigit() and not p.startswith("head") and p != "blocks"]
    return ".".join(parts)


def weight_rows(model) -> tuple[list[dict], list[dict]]:
    """(one row per matrix and statistic, one row per matrix and singular value s_i / s_0)."""
    stats, spectra = [], []
    for r in twins.weight_summary(model):
        kind = _matrix_kind(r["name"])
        vals = dict(frobenius=r["frobenius"], sparsity=r["sparsity"], stable_rank=r["stable_rank"],
                    effective_rank_frac=r["effective_rank"] / min(r["shape"]))
        stats += [dict(matrix=r["name"], matrix_kind=kind, metric=k, value=v) for k, v in vals.items()]
        s = r["singular_values"]
        spectra += [dict(matrix=r["name"], matrix_kind=kind, index=i, value=float(v / s[0]) if s[0] > 0 else 0.0)
                    for i, v in enumerate(s)]
    return stats, spectra


def _n_lines(tokens) -> int:
    """Program size: SOp lines (every line ends with its encoding token)."""
    return sum(t in ("cat", "num") for t in tokens)


@functools.lru_cache(maxsize=100_000)
def _equivalent(pred: tuple, true: tuple) -> bool:
    # cached: seeds and test weights often decode to the same tokens, and each check
    # runs both programs on all 363 inputs
    return functionally_equivalent(list(pred), list(true))


def score_decoding(decoded, true_tokens) -> dict[str, float]:
    """exact (token sequence equal), equivalent (same outputs on every input of length 1..5;
    implied by exact) and parsable, each 0 or 1."""
    from toymodels.decompile.evaluate import _parses
    exact = exact_match(decoded, true_tokens)
    parsable = _parses(decoded)
    equivalent = exact or (parsable and _equivalent(tuple(decoded), tuple(true_tokens)))
    return dict(exact=float(exact), equivalent=float(equivalent), parsable=float(parsable))


# ----------------------------------------------------------------------------- summary tables
def _read(out: Path, name: str) -> list[dict]:
    rows = []
    for d in sorted((out / "analysis").iterdir()):
        if d.name != "decompiler" and (d / f"{name}.csv").exists():
            rows += read_rows(d / f"{name}.csv")
    return rows


def seed_means(rows: list[dict], keys: tuple[str, ...], unit: str = "seed") -> list[dict]:
    """Mean over everything not in ``keys`` (programs, layers, ...) within each ``unit``,
    then mean and 95% t-interval across units: the seed is the unit of every CI."""
    per: dict[tuple, list[float]] = {}
    for r in rows:
        per.setdefault((tuple(r[k] for k in keys), r[unit]), []).append(float(r["value"]))
    means = [{**dict(zip(keys, k)), unit: u, "value": float(np.mean(v))} for (k, u), v in per.items()]
    return aggregate(means, keys)


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
    right within each decompiler seed, then mean and CI across seeds; size "all" pools sizes."""
    rows = rows + [dict(r, n_lines="all") for r in rows]
    table = seed_means(rows, ("train_weights", "test_weights", "n_lines", "metric"))
    counts: dict[tuple, set] = {}
    for r in rows:
        counts.setdefault((r["train_weights"], r["test_weights"], r["n_lines"]), set()).add(r["program"])
    return [dict(r, programs=len(counts[(r["train_weights"], r["test_weights"], r["n_lines"])])) for r in table]


def summarize(out: Path, table_dir: Path) -> None:
    acc = with_ceiling(_read(out, "accuracy"))
    write_rows(table_dir / "twin_accuracy.csv", aggregate(acc, ("family", "program", "source", "width", "metric")))
    layers = _read(out, "layers")
    write_rows(table_dir / "layers.csv", aggregate(
        layers, ("comparison", "family", "program", "width", "layer_index", "layer_label", "final", "metric")),
        digits=TABLE_DIGITS)
    write_rows(table_dir / "positions.csv", aggregate(
        _read(out, "positions"), ("comparison", "family", "program", "width", "layer_index", "layer_label",
                                  "position", "metric")), digits=TABLE_DIGITS)
    var = variable_summary(_read(out, "variables"))
    write_rows(table_dir / "variables.csv", aggregate(
        var, ("family", "program", "width", "sop", "sop_kind", "birth_layer", "quantity")), digits=TABLE_DIGITS)
    weights = _read(out, "weights")
    write_rows(table_dir / "weights.csv", seed_means(weights, ("source", "width", "matrix_kind", "metric")))
    write_rows(table_dir / "spectra.csv", aggregate(
        _read(out, "spectra"), ("program", "source", "width", "matrix", "matrix_kind", "index")), digits=TABLE_DIGITS)
    dec = out / "analysis" / "decompiler"
    heldout = read_rows(dec / "heldout.csv")
    by_size = decompiler_by_size(heldout)
    write_rows(table_dir / "decompiler.csv", by_size)
    twin_dec = [r for r in read_rows(dec / "twins.csv") if not r["seen_in_training"]]
    twin_table = seed_means(twin_dec, ("train_weights", "source", "width", "metric"))
    probes = read_rows(dec / "probes.csv")
    for r in twin_table:
        sel = [p for p in probes if (p["source"], p["width"]) == (r["source"], r["width"])
               and not p["seen_in_training"]]
        r.update(applicable=sum(p["applicable"] for p in sel), nets=len(sel))
    write_rows(table_dir / "decompiler_twins.csv", twin_table)
    write_rows(table_dir / "decompiler_dataset.csv", read_rows(dec / "dataset.csv"))
    write_rows(table_dir / "summary.csv", summary_rows(acc, layers, var, by_size, twin_table))


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


def summary_rows(acc, layers, var, by_size, twin_table) -> list[dict]:
    """The headline numbers, each a mean over programs within a seed (seed pair for
    trained_vs_trained, scramble key for compiled_vs_scrambled), with a CI across seeds."""
    rows = []

    def add(section, table, keys):
        for r in table:
            rows.append(dict(section=section, quantity=" ".join(f"{k}={r[k]}" for k in keys),
                             mean=r["mean"], lo=r["lo"], hi=r["hi"], n=r["n"]))

    twin_acc = [r for r in acc if r["source"] == "trained"]
    add("twin held-out accuracy", seed_means(twin_acc, ("family", "width", "metric")), ("family", "width", "metric"))
    final = [r for r in layers if r["final"]]
    add("final layer", seed_means(final, ("comparison", "width", "metric")), ("comparison", "width", "metric"))
    add("RASP variables", seed_means(var, ("sop_kind", "width", "quantity")), ("sop_kind", "width", "quantity"))
    add("decompiler, held-out programs", [r for r in by_size if r["n_lines"] == "all"],
        ("train_weights", "test_weights", "metric"))
    add("decompiler on fountain nets", twin_table, ("train_weights", "source", "width", "metric"))
    for label, metric, theirs, ref in ANCHORS:
        ours = [r for r in by_size if (r["train_weights"], r["test_weights"], r["n_lines"], r["metric"])
                == ("clean", "clean", "all", metric)]
        if ours:
            rows.append(dict(section="anchor", quantity=f"{label}: {theirs:.0%} ({ref})",
                             mean=ours[0]["mean"], lo=ours[0]["lo"], hi=ours[0]["hi"], n=ours[0]["n"]))
    return rows


# ----------------------------------------------------------------------------- figures
COMPARISONS = (("compiled_vs_trained", "compiled vs trained"), ("trained_vs_trained", "trained vs trained"),
               ("compiled_vs_scrambled", "compiled vs scrambled"))
WIDTH_STYLE = {0.5: ":", 1.0: "-", 2.0: "--"}
GRID_DPI = 90      # PNGs of the per-program grids (~50 panels): legible, a quarter of the bytes
TABLE_DIGITS = 6   # significant digits in the committed tables


def _sel(rows, **kw):
    return [r for r in rows if all(r[k] == v for k, v in kw.items())]


def _band(ax, rows, x_key, label=None, color=None, ls="-", x=None):
    rows = sorted(rows, key=lambda r: r[x_key])
    if not rows:
        return
    xs = np.asarray([r[x_key] for r in rows], float) if x is None else x
    plotting.band(ax, xs, *(np.asarray([r[k] for r in rows], float) for k in ("mean", "lo", "hi")),
                  n=min(r["n"] for r in rows), label=label, color=color, ls=ls, marker="o", ms=2.5)


def _short(program: str) -> str:
    return program.replace("fountain:", "f:")


def _grid(n: int, ncols: int = 7, width: float = 2.3, height: float = 1.8):
    ncols = min(ncols, n)
    fig, axes = plotting.figure(ncols=ncols, nrows=math.ceil(n / ncols), width=width, height=height)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _layer_figure(layers, metric: str, ylabel: str, path: Path) -> list[Path]:
    progs = sorted({(r["family"], r["program"]) for r in layers}, key=lambda fp: (fp[0] != "library", fp[1]))
    fig, axes = _grid(len(progs))
    for ax, (family, program) in zip(axes, progs):
        rows = _sel(layers, program=program, metric=metric)
        for (comp, label), color in zip(COMPARISONS, plotting.PALETTE):
            for width in sorted({r["width"] for r in rows if r["comparison"] == comp}):
                _band(ax, _sel(rows, comparison=comp, width=width), "layer_index", color=color,
                      ls=WIDTH_STYLE.get(width, "-"), label=f"{label}, {width:g}x")
        labels = {r["layer_index"]: r["layer_label"] for r in rows}
        ax.set_xticks(sorted(labels), [labels[i] for i in sorted(labels)], rotation=60, fontsize=6)
        ax.set_title(_short(program), fontsize=8)
        ax.tick_params(axis="y", labelsize=6)
    axes[0].set_ylabel(ylabel, fontsize=8)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=4, fontsize=7)
    fig.suptitle(f"{ylabel} per residual layer; mean and 95% t-interval over seeds (pairs, scrambles)", fontsize=9)
    return plotting.save(fig, path, dpi=GRID_DPI)


def figures(table_dir: Path) -> list[Path]:
    acc = read_rows(table_dir / "twin_accuracy.csv")
    layers = read_rows(table_dir / "layers.csv")
    paths = []

    # Twins: held-out accuracy reached, every run counted.
    trained = _sel(acc, source="trained", metric="acc")
    progs = sorted({(r["family"], r["program"]) for r in trained}, key=lambda fp: (fp[0] != "library", fp[1]))
    fig, axes = plotting.figure(width=max(3.4, 0.22 * len(progs)), height=2.8)
    ax = axes[0, 0]
    widths = sorted({r["width"] for r in trained})
    for k, width in enumerate(widths):
        xs = np.arange(len(progs)) + 0.2 * (k - (len(widths) - 1) / 2)
        rows = [_sel(trained, program=p, width=width)[0] for _, p in progs]
        mean = np.asarray([r["mean"] for r in rows])
        ax.errorbar(xs, mean, yerr=[mean - [r["lo"] for r in rows], np.asarray([r["hi"] for r in rows]) - mean],
                    fmt="o", ms=3, lw=0.8, label=f"{width:g}x width (n={rows[0]['n']})")
    ax.axhline(MATCH, color="0.5", lw=0.6, ls="--")
    ceiling = {r["program"]: r["mean"] for r in _sel(acc, source="ceiling", metric="acc")}
    below = [(i, ceiling[p]) for i, (_, p) in enumerate(progs) if ceiling.get(p, 1.0) < 1.0]
    if below:
        ax.plot(*zip(*below), "k_", ms=9, label="held-out ceiling (classes seen in training)")
    ax.set_xticks(np.arange(len(progs)), [_short(p) for _, p in progs], rotation=70, fontsize=6)
    ax.set_ylabel("held-out token accuracy")
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.02)   # accuracy; t-intervals of 3 seeds can pass 1
    ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"trained twins after the step budget (dashed: match threshold {MATCH})", fontsize=9)
    paths += plotting.save(fig, table_dir / "twin_accuracy")

    # Per-layer representation comparisons, per program. Debiased CKA is in the tables only:
    # at 512 x 5 rows it differs from linear CKA by < 0.005 per layer (paper preset).
    for metric, ylabel in (("cka", "linear CKA"), ("procrustes", "Procrustes distance"),
                           ("affine_r2_to_ref", "affine R^2 to reference")):
        paths += _layer_figure(layers, metric, ylabel, table_dir / f"layers_{metric}")

    # Per-position CKA, compiled vs trained, at the reference width.
    pos = _sel(read_rows(table_dir / "positions.csv"), comparison="compiled_vs_trained", metric="cka")
    progs = sorted({r["program"] for r in pos})
    fig, axes = _grid(len(progs))
    for ax, program in zip(axes, progs):
        rows = _sel(pos, program=program)
        for i in sorted({r["layer_index"] for r in rows}):
            sel = _sel(rows, layer_index=i)
            _band(ax, sel, "position", label=sel[0]["layer_label"])
        ax.set_title(_short(program), fontsize=8)
        ax.legend(fontsize=5)
        ax.set_xlabel("position", fontsize=7)
    axes[0].set_ylabel("CKA compiled vs trained", fontsize=8)
    paths += plotting.save(fig, table_dir / "positions_cka", dpi=GRID_DPI)

    # R^2 per RASP variable: can the twin's final layer linearly hold each compiled variable?
    var = read_rows(table_dir / "variables.csv")
    progs = sorted({(r["family"], r["program"]) for r in var}, key=lambda fp: (fp[0] != "library", fp[1]))
    fig, axes = _grid(len(progs), ncols=5, width=2.8, height=2.2)
    for ax, (_, program) in zip(axes, progs):
        rows = _sel(var, program=program, quantity="r2_to_sop_final")
        sops = sorted({(r["birth_layer"], r["sop"]) for r in rows})
        for width in sorted({r["width"] for r in rows}):
            sel = {r["sop"]: r for r in _sel(rows, width=width)}
            xs = np.arange(len(sops))
            m = np.asarray([sel[s]["mean"] for _, s in sops])
            err = [m - [sel[s]["lo"] for _, s in sops], np.asarray([sel[s]["hi"] for _, s in sops]) - m]
            ax.errorbar(xs, m, yerr=err, fmt="o", ms=3, lw=0.8, ls="none", label=f"{width:g}x")
        ax.set_xticks(np.arange(len(sops)), [s for _, s in sops], rotation=70, fontsize=5)
        ax.set_ylim(min(-0.05, ax.get_ylim()[0]), 1.05)
        ax.set_title(_short(program), fontsize=8)
    axes[0].set_ylabel("affine R^2, twin -> variable", fontsize=8)
    axes[0].legend(fontsize=6)
    fig.suptitle("each compiled RASP variable read from the twin's final layer (held-out ridge R^2)", fontsize=9)
    paths += plotting.save(fig, table_dir / "variables_r2", dpi=GRID_DPI)

    # Nonlinear-minus-affine gap, twin -> compiled, per layer.
    gap = _sel(layers, comparison="compiled_vs_trained")
    fig, axes = plotting.figure(ncols=2)
    for width in sorted({r["width"] for r in gap if r["metric"] == "mlp_r2_to_ref"}):
        aff = {(r["program"], r["layer_index"]): r["mean"] for r in _sel(gap, width=width, metric="affine_r2_to_ref")}
        mlp = {(r["program"], r["layer_index"]): r["mean"] for r in _sel(gap, width=width, metric="mlp_r2_to_ref")}
        keys = sorted(set(aff) & set(mlp))
        axes[0, 0].scatter([aff[k] for k in keys], [mlp[k] for k in keys], s=6, label=f"{width:g}x")
        g = _sel(gap, width=width, metric="mlp_minus_affine", final=1)
        g = sorted(g, key=lambda r: r["program"])
        m = np.asarray([r["mean"] for r in g])
        axes[0, 1].errorbar(np.arange(len(g)), m, yerr=[m - [r["lo"] for r in g], [r["hi"] for r in g] - m],
                            fmt="o", ms=3, lw=0.8, label=f"{width:g}x")
        axes[0, 1].set_xticks(np.arange(len(g)), [_short(r["program"]) for r in g], rotation=70, fontsize=5)
    axes[0, 0].plot([0, 1], [0, 1], color="0.5", lw=0.6)
    axes[0, 0].set_xlabel("affine R^2 (twin -> compiled)")
    axes[0, 0].set_ylabel("MLP R^2 (twin -> compiled)")
    axes[0, 0].legend(fontsize=6)
    axes[0, 1].axhline(0, color="0.5", lw=0.6)
    axes[0, 1].set_ylabel("MLP - affine R^2, final layer")
    fig.suptitle("nonlinear-minus-affine gap (left: every program and layer, seed means)", fontsize=9)
    paths += plotting.save(fig, table_dir / "nonlinear_gap")

    # Decompiler accuracy vs program size, clean vs scrambled weights.
    dec = read_rows(table_dir / "decompiler.csv")
    fig, axes = plotting.figure(ncols=2)
    for ax, metric in zip(axes[0], ("exact", "equivalent")):
        for train, test in (("clean", "clean"), ("scrambled", "scrambled"), ("clean", "scrambled")):
            rows = [r for r in _sel(dec, train_weights=train, test_weights=test, metric=metric)
                    if r["n_lines"] != "all"]
            _band(ax, rows, "n_lines", label=f"trained on {train}, tested on {test}")
        for label, m, theirs, _ in ANCHORS:
            if m == metric:
                ax.axhline(theirs, color="0.5", lw=0.6, ls=":")
                ax.annotate(label, (ax.get_xlim()[0], theirs), fontsize=6, va="bottom", color="0.4")
        ax.set_xlabel("program size (SOp lines)")
        ax.set_ylabel(f"held-out {metric}")
        ax.set_ylim(-0.03, 1.03)
    axes[0, 0].legend(fontsize=6)
    fig.suptitle("decompiler on held-out fountain programs (dotted: published anchors, other program sets)",
                 fontsize=9)
    paths += plotting.save(fig, table_dir / "decompiler_by_size")

    # The decompiler on the fountain programs' compiled nets, scrambles and twins.
    tw = read_rows(table_dir / "decompiler_twins.csv")
    fig, axes = plotting.figure(ncols=2)
    for ax, metric in zip(axes[0], ("exact", "equivalent")):
        for k, train in enumerate(("clean", "scrambled")):
            rows = sorted(_sel(tw, train_weights=train, metric=metric), key=lambda r: (r["source"], r["width"]))
            xs = np.arange(len(rows)) + 0.15 * (2 * k - 1)
            m = np.asarray([r["mean"] for r in rows])
            ax.errorbar(xs, m, yerr=[m - [r["lo"] for r in rows], [r["hi"] for r in rows] - m], fmt="o", ms=3,
                        lw=0.8, label=f"decompiler trained on {train}")
            ax.set_xticks(np.arange(len(rows)), [f"{r['source']}\n{r['width']:g}x ({r['applicable']}/{r['nets']})"
                                                 if r["source"] == "trained" else r["source"] for r in rows],
                          fontsize=6)
        ax.set_ylabel(metric)
        ax.set_ylim(-0.03, 1.03)
    axes[0, 0].legend(fontsize=6)
    fig.suptitle("decompiler applied to fountain programs' nets (twins: applicable nets / all)", fontsize=9)
    paths += plotting.save(fig, table_dir / "decompiler_twins")

    # Weight statistics and the showcase program's singular-value spectra.
    w = read_rows(table_dir / "weights.csv")
    kinds = sorted({r["matrix_kind"] for r in w})
    sources = sorted({(r["source"], r["width"]) for r in w})
    fig, axes = plotting.figure(ncols=len(WEIGHT_STATS), width=3.0, height=2.8)
    for ax, metric in zip(axes[0], WEIGHT_STATS):
        for k, (source, width) in enumerate(sources):
            rows = {r["matrix_kind"]: r for r in _sel(w, source=source, width=width, metric=metric)}
            xs = np.arange(len(kinds)) + 0.12 * (k - (len(sources) - 1) / 2)
            have = [i for i, kd in enumerate(kinds) if kd in rows]
            m = np.asarray([rows[kinds[i]]["mean"] for i in have])
            ax.errorbar(xs[have], m, yerr=[m - [rows[kinds[i]]["lo"] for i in have],
                                           [rows[kinds[i]]["hi"] for i in have] - m],
                        fmt="o", ms=3, lw=0.8, label=source if source != "trained" else f"trained {width:g}x")
        ax.set_xticks(np.arange(len(kinds)), kinds, rotation=70, fontsize=6)
        ax.set_title(metric, fontsize=8)
        if metric == "frobenius":
            ax.set_yscale("log")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle("weight statistics, mean over programs within a seed; 95% t-interval over seeds", fontsize=9)
    paths += plotting.save(fig, table_dir / "weight_stats")

    spec = read_rows(table_dir / "spectra.csv")
    mats = sorted({r["matrix"] for r in spec})
    fig, axes = _grid(len(mats), ncols=6, width=2.3, height=1.9)
    for ax, mat in zip(axes, mats):
        for source, width in sorted({(r["source"], r["width"]) for r in spec}):
            _band(ax, _sel(spec, matrix=mat, source=source, width=width), "index",
                  label=source if source != "trained" else f"trained {width:g}x")
        ax.set_title(mat, fontsize=7)
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_ylim(bottom=0)   # s_i / s_0 >= 0; a t-interval of a few seeds can dip below
    axes[0].set_ylabel("s_i / s_0", fontsize=8)
    axes[0].legend(fontsize=5)
    fig.suptitle(f"singular values of {_short(spec[0]['program'])}'s weight matrices", fontsize=9)
    paths += plotting.save(fig, table_dir / "spectra", dpi=GRID_DPI)
    return paths


if __name__ == "__main__":
    study_main(sys.modules[__name__])
