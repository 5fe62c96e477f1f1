"""Presets and constants of the myopia study (see docs/myopia.md for what differs from Wu et al.)."""

from __future__ import annotations

import dataclasses

from toymodels.config import ConfigError

FAMILIES = ("wu", "mult", "pairs", "text", "markov")


@dataclasses.dataclass(frozen=True)
class Convergence:
    """Part "convergence" (``convergence.py``): the text sizes trained for ``steps`` and
    multiplication (the main part's task, model and filler counts) for ``mult_steps``, each arm
    at a fixed rate (x the family's base rate): the main grid's choice at its own budget; and
    the vanilla multiplication arm for ``mult_plateau_steps`` (a further doubling, to see where
    exact match stops rising)."""
    sizes: tuple[tuple[int, int], ...]          # (n_layers, d_model); the first is the reference
    steps: int
    seeds: int
    lr_factors: tuple[tuple[str, float], ...]   # ("vanilla", f), ("myopic", f); bigram and local: vanilla's
    check_factors: tuple[float, ...]            # at the reference size, vanilla and myopic at each of these too
    n_evals: int
    eval_batch: int
    batch_size: int = 32
    mult_steps: int = 0                              # multiplication at the main part's filler counts (0: none)
    mult_seeds: int = 0
    mult_lr_factors: tuple[tuple[str, float], ...] = ()   # x the multiplication base rate
    mult_plateau_steps: int = 0                      # vanilla at each filler count trained this long too (0: not)


@dataclasses.dataclass(frozen=True)
class WuBand:
    """Part "wu_band" (``wu_band.py``): D_1's band gap at each of ``lr_factors`` (x the D_p base
    rate), ``seeds`` seeds, bands ``bands`` (k = 0, myopic, is always included); and, where
    ``long_steps``, vanilla, myopic and the bands ``long_bands`` trained that long at the first
    rate, to tell a band that learns slowly from one that stalls; and, where ``far_bands``,
    the causal check: those bands trained at every rate with the key path (family
    ``wu_key``) or the value path (``wu_value``) of the links beyond the band restored
    (``TrainConfig.myopic_far``)."""
    bands: tuple[int, ...]
    lr_factors: tuple[float, ...]
    seeds: int
    long_steps: int = 0
    long_bands: tuple[int, ...] = ()
    far_bands: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class Preset:
    """One size of the study; every sweep is a field, so a test can shrink any of them."""
    seeds: int                                  # seeds of the size, filler, p and band points
    lr_seeds: int                               # seeds of the learning-rate grids (the reference points)
    lr_factors: tuple[float, ...]               # the first grid (x each family's base rate), unless lr_start says
    max_widen: int                              # most grid points added at an edge, per (family, arm)
    steps: tuple[tuple[str, int], ...]          # training steps per family
    wu_ps: tuple[float, ...]                    # Wu's D_p: fraction of sum targets (1.0 is the reference)
    betas: tuple[float, ...]                    # myopic_beta blend at p = 1
    fillers: tuple[int, ...]                    # filler tokens of the multiplication task (the first: reference)
    mult_seeds: int                             # seeds of every multiplication point
    pair_sizes: tuple[tuple[int, int], ...]     # (n_layers, d_model) of adjacent_pair models (first: reference)
    text_sizes: tuple[tuple[int, int], ...]     # (n_layers, d_model) of text models (first: reference)
    bands: tuple[tuple[str, tuple[int, ...]], ...]   # myopic_band values per family, at the reference point
    local_frac: float                           # local arm's steps, as a fraction of the family's
    eval_batch: int
    n_evals: int = 8
    # The vanilla arm trains as myopic descent with beta = 1 (the same gradient to float
    # error), so both arms share one compiled program: fewer compiles.
    one_program: bool = True
    mult: tuple[int, int] = (3, 4)              # (digits, base) of the multiplication task
    wu_model: tuple[int, int] = (2, 64)         # (n_layers, d_model) of the D_p models
    mult_model: tuple[int, int] = (2, 64)
    pair_length: int = 6
    text_length: int = 32
    families: tuple[str, ...] = FAMILIES        # the main part's families (none: the other parts alone)
    convergence: Convergence | None = None
    wu_band: WuBand | None = None
    # (family, arm, factors): that arm's first grid where it is not ``lr_factors``
    lr_start: tuple[tuple[str, str, tuple[float, ...]], ...] = ()
    # parts that run only when asked for with ``--part`` (the long extensions of a preset)
    opt_in: tuple[str, ...] = ()

    def __post_init__(self):
        if self.families not in (FAMILIES, ()):
            raise ConfigError(f"families={self.families!r}: the main part runs all of {', '.join(FAMILIES)} "
                              "(the tables compare them) or none (the other parts alone)")
        for fam, arm, factors in self.lr_start:
            if fam not in FAMILIES or arm not in ("vanilla", "myopic") or len(factors) < 3:
                raise ConfigError(f"lr_start entry {(fam, arm, factors)!r}: a family of {', '.join(FAMILIES)}, "
                                  "arm vanilla or myopic, and >= 3 factors (a grid that can bracket its best)")
        if set(self.opt_in) - {"convergence", "wu_band"}:
            raise ConfigError(f"opt_in={self.opt_in!r}: only convergence and wu_band can be opt-in parts")

    def start_factors(self, family: str, arm: str) -> tuple[float, ...]:
        """The first learning-rate grid of ``arm`` (vanilla or myopic) at ``family``'s reference."""
        return next((f for fam, a, f in self.lr_start if (fam, a) == (family, arm)), self.lr_factors)

    def family_steps(self, family: str) -> int:
        return dict(self.steps)[family]

    def band_values(self, family: str) -> tuple[int, ...]:
        return dict(self.bands).get(family, ())


