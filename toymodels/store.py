"""Reading a results folder written by ``run_sweep``: which runs are complete, rows, models.

Layout under ``out``:
  runs/<run_id>/metrics.csv   tidy rows
  runs/<run_id>/config.json   resolved configs, group folder and index in it
  runs/<run_id>/done.json     written last: size and sha256 of the two files above. A run is
                              complete only while both still match it (``check_run``).
  groups/<hash>/              orbax checkpoints of a group (final state kept), and
  groups/<hash>/members.json  the group's run ids and their configs (written before training)
  repro.json                  command, code version, packages, devices

A run id has one config per folder: results or a checkpoint of another config under the
same id are refused, naming the fields that differ.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from toymodels.checkpoint import Checkpointer, config_diff
from toymodels.config import ConfigError
from toymodels.model import Transformer, TransformerConfig, abstract_model
from toymodels.results import RECORD, is_stale_tmp, read_rows, record_problem
from toymodels.runspec import RunSpec, runs_of, valid_run_id
from toymodels.schedule import Event, Mixture
from toymodels.tasks import TASKS, Task, make_task
from toymodels.train import Trainer
from toymodels.trainconfig import TrainConfig
from toymodels.trainlog import TrainState

MEMBERS = "members.json"


def _read_json(path: Path):
    """A JSON file's data, or None if it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _check_config(saved: dict, spec: RunSpec, what: str) -> None:
    """Refuse (naming the fields) when ``saved`` is the config of another run than ``spec``."""
    config = spec.config()
    diffs = config_diff({k: saved.get(k, "") for k in config}, config, saved="the saved one")
    if diffs:
        raise ConfigError(f"{what} a different config; use a new run_id or another output folder. "
                          "Differences:\n  " + "\n  ".join(diffs[:20]))


def check_run(out: str | os.PathLike, spec: RunSpec) -> str | None:
    """None if the run's results are complete and verified; else why not, naming the file
    ("" if nothing was written). Results of another config under its run id are refused."""
    run_dir = Path(out) / "runs" / spec.run_id
    if not run_dir.exists():
        return ""
    saved = _read_json(run_dir / "config.json")
    if isinstance(saved, dict):
        _check_config(saved, spec, f"run {spec.run_id!r} in {out} has results from")
    return record_problem(run_dir)


def complete(out: str | os.PathLike, spec: RunSpec) -> bool:
    """True if the run's results exist and verify; a run id reused for another config is an error."""
    return check_run(out, spec) is None


def group_members(out: str | os.PathLike) -> dict[str, dict]:
    """Every group folder's ``members.json``: hash -> {"members": [run ids], "configs": {id: config}}
    (folders without a readable one, e.g. written by older code, are left out)."""
    found = {}
    for path in sorted((Path(out) / "groups").glob(f"*/{MEMBERS}")):
        info = _read_json(path)
        if isinstance(info, dict) and isinstance(info.get("members"), list) and isinstance(info.get("configs"), dict):
            found[path.parent.name] = info
    return found


def refuse_other_checkpoints(out: str | os.PathLike, specs: Iterable[RunSpec]) -> None:
    """A run id with a checkpoint of another config in ``out`` (any group folder) is refused."""
    by_id = {s.run_id: s for s in specs}
    for group, info in group_members(out).items():
        for run_id, saved in info["configs"].items():
            if run_id in by_id and isinstance(saved, dict):
                _check_config(saved, by_id[run_id], f"run {run_id!r} has a checkpoint in "
                              f"{Path(out) / 'groups' / group} (delete that folder to drop it) from")


def _run_info(out: Path, spec: RunSpec) -> dict:
    """The run's verified config.json (holds its group folder, index and the group's padded size);
    refuses a run that is not complete or was trained with another config than ``spec``."""
    problem = check_run(out, spec)
    if problem is not None:
        raise ConfigError(f"run {spec.run_id!r} in {out} is not complete: "
                          f"{problem or 'no results'}; rerun the sweep to (re)train it")
    return json.loads((out / "runs" / spec.run_id / "config.json").read_text())


def _restore_group(out: Path, spec: RunSpec, info: dict) -> TrainState:
    """Final state of the group holding ``spec`` (all its runs, padding included); ``info``:
    the run's verified config.json (``_run_info``)."""
    trainer = Trainer(spec.model, spec.train, dict(spec.tasks), spec.mixture)
    runs = runs_of([spec] * info["group_size"])   # only shapes matter for the target
    folder = out / "groups" / info["group"]
    if not folder.is_dir():
        raise ConfigError(f"no checkpoints for run {spec.run_id!r}: {folder} does not exist")
    ckpt = Checkpointer(folder, {}, read_only=True)
    try:
        state, _ = ckpt.restore_step(spec.train.steps, trainer.abstract_state(runs), check_config=False)
    except ConfigError as e:
        raise ConfigError(f"final state of run {spec.run_id!r}: {e}. Delete {out / 'runs' / spec.run_id} "
                          "and rerun the sweep: it retrains from the newest checkpoint that restores") from None
    finally:
        ckpt.close()
    return state


