"""Sweeps: a list of runs -> groups that share array shapes -> one vmapped program per group.

Every ``RunSpec`` (``toymodels.runspec``) with the same group key trains in one
group; runs whose results are complete (records verify) are skipped, so rerunning a
sweep resumes it. A run whose earlier group folder is still there trains in that same
group again, so the group's checkpoint resumes it (a damaged run record is rewritten
from the final checkpoint without training). Groups are trained in an order where
every ``init_from``/``teacher`` run is done before its users. A run whose training
loss turns non-finite is kept out: the rest of its group is retrained without it and
written, and the sweep ends with ``NonFiniteRuns`` naming it. The results folder
layout is described in ``toymodels.store``, which reads it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import jax
from jax.sharding import Mesh

from toymodels.callbacks import Callback, active_callbacks
from toymodels.config import ConfigError
from toymodels.fit import fit
from toymodels.results import (RECORD, clean_stale_tmp, repro_record, train_rows, write_json, write_record,
                               write_rows)
from toymodels.runs import default_mesh, pad_runs, shard_runs, sync_processes, to_host
from toymodels.runspec import RunSpec, runs_of
from toymodels.store import MEMBERS, check_run, final_params, group_members, refuse_other_checkpoints
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


class NonFiniteRuns(ConfigError, FloatingPointError):
    """Runs whose training loss became non-finite; the sweep's other runs were written."""


# Trainer's message (toymodels.train): "non-finite training loss in run(s) [1, 3] during steps 10..20"
_NON_FINITE = re.compile(r"run\(s\) \[([\d, ]*)\] during steps (\d+)\.\.(\d+)")


def run_sweep(specs: Iterable[RunSpec], out: str | os.PathLike, *, progress: bool = True,
              mesh: Mesh | None = None, checkpoint_every_s: float = 60.0,
              callbacks: Sequence[Callback] = ()) -> None:
    """Train every incomplete run of ``specs``, one vmapped program per shape group.

    Checkpoints are written at most every ``checkpoint_every_s`` seconds (0: every chunk).
    ``callbacks`` (and those of an enclosing ``callbacks.sweep_callbacks``) get a ``ChunkEvent``
    after every chunk of every group, on process 0 only (``toymodels.callbacks``).
    Raises ``NonFiniteRuns`` at the end, naming them, if any run's loss became non-finite.
    Under ``jax.distributed`` every process runs it; process 0 writes the results, and every
    process returns once they are written.
    """
    specs = list(specs)
    ids = [s.run_id for s in specs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"run ids must be unique; repeated: {', '.join(dupes)}")
    by_id = {s.run_id: s for s in specs}
    for spec in specs:
        Trainer(spec.model, spec.train, dict(spec.tasks), spec.mixture)   # validate before any compile
        _check_dependencies(spec, by_id)
    out = Path(out)
    refuse_other_checkpoints(out, specs)
    todo = set()
    for spec in specs:
        problem = check_run(out, spec)
        if problem is not None:
            todo.add(spec.run_id)
            if problem:
                print(f"run {spec.run_id}: {problem}; retraining it", flush=True)
    if jax.process_index() == 0:
        for folder in (out, *sorted((out / "runs").glob("*")), *sorted((out / "groups").glob("*"))):
            clean_stale_tmp(folder)   # temporaries a kill left (only that name pattern)
        write_json(out / "repro.json", repro_record())
    groups = _plan(specs, out, todo)
    sync_processes("toymodels.run_sweep.plan")   # every process plans before process 0 writes a group folder
    progress = progress and jax.process_index() == 0   # one progress line per job, not per process
    callbacks = (*callbacks, *active_callbacks())
    if progress:
        print(f"sweep: {len(specs)} runs, {len(specs) - len(todo)} complete, {len(todo)} to train in "
              f"{len(groups)} group(s) on {(mesh or default_mesh(len(specs))).devices.size} device(s)", flush=True)
    failed: dict[str, str] = {}
    for gi, members in enumerate(_dependency_order(groups, by_id, todo)):
        for m in members:
            lost = [d for d in m.depends_on() if d in failed]
            if lost:
                failed[m.run_id] = f"it depends on run {lost[0]!r}, which failed"
        members = [m for m in members if m.run_id not in failed]
        if not members:
            continue
        if progress:
            print(f"group {gi + 1}/{len(groups)}: {len(members)} runs of {members[0].model.n_layers}L "
                  f"d{members[0].model.d_model} ({', '.join(s.run_id for s in members[:4])}"
                  f"{', ...' if len(members) > 4 else ''})", flush=True)
        _train_group(members, out, by_id, todo, failed, mesh=mesh, progress=progress, every_s=checkpoint_every_s,
                     callbacks=callbacks)
    sync_processes("toymodels.run_sweep.written")   # no process reads the results before process 0 wrote them
    if failed:
        raise NonFiniteRuns(f"{len(failed)} run(s) were kept out of the results in {out} (the others were "
                            "written): " + "; ".join(f"{r!r}: {why}" for r, why in failed.items())
                            + ". Lower the learning rate or enable grad_clip; a rerun retrains only these.")


