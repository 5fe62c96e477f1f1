"""Orbax checkpoints at chunk boundaries, and training that resumes from them.

A checkpoint holds the train state (params and optimizer state of every run,
flattened to numbered leaves), the step, the host-side ``TrainLog`` and the
resolved config. Data and dropout keys derive from (seed, step), so the seed in
the config plus the step IS the RNG state. Orbax writes each checkpoint to a
temporary folder and renames it when complete, so a killed save is never read.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from toymodels.config import ConfigError
from toymodels.train import Runs, Trainer
from toymodels.trainlog import TrainLog, TrainResult, TrainState


def _canonical(obj: Any) -> Any:
    """JSON-normalised data (tuples become lists), so saved and live configs compare equal."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        return out
    return [] if a == b else [f"{path}: checkpoint has {a!r}, this run has {b!r}"]


class Checkpointer:
    """Saves (state, log, config) under ``directory``; refuses checkpoints of another config."""

    def __init__(self, directory: str | os.PathLike, config: dict, max_to_keep: int = 2):
        self.directory = Path(directory).absolute()
        self.config = _canonical(config)
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False),
            item_names=("state", "log", "config"))

    def save(self, state: TrainState, log: TrainLog) -> None:
        leaves = jax.tree.leaves((state.params, state.opt))
        self.manager.save(state.step, args=ocp.args.Composite(
            state=ocp.args.StandardSave({f"{i:05d}": x for i, x in enumerate(leaves)}),
            log=ocp.args.JsonSave(log.to_json()),
            config=ocp.args.JsonSave(self.config)))
        self.manager.wait_until_finished()

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def restore(self, abstract: TrainState, check_config: bool = True) -> tuple[TrainState, TrainLog] | None:
        """The newest complete checkpoint, or None if there is none."""
        step = self.manager.latest_step()
        if step is None:
            return None
        saved = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
        diffs = _diff(saved, self.config) if check_config else []
        if diffs:
            raise ConfigError(f"checkpoint in {self.directory} (step {step}) was written by a different "
                              "config; refusing to resume. Differences:\n  " + "\n  ".join(diffs[:20])
                              + "\nUse another output folder, or delete the checkpoints to start over.")
        leaves, treedef = jax.tree.flatten((abstract.params, abstract.opt))
        target = {f"{i:05d}": jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))
                  for i, x in enumerate(leaves)}
        got = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), log=ocp.args.JsonRestore()))
        params, opt = jax.tree.unflatten(treedef, [got["state"][k] for k in sorted(got["state"])])
        return TrainState(params, opt, int(step)), TrainLog.from_json(got["log"])

    def close(self) -> None:
        self.manager.close()


def fit(trainer: Trainer, runs: Runs, directory: str | os.PathLike, *, progress: bool = True,
        extra_config: dict | None = None, every_s: float = 60.0, teacher=None,
        start: TrainState | None = None) -> TrainResult:
    """Train ``runs`` with checkpoints in ``directory``; resumes from the newest one there.

    A checkpoint is written at the first chunk boundary ``every_s`` seconds after the
    last one, and at the end. Where a run resumes never changes its numbers.
    ``start``: the state to begin from when there is no checkpoint (default: fresh init).
    ``teacher``: passed on to ``Trainer.train``.
    """
    config = {**trainer.describe(runs), **(extra_config or {})}
    ckpt = Checkpointer(directory, config)
    last = [time.monotonic()]

    def on_chunk(state: TrainState, log: TrainLog) -> None:
        if state.step >= trainer.train_cfg.steps or time.monotonic() - last[0] >= every_s:
            ckpt.save(state, log)
            last[0] = time.monotonic()

    try:
        restored = ckpt.restore(trainer.abstract_state(runs))
        state, log = restored if restored is not None else (start, None)
        if restored is not None:
            # Put the restored state where the runs live (sharded over the runs axis).
            sharding = runs.seed.sharding
            state = state._replace(params=_like(state.params, sharding), opt=_like(state.opt, sharding))
            print(f"resuming from step {state.step} ({directory})", flush=True)
        return trainer.train(runs, state, log=log, progress=progress, on_chunk=on_chunk, teacher=teacher)
    finally:
        ckpt.close()


def _like(tree, sharding):
    """Place every leaf with a leading runs axis the way ``sharding`` places the runs axis."""
    from jax.sharding import NamedSharding, PartitionSpec

    def put(x):
        if isinstance(sharding, NamedSharding) and x.ndim:
            return jax.device_put(x, NamedSharding(sharding.mesh, PartitionSpec(*sharding.spec[:1])))
        return jax.device_put(x, sharding) if x.ndim else x
    return jax.tree.map(put, tree)


def params_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
