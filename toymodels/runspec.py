"""``RunSpec``: one training run as data, and the runs axis of runs trained together.

A spec is fully specified by ordinary configs. Its per-run values (seed, lr,
weight decay and myopic beta from ``train``; dropout from ``model``; event steps,
replay fractions and weights from ``mixture``) become rows of the runs axis;
everything else (and the explicit ``group`` label) must match for two runs to
share one compiled program.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Sequence

from toymodels.config import ConfigError
from toymodels.model import TransformerConfig
from toymodels.runs import Runs, make_runs
from toymodels.schedule import Event, Mixture
from toymodels.tasks.base import Task
from toymodels.train import task_configs
from toymodels.trainconfig import TrainConfig

_RUN_ID = re.compile(r"^[A-Za-z0-9_.=,+-]+$")


# every result row's own columns (toymodels.results.train_rows); tags are copied beside them
ROW_COLUMNS = ("run", "step", "tokens", "task", "metric", "value")


def valid_run_id(run_id) -> bool:
    """A run id names a folder under runs/: letters, digits and _.=,+- (not '.' or '..' alone)."""
    return isinstance(run_id, str) and bool(_RUN_ID.match(run_id)) and run_id not in (".", "..")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run: configs, tasks, mixture, labels, and the runs it starts from or reads."""
    run_id: str
    model: TransformerConfig
    train: TrainConfig
    tasks: tuple[tuple[str, Task], ...]
    mixture: Mixture | None = None
    tags: tuple[tuple[str, Any], ...] = ()   # study labels copied into every result row
    init_from: str = ""   # run id (same sweep) whose final parameters this run starts from
    teacher: str = ""     # run id (same sweep) it reads frozen: context="teacher" or objective="distill"
    # Runs with different labels never share a sweep group (one compiled program). It
    # changes batching, never numbers, so it is not part of the run's config or hash.
    group: str = ""

    def __post_init__(self):
        if not valid_run_id(self.run_id):
            raise ConfigError(f"run_id={self.run_id!r} is not allowed: use letters, digits and _.=,+- "
                              "(not '.' or '..' alone: a run id names a folder under runs/)")
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "tags", tuple(self.tags))
        clash = sorted({k for k, _ in self.tags} & set(ROW_COLUMNS))
        if clash:
            raise ConfigError(f"run {self.run_id!r}: tag(s) {', '.join(clash)} would overwrite the result rows' own "
                              f"columns ({', '.join(ROW_COLUMNS)}): rename them")
        if self.mixture is None:
            object.__setattr__(self, "mixture", Mixture(tuple(n for n, _ in self.tasks)))
        if self.train.needs_teacher != bool(self.teacher):
            what = f"train.context={self.train.context!r}, train.objective={self.train.objective!r}"
            raise ConfigError(f"run {self.run_id!r}: {what} " + (
                "needs teacher=<run id>" if not self.teacher else
                "takes no teacher; set train.context='teacher' or train.objective='distill'"))

    def depends_on(self) -> tuple[str, ...]:
        """Run ids that must be trained before this one (init_from, teacher)."""
        return tuple(r for r in (self.init_from, self.teacher) if r)

    def group_key(self) -> tuple:
        """Everything that fixes the compiled program (and the ``group`` label); per-run values zeroed."""
        m = dataclasses.replace(self.model, dropout=0.0)
        t = dataclasses.replace(self.train, seed=0, lr=1.0, weight_decay=0.0, myopic_beta=0.0)
        mix = Mixture(self.mixture.tasks, (), tuple(Event(e.kind, e.task, 0) for e in self.mixture.events))
        return (m, t, self.tasks, mix, bool(self.init_from), self.group)

    def config(self) -> dict:
        """The run's resolved config as JSON data: what config.json records and the group hash hashes."""
        return json.loads(json.dumps({
            "run_id": self.run_id, "model": dataclasses.asdict(self.model), "train": self.train.as_dict(),
            "tasks": task_configs(dict(self.tasks)),
            "mixture": dataclasses.asdict(self.mixture), "tags": dict(self.tags),
            "init_from": self.init_from, "teacher": self.teacher}, default=str))


def runs_of(specs: Sequence[RunSpec]) -> Runs:
    """The runs axis of specs that share a group key: one row per spec, in order."""
    first = specs[0]
    return make_runs(
        first.train, first.model, first.mixture, seeds=[s.train.seed for s in specs],
        lr=[s.train.lr for s in specs], weight_decay=[s.train.weight_decay for s in specs],
        dropout=[s.model.dropout for s in specs], myopic_beta=[s.train.myopic_beta for s in specs],
        event_steps=[[e.step for e in s.mixture.events] for s in specs],
        fractions=[[e.fraction for e in s.mixture.events] for s in specs],
        weights=[list(s.mixture.weights or (1.0,) * len(first.mixture.tasks)) for s in specs])
