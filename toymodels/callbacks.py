"""Logging while training: callbacks called with one ``ChunkEvent`` after every chunk.

``fit(..., callbacks=[...])``, ``run_sweep(..., callbacks=[...])`` and the command lines'
``--tensorboard DIR`` take them; a callback is any ``Callable[[ChunkEvent], None]``, called
on process 0 only. An event holds only numbers already on the host: the chunk's loss and
eval metrics come back to the host at every chunk boundary anyway (``Trainer.train``'s
``on_chunk``, which ``fit`` uses to checkpoint), so a callback adds no device sync.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from toymodels.trainlog import TrainLog

Metrics = dict[str, dict[str, np.ndarray]]   # task -> metric -> (n,) per-run values


@dataclasses.dataclass(frozen=True)
class ChunkEvent:
    """One finished chunk of a group's training; every array is (n,), in ``run_ids`` order."""
    group: str                  # the group's id: its checkpoint folder's name (groups/<group> in a sweep)
    run_ids: tuple[str, ...]    # the group's runs (n of them), padding runs left out
    start: int                  # step the chunk began at
    step: int                   # steps done at the chunk's end
    train_loss: np.ndarray      # (n,) mean training loss over the chunk's steps
    evals: Metrics              # task -> metric -> (n,) at ``step`` if the chunk ended on an eval step, else {}
    start_evals: Metrics        # the same at ``start``, in the first event of a training (or resumption)
                                # that begins on an eval step (step 0); else {}


Callback = Callable[[ChunkEvent], None]


def _real(metrics: Metrics, n: int) -> Metrics:
    return {t: {m: np.asarray(v)[:n] for m, v in ms.items()} for t, ms in metrics.items()}


class ChunkEvents:
    """Calls ``callbacks`` with one ``ChunkEvent`` per new chunk in a training's log: give it the
    log after every chunk (``Trainer.train``'s ``on_chunk``). ``log``: the log training resumes
    with (None: a fresh start) at step ``begin``; the first ``len(run_ids)`` runs are real, the
    rest padding. A call with no new chunk in the log (a stop criterion's jump to the end) is
    no event."""

    def __init__(self, callbacks: Iterable[Callback], group: str, run_ids: Sequence[str],
                 log: TrainLog | None, begin: int):
        self.callbacks, self.group, self.run_ids = list(callbacks), group, tuple(run_ids)
        self.begin = begin
        self.first = self.seen = len(log.chunk_ends) if log is not None else 0

    def __call__(self, log: TrainLog) -> None:
        if len(log.chunk_ends) <= self.seen:
            return
        first, self.seen = self.seen == self.first, len(log.chunk_ends)
        n, step = len(self.run_ids), log.chunk_ends[-1]
        start = self.begin if first else log.chunk_ends[-2]
        event = ChunkEvent(self.group, self.run_ids, start, step, np.asarray(log.train_loss[-1])[:n],
                           _real(log.evals.get(step, {}), n), _real(log.evals.get(start, {}), n) if first else {})
        for callback in self.callbacks:
            callback(event)


# Callbacks every ``run_sweep`` in the current context also calls: how a study's command-line
# flags reach the sweeps a study starts itself. A context variable, reset when the block ends
# (also on an exception), so nothing outlives the ``with``.
_ACTIVE: contextvars.ContextVar[tuple[Callback, ...]] = contextvars.ContextVar("toymodels_callbacks", default=())


@contextlib.contextmanager
def sweep_callbacks(callbacks: Iterable[Callback]) -> Iterator[None]:
    """Within the block, every ``run_sweep`` also calls ``callbacks``."""
    token = _ACTIVE.set(_ACTIVE.get() + tuple(callbacks))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active_callbacks() -> tuple[Callback, ...]:
    """The callbacks of the enclosing ``sweep_callbacks`` blocks (outermost first)."""
    return _ACTIVE.get()


class TensorBoardLogger:
    """A callback writing per-run scalars to a TensorBoard event file in ``logdir``:
    ``<run_id>/train_loss`` and ``<run_id>/<task>/<metric>``, at the step. Needs tensorboardX
    (the ``tensorboard`` extra). The file is flushed after every event; ``close()`` (or a
    ``with`` block) ends it. A resumed training writes its steps again into a new file, and
    TensorBoard shows the newest points of a step."""

    def __init__(self, logdir: str | os.PathLike):
        try:
            import tensorboardX  # noqa: F401  (checked now, so a missing extra fails before training)
        except ImportError as err:
            raise ImportError("TensorBoardLogger needs tensorboardX: pip install 'toymodels[tensorboard]' "
                              "(the tensorboard extra)") from err
        self.logdir = Path(logdir)
        self._writer = None

    def __call__(self, event: ChunkEvent) -> None:
        if self._writer is None:   # made at the first event: processes other than 0 never write a file
            from tensorboardX import SummaryWriter
            self._writer = SummaryWriter(str(self.logdir))
        for i, run_id in enumerate(event.run_ids):
            for step, metrics in ((event.start, event.start_evals), (event.step, event.evals)):
                for task, ms in metrics.items():
                    for metric, values in ms.items():
                        self._writer.add_scalar(f"{run_id}/{task}/{metric}", float(values[i]), step)
            self._writer.add_scalar(f"{run_id}/train_loss", float(event.train_loss[i]), event.step)
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file (if one was started)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "TensorBoardLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
