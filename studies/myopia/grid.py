"""The grid: (task, architecture) points, each trained in its arms x learning rates x seeds.

Arms, all with one architecture, data and budget: vanilla; myopic (``TrainConfig.myopic``;
the beta blend puts the removed terms back in part); bigram (past states replaced by zeros,
``context="none"``); local (starts from vanilla and trains on present losses while reading
the frozen vanilla model's past states, ``context="teacher"``).
"""

from __future__ import annotations

import dataclasses

from studies.myopia.presets import (ARMS, BASE_LR, BATCH, FAMILY_TRAIN, LOCAL_LR_FACTOR, NA, WU_FREQ, WU_LENGTH,
                                    Preset)
from toymodels.model import TransformerConfig
from toymodels.params import n_params
from toymodels.runspec import RunSpec
from toymodels.tasks import make_task
from toymodels.trainconfig import TrainConfig


@dataclasses.dataclass(frozen=True)
class Point:
    """One (task, architecture) cell of a sweep; its runs are its arms x lr factors x seeds."""
    family: str
    point: str
    task_name: str
    task_fields: tuple
    n_layers: int
    d_model: int
    arms: tuple[str, ...] = ("vanilla", "myopic")
    p: float = NA
    fillers: int = NA
    length: int = NA

    @property
    def task(self):
        return make_task(self.task_name, **dict(self.task_fields))

    def model(self) -> TransformerConfig:
        task = self.task
        heads = max(2, self.d_model // 32)
        if task.input_kind == "vectors":   # Wu et al.'s regression model: ReLU, no dropout
            return TransformerConfig(n_layers=self.n_layers, d_model=self.d_model, n_heads=2, act="relu",
                                     input_kind="vectors", d_input=task.d_input, output_kind="vectors",
                                     d_output=task.d_output, max_seq_len=task.seq_len)
        return TransformerConfig(n_layers=self.n_layers, d_model=self.d_model, n_heads=heads,
                                 vocab_size=task.vocab.size, max_seq_len=task.seq_len)


def reference_size(P: Preset) -> tuple[int, int]:
    """(n_layers, d_model) of the pairs/text cell where lengths are swept and lr is tuned."""
    return P.sizes[min(1, len(P.sizes) - 1)]


def points(P: Preset) -> list[Point]:
    ref_layers, ref_d = reference_size(P)
    # bigram and local arms only where the per-position curves and the bonus are read
    out = [Point("wu", f"p{p:g}", "wu_regression", (("p", p), ("length", WU_LENGTH), ("freq", WU_FREQ)),
                 *P.fixed_model, ARMS if p == 1.0 else ("vanilla", "myopic"), p=p) for p in P.wu_ps]
    digits, base = P.mult
    out += [Point("mult", f"{digits}x{digits}b{base}-F{f}", "multiplication",
                  (("digits", digits), ("fillers", f), ("base", base)), *P.fixed_model, fillers=f)
            for f in P.fillers]
    for fam, name, lengths, extra in (("pairs", "adjacent_pair", P.pair_lengths, (("n_symbols", 16),)),
                                      ("text", "text", P.text_lengths, ())):
        ref_len = lengths[0]   # sizes are swept at the shorter context (cheaper)
        cells = {(L, d, ref_len) for L, d in P.sizes} | {(ref_layers, ref_d, n) for n in lengths}
        out += [Point(fam, f"L{L}d{d}-T{n}", name, (("length", n), *extra), L, d,
                      ARMS if (L, d, n) == (ref_layers, ref_d, ref_len) else ("vanilla", "myopic"), length=n)
                for L, d, n in sorted(cells)]
    out.append(Point("markov", f"L{ref_layers}d{ref_d}", "markov", (("vocab_size", 16), ("length", 32)),
                     ref_layers, ref_d, ("vanilla", "myopic", "bigram")))
    return out


def reference(P: Preset, family: str) -> str:
    """The point of a family where learning rates are tuned and positions/probes are read."""
    L, d = reference_size(P)
    return f"L{L}d{d}-T{(P.pair_lengths if family == 'pairs' else P.text_lengths)[0]}"


def run_id(family: str, point: str, arm: str, lr_factor: float = 1.0, seed: int = 0) -> str:
    return f"{family}-{point}-{arm}-lr{lr_factor:.3g}-s{seed}"


def train_config(P: Preset, arm: str, seed: int, lr: float, steps: int, beta: float, batch_size: int) -> TrainConfig:
    shared = P.one_program and arm in ("vanilla", "myopic")
    return TrainConfig(
        steps=steps, batch_size=batch_size, lr=lr, weight_decay=0.01, lr_schedule="cosine",
        warmup_steps=max(1, steps // 100), seed=seed, n_evals=8,
        eval_spacing="log", eval_batch=P.eval_batch, myopic=arm == "myopic" or shared,
        myopic_beta=1.0 if shared and arm == "vanilla" else beta,
        context={"bigram": "none", "local": "teacher"}.get(arm, "live"),
        grad_diagnostics=arm == "vanilla" or shared)


def spec(P: Preset, point: Point, arm: str, seed: int, lr_factor: float = 1.0, beta: float = NA) -> RunSpec:
    """One run: ``beta`` (myopic arm only) makes it a beta-blend run."""
    steps = P.family_steps(point.family)
    family = {"lr": BASE_LR, "batch_size": BATCH, **FAMILY_TRAIN.get(point.family, {})}
    train = train_config(P, arm, seed, family["lr"] * lr_factor, steps, max(beta, 0.0), family["batch_size"])
    parent = run_id(point.family, point.point, "vanilla", lr_factor, seed)
    if arm == "local":
        # A fine-tune of a trained model: a fresh Adam state at the full rate knocked the
        # vanilla Wu model from 0.01 to 2.6 Huber in its first steps (measured), so the
        # local arm warms up over a fifth of its steps to a tenth of the rate.
        local_steps = max(1, int(steps * P.local_frac))
        train = dataclasses.replace(train, steps=local_steps, lr=train.lr * LOCAL_LR_FACTOR,
                                    warmup_steps=max(1, local_steps // 5))
    model = point.model()
    tags = dict(family=point.family, point=point.point, arm=arm if beta == NA else "beta", beta=beta,
                lr_factor=round(lr_factor, 4), seed=seed, n_layers=point.n_layers, d_model=point.d_model,
                params=n_params(model), p=point.p, fillers=point.fillers, length=point.length)
    local = parent if arm == "local" else ""
    return RunSpec(run_id(point.family, point.point, arm if beta == NA else f"beta{beta:g}", lr_factor, seed),
                   model, train, ((point.family, point.task),), tags=tuple(tags.items()),
                   init_from=local, teacher=local)


def specs(P: Preset) -> list[RunSpec]:
    out: dict[str, RunSpec] = {}

    def add(*args, **kw):
        s = spec(P, *args, **kw)
        out[s.run_id] = s

    ref = {f: reference(P, f) for f in ("pairs", "text")}
    for point in points(P):
        for seed in range(P.seeds):
            for arm in point.arms:
                add(point, arm, seed)
            if point.point == ref.get(point.family):          # the learning-rate tuning cell
                for f in P.lr_factors:
                    add(point, "vanilla", seed, f)
                    add(point, "myopic", seed, f)
            if point.family == "wu" and point.p == 1.0:         # the beta blend
                for b in P.betas:
                    add(point, "myopic", seed, beta=b)
    return list(out.values())