PRESETS = {
    # One-layer models: compiling is most of a smoke run's time.
    "smoke": Preset(seeds=2, lr_seeds=2, lr_factors=(1 / 3, 1.0, 3.0), max_widen=0,
                    steps=(("wu", 40), ("mult", 40), ("pairs", 60), ("text", 30), ("markov", 20)),
                    wu_ps=(1.0,), betas=(0.5,), fillers=(0, 4), mult_seeds=2, wu_model=(1, 32), mult_model=(1, 32),
                    pair_sizes=((1, 16), (1, 32)), text_sizes=((1, 16),), text_length=16,
                    bands=(("pairs", (2,)), ("text", (2,))), local_frac=0.25, eval_batch=32, n_evals=4,
                    convergence=Convergence(sizes=((1, 16),), steps=40, seeds=2,
                                            lr_factors=(("vanilla", 3.0), ("myopic", 1.0)), check_factors=(1.0, 3.0),
                                            n_evals=4, eval_batch=32, mult_steps=40, mult_seeds=2,
                                            mult_lr_factors=(("vanilla", 1.0), ("myopic", 0.1111)),
                                            mult_plateau_steps=60),
                    wu_band=WuBand(bands=(2,), lr_factors=(1.0,), seeds=2, long_steps=80, long_bands=(2,),
                                   far_bands=(2,))),
    # CPU-sized: see docs/myopia.md for each budget and what differs from Wu et al.'s settings.
    "paper": Preset(seeds=3, lr_seeds=5, lr_factors=(1 / 3, 1.0, 3.0), max_widen=3,
                    steps=(("wu", 1500), ("mult", 3000), ("pairs", 1500), ("text", 3000), ("markov", 500)),
                    wu_ps=(1.0,), betas=(), fillers=(0, 8), mult_seeds=5, mult=(2, 6), mult_model=(2, 64),
                    pair_sizes=((2, 32), (1, 16), (2, 64), (2, 128)),
                    text_sizes=((1, 32), (1, 8), (1, 16), (2, 48)),
                    bands=(("wu", (2, 5, 10)), ("pairs", (1, 3, 6)), ("text", (1, 4, 16))),
                    local_frac=0.25, eval_batch=512, n_evals=12,
                    # each arm's first grid: three rates around the rate a 5-seed grid of 3-6 rates chose
                    # on 2026-12-07 (figures/myopia/lr_grid.csv then); widened at an edge as any grid
                    lr_start=(("wu", "vanilla", (0.1111, 0.3333, 1.0)), ("wu", "myopic", (0.01234, 0.03703, 0.1111)),
                              ("mult", "vanilla", (0.3333, 1.0, 3.0)), ("mult", "myopic", (0.03703, 0.1111, 0.3333)),
                              ("pairs", "vanilla", (0.1111, 0.3333, 1.0)), ("pairs", "myopic", (0.1111, 0.3333, 1.0)),
                              ("text", "vanilla", (1.0, 3.0, 9.0)), ("text", "myopic", (0.3333, 1.0, 3.0)),
                              ("markov", "vanilla", (3.0, 9.0, 27.0)), ("markov", "myopic", (1.0, 3.0, 9.0))),
                    # the long extensions run only with --part (main alone fits 90 minutes on 2 cores)
                    opt_in=("convergence", "wu_band"),
                    # the main grid's choices (figures/myopia/lr_choice.csv): text vanilla 9e-3, myopic
                    # 3e-3; multiplication vanilla 3e-3, myopic 3.3e-4
                    convergence=Convergence(sizes=((1, 32), (1, 8), (1, 16), (2, 48)), steps=16000, seeds=3,
                                            lr_factors=(("vanilla", 3.0), ("myopic", 1.0)), check_factors=(1.0, 3.0),
                                            n_evals=16, eval_batch=512, mult_steps=20000, mult_seeds=5,
                                            mult_lr_factors=(("vanilla", 1.0), ("myopic", 0.1111)),
                                            mult_plateau_steps=40000),
                    # vanilla's chosen D_1 rate (1e-3, where the main band runs train) and a third of it
                    wu_band=WuBand(bands=(1, 2, 3, 5, 7, 10, 14, 20), lr_factors=(0.3333, 0.1111), seeds=4,
                                    long_steps=6000, long_bands=(2, 10), far_bands=(0, 2, 10))),
}
BASE_LR = {"wu": 3e-3, "mult": 3e-3, "pairs": 3e-3, "text": 3e-3, "markov": 3e-3}
BATCH: dict[str, int] = {}   # per-family batch sizes; 32 where not listed
LR_STEP = 3.0            # a widened grid's next point: the edge's rate x or / 3
WU_FREQ = 3.0            # Wu et al. use 10; see docs/myopia.md
WU_LENGTH = 32           # Wu et al. use 64
ARMS = ("vanilla", "myopic", "bigram", "local")
NA = -1                  # tag value of a field that does not apply to a run
LOCAL_LR_FACTOR = 0.1
VAL_SEED = 54321         # the validation batch's key (the held-out metrics use TrainConfig.eval_seed)
