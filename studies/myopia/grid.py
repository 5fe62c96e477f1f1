"""The grid: (task, architecture) points, each trained in its arms x seeds.

Arms, all with one architecture, data and budget: vanilla; myopic (``TrainConfig.myopic``;
the beta blend puts the removed terms back in part); band k (myopic with the gradient kept
on attention links at most k positions back, ``TrainConfig.myopic_band``); bigram (past
states replaced by zeros, ``context="none"``); local (starts from vanilla and trains on
present losses while reading the frozen vanilla model's past states, ``context="teacher"``).

Two phases. The learning-rate grid: at each family's reference point, vanilla and myopic,
each at every rate of its own grid (widened at an edge until the best rate, by validation
loss, is inside it), ``lr_seeds`` seeds. Then every other run at its arm's chosen rate: bigram and
band runs at vanilla's, local at a tenth of vanilla's (it fine-tunes vanilla).
"""

from __future__ import annotations

import dataclasses

from studies.myopia.presets import (BASE_LR, BATCH, LOCAL_LR_FACTOR, NA, WU_FREQ, WU_LENGTH, Preset)
from toymodels.model import TransformerConfig
from toymodels.params import n_params
from toymodels.runspec import RunSpec
from toymodels.tasks import make_task
from toymodels.trainconfig import TrainConfig


@dataclasses.dataclass(frozen=True)
class Point:
    """One (task, architecture) cell of the grid."""
    family: str
    point: str
    task_name: str
    task_fields: tuple
    n_layers: int
    d_model: int
    arms: tuple[str, ...] = ("vanilla", "myopic")
    reference: bool = False      # where learning rates are tuned, bands swept, positions read
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


ALL_ARMS = ("vanilla", "myopic", "bigram", "local")


def points(P: Preset, families: tuple[str, ...] | None = None) -> list[Point]:
    """The points of ``families`` (default: the preset's main families, ``P.families``)."""
    out = [Point("wu", f"p{p:g}", "wu_regression", (("p", p), ("length", WU_LENGTH), ("freq", WU_FREQ)),
                 *P.wu_model, ALL_ARMS if p == 1.0 else ("vanilla", "myopic"), reference=p == 1.0, p=p)
           for p in P.wu_ps]
    digits, base = P.mult
    out += [Point("mult", f"{digits}x{digits}b{base}-F{f}", "multiplication",
                  (("digits", digits), ("fillers", f), ("base", base)), *P.mult_model,
                  reference=f == P.fillers[0], fillers=f) for f in P.fillers]
    for fam, name, sizes, n, extra in (("pairs", "adjacent_pair", P.pair_sizes, P.pair_length, (("n_symbols", 16),)),
                                       ("text", "text", P.text_sizes, P.text_length, ())):
        arms = ALL_ARMS if fam == "text" else ("vanilla", "myopic")
        out += [Point(fam, f"L{L}d{d}-T{n}", name, (("length", n), *extra), L, d,
                      ALL_ARMS if i == 0 else arms, reference=i == 0, length=n) for i, (L, d) in enumerate(sizes)]
    L, d = P.pair_sizes[0]
    out.append(Point("markov", f"L{L}d{d}", "markov", (("vocab_size", 16), ("length", 32)), L, d,
                     ("vanilla", "myopic", "bigram"), reference=True))
    return [pt for pt in out if pt.family in (P.families if families is None else families)]


def reference(P: Preset, family: str) -> Point:
    """The family's reference point, whether or not the preset's main part runs it."""
    return next(pt for pt in points(P, (family,)) if pt.reference)


def run_id(family: str, point: str, arm: str, lr_factor: float = 1.0, seed: int = 0) -> str:
    return f"{family}-{point}-{arm}-lr{lr_factor:.4g}-s{seed}"