def final_params(out: str | os.PathLike, specs: Sequence[RunSpec]):
    """Final parameters of completed runs, stacked on a leading runs axis (one restore per group)."""
    out = Path(out)
    cache: dict[str, object] = {}
    rows = []
    for spec in specs:
        info = _run_info(out, spec)
        if info["group"] not in cache:
            cache[info["group"]] = _restore_group(out, spec, info).params
        rows.append(jax.tree.map(lambda x, i=info["index"]: x[i], cache[info["group"]]))
    return jax.tree.map(lambda *xs: jnp.stack(xs), *rows)


def load_rows(out: str | os.PathLike, run_ids: Iterable[str] | None = None) -> list[dict]:
    """All result rows of a sweep folder (optionally only some runs) as one list.

    Only complete runs (records that verify, as ``complete`` demands) are read: with
    ``run_ids`` another is refused, naming the file; without, it is skipped and named
    in one line on stderr (a run still training, or one the next sweep retrains).
    """
    root = Path(out) / "runs"
    if run_ids is None:
        names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        skipped = {n: p for n in names if (p := record_problem(root / n)) is not None}
        if skipped:
            print(f"load_rows: skipping {len(skipped)} incomplete run(s) in {out}: "
                  + "; ".join(skipped[n] for n in list(skipped)[:5]), file=sys.stderr)
        names = [n for n in names if n not in skipped]
    else:
        names = list(run_ids)
        for name in names:
            problem = record_problem(root / name)
            if problem is not None:
                raise ConfigError(f"run {name!r} in {out} is not complete: {problem}; "
                                  "rerun the sweep to (re)train it")
    rows = []
    for name in names:
        rows += read_rows(root / name / "metrics.csv")
    return rows


def _tuples(x):
    """JSON data with lists as tuples (configs hold tuples; JSON writes them as lists)."""
    if isinstance(x, list):
        return tuple(_tuples(v) for v in x)
    if isinstance(x, dict):
        return {k: _tuples(v) for k, v in x.items()}
    return x


def _task(saved: dict) -> Task:
    """A task from its ``task_config`` (a field holding a task is one too, by its name)."""
    if saved.get("name") not in TASKS:
        raise ConfigError(f"task {saved.get('name')!r} is not registered (registered: {', '.join(sorted(TASKS))}); "
                          "a task defined outside the library: import its module before loading by run id")
    fields = {k: _task(v) if isinstance(v, dict) and "name" in v else _tuples(v)
              for k, v in saved.items() if k != "name"}
    return make_task(saved["name"], **fields)


def run_spec(out: str | os.PathLike, run_id: str) -> RunSpec:
    """The RunSpec of completed run ``run_id``, rebuilt from its ``runs/<id>/config.json``
    (its ``group`` label, which changes batching only, is not recorded and is left empty;
    tasks come in the mixture's order, then any others by label).
    An unknown id raises naming the folder and runs that are there; a run of a task that
    is not registered (defined outside the library) needs its module imported first."""
    out = Path(out)
    root = out / "runs"
    run_dir = root / str(run_id)
    if not valid_run_id(run_id) or not run_dir.is_dir():
        there = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise ConfigError(f"no run {run_id!r} in {root}: " + (
            f"runs there: {', '.join(there[:8])}{f' (and {len(there) - 8} more)' if len(there) > 8 else ''}"
            if there else "it holds no runs"))
    problem = record_problem(run_dir)
    if problem is not None:
        raise ConfigError(f"run {run_id!r} in {out} is not complete: {problem}; rerun the sweep to (re)train it")
    saved = json.loads((run_dir / "config.json").read_text())
    try:
        mix = saved["mixture"]
        # config.json sorts task labels; the mixture keeps the order they were given in
        labels = [t for t in mix["tasks"] if t in saved["tasks"]]
        labels += sorted(set(saved["tasks"]) - set(labels))
        spec = RunSpec(
            saved["run_id"], TransformerConfig(**saved["model"]), TrainConfig(**_tuples(saved["train"])),
            tuple((label, _task(saved["tasks"][label])) for label in labels),
            Mixture(tuple(mix["tasks"]), tuple(mix["weights"]), tuple(Event(**e) for e in mix["events"])),
            tuple(_tuples(saved["tags"]).items()), init_from=saved["init_from"], teacher=saved["teacher"])
    except (KeyError, TypeError) as e:
        raise ConfigError(f"{run_dir / 'config.json'} does not rebuild a RunSpec ({type(e).__name__}: {e}); "
                          "pass the run's RunSpec instead of its id") from None
    diffs = config_diff({k: saved.get(k) for k in spec.config()}, spec.config(), saved="config.json")
    if diffs:   # written by code with other config fields, or a value JSON cannot carry back
        raise ConfigError(f"run {run_id!r}: its config.json does not rebuild the same RunSpec (written by "
                          "code with other config fields, or holding a value JSON cannot carry back); pass "
                          "the RunSpec instead of its id. Differences:\n  " + "\n  ".join(diffs[:20]))
    return spec


