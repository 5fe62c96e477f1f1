"""Training with checkpoints: ``fit`` trains a group of runs and resumes it after a kill.

Checkpoints are written, and logging callbacks (``toymodels.callbacks``) called, at
chunk boundaries (``Trainer.train``'s ``on_chunk``). Data and dropout keys derive
from (seed, step), so where a run resumes never changes its numbers.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

import jax

from toymodels.callbacks import Callback, ChunkEvents
from toymodels.checkpoint import Checkpointer
from toymodels.config import ConfigError
from toymodels.runs import Runs, abstract_like, place_like
from toymodels.train import Trainer
from toymodels.trainlog import TrainLog, TrainResult, TrainState


def fit(trainer: Trainer, runs: Runs, directory: str | os.PathLike, *, progress: bool = True,
        extra_config: dict | None = None, every_s: float = 60.0, teacher=None,
        start: TrainState | None = None, callbacks: Sequence[Callback] = (),
        run_ids: Sequence[str] | None = None, group: str | None = None) -> TrainResult:
    """Train ``runs`` with checkpoints in ``directory``; resumes from the newest one there that
    restores (a damaged newer one is moved aside with one printed line: ``Checkpointer.restore``).

    A checkpoint is written at the first chunk boundary ``every_s`` seconds after the
    last one, and at the end. Where a run resumes never changes its numbers.
    ``start``: the state to begin from when there is no checkpoint (default: fresh init).
    ``teacher``: passed on to ``Trainer.train``.
    ``callbacks``: each called with a ``ChunkEvent`` after every chunk, on process 0 only, naming
    the runs ``run_ids`` (default "0", "1", ...; rows of ``runs`` past them are padding) of group
    ``group`` (default: the directory's name).
    """
    config = {**trainer.describe(runs), **(extra_config or {})}
    ckpt = Checkpointer(directory, config)
    last = [time.monotonic()]
    run_ids = [str(i) for i in range(runs.size)] if run_ids is None else list(run_ids)
    if len(run_ids) > runs.size:
        raise ConfigError(f"{len(run_ids)} run_ids for {runs.size} runs: give at most one per run")
    group = Path(directory).name if group is None else group
    events: list[ChunkEvents] = []   # set once the starting state is known

    def on_chunk(state: TrainState, log: TrainLog) -> None:
        if state.step >= trainer.train_cfg.steps or time.monotonic() - last[0] >= every_s:
            ckpt.save(state, log)
            last[0] = time.monotonic()
        for chunk_events in events:   # the log holds this chunk's metrics on the host: no device sync
            chunk_events(log)

    try:
        sharding = runs.seed.sharding
        abstract = trainer.abstract_state(runs)
        restored = ckpt.restore(abstract._replace(params=abstract_like(abstract.params, sharding),
                                                  opt=abstract_like(abstract.opt, sharding)))
        state, log = restored if restored is not None else (start, None)
        if restored is not None:
            print(f"resuming from step {state.step} ({directory})", flush=True)
        origin = None
        if trainer.train_cfg.displacement and restored is not None:   # where the runs started
            origin = (start if start is not None else trainer.init(runs)).params
        state = state if state is not None else trainer.init(runs)
        if restored is not None or len(sharding.device_set) > 1:
            # Put the state where the runs live (sharded over the runs axis). On several devices
            # init's output too: XLA leaves most of it replicated on every device, and the first
            # chunk would compile for replicated inputs and the second again for sharded ones.
            state = state._replace(params=place_like(state.params, sharding), opt=place_like(state.opt, sharding))
            origin = None if origin is None else place_like(origin, sharding)
        if callbacks and jax.process_index() == 0:
            events.append(ChunkEvents(callbacks, group, run_ids, log, state.step))
        return trainer.train(runs, state, log=log, progress=progress, on_chunk=on_chunk, teacher=teacher,
                             origin=origin)
    finally:
        ckpt.close()
