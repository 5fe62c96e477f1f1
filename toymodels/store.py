"""Reading a results folder written by ``run_sweep``: which runs are complete, rows, models.

Layout under ``out``:
  runs/<run_id>/metrics.csv   tidy rows, written last (its presence = complete)
  runs/<run_id>/config.json   resolved configs, group folder and index in it
  groups/<hash>/              orbax checkpoints of a group (final state kept)
  repro.json                  command, code version, packages, devices
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from toymodels.checkpoint import Checkpointer
from toymodels.config import ConfigError
from toymodels.model import Transformer, abstract_model
from toymodels.results import read_rows
from toymodels.runspec import RunSpec, runs_of
from toymodels.train import Trainer
from toymodels.trainlog import TrainState


def complete(out: str | os.PathLike, spec: RunSpec) -> bool:
    """True if the run's results exist; a run id reused for another config is an error."""
    run_dir = Path(out) / "runs" / spec.run_id
    if not (run_dir / "metrics.csv").exists():
        return False
    saved = json.loads((run_dir / "config.json").read_text())
    config = spec.config()
    if {k: saved.get(k, "") for k in config} != config:
        raise ConfigError(f"run {spec.run_id!r} in {out} has results from a different config; "
                          "use a new run_id or another output folder")
    return True


def _run_info(out: Path, spec: RunSpec) -> dict:
    """The run's config.json (holds its group folder, index and the group's padded size)."""
    return json.loads((out / "runs" / spec.run_id / "config.json").read_text())


def _restore_group(out: Path, spec: RunSpec) -> TrainState:
    """Final state of the group holding ``spec`` (all its runs, padding included)."""
    info = _run_info(out, spec)
    trainer = Trainer(spec.model, spec.train, dict(spec.tasks), spec.mixture)
    runs = runs_of([spec] * info["group_size"])   # only shapes matter for the target
    ckpt = Checkpointer(out / "groups" / info["group"], {})
    try:
        restored = ckpt.restore(trainer.abstract_state(runs), check_config=False)
    finally:
        ckpt.close()
    if restored is None:
        raise FileNotFoundError(f"no checkpoint for run {spec.run_id!r} in {out}/groups/{info['group']}")
    return restored[0]


def final_params(out: str | os.PathLike, specs: Sequence[RunSpec]):
    """Final parameters of completed runs, stacked on a leading runs axis (one restore per group)."""
    out = Path(out)
    cache: dict[str, object] = {}
    rows = []
    for spec in specs:
        info = _run_info(out, spec)
        if info["group"] not in cache:
            cache[info["group"]] = _restore_group(out, spec).params
        rows.append(jax.tree.map(lambda x, i=info["index"]: x[i], cache[info["group"]]))
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
    out = Path(out)
    state = _restore_group(out, spec)
    trainer = Trainer(spec.model, spec.train, dict(spec.tasks), spec.mixture)
    return trainer.model(state, run=_run_info(out, spec)["index"])


def load_models(out: str | os.PathLike, specs: Sequence[RunSpec]) -> list[Transformer]:
    """Trained models of completed runs of one architecture, numpy-backed (one restore per group)."""
    archs = {dataclasses.replace(s.model, dropout=0.0) for s in specs}
    if len(archs) > 1:
        raise ConfigError(f"load_models needs runs of one architecture; got {len(archs)}: "
                          f"{', '.join(s.run_id for s in specs[:8])}")
    params = jax.tree.map(np.asarray, final_params(out, specs))   # numpy: slicing compiles nothing
    graphdef = abstract_model(specs[0].model)[0]
    return [nnx.merge(graphdef, jax.tree.map(lambda x, i=i: x[i], params)) for i in range(len(specs))]