def train_config(P: Preset, arm: str, seed: int, lr: float, steps: int, beta: float, band: int,
                 batch_size: int, diagnostics: bool = True) -> TrainConfig:
    """``band`` (NA = none) makes a band run of the myopic arm; ``diagnostics``: the vanilla arm
    records the off-diagonal gradient at every eval (two gradients of the eval batch, so only
    where the figure reads them: the reference points)."""
    shared = P.one_program and arm in ("vanilla", "myopic") and band == NA   # vanilla as beta = 1
    return TrainConfig(
        steps=steps, batch_size=batch_size, lr=lr, weight_decay=0.01, lr_schedule="cosine",
        warmup_steps=max(1, steps // 100), seed=seed, n_evals=P.n_evals, eval_spacing="log",
        eval_batch=P.eval_batch, myopic=arm == "myopic" or shared, myopic_band=max(band, 0),
        myopic_beta=1.0 if shared and arm == "vanilla" else beta,
        context={"bigram": "none", "local": "teacher"}.get(arm, "live"),
        grad_diagnostics=diagnostics and (arm == "vanilla" or shared))


def spec(P: Preset, point: Point, arm: str, seed: int, lr_factor: float = 1.0, beta: float = NA,
         band: int = NA, vanilla_factor: float | None = None, *, base: str = "", steps: int = 0,
         overrides: tuple = ()) -> RunSpec:
    """One run at ``lr_factor`` x the family's base rate. ``beta`` (myopic arm) makes it a
    beta-blend run, ``band`` a band run; a local run fine-tunes the vanilla run at
    ``vanilla_factor``. Other parts' runs (``convergence``) name the family whose base rate
    and batch they take (``base``), their ``steps`` and further TrainConfig fields."""
    lr_factor = float(f"{lr_factor:.4g}")   # as the tags and the run id record it: 1/3 -> 0.3333
    base = base or point.family
    steps = steps or P.family_steps(point.family)
    kind = "band" if band != NA else "beta" if beta != NA else arm     # the arm tag
    label = f"band{band}" if band != NA else f"beta{beta:g}" if beta != NA else arm
    train = train_config(P, arm, seed, BASE_LR[base] * lr_factor, steps, max(beta, 0.0), band,
                         BATCH.get(base, 32), diagnostics=point.reference)
    train = dataclasses.replace(train, **dict(overrides))
    parent = run_id(point.family, point.point, "vanilla", float(f"{vanilla_factor or lr_factor:.4g}"), seed)
    if arm == "local":
        # A fine-tune of a trained model: a fresh Adam state at the full rate knocked the
        # vanilla Wu model from 0.01 to 2.6 Huber in its first steps (measured), so the
        # local arm warms up over a fifth of its steps to a tenth of the rate.
        local_steps = max(1, int(steps * P.local_frac))
        train = dataclasses.replace(train, steps=local_steps, lr=train.lr * LOCAL_LR_FACTOR,
                                    warmup_steps=max(1, local_steps // 5))
    model = point.model()
    tags = dict(family=point.family, point=point.point, arm=kind, beta=beta, band=band, lr_factor=lr_factor,
                seed=seed, n_layers=point.n_layers, d_model=point.d_model, params=n_params(model), p=point.p,
                fillers=point.fillers, length=point.length, reference=int(point.reference))
    local = parent if arm == "local" else ""
    return RunSpec(run_id(point.family, point.point, label, lr_factor, seed), model, train,
                   ((base, point.task),), tags=tuple(tags.items()), init_from=local, teacher=local)


def grid_specs(P: Preset, factors: dict[tuple[str, str], tuple[float, ...]]) -> list[RunSpec]:
    """The learning-rate grid: each (family, arm) of ``factors`` (arm vanilla or myopic) at every
    factor of its own grid, at the family's reference point."""
    return [spec(P, reference(P, fam), arm, seed, f) for (fam, arm) in sorted(factors) for f in factors[(fam, arm)]
            for seed in range(P.lr_seeds)]


def start_grid(P: Preset, families: tuple[str, ...] | None = None) -> dict[tuple[str, str], tuple[float, ...]]:
    """Every tuned arm's first grid (``Preset.start_factors``), for ``families`` (default: the main part's)."""
    return {(fam, arm): P.start_factors(fam, arm) for fam in (P.families if families is None else families)
            for arm in ("vanilla", "myopic")}


def specs(P: Preset, chosen: dict[tuple[str, str], float]) -> list[RunSpec]:
    """Every run outside the grid, at its arm's chosen factor (``chosen[(family, arm)]``): the
    myopic arm at its own, every other arm at vanilla's. At the reference points also the
    myopic arm at vanilla's rate (``lr_seeds`` seeds; the gap at one rate and band k = 0),
    which the grid has already trained where the two arms' grids share that rate."""
    out: dict[str, RunSpec] = {}

    def add(point, arm, seed, own_rate=True, **kw):
        van = chosen[(point.family, "vanilla")]
        f = chosen[(point.family, "myopic")] if arm == "myopic" and own_rate else van
        s = spec(P, point, arm, seed, f, vanilla_factor=van, **kw)
        out[s.run_id] = s

    for point in points(P):
        n_seeds = P.mult_seeds if point.family == "mult" else P.seeds   # the reference's tuned arms: the grid
        for seed in range(n_seeds):
            for arm in point.arms:
                if not (point.reference and arm in ("vanilla", "myopic")):   # those are grid runs
                    add(point, arm, seed)
        if not point.reference:
            continue
        for seed in range(P.lr_seeds):
            add(point, "myopic", seed, own_rate=False)
        for seed in range(P.seeds):
            for b in P.band_values(point.family):
                add(point, "myopic", seed, own_rate=False, band=b)
            if point.family == "wu":
                for b in P.betas:
                    add(point, "myopic", seed, beta=b)
    return list(out.values())