def load_model(out: str | os.PathLike, spec: RunSpec | str) -> Transformer:
    """The trained model of a completed run (its RunSpec, or its run id: ``run_spec``),
    from its group's final checkpoint."""
    out = Path(out)
    spec = run_spec(out, spec) if isinstance(spec, str) else spec
    info = _run_info(out, spec)
    state = _restore_group(out, spec, info)
    trainer = Trainer(spec.model, spec.train, dict(spec.tasks), spec.mixture)
    return trainer.model(state, run=info["index"])


def load_models(out: str | os.PathLike, specs: Sequence[RunSpec]) -> list[Transformer]:
    """Trained models of completed runs of one architecture, numpy-backed (one restore per group)."""
    archs = {dataclasses.replace(s.model, dropout=0.0) for s in specs}
    if len(archs) > 1:
        raise ConfigError(f"load_models needs runs of one architecture; got {len(archs)}: "
                          f"{', '.join(s.run_id for s in specs[:8])}")
    params = jax.tree.map(np.asarray, final_params(out, specs))   # numpy: slicing compiles nothing
    graphdef = abstract_model(specs[0].model)[0]
    return [nnx.merge(graphdef, jax.tree.map(lambda x, i=i: x[i], params)) for i in range(len(specs))]


# -- removing a results folder (--no_resume) ---------------------------------------------------

_RUN_FILES = {"metrics.csv", "config.json", RECORD}
_GROUP = re.compile(r"^[0-9a-f]{12}$")
_CKPT = re.compile(r"^(\d+|\d+\.orbax-checkpoint-tmp.*|damaged-\d+(\.\d+)?)$")


def _plain_file(p: Path, names=(), suffixes=()) -> bool:
    return p.is_file() and not p.is_symlink() and (p.name in names or p.suffix in suffixes or is_stale_tmp(p.name))


def _plain_dir(p: Path, pattern: re.Pattern | None = None) -> bool:
    return p.is_dir() and not p.is_symlink() and (pattern is None or bool(pattern.match(p.name)))


def foreign_entries(out: str | os.PathLike, table_dir: str | os.PathLike | None = None) -> list[Path]:
    """What in ``out`` a sweep (or a study writing its tables into ``table_dir`` there) did not
    write, recognised by layout: runs/<id>/ of run records, groups/<hash>/ of checkpoints,
    analyses/ of tables and records, repro.json, and temporaries left by a kill."""
    out = Path(out)
    table_dir = Path(table_dir) if table_dir is not None else None
    bad = []
    for p in sorted(out.iterdir()):
        if _plain_file(p, names=("repro.json",)):
            continue
        if p.name == "runs" and _plain_dir(p):
            for r in sorted(p.iterdir()):
                bad += [r] if not _plain_dir(r) else [f for f in sorted(r.iterdir()) if not _plain_file(f, _RUN_FILES)]
        elif p.name == "groups" and _plain_dir(p):
            for g in sorted(p.iterdir()):
                bad += [g] if not _plain_dir(g, _GROUP) else [
                    f for f in sorted(g.iterdir()) if not (_plain_dir(f, _CKPT) or _plain_file(f, (MEMBERS,)))]
        elif p.name == "analyses" and _plain_dir(p):
            for a in sorted(p.iterdir()):
                if _plain_dir(a):
                    bad += [f for f in sorted(a.iterdir()) if not _plain_file(f, suffixes=(".csv", ".json"))]
                elif not _plain_file(a, suffixes=(".csv", ".json")):
                    bad.append(a)
        elif table_dir is not None and p.absolute() == table_dir.absolute() and _plain_dir(p):
            bad += [f for f in sorted(p.iterdir()) if not _plain_file(f, suffixes=(".csv", ".png", ".pdf"))]
        else:
            bad.append(p)
    return bad


def remove_results(out: str | os.PathLike, table_dir: str | os.PathLike | None = None) -> None:
    """Delete what a sweep (and a study's ``table_dir`` inside ``out``) wrote there, and only
    that: a folder holding anything else is refused (ConfigError naming it) before anything
    is deleted. ``out`` itself is kept."""
    out = Path(out)
    if not out.exists():
        return
    if not _plain_dir(out):
        raise ConfigError(f"{out} is not a folder of results; refusing to delete it")
    bad = foreign_entries(out, table_dir)
    if bad:
        raise ConfigError(f"{out} holds {len(bad)} thing(s) no study wrote, e.g. "
                          f"{', '.join(str(p) for p in bad[:5])}; refusing to clear it (nothing was deleted). "
                          "Move them away or choose another output folder.")
    for p in sorted(out.iterdir()):
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
