"""The languages of each case and the run graph of a preset.

Per cell (case, size, regularisation, seed); every phase starts from the previous phase's
final parameters with a fresh AdamW and the same warmup:
  pre            phase 1: full mix from a random init (also the fresh-learning baseline:
                 same mix, share of X, schedule and horizon as relearning)
  never1         phase 1: the mix without X (X's replay fraction 0 from step 0)
  drop_p{p}      phase 2 from pre: X replayed at fraction p (p = 0: dropped)
  joint          phase 2 from pre: full mix (upper bound; controls the optimizer restart)
  never2         phase 2 from never1: still without X ("never": S1 + S2 steps without X)
  relearn        phase 3 from drop_p0: full mix again
  never_relearn  phase 3 from never2: full mix (the control that never saw X)
  fewshot        from drop_p0: X alone, from a fixed pool of n examples (preset "fewshot")
  never_fewshot  from never2: the same n examples
"""

from __future__ import annotations

import dataclasses
import functools

from studies.ood_decay.presets import A_LENGTH, CHUNK, MODULUS, Preset
from toymodels.config import ConfigError
from toymodels.model import TransformerConfig
from toymodels.params import n_params
from toymodels.runspec import RunSpec
from toymodels.schedule import NEVER, Event, Mixture
from toymodels.tasks import make_task
from toymodels.tasks.languages import held_out_tasks, language_suite
from toymodels.trainconfig import TrainConfig

FULL_ROLES = ("pre", "never1", "drop", "joint", "never2", "relearn", "never_relearn", "fewshot", "never_fewshot")


@functools.lru_cache(maxsize=16)
def suite(case: str, n_languages: int):
    """(training tasks, eval-only tasks, X's tasks, X's own language) of one case.

    X is the last language, L = n - 1. In C and D the kept languages translate around
    a ring, and translations INTO X (from language 0 and from the middle language m)
    are part of X: their target side is X's surface form, so keeping them would keep
    training X. D holds the pair (m, L) out (eval-only, both directions): its zero-shot
    accuracy measures knowledge of X that was never trained directly.
    """
    x, mid = n_languages - 1, (n_languages - 1) // 2
    fields = dict(n_languages=n_languages, modulus=MODULUS)
    if case == "A":
        fields["length"] = A_LENGTH
    ring = [(i, (i + 1) % x) for i in range(x)]
    pairs, held = None, ()
    if case == "C":
        pairs = ring + [(0, x), (mid, x)]
    elif case == "D":
        fields["held_out_pair"] = (mid, x)
        pairs = ring + [(0, x)]
        held = held_out_tasks(**fields)
    train = language_suite(case, pairs=pairs, **fields)
    x_lang = f"{'A' if case == 'A' else 'B'}{x}"
    x_tasks = tuple(n for n, _ in train if n == x_lang or n.endswith(f"-{x}"))
    return train, held, x_tasks, x_lang


def model_config(P: Preset, n_layers: int, d_model: int) -> TransformerConfig:
    """One vocabulary and context size for every case, so a size's init is one program."""
    tasks = [t for c in P.cases for part in suite(c, P.n_languages)[:2] for _, t in part]
    return TransformerConfig(n_layers=n_layers, d_model=d_model, n_heads=4,
                             vocab_size=max(t.vocab.size for t in tasks),
                             max_seq_len=max(t.seq_len for t in tasks))


# Sweep groups ("lanes") of two runs per cell: every group of a cell's lane has the same
# size, so one compiled program (per model) serves them all, and no phase-3 run shares a
# group with the phase-2 run it starts from. Every role uses the same events (one
# "replay" per X task), so runs differ only in per-run values.
def lanes(ps) -> dict[str, str]:
    """Base-cell run id -> sweep group label."""
    out = {"pre": "phase1", "never1": "phase1"}
    for i, p in enumerate(ps):          # two replay fractions per lane
        out[f"drop_p{p:g}"] = f"drop{i // 2}"
    out.update(joint="phase2", never2="phase2", relearn="phase3", never_relearn="phase3")
    out.update(fewshot="fewshot", never_fewshot="fewshot")
    return out


