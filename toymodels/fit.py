"""Training with checkpoints: ``fit`` trains a group of runs and resumes it after a kill.

Checkpoints are written at chunk boundaries (``Trainer.train``'s ``on_chunk``).
Data and dropout keys derive from (seed, step), so where a run resumes never
changes its numbers.
"""

from __future__ import annotations

import os
import time

from toymodels.checkpoint import Checkpointer
from toymodels.runs import Runs, place_like
from toymodels.train import Trainer
from toymodels.trainlog import TrainLog, TrainResult, TrainState


def fit(trainer: Trainer, runs: Runs, directory: str | os.PathLike, *, progress: bool = True,
        extra_config: dict | None = None, every_s: float = 60.0, teacher=None,
        start: TrainState | None = None) -> TrainResult:
    """Train ``runs`` with checkpoints in ``directory``; resumes from the newest one there that
    restores (a damaged newer one is moved aside with one printed line: ``Checkpointer.restore``).

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
            state = state._replace(params=place_like(state.params, sharding), opt=place_like(state.opt, sharding))
            print(f"resuming from step {state.step} ({directory})", flush=True)
        return trainer.train(runs, state, log=log, progress=progress, on_chunk=on_chunk, teacher=teacher)
    finally:
        ckpt.close()
