"""Myopia study: how much do small transformers rely on pre-computing features for later tokens?

Wu, Morris & Levine 2024 ("Do Language Models Plan for Future Tokens?", arXiv 2404.00859)
train the same model normally (vanilla) and myopically (the loss at position t may not
shape computation at earlier positions; ``TrainConfig.myopic``) and call the loss
difference the *myopia gap*. Arms, all with one architecture, data and budget:

  vanilla   ordinary training
  myopic    myopic descent (beta blends the removed terms back in: ``myopic_beta``)
  bigram    past states replaced by zeros (``context="none"``): the no-context loss
  local     starts from vanilla and trains on present losses while reading the frozen
            vanilla model's past states (``context="teacher"``): L(vanilla) - L(local)
            is the local myopia bonus

  band k    myopic, but attention links at most k positions back keep their gradient
            (``myopic_band``): how far ahead the model pre-computes

Families: Wu's regression task D_p (a probe for the pre-cached feature), reversed-digit
multiplication with filler tokens, ``adjacent_pair`` (the positive control: pre-caching is
necessary by construction) with the Markov chain as its negative control, and
character-level text built from the standard library's docstrings (a size sweep). Every
family's learning rates are tuned per arm on a validation batch first (``tune``).

Parts (``--part``): "main" (the families above), "convergence" (the text sizes and
multiplication trained far longer, at the main grid's rates: ``convergence.py``) and
"wu_band" (D_1's band gap at more rates and seeds: ``wu_band.py``).

  presets.py   Preset, PRESETS and the study's constants
  grid.py      the points and their runs
  convergence.py  part "convergence": its runs and tables
  wu_band.py   part "wu_band": its runs and table
  measure.py   per-position losses and probes of the trained models (cached)
  tables.py    summarize: the summary tables
  figures.py   figures: one function per figure
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from studies.common import reduce_to_part
from studies.myopia import convergence, tables, wu_band
from studies.myopia.figures import figures
from studies.myopia.grid import grid_specs, specs, start_grid
from studies.myopia.measure import (CHOICE, POSITIONS, PROBES, VAL, choose, per_position_losses, validation_losses,
                                    widen, wu_probes)
from studies.myopia.presets import PRESETS, Preset
from toymodels.results import write_rows
from toymodels.store import load_rows
from toymodels.sweep import run_sweep

NAME = "myopia"
# each part: the fields that switch the other parts off
_OTHERS_OFF = {"main": dict(convergence=None, wu_band=None), "convergence": dict(families=(), wu_band=None),
               "wu_band": dict(families=(), convergence=None)}
PARTS = tuple(_OTHERS_OFF)
__all__ = ["NAME", "PARTS", "PRESETS", "Preset", "figures", "part", "run", "specs", "summarize", "tune"]


def part(P: Preset, name: str) -> Preset:
    """The preset reduced to one of PARTS (an opt-in part runs when asked for by name)."""
    return dataclasses.replace(reduce_to_part(P, name, _OTHERS_OFF), opt_in=())


def tune(preset: Preset, out: Path, progress: bool = True) -> tuple[list, dict[tuple[str, str], float]]:
    """The learning-rate grids, widened at an edge until each arm's best rate is inside them
    (or ``max_widen`` points were added): (grid runs, {(family, arm): chosen lr factor})."""
    start = factors = start_grid(preset)
    while True:
        grid = grid_specs(preset, factors)
        run_sweep(grid, out, progress=progress)
        val = validation_losses(out, grid)
        choice = choose(val)
        wider = widen(factors, choice, start, preset.max_widen)
        if wider == factors:
            break
        factors = wider
    write_rows(out / VAL, val)
    write_rows(out / CHOICE, choice)
    return grid, {(c["task"], c["arm"]): c["lr_factor"] for c in choice}


def run(preset: Preset, out: Path, progress: bool = True) -> None:
    """Tune, train every other run at its arm's chosen rate (resumable), then the analyses
    (cached), written as one table each; then parts "convergence" and "wu_band" (where the
    preset has them and they are not opt-in: ``Preset.opt_in``, run with ``--part``)."""
    if preset.families:
        _main(preset, out, progress)
    if preset.convergence and "convergence" not in preset.opt_in:
        run_sweep(convergence.specs(preset), out, progress=progress)
        write_rows(out / convergence.CHOICE, convergence.choice_rows(preset.convergence))
    if preset.wu_band and "wu_band" not in preset.opt_in:
        run_sweep(wu_band.specs(preset), out, progress=progress)
        write_rows(out / wu_band.PLAN, wu_band.plan_rows(preset))
        write_rows(out / wu_band.ATTENTION, wu_band.attention_rows(preset, out))
        write_rows(out / wu_band.MASK, wu_band.mask_rows(preset, out))


def summarize(out: Path, table_dir: Path) -> None:
    """The summary tables of every part that was run in ``out`` (its rows read once)."""
    rows = load_rows(out)
    tables.summarize(out, table_dir, rows)
    convergence.summarize(out, table_dir, rows)
    wu_band.summarize(out, table_dir, rows)


def _main(preset: Preset, out: Path, progress: bool) -> None:
    grid, chosen = tune(preset, out, progress)
    by_id = {s.run_id: s for s in grid}
    by_id.update({s.run_id: s for s in specs(preset, chosen) if s.run_id not in by_id})   # grid runs once
    run_sweep(list(by_id.values()), out, progress=progress)
    write_rows(out / POSITIONS, per_position_losses(preset, out, by_id, chosen))
    write_rows(out / PROBES, wu_probes(preset, out, by_id, chosen))
