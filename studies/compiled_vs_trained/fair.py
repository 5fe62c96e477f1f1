"""The fair decompiler benchmark: a split by function, degenerate programs apart, a
retrieval baseline, and an execution check.

Split. The decompilers of ``decompiler_specs(P, "function")`` train on the decompile task
split by input/output table (``split_by="function"``): programs computing the same
function (the same outputs on all 363 inputs of length 1..5) are never on both sides,
so a held-out program cannot be answered by remembering a twin of it. Degenerate
programs (output set by the input's length alone) are scored apart.

Methods, each scored by exact match and functional equivalence on the held-out programs:
  decompiler          greedy decoding of the weights
  retrieval           the training program with the nearest weight features (no learning)
  decompiler+check    the greedy decoding and ``fair_samples`` sampled decodings, most
                      likely first; answer the first whose interpreter outputs equal the
                      net's own outputs on ``fair_checks`` inputs (the net is run, which
                      a decompiler given the weights can always do)
  retrieval+check     the same check over the ``fair_samples + 1`` nearest training programs
  beam                the most likely decoding of a beam search ``fair_samples + 1`` wide
                      (``decompile.beam``: deterministic, no repeats)
  beam+check          the same check over the beams, most likely first (as many candidates
                      as decompiler+check)
  wide beam(+check)   the same two from a beam search ``fair_wide_beam`` wide (0: not run):
                      more candidates for the check, a larger budget than the methods above
Sizes are the fountain's 2-6 operations (n_ops), inside the meta-models paper's 1-9
and below TraDe's largest programs: the published numbers are on their own program
sets and are drawn as reference lines, not matched comparisons.

Tables: decompiler_fair.csv (method, candidates (per net, ``candidates``), weights, size,
degenerate, seed: exact, equivalent, parsable, agreed (the answer reproduces the net on the
check inputs), n_programs; size and degenerate also pooled as "all"; retrieval is
deterministic: seed 0 only), decompiler_fair_summary.csv (mean over seeds, 95 % bootstrap
interval over held-out programs, inside [0, 1]), decompiler_fair_paired.csv (beam against
sampling, the wide beam against the beam, program by program: ``paired``),
decompiler_fair_dataset.csv.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from studies.compiled_vs_trained.grid import decompile_task
from studies.compiled_vs_trained.measure import dataset_rows, n_lines
from studies.compiled_vs_trained.presets import ANCHORS, Preset
from toymodels import plotting
from toymodels.analysis.stats import bootstrap_ci
from toymodels.compiler import compile_program
from toymodels.decompile.beam import beam_decode
from toymodels.decompile.checks import agrees, check_inputs, first_agreeing, net_outputs
from toymodels.decompile.evaluate import sample_decode, score
from toymodels.decompile.retrieval import ranked_programs
from toymodels.rasp.catalogue import FOUNTAIN_MAX_SEQ_LEN, FOUNTAIN_VOCAB
from toymodels.runspec import RunSpec
from toymodels.scramble import scramble
from toymodels.store import load_model
from toymodels.tables import select

METHODS = ("decompiler", "decompiler+check", "retrieval", "retrieval+check", "beam", "beam+check", "wide beam",
           "wide beam+check")
SCORES = ("exact", "equivalent", "parsable", "agreed")
N_BOOT = 2000


def candidates(P: Preset) -> dict[str, int]:
    """Per method, the candidates decoded (or retrieved) per net that its answer is chosen from
    (the greedy decoding and the nearest program: one)."""
    S, W = P.fair_samples + 1, P.fair_wide_beam
    return {"decompiler": 1, "decompiler+check": S, "retrieval": 1, "retrieval+check": S, "beam": S,
            "beam+check": S} | ({"wide beam": W, "wide beam+check": W} if W else {})


def fair_task(P: Preset, weights: str):
    return decompile_task(P, weights == "scrambled", split_by="function")


def fair_entries(runs: list[RunSpec]) -> list[tuple[str, str, RunSpec | None]]:
    """The cache entries of the benchmark, each small enough to lose little to a kill:
    (key, weights, decompiler run or None for the retrieval baseline and the dataset)."""
    entries = []
    for weights in ("clean", "scrambled"):
        entries.append((f"{weights}-retrieval", weights, None))
        entries += [(spec.run_id, weights, spec) for spec in runs if dict(spec.tags)["weights"] == weights]
    return entries


def analyse_fair(P: Preset, out: Path, weights: str, spec: RunSpec | None) -> dict[str, list[dict]]:
    """One method pair on every held-out program of the function split, for one kind of
    weights: the retrieval baseline (spec None; also the dataset rows) or one decompiler run.
    One row per (method, weights, seed, program)."""
    inputs = check_inputs(P.fair_checks)
    rows, dataset, budget = [], [], candidates(P)
    task = fair_task(P, weights)
    entries = task.programs("eval")
    nets = []
    for e in entries:   # the very net whose weight tokens the decompiler reads
        c = compile_program(e["program"], FOUNTAIN_VOCAB, FOUNTAIN_MAX_SEQ_LEN)
        nets.append((scramble(c.model, e["seed"]) if weights == "scrambled" else c.model, c))
    observed = net_outputs(nets, inputs)

    def add(method, seed, e, obs, cands):
        # rank: the candidate answered (-1: none agreed, the first one answered)
        if method.endswith("+check"):
            toks, rank = first_agreeing(cands, inputs, obs)
            agreed = rank >= 0                       # the check already ran every candidate it tried
        else:
            toks, rank = cands[0], 0
            agreed = agrees(toks, inputs, obs)
        rows.append(dict(method=method, candidates=budget[method], weights=weights, seed=seed, program=e["id"],
                         size=e["n_ops"], n_lines=n_lines(e["tokens"]), degenerate=e["degenerate"],
                         function=e["function"], rank=rank, **score(toks, e["tokens"]), agreed=float(agreed)))

    if spec is None:
        retrieved = ranked_programs(task, "eval", P.fair_samples + 1)
        for e, obs, cands in zip(entries, observed, retrieved):
            add("retrieval", 0, e, obs, cands)
            add("retrieval+check", 0, e, obs, cands)
        degenerate = {s: float(np.mean([e["degenerate"] for e in task.programs(s)])) for s in ("train", "eval")}
        dataset += [dict(weights=weights, **r) for r in dataset_rows(task)]
        dataset += [dict(weights=weights, quantity=f"{s} degenerate fraction", value=v) for s, v in degenerate.items()]
        dataset += [dict(weights=weights, quantity=f"{s} functions",
                         value=len({e["function"] for e in task.programs(s)})) for s in ("train", "eval")]
    else:
        seed = dict(spec.tags)["seed"]
        model = load_model(out, spec)
        x, max_len = task.weights("eval"), P.dec_program_tokens + 1
        # per method base: each net's candidates, most likely first (each also scored "+check")
        decoded = {"decompiler": sample_decode(model, x, P.fair_samples, task.layout, max_len=max_len, seed=seed),
                   "beam": beam_decode(model, x, P.fair_samples + 1, task.layout, max_len=max_len)[0]}
        if P.fair_wide_beam:
            decoded["wide beam"] = beam_decode(model, x, P.fair_wide_beam, task.layout, max_len=max_len)[0]
        for i, (e, obs) in enumerate(zip(entries, observed)):
            for method, cands in decoded.items():
                add(method, seed, e, obs, cands[i])
                add(method + "+check", seed, e, obs, cands[i])
    return {"programs": rows, "dataset": dataset}


def _pooled(rows: list[dict]) -> list[dict]:
    """Rows again with size and degenerate each also "all"."""
    return [dict(r, size=s, degenerate=d) for r in rows
            for s, d in itertools.product((r["size"], "all"), (r["degenerate"], "all"))]


def fair_tables(rows: list[dict]) -> dict[str, list[dict]]:
    """decompiler_fair (per seed) and decompiler_fair_summary (over seeds, with a bootstrap
    interval over programs) from the per-program rows."""
    keys = ("method", "candidates", "weights", "size", "degenerate")
    groups: dict[tuple, list[dict]] = {}
    for r in _pooled(rows):
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    per_seed, summary = [], []
    rng = np.random.default_rng(0)
    for key, sel in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        seeds = sorted({r["seed"] for r in sel})
        programs = sorted({r["program"] for r in sel})
        for seed in seeds:
            mine = [r for r in sel if r["seed"] == seed]
            per_seed.append(dict(zip(keys, key), seed=seed, **{m: float(np.mean([r[m] for r in mine]))
                                                               for m in SCORES}, n_programs=len(mine)))
        col = {p: i for i, p in enumerate(programs)}
        for m in SCORES:
            v_SP = np.full((len(seeds), len(programs)), np.nan)
            for r in sel:
                v_SP[seeds.index(r["seed"]), col[r["program"]]] = r[m]
            v_P = np.nanmean(v_SP, 0)                       # each program's score, averaged over seeds
            boot = v_P[rng.integers(0, len(v_P), (N_BOOT, len(v_P)))].mean(1)
            lo, hi = np.percentile(boot, [2.5, 97.5])
            summary.append(dict(zip(keys, key), metric=m, mean=float(v_P.mean()), lo=float(lo), hi=float(hi),
                                n=len(programs), seeds=len(seeds),
                                values=" ".join(f"{np.nanmean(v):.4g}" for v in v_SP)))
    return {"decompiler_fair": per_seed, "decompiler_fair_summary": summary, "decompiler_fair_paired": paired(rows)}


# (method, against): search against sampling at the same candidate budget; a wider beam against the beam
PAIRS = (("beam+check", "decompiler+check"), ("beam", "decompiler"), ("wide beam+check", "beam+check"),
         ("wide beam", "beam"))


def paired(rows: list[dict]) -> list[dict]:
    """Per pair of PAIRS, weights and metric, over non-degenerate and over all programs: the
    mean per-program difference (each program's score averaged over seeds first), with a
    95 % bootstrap interval over programs (paired: the same programs resampled for both)."""
    score: dict[tuple, list[float]] = {}
    for r in rows:
        score.setdefault((r["method"], r["weights"], r["program"]), []).append(r)
    out = []
    for (method, against), weights, degenerate, m in itertools.product(PAIRS, ("clean", "scrambled"), (0, "all"),
                                                                       ("exact", "equivalent")):
        programs = sorted({p for (meth, w, p), rs in score.items() if meth == method and w == weights
                           and (degenerate == "all" or not rs[0]["degenerate"])})
        if not programs or not all((against, weights, p) in score for p in programs):
            continue
        d_P = np.array([np.mean([r[m] for r in score[(method, weights, p)]])
                        - np.mean([r[m] for r in score[(against, weights, p)]]) for p in programs])
        diff, lo, hi = bootstrap_ci(d_P)
        out.append(dict(method=method, against=against, weights=weights, degenerate=degenerate, metric=m,
                        difference=float(diff), lo=float(lo), hi=float(hi), n=len(programs),
                        better=int((d_P > 0).sum()), worse=int((d_P < 0).sum())))
    return out


METHOD_STYLE = {"decompiler": ("C0", "-"), "decompiler+check": ("C0", "--"),
                "retrieval": ("C3", "-"), "retrieval+check": ("C3", "--"),
                "beam": ("C2", "-"), "beam+check": ("C2", "--"), "wide beam+check": ("C4", "--")}


def fair_figure(summary: list[dict], path: Path) -> list[Path]:
    """Held-out exact match and functional equivalence vs program size, non-degenerate
    programs of the function split: rows clean / scrambled weights, one line per method."""
    fig, axes = plotting.figure(ncols=2, nrows=2, height=2.4)
    for i, weights in enumerate(("clean", "scrambled")):
        for j, metric in enumerate(("exact", "equivalent")):
            ax = axes[i, j]
            for method, (color, ls) in METHOD_STYLE.items():
                sel = [r for r in select(summary, method=method, weights=weights, degenerate=0, metric=metric)
                       if r["size"] != "all"]
                sel.sort(key=lambda r: int(r["size"]))
                if sel:
                    x = [int(r["size"]) for r in sel]
                    plotting.band(ax, x, [r["mean"] for r in sel], [r["lo"] for r in sel], [r["hi"] for r in sel],
                                  n=min(int(r["n"]) for r in sel), label=f"{method}, {sel[0]['candidates']} cand.",
                                  color=color, ls=ls, marker="o", ms=2.5)
            for label, m, theirs, _ in ANCHORS:
                if m == metric:
                    ax.axhline(theirs, color="0.5", lw=0.6, ls=":")
                    ax.annotate(label, (2, theirs), fontsize=6, va="bottom", color="0.4")
            ax.set_ylim(-0.03, 1.03)
            ax.set_xlabel("program size (operations)")
            ax.set_ylabel(f"{metric}, {weights} weights", fontsize=8)
    handles, names = axes[0, 0].get_legend_handles_labels()
    if handles:   # below the panels: inside any panel it hides curves or the anchors' labels
        fig.legend(handles, names, loc="outside lower center", ncols=3, fontsize=7)
    fig.suptitle("fair split (by function), non-degenerate held-out programs; 95% bootstrap over programs\n"
                 "cand.: candidates per net; dotted: published anchors on their own program sets", fontsize=8)
    return plotting.save(fig, path)
