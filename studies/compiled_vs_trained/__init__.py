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
and the nulls each of them is read against (reference width, same inputs):
  compiled_vs_random_init    a twin never trained
  compiled_vs_other_program  trained twins of another program of the study that reads the
                             same inputs through the same layers (``grid.null_partner``)
  compiled_vs_input_only     one-hot token + position, the same at every layer
At the reference width every pooled measure is computed again with token and position
identity partialled out of both sides (``<metric>_partial``).
with linear and debiased CKA, orthogonal Procrustes distance, held-out affine (ridge)
R^2 both ways and a small MLP's R^2 (twin -> compiled; the nonlinear-minus-affine gap),
per RASP variable the affine R^2 between a twin layer and the variable's compiled code,
and weight statistics (norms, sparsity, ranks, singular values) of all three kinds of net.

Decompiler. A causal transformer reads a compiled fountain program's weight tokens and
writes its program (task ``decompile``); one trained on clean weights and one on
scrambled weights, several seeds each. Scored by exact match and functional
equivalence on held-out programs, by program size, on clean and scrambled weights, and
applied to the fountain twins (whose programs it never saw in training).

Causal test (interchange.py). For each materialized RASP variable of a library program,
a subspace of each 1x twin's residual stream is learned (distributed alignment search)
so that interchanging it between inputs makes the twin output the program's
counterfactual; scored on held-out pairs against a random subspace of the same size.

Fair benchmark (fair.py). The same decompilers trained on a split by function (no
input/output table on both sides), degenerate programs scored apart, against a
nearest-weights retrieval baseline, each with and without an execution check (sampled
candidates kept only if they reproduce the net's outputs on a few inputs).

Parts (``--part``): "main" (twins, the token-split decompilers, their analyses and the
causal test) and "fair" (the fair benchmark alone); the full preset runs both.

Modules, in reading order: presets (the presets and constants), grid (programs, twins,
decompilers), measure (the post-training analyses), interchange (the causal test), fair
(the fair decompiler benchmark),
tables (the summary tables), figures.
"""

from __future__ import annotations

import functools
from pathlib import Path

from studies.common import reduce_to_part
from studies.compiled_vs_trained.fair import analyse_fair, candidates, fair_entries
from studies.compiled_vs_trained.fair_twins import analyse_fair_twins
from studies.compiled_vs_trained.figures import figures
from studies.compiled_vs_trained.grid import by_program_width, fair_twin_programs, null_partner, programs, slug, specs
from studies.compiled_vs_trained.interchange import analyse_interchange
from studies.compiled_vs_trained.measure import (
    DECOMPILER_ANALYSIS,
    FAIR_ANALYSIS,
    FAIR_TWINS_ANALYSIS,
    INTERCHANGE_ANALYSIS,
    NULL_INIT_SEED,
    NULLS,
    PROGRAM_ANALYSIS,
    analyse_decompiler,
    analyse_program,
    cached_tables,
)
from studies.compiled_vs_trained.presets import MATCH, MLP_HIDDEN, PRESETS, Preset
from studies.compiled_vs_trained.tables import summarize
from toymodels.sweep import run_sweep

NAME = "compiled_vs_trained"
_OTHERS_OFF = {"main": dict(fair=False), "fair": dict(main=False)}   # each part: what switches the other off
PARTS = tuple(_OTHERS_OFF)
__all__ = ["NAME", "PARTS", "PRESETS", "Preset", "figures", "part", "run", "summarize"]


def part(P: Preset, name: str) -> Preset:
    """The preset reduced to one of PARTS."""
    return reduce_to_part(P, name, _OTHERS_OFF)


def run(P: Preset, out: Path, progress: bool = True) -> None:
    """Train every twin and decompiler, then run (or reuse) each program's analysis and the
    decompilers' analysis; an analysis is redone when its runs or settings change."""
    all_specs = specs(P)
    run_sweep(all_specs, out, progress=progress)
    if P.main:
        _main_analyses(P, out, all_specs)
    fair_runs = [s for s in all_specs if dict(s.tags)["kind"] == "decompiler_fair"]
    for key, weights, spec in fair_entries(fair_runs):   # one entry per decompiler: a kill loses one
        config = dict(run=spec, weights=weights, eval=P.fair_eval, samples=P.fair_samples, checks=P.fair_checks,
                      program_tokens=P.dec_program_tokens, candidates=candidates(P))
        cached_tables(out, FAIR_ANALYSIS, key, config, functools.partial(analyse_fair, P, out, weights, spec))
    if P.fair and P.fair_twins:
        twin_runs = by_program_width(all_specs)
        config = dict(runs=fair_runs, twins=[s for p in fair_twin_programs(P) for s in twin_runs[(p, P.ref_width)]],
                      samples=P.fair_samples, checks=P.fair_checks, check_lengths="twin length only", twins_match=True,
                      program_tokens=P.dec_program_tokens)
        cached_tables(out, FAIR_TWINS_ANALYSIS, "twins", config,
                      functools.partial(analyse_fair_twins, P, out, fair_runs, twin_runs))


def _main_analyses(P: Preset, out: Path, all_specs) -> None:
    twin_runs = by_program_width(all_specs)
    for family, program in programs(P):
        runs = {w: twin_runs[(program, w)] for w in P.widths}
        partner = null_partner(P, program)
        partner_runs = twin_runs[(partner, P.ref_width)] if partner else []
        config = dict(runs=[s for w in P.widths for s in runs[w]], family=family,
                      showcase=program == programs(P)[0][1], max_inputs=P.max_inputs, mlp_steps=P.mlp_steps,
                      scrambles=P.seeds, match=MATCH, mlp_hidden=MLP_HIDDEN,
                      nulls=dict(names=NULLS, init_seed=NULL_INIT_SEED, partner_runs=partner_runs))
        cached_tables(out, PROGRAM_ANALYSIS, slug(program), config,
                      functools.partial(analyse_program, P, out, family, program, runs, partner, partner_runs))
    dec_runs = [s for s in all_specs if dict(s.tags)["kind"] == "decompiler"]
    config = dict(runs=dec_runs, twins=[s for f, p in programs(P) if f == "fountain" for w in P.widths
                                        for s in twin_runs[(p, w)]],
                  weight_tokens=P.dec_weight_tokens, program_tokens=P.dec_program_tokens)
    cached_tables(out, DECOMPILER_ANALYSIS, "decompilers", config,
                  functools.partial(analyse_decompiler, P, out, dec_runs, twin_runs))
    run_interchange(P, out, twin_runs)


def run_interchange(P: Preset, out: Path, twin_runs) -> None:
    """The causal test of every library program (cached per program): trains nothing."""
    for family, program in programs(P):
        if family == "library":
            runs = twin_runs[(program, P.ref_width)]
            config = dict(runs=runs, pairs=P.iia_pairs, test_pairs=P.iia_test_pairs, steps=P.iia_steps)
            cached_tables(out, INTERCHANGE_ANALYSIS, slug(program), config,
                          lambda runs=runs, program=program: {"rows": analyse_interchange(P, out, program, runs)})
