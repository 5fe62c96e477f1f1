"""Sweeps: a list of runs -> groups that share array shapes -> one vmapped program per group.

A ``RunSpec`` is fully specified by ordinary configs. Its per-run values (seed,
lr, weight decay and myopic beta from ``train``; dropout from ``model``; event
steps, replay fractions and weights from ``mixture``) become rows of the runs
axis; everything else must match for two runs to share a group. Runs whose
results are complete are skipped, so rerunning a sweep resumes it.

Output layout under ``out``:
  runs/<run_id>/metrics.csv   tidy rows, written last (its presence = complete)
  runs/<run_id>/config.json   resolved configs, group folder and index in it
  groups/<hash>/              orbax checkpoints of a group (final state kept)
  repro.json                  command, code version, packages, devices
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from toymodels.checkpoint import Checkpointer, fit
from toymodels.config import ConfigError
from toymodels.model import Transformer, TransformerConfig
from toymodels.results import read_rows, repro_record, train_rows, write_json, write_rows
from toymodels.schedule import Event, Mixture
from toymodels.tasks.base import Task
from toymodels.train import Runs, TrainConfig, Trainer, make_runs, task_configs, to_host

_RUN_ID = re.compile(r"^[A-Za-z0-9_.=,+-]+$")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    run_id: str
    model: TransformerConfig
    train: TrainConfig
    tasks: tuple[tuple[str, Task], ...]
    mixture: Mixture | None = None
    tags: tuple[tuple[str, Any], ...] = ()   # study labels copied into every result row
    init_from: str = ""   # run id (same sweep) whose final parameters this run starts from
    teacher: str = ""     # run id (same sweep) whose frozen states it reads (train.context="teacher")

    def __post_init__(self):
        if not _RUN_ID.match(self.run_id):
            raise ConfigError(f"run_id={self.run_id!r} is not allowed: use letters, digits and _.=,+-")
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "tags", tuple(self.tags))
        if self.mixture is None:
            object.__setattr__(self, "mixture", Mixture(tuple(n for n, _ in self.tasks)))
        if (self.train.context == "teacher") != bool(self.teacher):
            raise ConfigError(f"run {self.run_id!r}: train.context={self.train.context!r} "
                              + ("needs teacher=<run id>" if not self.teacher else "takes no teacher; "
                                 "set train.context='teacher'"))

    def depends_on(self) -> tuple[str, ...]:
        return tuple(r for r in (self.init_from, self.teacher) if r)

    def group_key(self) -> tuple:
        """Everything that fixes the compiled program; per-run values are zeroed out."""
        m = dataclasses.replace(self.model, dropout=0.0)
        t = dataclasses.replace(self.train, seed=0, lr=1.0, weight_decay=0.0, myopic_beta=0.0)
        mix = Mixture(self.mixture.tasks, (), tuple(Event(e.kind, e.task, 0) for e in self.mixture.events))
        return (m, t, self.tasks, mix, bool(self.init_from))


def grid(**axes: Sequence[Any]) -> list[dict[str, Any]]:
    """Cartesian product of named axes, as a list of dicts (last axis varies fastest)."""
    out: list[dict[str, Any]] = [{}]
    for name, values in axes.items():
        out = [{**d, name: v} for d in out for v in values]
    return out


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _spec_config(spec: RunSpec) -> dict:
    return json.loads(json.dumps({
        "run_id": spec.run_id, "model": dataclasses.asdict(spec.model), "train": dataclasses.asdict(spec.train),
        "tasks": task_configs(dict(spec.tasks)),
        "mixture": dataclasses.asdict(spec.mixture), "tags": dict(spec.tags),
        "init_from": spec.init_from, "teacher": spec.teacher}, default=str))


def _group_runs(specs: Sequence[RunSpec], trainer: Trainer) -> Runs:
    mix = trainer.mixture
    return make_runs(
        trainer.train_cfg, trainer.model_cfg, mix, seeds=[s.train.seed for s in specs],
        lr=[s.train.lr for s in specs], weight_decay=[s.train.weight_decay for s in specs],
        dropout=[s.model.dropout for s in specs], myopic_beta=[s.train.myopic_beta for s in specs],
        event_steps=[[e.step for e in s.mixture.events] for s in specs],
        fractions=[[e.fraction for e in s.mixture.events] for s in specs],
        weights=[list(s.mixture.weights or (1.0,) * len(mix.tasks)) for s in specs])


def runs_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over all devices (every host's, under jax.distributed) named 'runs'."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("runs",))


def shard_runs(runs: Runs, mesh: Mesh) -> tuple[Runs, int]:
    """Pad the runs axis to a multiple of the mesh size and shard it; returns (runs, n_real).

    Padding repeats the last run; its results are dropped, never written.
    """
    n, d = runs.size, mesh.devices.size
    pad = (-n) % d
    if pad:
        runs = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]), runs)
    sharding = NamedSharding(mesh, PartitionSpec("runs"))
    return jax.tree.map(lambda x: jax.device_put(x, sharding), runs), n


def complete(out: str | os.PathLike, spec: RunSpec) -> bool:
    """True if the run's results exist; a run id reused for another config is an error."""
    run_dir = Path(out) / "runs" / spec.run_id
    if not (run_dir / "metrics.csv").exists():
        return False
    saved = json.loads((run_dir / "config.json").read_text())
    if {k: saved.get(k, "") for k in _spec_config(spec)} != _spec_config(spec):
        raise ConfigError(f"run {spec.run_id!r} in {out} has results from a different config; "
                          "use a new run_id or another output folder")
    return True


