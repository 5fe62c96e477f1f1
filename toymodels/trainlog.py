"""What the host keeps while training: the state handle, the log of metrics, progress.

``TrainLog`` travels inside checkpoints, so a resumed run's history equals an
uninterrupted one; ``Progress`` prints one line per second at most.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, NamedTuple

import numpy as np


class TrainState(NamedTuple):
    """Where training stands: every run's params and optimizer state, and the step."""
    params: Any   # nnx.State of Params, leaves (E, ...)
    opt: Any      # optax adam state, leaves (E, ...)
    step: int     # steps done (the same for every run)


@dataclasses.dataclass
class TrainResult:
    """A finished training: final state, eval history, chunk losses, wall time."""
    state: TrainState
    eval_steps: np.ndarray                 # (n_evals,)
    history: dict[str, dict[str, np.ndarray]]  # task -> metric -> (E, n_evals)
    train_loss: np.ndarray                 # (E, n_chunks) mean training loss per chunk
    chunk_ends: np.ndarray                 # (n_chunks,) step at the end of each chunk
    seconds: float


@dataclasses.dataclass
class TrainLog:
    """Host-side record of a training so far; checkpoints carry it so a resumed run's
    history equals an uninterrupted one."""
    evals: dict[int, dict[str, dict[str, np.ndarray]]] = dataclasses.field(default_factory=dict)
    train_loss: list[np.ndarray] = dataclasses.field(default_factory=list)  # per chunk, (E,)
    chunk_ends: list[int] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict:
        """JSON-ready lists (float32 values print exactly and read back bit for bit)."""
        return {"evals": {str(s): {t: {m: np.asarray(v).tolist() for m, v in ms.items()}
                                   for t, ms in ev.items()} for s, ev in self.evals.items()},
                "train_loss": [np.asarray(x).tolist() for x in self.train_loss],
                "chunk_ends": list(self.chunk_ends)}

    @classmethod
    def from_json(cls, d: dict) -> "TrainLog":
        """The log ``to_json`` wrote, with float32 arrays."""
        f32 = lambda v: np.asarray(v, np.float32)  # noqa: E731  (floats round-trip exactly)
        return cls({int(s): {t: {m: f32(v) for m, v in ms.items()} for t, ms in ev.items()}
                    for s, ev in d["evals"].items()},
                   [f32(x) for x in d["train_loss"]], [int(e) for e in d["chunk_ends"]])

    def result(self, state: TrainState, n_runs: int, seconds: float) -> TrainResult:
        """Histories stacked per run: metric (E, n_evals), training loss (E, n_chunks)."""
        steps = sorted(self.evals)
        history = {}
        if steps:
            for task in sorted(self.evals[steps[0]]):
                history[task] = {m: np.stack([np.asarray(self.evals[s][task][m]) for s in steps], axis=1)
                                 for m in self.evals[steps[0]][task]}
        loss = np.stack(self.train_loss, axis=1) if self.train_loss else np.zeros((n_runs, 0), np.float32)
        return TrainResult(state, np.asarray(steps, np.int64), history, loss,
                           np.asarray(self.chunk_ends, np.int64), seconds)


class Progress:
    """One stderr line at most once a second: runs, step, tokens/s, ETA, loss.

    Rates are measured from the end of the first chunk, so compilation does not
    drag the tokens/s figure down.
    """

    def __init__(self, runs: int, total: int, tokens_per_step: int, start: int, enabled: bool):
        self.runs, self.total, self.tps = runs, total, tokens_per_step
        self.enabled = enabled and total > start
        self.first: tuple[int, float] | None = None
        self.last = 0.0

    def update(self, step: int, loss: float):
        """Report reaching ``step`` with mean loss ``loss``; prints at most once a second."""
        now = time.perf_counter()
        if not self.enabled:
            return
        if self.first is None:
            self.first = (step, now)
        if now - self.last < 1.0 and step < self.total:
            return
        self.last = now
        s0, t0 = self.first
        rate = (step - s0) / (now - t0) if step > s0 else 0.0
        speed = f"{rate * self.tps:,.0f} tok/s | ETA {(self.total - step) / rate:4.0f}s" if rate else "compiled"
        sys.stderr.write(f"\r[{self.runs} run{'s' * (self.runs > 1)}] step {step}/{self.total} "
                         f"| {speed} | loss {loss:.4f}   ")
        sys.stderr.flush()

    def close(self):
        """End the progress line."""
        if self.enabled:
            sys.stderr.write("\n")
