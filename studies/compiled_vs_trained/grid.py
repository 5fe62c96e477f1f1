"""The grid: programs (library + the decompiler's held-out fountain programs), their twins
at every width and seed, and the two decompilers (clean and scrambled weights)."""

from __future__ import annotations

import functools
import math

import numpy as np

from studies.compiled_vs_trained.presets import EVAL_FRAC, LENGTH, MAX_EVAL, TWIN_BATCH, TWIN_LR, Preset
from toymodels.analysis import twins
from toymodels.config import ConfigError
from toymodels.decompile.weights import fits, weight_tokens
from toymodels.model import TransformerConfig, init_model
from toymodels.runspec import RunSpec
from toymodels.tasks import make_task
from toymodels.tasks.base import SPLITS
from toymodels.tasks.rasp_io import MAX_ENUMERATED, N_SAMPLED, resolve_program
from toymodels.trainconfig import TrainConfig


def slug(program: str) -> str:
    return program.replace(":", "_").replace("@", "_at")


def short(program: str) -> str:
    """A program's name in figure panels."""
    return program.replace("fountain:", "f:")


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


def _dense_tokens(name: str, layout) -> int:
    """Weight tokens of a twin of ``name`` at width 1: every piece of a trained net is non-zero."""
    model = init_model(twin_model(name, 1.0), 0)
    return len(weight_tokens(model, layout)) if fits(model.cfg, layout) else 1 << 30


@functools.lru_cache(maxsize=8)
def _usable_heldout(task, n: int, fields: tuple[str, str] = ("n_fountain", "dec_eval"),
                    max_tokens: int = 0) -> tuple[str, ...]:
    """The first ``n`` held-out programs whose twins can learn something (``_fountain_ok``)
    and, with ``max_tokens``, whose twins' weight tokens a decompiler reading that many can read."""
    out = []
    for e in task.programs("eval"):
        name = f"fountain:{e['seed']}:{e['n_ops']}"
        if len(out) < n and _fountain_ok(name) and (not max_tokens or _dense_tokens(name, task.layout) <= max_tokens):
            out.append(name)
    if len(out) < n:
        raise ConfigError(f"{fields[0]}={n}: only {len(out)} of the decompiler's {len(task.programs('eval'))} "
                          f"held-out programs are usable twins; raise {fields[1]}")
    return tuple(out)


def decompile_task(P: Preset, scrambled: bool, extra: bool = True, split_by: str = "tokens"):
    """The decompiler's task; ``extra=False`` leaves out the extra training programs (same
    held-out split, which is all ``fountain_programs`` reads: much cheaper to build).
    ``split_by="function"``: the fair benchmark's split (``fair_eval`` programs held out,
    no input/output table on both sides)."""
    n_eval = P.dec_eval if split_by == "tokens" else P.fair_eval
    return make_task("decompile", n_programs=P.dec_programs, n_eval=n_eval, scrambled=scrambled,
                     max_weight_tokens=P.dec_weight_tokens, max_program_tokens=P.dec_program_tokens,
                     extra_train=P.dec_extra_train if extra else 0, split_by=split_by)


def fountain_programs(P: Preset) -> tuple[str, ...]:
    """The first n_fountain usable programs of the decompiler's held-out split: programs of
    the decompiler's own distribution that it never saw (the split is by distinct token
    sequence), so it can be applied to their compiled nets and to their twins alike."""
    return _usable_heldout(decompile_task(P, scrambled=False, extra=False), P.n_fountain)


def programs(P: Preset) -> list[tuple[str, str]]:
    """(family, program name) pairs; the first library program is the spectra showcase."""
    return [("library", p) for p in P.library] + [("fountain", p) for p in fountain_programs(P)]


@functools.lru_cache(maxsize=None)
def _reads_like(program: str) -> tuple:
    """What a twin's activations on an input table depend on: the input values and length it
    reads, and its residual layers (depth, whether blocks have MLPs)."""
    task = twin_task(program)
    cfg = task.compile().cfg
    return tuple(task.input_values), task.length, cfg.n_layers, bool(cfg.mlp_dim)


def null_partner(P: Preset, program: str) -> str | None:
    """The program whose reference-width twins are ``program``'s other-program null: the next
    program of the study (in order, wrapping around) that reads the same inputs through the
    same residual layers, so its twins run on the same table and compare layer by layer;
    None when no other program of the preset does."""
    names = [p for _, p in programs(P)]
    i = names.index(program)
    return next((q for q in names[i + 1:] + names[:i] if _reads_like(q) == _reads_like(program)), None)


