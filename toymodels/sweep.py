"""Sweeps: a list of runs -> groups that share array shapes -> one vmapped program per group.

Every ``RunSpec`` (``toymodels.runspec``) with the same group key trains in one
group; runs whose results are complete are skipped, so rerunning a sweep resumes
it. Groups are trained in an order where every ``init_from``/``teacher`` run is
done before its users. The results folder layout is described in
``toymodels.store``, which reads it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import jax
from jax.sharding import Mesh

from toymodels.config import ConfigError
from toymodels.fit import fit
from toymodels.results import repro_record, train_rows, write_json, write_rows
from toymodels.runs import pad_runs, runs_mesh, shard_runs, to_host
from toymodels.runspec import RunSpec, runs_of
from toymodels.store import complete, final_params
from toymodels.train import Trainer


def grid(**axes: Sequence[Any]) -> list[dict[str, Any]]:
    """Cartesian product of named axes, as a list of dicts (last axis varies fastest)."""
    out: list[dict[str, Any]] = [{}]
    for name, values in axes.items():
        out = [{**d, name: v} for d in out for v in values]
    return out


def _hash(obj: Any) -> str:
    """A short stable hash of JSON data (names a group's checkpoint folder)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


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
    for gi, (key, members) in enumerate(_dependency_order(groups, by_id)):
        model, train, tasks, mixture = key[:4]
        trainer = Trainer(model, train, dict(tasks), mixture)
        runs, n_real = shard_runs(runs_of(members), mesh)
        padded = runs.size
        group_id = _hash([s.config() for s in members])
        if progress:
            print(f"group {gi + 1}/{len(groups)}: {len(members)} runs of {model.n_layers}L d{model.d_model} "
                  f"({', '.join(s.run_id for s in members[:4])}{', ...' if len(members) > 4 else ''})", flush=True)
        sharding = runs.seed.sharding
        teacher = start = None
        if members[0].teacher:
            teacher = pad_runs(final_params(out, [by_id[s.teacher] for s in members]), padded, sharding)
        if members[0].init_from:
            start = trainer.state_from_params(
                pad_runs(final_params(out, [by_id[s.init_from] for s in members]), padded, sharding), runs)
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
            write_json(run_dir / "config.json", {**spec.config(), "group": group_id, "index": i,
                                                 "group_size": padded})
            tags = dict(spec.tags)
            write_rows(run_dir / "metrics.csv", [{**r, **tags} for r in rows if r["run"] == spec.run_id])


def _check_dependencies(spec: RunSpec, by_id: dict[str, RunSpec]) -> None:
    """init_from/teacher name a run of this sweep with the same architecture."""
    for field in ("init_from", "teacher"):
        dep = getattr(spec, field)
        if not dep:
            continue
        if dep not in by_id:
            raise ConfigError(f"run {spec.run_id!r}: {field}={dep!r} is not a run of this sweep")
        if dataclasses.replace(by_id[dep].model, dropout=0.0) != dataclasses.replace(spec.model, dropout=0.0):
            raise ConfigError(f"run {spec.run_id!r}: {field}={dep!r} has a different model architecture")


def _dependency_order(groups: dict[tuple, list[RunSpec]],
                      by_id: dict[str, RunSpec]) -> Iterator[tuple[tuple, list[RunSpec]]]:
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