def _plan(specs: list[RunSpec], out: Path, todo: set[str]) -> list[list[RunSpec]]:
    """The groups to train. A run whose earlier group folder is there trains in that group
    again (when all its members are in this sweep with the same configs), so the group's
    checkpoint resumes it; the others form groups by group key."""
    by_id = {s.run_id: s for s in specs}
    groups, placed = [], set()
    for group_id, info in group_members(out).items():
        ids = [str(i) for i in info["members"]]
        if not (set(ids) & todo) or set(ids) & placed or not all(i in by_id for i in ids):
            continue
        members = [by_id[i] for i in ids]
        if len({m.group_key() for m in members}) == 1 and _hash([m.config() for m in members]) == group_id:
            groups.append(members)
            placed.update(ids)
    by_key: dict[tuple, list[RunSpec]] = {}
    for spec in specs:
        if spec.run_id in todo and spec.run_id not in placed:
            by_key.setdefault(spec.group_key(), []).append(spec)
    return groups + list(by_key.values())


def _train_group(members: list[RunSpec], out: Path, by_id: dict[str, RunSpec], todo: set[str],
                 failed: dict[str, str], **kw) -> None:
    """Train one group and write its incomplete members' records; a run whose loss turns
    non-finite goes into ``failed`` and the group is retrained without it."""
    while any(m.run_id in todo for m in members):
        try:
            _fit_group(members, out, by_id, todo, **kw)
            return
        except FloatingPointError as err:
            match = _NON_FINITE.search(str(err))
            if not match:
                raise
            # an index past the real runs is padding: a copy of the last run
            idx = [min(int(i), len(members) - 1) for i in match[1].split(",") if i.strip()]
            bad = sorted({members[i].run_id for i in idx})
            for run_id in bad:
                failed[run_id] = f"non-finite training loss during steps {match[2]}..{match[3]}"
            print(f"run(s) {', '.join(bad)}: non-finite training loss during steps {match[2]}..{match[3]}; "
                  "training the rest of the group without them", flush=True)
            members = [m for m in members if m.run_id not in bad]


def _fit_group(members: list[RunSpec], out: Path, by_id: dict[str, RunSpec], todo: set[str], *,
               mesh: Mesh | None, progress: bool, every_s: float, callbacks: Sequence[Callback]) -> None:
    """Train (or resume) one group in ``groups/<hash of its configs>`` and write the records
    of its members in ``todo`` (config.json, metrics.csv, then done.json last)."""
    model, train, tasks, mixture = members[0].group_key()[:4]
    trainer = Trainer(model, train, dict(tasks), mixture)
    runs, n_real = shard_runs(runs_of(members), mesh or default_mesh(len(members)))
    padded = runs.size
    group_id = _hash([s.config() for s in members])
    if jax.process_index() == 0:   # before any checkpoint: names the runs a partial checkpoint holds
        write_json(out / "groups" / group_id / MEMBERS, {"members": [s.run_id for s in members],
                                                         "configs": {s.run_id: s.config() for s in members}})
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
              every_s=every_s, teacher=teacher, start=start, callbacks=callbacks,
              run_ids=[s.run_id for s in members], group=group_id)
    host_runs = to_host(runs)   # on every process: a gather across processes under jax.distributed
    if jax.process_index() != 0:
        return
    T = max(t.seq_len for _, t in tasks)
    rows = train_rows(res, jax.tree.map(lambda x: x[:n_real], host_runs), [s.run_id for s in members],
                      train.batch_size * T, stopping=bool(train.stop_when))
    for i, spec in enumerate(members):
        if spec.run_id not in todo:
            continue   # complete already: its records are never rewritten
        run_dir = out / "runs" / spec.run_id
        (run_dir / RECORD).unlink(missing_ok=True)   # an old record never vouches for new files
        write_json(run_dir / "config.json", {**spec.config(), "group": group_id, "index": i,
                                             "group_size": padded})
        tags = dict(spec.tags)
        mine = [{**r, **tags} for r in rows if r["run"] == spec.run_id]
        write_rows(run_dir / "metrics.csv", mine)
        write_record(run_dir, ("config.json", "metrics.csv"), rows=len(mine))


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


def _dependency_order(groups: list[list[RunSpec]], by_id: dict[str, RunSpec],
                      todo: set[str]) -> Iterator[list[RunSpec]]:
    """Groups in an order where every init_from/teacher run is trained before its users."""
    pending = dict(enumerate(groups))
    done = set(by_id) - todo
    while pending:
        ready = [k for k, ms in pending.items() if all(d in done for m in ms for d in m.depends_on())]
        if not ready:
            stuck = sorted(m.run_id for ms in pending.values() for m in ms)
            raise ConfigError(f"runs {', '.join(stuck[:8])} depend on each other in a cycle (init_from/teacher)")
        for k in ready:
            members = pending.pop(k)
            yield members
            done.update(m.run_id for m in members)