AXIS_LANES = {"pre": "axis_pre", "drop_p0": "axis_drop"}   # size- and regularisation-axis cells


def specs(P: Preset) -> list[RunSpec]:
    if 0.0 not in P.ps:
        raise ConfigError(f"ps={P.ps!r}: must include 0 (the full drop that relearn starts from)")
    base_size, base_reg = P.sizes[0], P.regs[0]
    out = []
    for case in P.cases:
        for size in P.sizes:
            for reg in P.regs:
                if size != base_size and reg != base_reg:
                    continue
                axis = "base" if (size, reg) == (base_size, base_reg) else ("size" if reg == base_reg else "reg")
                for seed in range(P.seeds):
                    out += cell(P, case, size, reg, seed, axis)
    return out


def cell(P: Preset, case: str, size, reg, seed: int, axis: str) -> list[RunSpec]:
    train, held, x_tasks, x_lang = suite(case, P.n_languages)
    (size_label, n_layers, d_model), (reg_label, wd, dropout, *reg_lr) = size, reg
    lr = reg_lr[0] if reg_lr else P.lr
    model = dataclasses.replace(model_config(P, n_layers, d_model), dropout=dropout)
    tasks = tuple(train) + tuple(held)
    names = tuple(n for n, _ in train)
    prefix = f"{case}_{size_label}_{reg_label}_s{seed}"
    groups = lanes(P.ps) if axis == "base" else AXIS_LANES

    def role_spec(role: str, x_share: float | None, init: str = "", replay: float | str = ""):
        """x_share: X's fraction of every batch from step 0; None: X keeps its natural share."""
        # index into steps: 0 = phase 1, 1 = the decay window, 2 = relearning
        phase = {"pre": 0, "never1": 0, "relearn": 2, "never_relearn": 2}.get(role, 1)
        run_id = f"{role}_p{replay:g}" if role == "drop" else role
        events = tuple(Event("replay", t, NEVER if x_share is None else 0, (x_share or 0.0) / len(x_tasks))
                       for t in x_tasks)
        tc = TrainConfig(steps=P.steps[phase], batch_size=P.batch_size, lr=lr, weight_decay=wd,
                         warmup_steps=P.warmup, lr_schedule="constant", n_evals=P.n_evals[1 if phase == 1 else 0],
                         eval_spacing="log", eval_batch=P.eval_batch, seed=seed, chunk_steps=CHUNK)
        run_tasks, mixture = tasks, Mixture(names, events=events)
        if role.endswith("fewshot"):
            # X's own language alone, from a fixed pool shared by every seed (one program per case)
            n_examples, steps = P.fewshot
            pool = make_task("pool", base=dict(train)[x_lang], n=n_examples, seed=0)
            run_tasks, mixture = tasks + ((f"{x_lang}-pool", pool),), Mixture((f"{x_lang}-pool",))
            tc = dataclasses.replace(tc, steps=steps, warmup_steps=max(1, steps // 10), n_evals=P.n_evals[0])
        tags = dict(case=case, size=size_label, params=n_params(model), n_layers=n_layers, reg=reg_label,
                    axis=axis, role=role, p=replay, x_lang=x_lang, zeroshot=" ".join(n for n, _ in held))
        return RunSpec(f"{prefix}_{run_id}", model, tc, run_tasks, mixture, tags=tuple(tags.items()),
                       init_from=f"{prefix}_{init}" if init else "", group=groups[run_id])

    if axis != "base":
        return [role_spec("pre", None), role_spec("drop", 0.0, "pre", 0.0)]
    return ([role_spec("pre", None), role_spec("never1", 0.0)]
            + [role_spec("drop", q, "pre", q) for q in P.ps]
            + [role_spec("joint", None, "pre"), role_spec("never2", 0.0, "never1"),
               role_spec("relearn", None, "drop_p0"), role_spec("never_relearn", None, "never2")]
            + ([role_spec("fewshot", None, "drop_p0"), role_spec("never_fewshot", None, "never2")]
               if P.fewshot else []))
