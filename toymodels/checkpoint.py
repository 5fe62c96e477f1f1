"""Orbax checkpoints of a group's training: save, restore, and refuse another config's.

A checkpoint holds the train state (params and optimizer state of every run,
flattened to numbered leaves), the step, the host-side ``TrainLog`` and the
resolved config. Data and dropout keys derive from (seed, step), so the seed in
the config plus the step IS the RNG state. Orbax writes each checkpoint to a
temporary folder and renames it when complete, so a killed save is never read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from toymodels.config import ConfigError
from toymodels.trainlog import TrainLog, TrainState


def _canonical(obj: Any) -> Any:
    """JSON-normalised data (tuples become lists), so saved and live configs compare equal."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Every leaf where two JSON configs differ, as "path: checkpoint has a, this run has b"."""
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
        """Write (state, log, config) as the checkpoint of ``state.step``; returns when it is on disk."""
        leaves = jax.tree.leaves((state.params, state.opt))
        self.manager.save(state.step, args=ocp.args.Composite(
            state=ocp.args.StandardSave({f"{i:05d}": x for i, x in enumerate(leaves)}),
            log=ocp.args.JsonSave(log.to_json()),
            config=ocp.args.JsonSave(self.config)))
        self.manager.wait_until_finished()

    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, or None."""
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
        """Release the checkpoint manager."""
        self.manager.close()