def twin_model(program: str, width: float) -> TransformerConfig:
    compiled = twin_task(program).compile()
    d = max(1, round(compiled.d_model * width))
    # Without LN the default init (0.02) keeps the stream near zero and counting programs
    # stall (docs/compiled_vs_trained.md); unit-variance pre-activations train them.
    return twins.twin_config(compiled, width, init_std=round(1 / math.sqrt(d), 4))


def twin_id(program: str, width: float, seed: int) -> str:
    return f"twin-{slug(program)}-w{width:g}-s{seed}"


def fair_twin_programs(P: Preset) -> tuple[str, ...]:
    """The first ``fair_twins`` usable programs of the fair split's held-out set whose twins
    fit the decompiler's ``dec_weight_tokens``: functions no fair decompiler trained on,
    whose twins it is asked to read (``fair_twins.py``)."""
    if not P.fair_twins:
        return ()
    return _usable_heldout(decompile_task(P, scrambled=False, extra=False, split_by="function"), P.fair_twins,
                           ("fair_twins", "fair_eval"), P.dec_weight_tokens)


def twin_specs(P: Preset, pairs: list[tuple[str, str]] | None = None,
               widths: tuple[float, ...] | None = None) -> list[RunSpec]:
    """Every (family, program) of ``pairs`` (default: ``programs(P)``) x width (default:
    ``P.widths``) x seed; the seeds of one (program, width) share a sweep group."""
    out = []
    for family, program in programs(P) if pairs is None else pairs:
        task = twin_task(program)
        compiled = task.compile()
        for width in P.widths if widths is None else widths:
            model = twin_model(program, width)
            for seed in range(P.seeds):
                train = TrainConfig(steps=P.steps, batch_size=TWIN_BATCH, lr=TWIN_LR, weight_decay=0.0,
                                    warmup_steps=P.steps // 10, lr_schedule="cosine", grad_clip=1.0, seed=seed,
                                    n_evals=6, eval_batch=64)
                tags = dict(kind="twin", family=family, program=program, width=width, seed=seed,
                            n_layers=compiled.n_layers, d_compiled=compiled.d_model, d_model=model.d_model)
                out.append(RunSpec(twin_id(program, width, seed), model, train, (("twin", task),),
                                   tags=tuple(tags.items())))
    return out


def decompiler_specs(P: Preset, split_by: str = "tokens") -> list[RunSpec]:
    """A causal transformer reading weight tokens and writing the program: on clean and on
    scrambled weights, ``dec_seeds`` seeds each; ``split_by="function"``: the same
    decompilers trained on the fair benchmark's split (kind ``decompiler_fair``)."""
    out = []
    kind, prefix = ("decompiler", "decompiler") if split_by == "tokens" else ("decompiler_fair", "decompiler-fair")
    for weights in ("clean", "scrambled"):
        task = decompile_task(P, weights == "scrambled", split_by=split_by)
        # causal: it writes the program token by token after reading the weights
        model = TransformerConfig(n_layers=P.dec_layers, d_model=P.dec_d_model, n_heads=4,
                                  vocab_size=task.vocab.size, max_seq_len=task.seq_len, input_kind="vectors",
                                  d_input=task.d_input)
        for seed in range(P.dec_seeds):
            train = TrainConfig(steps=P.dec_steps, batch_size=32, lr=3e-3, weight_decay=0.01,
                                warmup_steps=P.dec_steps // 20, lr_schedule="cosine", grad_clip=1.0, seed=seed,
                                n_evals=4, eval_batch=64)
            tags = dict(kind=kind, weights=weights, seed=seed)
            out.append(RunSpec(f"{prefix}-{weights}-s{seed}", model, train, (("decompile", task),),
                               tags=tuple(tags.items())))
    return out


def specs(P: Preset) -> list[RunSpec]:
    """Every run of the preset's parts: main (twins, token-split decompilers), fair."""
    main = twin_specs(P) + decompiler_specs(P) if P.main else []
    fair = decompiler_specs(P, "function") if P.fair else []
    if P.fair:   # a fair program that is also a main fountain program has its twins once
        ids = {s.run_id for s in main}
        fair += [s for s in twin_specs(P, [("fountain", p) for p in fair_twin_programs(P)], (P.ref_width,))
                 if s.run_id not in ids]
    return main + fair


def by_program_width(specs_: list[RunSpec]) -> dict[tuple[str, float], list[RunSpec]]:
    """(program, width) -> its twin runs, by seed."""
    out: dict[tuple[str, float], list[RunSpec]] = {}
    for s in specs_:
        t = dict(s.tags)
        if t["kind"] == "twin":
            out.setdefault((t["program"], t["width"]), []).append(s)
    return out
