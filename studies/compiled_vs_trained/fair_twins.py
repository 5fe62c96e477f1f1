"""What the fair decompilers read from trained twins (part "fair", issue item 5 on the
function split).

The first ``fair_twins`` usable programs of the fair split's held-out set (programs whose
function no decompiler trained on) get twins at the reference width, ``seeds`` seeds each
(the main part's twin recipe). Every fair decompiler decodes, with the same beam search as
the benchmark (``fair_samples + 1`` beams), each program's compiled net, one scramble of it
and each twin; the source's own outputs on ``fair_checks`` inputs pick a candidate. The check
inputs are all of the length twins train on (5 tokens): a twin's outputs at other lengths
were never trained, so the benchmark's mixed-length inputs would reject every candidate.

  beam          the most likely decoding
  beam+check    the first beam whose program agrees with the net on the check inputs
  other+check   the same check over the beams decoded from *another* program's net of the
                same source (the next program in order whose net of that source fits the
                decompiler's input; the same twin seed where it has one): the check alone,
                with candidates that carry nothing of this net's weights. beam+check above
                other+check is what the decompiler read from the weights.

Scores are against the true program (exact tokens, functional equivalence on every input
of length 1..5). A twin that does not implement its program exactly can still be matched
by the check; equivalence then says the decoded program is the true one, not the twin's
behaviour. A program enters only if the decompiler can read every one of its nets: a dense
twin has no zero pieces to skip and may exceed ``dec_weight_tokens`` where the compiled net
does not; leaving such programs out keeps the sources on the same programs. Table
``decompiler_fair_twins.csv``: per (source, train weights, method, metric) the mean over
programs (each program's score averaged over decompiler seeds and twin seeds), a 95 %
bootstrap interval over programs, n programs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from studies.compiled_vs_trained.grid import decompile_task, fair_twin_programs, twin_task
from studies.compiled_vs_trained.presets import Preset
from toymodels.analysis.stats import bootstrap_ci
from toymodels.decompile.beam import beam_decode
from toymodels.decompile.checks import agrees, check_inputs, first_agreeing, net_outputs
from toymodels.decompile.evaluate import score
from toymodels.decompile.tokens import program_tokens
from toymodels.decompile.weights import fits, weight_tokens
from toymodels.runspec import RunSpec
from toymodels.scramble import scramble
from toymodels.store import load_model, load_models
from toymodels.tasks.rasp_io import resolve_program

METHODS = ("beam", "beam+check", "other+check")
SOURCES = ("compiled", "scrambled", "trained")


def analyse_fair_twins(P: Preset, out: Path, dec_runs: list[RunSpec],
                       twin_runs: dict[tuple[str, float], list[RunSpec]]) -> dict[str, list[dict]]:
    """One row per (decompiler, source, net, method): exact / equivalent / parsable, and
    whether the answer agrees with the net on the check inputs (``agreed``); plus one row per
    program saying whether it entered and what fraction of its twins output what the program
    does on the check inputs (``programs``)."""
    layout = decompile_task(P, scrambled=False, extra=False, split_by="function").layout
    # check inputs of the one length twins train on (BOS + LENGTH tokens): at other lengths a
    # twin's outputs were never trained, and no candidate would have to match them
    (length,) = {twin_task(p).length for p in fair_twin_programs(P)}
    W, inputs = P.dec_weight_tokens, check_inputs(P.fair_checks, min_len=length, max_len=length)
    nets = []   # (program, source, twin seed, model, compiled)
    for program in fair_twin_programs(P):
        compiled = twin_task(program).compile()
        nets += [(program, "compiled", 0, compiled.model, compiled),
                 (program, "scrambled", 0, scramble(compiled.model, 0), compiled)]
        nets += [(program, "trained", s, m, compiled)
                 for s, m in enumerate(load_models(out, twin_runs[(program, P.ref_width)]))]
    x = [weight_tokens(m, layout) if fits(m.cfg, layout) else None for _, _, _, m, _ in nets]
    unread = {n[0] for n, xi in zip(nets, x) if xi is None or len(xi) > W}
    keep = [i for i, n in enumerate(nets) if n[0] not in unread]   # programs whose every net the decompiler reads
    observed = net_outputs([(nets[i][3], nets[i][4]) for i in keep], inputs)
    x_BNI = np.stack([np.pad(x[i], ((0, W - len(x[i])), (0, 0))) for i in keep])
    entered = [p for p in fair_twin_programs(P) if p not in unread]
    true = {p: program_tokens(resolve_program(p)[0]) for p in entered}
    # other+check reads the next entered program's net of the same source and twin seed
    other = {p: entered[(i + 1) % len(entered)] for i, p in enumerate(entered)} if len(entered) > 1 else {}
    rows = []
    for spec in dec_runs:
        tags = dict(spec.tags)
        beams, _ = beam_decode(load_model(out, spec), x_BNI, P.fair_samples + 1, layout,
                               max_len=P.dec_program_tokens + 1)
        by_net = {nets[i][:3]: (beams[j], observed[j]) for j, i in enumerate(keep)}
        for (program, source, seed), (cands, obs) in by_net.items():
            methods = [("beam", cands[:1]), ("beam+check", cands)]
            if program in other:
                methods.append(("other+check", by_net[(other[program], source, seed)][0]))
            for method, candidates in methods:
                if method == "beam":
                    toks, agreed = candidates[0], agrees(candidates[0], inputs, obs)
                else:
                    toks, rank = first_agreeing(candidates, inputs, obs)
                    agreed = rank >= 0
                rows.append(dict(train_weights=tags["weights"], dec_seed=tags["seed"], source=source, twin_seed=seed,
                                 program=program, method=method, agreed=float(agreed), **score(toks, true[program])))
    # does each twin do what its program does on the check inputs? (what the check compares with)
    match: dict[str, list[float]] = {}
    for j, i in enumerate(keep):
        program, source = nets[i][:2]
        if source == "trained":
            match.setdefault(program, []).append(float(agrees(true[program], inputs, observed[j])))
    return {"rows": rows, "programs": [dict(program=p, entered=int(p not in unread),
                                            twins_match=float(np.mean(match[p])) if p in match else float("nan"))
                                       for p in fair_twin_programs(P)]}


def twins_table(rows: list[dict]) -> list[dict]:
    """Per (source, train weights, method, metric): the mean over programs of each program's
    score averaged over decompiler and twin seeds, with a 95 % bootstrap interval over programs."""
    groups: dict[tuple, dict[str, list[float]]] = {}
    for r in rows:
        for m in ("exact", "equivalent", "parsable", "agreed"):
            groups.setdefault((r["source"], r["train_weights"], r["method"], m), {}).setdefault(
                r["program"], []).append(float(r[m]))
    out = []
    for (source, weights, method, metric), per in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        v_P = np.array([np.mean(v) for v in per.values()])
        mean, lo, hi = bootstrap_ci(v_P)
        out.append(dict(source=source, train_weights=weights, method=method, metric=metric, mean=float(mean),
                        lo=float(lo), hi=float(hi), n=len(v_P),
                        values=" ".join(f"{v:.4g}" for v in v_P) if len(v_P) <= 5 else ""))
    return out