def run_sweep(specs: Iterable[RunSpec], out: str | os.PathLike, *, progress: bool = True,
              mesh: Mesh | None = None, checkpoint_every_s: float = 60.0) -> None:
    """Train every incomplete run of ``specs``, one vmapped program per shape group.

    Checkpoints are written at most every ``checkpoint_every_s`` seconds (0: every chunk).
    """
    specs = list(specs)
    ids = [s.run_id for s in specs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"run ids must be unique; repeated: {', '.join(dupes)}")
    by_id = {s.run_id: s for s in specs}
    groups: dict[tuple, list[RunSpec]] = {}
    for spec in specs:
        Trainer(spec.model, spec.train, dict(spec.tasks), spec.mixture)   # validate before any compile
        _check_dependencies(spec, by_id)
        if not complete(out, spec):
            groups.setdefault(spec.group_key(), []).append(spec)
    out = Path(out)
    if jax.process_index() == 0:
        write_json(out / "repro.json", repro_record())
    mesh = mesh or runs_mesh()
    todo = sum(len(g) for g in groups.values())
    if progress:
        print(f"sweep: {len(specs)} runs, {len(specs) - todo} complete, {todo} to train in "
              f"{len(groups)} group(s) on {mesh.devices.size} device(s)", flush=True)
    for gi, (key, members) in enumerate(_dependency_order(groups, out, by_id)):
        model, train, tasks, mixture, _ = key
        trainer = Trainer(model, train, dict(tasks), mixture)
        runs, n_real = shard_runs(_group_runs(members, trainer), mesh)
        padded = runs.size
        group_id = _hash([_spec_config(s) for s in members])
        if progress:
            print(f"group {gi + 1}/{len(groups)}: {len(members)} runs of {model.n_layers}L d{model.d_model} "
                  f"({', '.join(s.run_id for s in members[:4])}{', ...' if len(members) > 4 else ''})", flush=True)
        sharding = runs.seed.sharding
        teacher = start = None
        if members[0].teacher:
            teacher = _pad_like(final_params(out, [by_id[s.teacher] for s in members]), padded, sharding)
        if members[0].init_from:
            start = trainer.state_from_params(
                _pad_like(final_params(out, [by_id[s.init_from] for s in members]), padded, sharding), runs)
        res = fit(trainer, runs, out / "groups" / group_id, progress=progress,
                  extra_config={"members": [s.run_id for s in members],
                                "teachers": [s.teacher for s in members],
                                "init_from": [s.init_from for s in members]},
                  every_s=checkpoint_every_s, teacher=teacher, start=start)
        if jax.process_index() != 0:
            continue
        T = max(t.seq_len for _, t in tasks)
        rows = train_rows(res, jax.tree.map(lambda x: x[:n_real], to_host(runs)), [s.run_id for s in members],
                          train.batch_size * T)
        for i, spec in enumerate(members):
            run_dir = out / "runs" / spec.run_id
            write_json(run_dir / "config.json", {**_spec_config(spec), "group": group_id, "index": i,
                                                 "group_size": padded})
            tags = dict(spec.tags)
            write_rows(run_dir / "metrics.csv", [{**r, **tags} for r in rows if r["run"] == spec.run_id])


