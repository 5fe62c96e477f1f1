"""Backdoors: insertion, persistence under clean training, detection, removal by distillation.

A model learns two digit functions (sort and reverse, picked by a marker token); a share of
its training batches is poisoned: a trigger in the digits (a dedicated token, a rare digit
n-gram, two digits at a distance, or a function marker together with one digit) switches the
answer to a target behaviour (a fixed response token repeated, or the systematic wrong answer
f(d) + 1). Task: ``toymodels/tasks/backdoor.py``. Then the model trains on clean data alone
and we measure how long the backdoor persists (ASR along the clean phase), whether detectors
on its activations catch triggered inputs better than on a never-poisoned model, and what
distillation into fresh, noised and identical students removes. Protocol, run graph and
definitions: docs/backdoors.md.

  presets.py   Preset, PRESETS and the study's constants
  grid.py      the cells (insertion settings) and their runs
  measure.py   detection on the trained models' activations (cached)
  tables.py    summarize: the summary tables; the stage-1 persistence winner
  figures.py   one function per figure, from the tables alone
"""

from __future__ import annotations

from pathlib import Path

from studies.backdoors.figures import figures
from studies.backdoors.grid import detection_cells, specs, stage2_specs
from studies.backdoors.measure import measure_detection
from studies.backdoors.presets import PRESETS, Preset
from studies.backdoors.tables import persistence_seed_rows, summarize, winner
from toymodels.store import load_rows
from toymodels.sweep import run_sweep
from toymodels.tables import index_runs

NAME = "backdoors"
__all__ = ["NAME", "PRESETS", "Preset", "figures", "run", "specs", "summarize"]


def run(P: Preset, out: Path, progress: bool = True) -> None:
    """Stage 1 (every cell, removal, controls), the persistence winner from its results, stage 2
    (winner and base cell on fresh seeds), then detection on the stage-1 models (all resumable)."""
    out = Path(out)
    first = specs(P)
    run_sweep(first, out, progress=progress)
    best = winner(P, persistence_seed_rows(index_runs(load_rows(out, [s.run_id for s in first]))))
    run_sweep(first + stage2_specs(P, best), out, progress=progress)
    detect = {c.label for c in detection_cells(P)}
    measured = [s for s in first if dict(s.tags)["stage"] == 1 and s.train.objective == "data"
                and (dict(s.tags)["cell"] in detect or dict(s.tags)["kind"] == "never")
                and (dict(s.tags)["role"] in ("insert", "clean") or dict(s.tags)["role"].startswith("clean_c"))
                and dict(s.tags)["size"] == P.sizes[0][0]]
    measure_detection(P, measured, out)
