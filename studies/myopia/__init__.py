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

Families: Wu's regression task D_p (p sweep, beta blend, a probe for the pre-cached
feature), reversed-digit multiplication with filler tokens, ``adjacent_pair`` (pre-caching
necessary) with the Markov chain as its control, and character-level text built from
the standard library's docstrings (size and context-length sweeps).

  presets.py   Preset, PRESETS and the study's constants
  grid.py      the points and their runs
  measure.py   per-position losses and probes of the trained models (cached)
  tables.py    summarize: the summary tables
  figures.py   figures: one function per figure
"""

from __future__ import annotations

from pathlib import Path

from studies.myopia.figures import figures
from studies.myopia.grid import specs
from studies.myopia.measure import POSITIONS, PROBES, per_position_losses, wu_probes
from studies.myopia.presets import PRESETS, Preset
from studies.myopia.tables import summarize
from toymodels.results import write_rows
from toymodels.sweep import run_sweep

NAME = "myopia"
__all__ = ["NAME", "PRESETS", "Preset", "figures", "run", "specs", "summarize"]


def run(preset: Preset, out: Path, progress: bool = True) -> None:
    """Train every run (resumable), then the analyses (cached), written as one table each."""
    all_specs = specs(preset)
    run_sweep(all_specs, out, progress=progress)
    by_id = {s.run_id: s for s in all_specs}
    write_rows(out / POSITIONS, per_position_losses(preset, out, by_id))
    write_rows(out / PROBES, wu_probes(preset, out, by_id))