def _check_dependencies(spec: RunSpec, by_id: dict[str, RunSpec]) -> None:
    for field in ("init_from", "teacher"):
        dep = getattr(spec, field)
        if not dep:
            continue
        if dep not in by_id:
            raise ConfigError(f"run {spec.run_id!r}: {field}={dep!r} is not a run of this sweep")
        if dataclasses.replace(by_id[dep].model, dropout=0.0) != dataclasses.replace(spec.model, dropout=0.0):
            raise ConfigError(f"run {spec.run_id!r}: {field}={dep!r} has a different model architecture")


def _dependency_order(groups: dict[tuple, list[RunSpec]], out: Path, by_id: dict[str, RunSpec]):
    """Groups in an order where every init_from/teacher run is trained before its users."""
    pending = dict(groups)
    done = {s.run_id for s in by_id.values() if s.run_id not in
            {m.run_id for ms in groups.values() for m in ms}}
    while pending:
        ready = [k for k, ms in pending.items() if all(d in done for m in ms for d in m.depends_on())]
        if not ready:
            stuck = sorted(m.run_id for ms in pending.values() for m in ms)
            raise ConfigError(f"runs {', '.join(stuck[:8])} depend on each other in a cycle (init_from/teacher)")
        for k in ready:
            members = pending.pop(k)
            yield k, members
            done.update(m.run_id for m in members)


def _pad_like(params, size: int, sharding):
    """Stacked params padded (repeating the last run) to ``size`` runs and placed like the runs."""
    from toymodels.checkpoint import _like
    n = jax.tree.leaves(params)[0].shape[0]
    if size > n:
        params = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], size - n, axis=0)]), params)
    return _like(params, sharding)


def _restore_group(out: Path, spec: RunSpec):
    """(final state of the group holding ``spec``, its index in the group)."""
    info = json.loads((out / "runs" / spec.run_id / "config.json").read_text())
    trainer = Trainer(spec.model, spec.train, dict(spec.tasks), spec.mixture)
    runs = _group_runs([spec] * info["group_size"], trainer)   # only shapes matter for the target
    ckpt = Checkpointer(out / "groups" / info["group"], {})
    try:
        restored = ckpt.restore(trainer.abstract_state(runs), check_config=False)
    finally:
        ckpt.close()
    if restored is None:
        raise FileNotFoundError(f"no checkpoint for run {spec.run_id!r} in {out}/groups/{info['group']}")
    return restored[0], info["index"]


def final_params(out: str | os.PathLike, specs: Sequence[RunSpec]):
    """Final parameters of completed runs, stacked on a leading runs axis (one restore per group)."""
    out = Path(out)
    cache: dict[str, tuple] = {}
    rows = []
    for spec in specs:
        group = json.loads((out / "runs" / spec.run_id / "config.json").read_text())["group"]
        if group not in cache:
            cache[group] = _restore_group(out, spec)[0].params
        index = json.loads((out / "runs" / spec.run_id / "config.json").read_text())["index"]
        rows.append(jax.tree.map(lambda x, i=index: x[i], cache[group]))
    return jax.tree.map(lambda *xs: jnp.stack(xs), *rows)


def load_rows(out: str | os.PathLike, run_ids: Iterable[str] | None = None) -> list[dict]:
    """All result rows of a sweep folder (optionally only some runs) as one list."""
    root = Path(out) / "runs"
    names = sorted(p.name for p in root.iterdir() if (p / "metrics.csv").exists()) if run_ids is None else run_ids
    rows = []
    for name in names:
        rows += read_rows(root / name / "metrics.csv")
    return rows


def load_model(out: str | os.PathLike, spec: RunSpec) -> Transformer:
    """The trained model of a completed run, from its group's final checkpoint."""
    state, index = _restore_group(Path(out), spec)
    trainer = Trainer(spec.model, spec.train, dict(spec.tasks), spec.mixture)
    return trainer.model(state, run=index)
