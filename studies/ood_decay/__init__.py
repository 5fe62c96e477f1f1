"""Decay of a dropped capability: how fast, how deep, and what brings it back.

A model trains on a mix of toy languages; one language X (with the translations into
it) is then dropped, or replayed at a small fraction p, while training continues on the
rest. We measure how fast X's held-out loss and accuracy decay (fits, half-lives, the
weight-decay clock), how deep the erasure goes (forgetting, relearning savings against
a fresh model and against a model that never saw X, readout-only recovery, per-layer
linear probes), and how that depends on shared structure (cases A-D of
toymodels/tasks/languages.py), model size and regularisation. Part 2, the sharing axis
(sharing.py): how much X shares with the kept languages, and whether the kept languages
compute X's function or another on the same surface; X trained to a criterion first.
Part 3, persistence (persistence.py): what makes a dropped X persist, one factor at a time
(size with lr tuned per size, phase-1 length, phase-2 lr, Adam vs SGD, replay, weight decay
with and without data), half-lives in steps and in parameter displacement.
Protocol, run graph and definitions: docs/ood_decay.md.

Parts (``--part``): "cases" (A-D), "sharing" and "persistence"; a part alone trains and summarises exactly
the runs it has in the full preset.

  presets.py   Preset, PRESETS and the study's constants
  grid.py      the languages of each case and the run graph (specs)
  measure.py   probes and readout refits of the final models (cached analyses)
  fits.py      decay fits, half-lives and their scaling with size
  sharing.py   part 2: the sharing axis and interference arms (run graph and tables)
  ladder.py    part 2: the intervention ladder on the dropped models (gated or scrambled?)
  patching.py  part 2: cross-model activation patching (where in the dropped model X is lost)
  persistence.py  part 3: what makes X persist (run graph and tables)
  tables.py    summarize: the summary tables
  figures.py   one function per figure, from the tables alone
"""

from __future__ import annotations

from pathlib import Path

from studies.common import reduce_to_part
from studies.ood_decay import ladder, patching, persistence, sharing
from studies.ood_decay.figures import figures
from studies.ood_decay.grid import specs
from studies.ood_decay.measure import MEASURED, measure_models
from studies.ood_decay.presets import PRESETS, Preset
from studies.ood_decay.tables import summarize
from toymodels.sweep import run_sweep

NAME = "ood_decay"
# each part: the fields that switch the other parts off
_OTHERS_OFF = {"cases": dict(sharing=None, persistence=None), "sharing": dict(cases=(), persistence=None),
               "persistence": dict(cases=(), sharing=None)}
PARTS = tuple(_OTHERS_OFF)
__all__ = ["NAME", "PARTS", "PRESETS", "Preset", "figures", "part", "run", "specs", "summarize"]


def part(P: Preset, name: str) -> Preset:
    """The preset reduced to one of PARTS."""
    return reduce_to_part(P, name, _OTHERS_OFF)


def run(P: Preset, out: Path, progress: bool = True) -> None:
    """Train every run of the preset (resumably), then measure the final models of the cases."""
    case_specs = specs(P)
    part2 = sharing.specs(P.sharing) + ladder.specs(P.sharing) if P.sharing else []
    part3 = persistence.specs(P.persistence) if P.persistence else []
    run_sweep(case_specs + part2 + part3, out, progress=progress)
    measure_models([s for s in case_specs if dict(s.tags)["role"] in MEASURED], Path(out))
    if P.sharing:
        patching.measure(P.sharing, Path(out), part2)
