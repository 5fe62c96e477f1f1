"""Dictionaries: sparse autoencoders on every block of a small transformer, checked against
ground truth where there is one.

Four questions, each answered in numbers (protocol and definitions: docs/dictionaries.md):
  layouts      one dictionary per block vs one shared by all blocks vs a crosscoder, at matched
               total latents and L0, on synthetic activations with planted features (ground truth)
               and on a trained model's residual streams: how much larger must the shared one be?
  joint        dictionaries trained with the model, their loss flowing into it (per block and
               shared): what it costs the model, whether fresh post-hoc dictionaries reconstruct
               its stream better, and whether their latents are still explained by the data
  meanings     does a shared latent mean the same in every block that uses it (co-firing, effect
               on the output), and which latents each block uses
  attribution  a fine-tuning that changes one behaviour: do the latents that the output change
               is attributed to belong to that behaviour (against a fine-tuning on unchanged data)

  presets.py   Preset, PRESETS and the study's constants
  grid.py      the engine-trained models (normal, altered, refit)
  measure.py   layouts, meanings and attribution per model seed (cached)
  joint_arm.py the jointly trained models and their post-hoc dictionaries (cached)
  tables.py    summarize: the summary tables
  figures.py   one function per figure, from the tables alone
"""

from __future__ import annotations

from pathlib import Path

from studies.dictionaries.figures import figures
from studies.dictionaries.grid import specs
from studies.dictionaries.joint_arm import measure_joint
from studies.dictionaries.measure import measure
from studies.dictionaries.presets import PRESETS, Preset
from studies.dictionaries.tables import summarize
from toymodels.sweep import run_sweep

NAME = "dictionaries"
__all__ = ["NAME", "PRESETS", "Preset", "figures", "run", "specs", "summarize"]


def run(P: Preset, out: Path, progress: bool = True) -> None:
    """Train the engine models (resumable), then every cached measurement."""
    out = Path(out)
    all_specs = specs(P)
    run_sweep(all_specs, out, progress=progress)
    measure(P, all_specs, out, progress=progress)
    measure_joint(P, out, progress=progress)
