"""Elicitation: how much information (soft-prompt tokens) it takes to push a frozen model into
a behaviour, and how fragile the prompts that do it are.

Models trained on digit functions (sort, reverse) in front of a few leading slots that soft
prompts replace (``toymodels/prompts.py``): a clean model, a backdoored one (and the same after
the backdoor faded in clean training), one whose reverse capability was dropped, one that never
saw reverse, one execution-fine-tuned on a region of inputs, and a pair pretrained with and
without metatokens. Targets: a trained behaviour with its cue removed, a dropped capability, a
backdoor's behaviour without its trigger, a fine-tuned behaviour, an uncued behaviour; each
against the same target on a random-init model of the same shape. Protocol and definitions:
docs/elicitation.md.

  presets.py   Preset, PRESETS and the study's constants
  grid.py      the model kinds (runs) and the targets (prompt training data and score)
  measure.py   soft prompts, hard prompts, fragility per (model, target) pair (cached)
  tables.py    summarize: the summary tables
  figures.py   one function per figure, from the tables alone
"""

from __future__ import annotations

from pathlib import Path

from studies.elicitation.figures import figures
from studies.elicitation.grid import specs
from studies.elicitation.measure import measure
from studies.elicitation.presets import PRESETS, Preset
from studies.elicitation.tables import summarize
from toymodels.sweep import run_sweep

NAME = "elicitation"
__all__ = ["NAME", "PRESETS", "Preset", "figures", "run", "specs", "summarize"]


def run(P: Preset, out: Path, progress: bool = True) -> None:
    """Train every model kind (resumable), then the prompts on every (model, target) pair (cached)."""
    out = Path(out)
    all_specs = specs(P)
    run_sweep(all_specs, out, progress=progress)
    measure(P, all_specs, out, progress=progress)
