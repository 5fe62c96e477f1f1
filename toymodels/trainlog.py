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

from toymodels.schedule import NEVER


class TrainState(NamedTuple):
    """Where training stands: every run's params and optimizer state, and the step."""
    params: Any   # nnx.State of Params, leaves (E, ...)
    opt: Any      # optax adam state, leaves (E, ...)
    step: int     # steps done (the same for every run)


@dataclasses.dataclass
class TrainResult:
    """A finished training: final state, eval history, chunk losses, wall time, stop steps."""
    state: TrainState
    eval_steps: np.ndarray                 # (n_evals,)
    history: dict[str, dict[str, np.ndarray]]  # task -> metric -> (E, n_evals)
    train_loss: np.ndarray                 # (E, n_chunks) mean training loss per chunk
    chunk_ends: np.ndarray                 # (n_chunks,) step at the end of each chunk
    seconds: float
    stop_step: np.ndarray                  # (E,) int32 step each run met train.stop_when; NEVER: not met


@dataclasses.dataclass
class TrainLog:
    """Host-side record of a training so far; checkpoints carry it so a resumed run's
    history equals an uninterrupted one (stop steps included)."""
    evals: dict[int, dict[str, dict[str, np.ndarray]]] = dataclasses.field(default_factory=dict)
    train_loss: list[np.ndarray] = dataclasses.field(default_factory=list)  # per chunk, (E,)
    chunk_ends: list[int] = dataclasses.field(default_factory=list)
    stop_step: np.ndarray | None = None   # (E,) int32 with a stop criterion (NEVER: not stopped), else None

    def to_json(self) -> dict:
        """JSON-ready lists (float32 values print exactly and read back bit for bit)."""
        out = {"evals": {str(s): {t: {m: np.asarray(v).tolist() for m, v in ms.items()}
                                  for t, ms in ev.items()} for s, ev in self.evals.items()},
               "train_loss": [np.asarray(x).tolist() for x in self.train_loss],
               "chunk_ends": list(self.chunk_ends)}
        if self.stop_step is not None:   # only with a criterion: other logs are written as before
            out["stop_step"] = np.asarray(self.stop_step).tolist()
        return out

    @classmethod
    def from_json(cls, d: dict) -> "TrainLog":
        """The log ``to_json`` wrote, with float32 arrays."""
        f32 = lambda v: np.asarray(v, np.float32)  # noqa: E731  (floats round-trip exactly)
        stop = d.get("stop_step")
        return cls({int(s): {t: {m: f32(v) for m, v in ms.items()} for t, ms in ev.items()}
                    for s, ev in d["evals"].items()},
                   [f32(x) for x in d["train_loss"]], [int(e) for e in d["chunk_ends"]],
                   None if stop is None else np.asarray(stop, np.int32))

    def all_stopped(self) -> bool:
        """Every run has met the stop criterion (False without one)."""
        return self.stop_step is not None and bool(np.all(self.stop_step != NEVER))

    def result(self, state: TrainState, n_runs: int, seconds: float) -> TrainResult:
        """Histories stacked per run: metric (E, n_evals), training loss (E, n_chunks)."""
        steps = sorted(self.evals)
        history = {}
        if steps:
            for task in sorted(self.evals[steps[0]]):
                history[task] = {m: np.stack([np.asarray(self.evals[s][task][m]) for s in steps], axis=1)
                                 for m in self.evals[steps[0]][task]}
        loss = np.stack(self.train_loss, axis=1) if self.train_loss else np.zeros((n_runs, 0), np.float32)
        stop = self.stop_step if self.stop_step is not None else np.full(n_runs, NEVER, np.int32)
        return TrainResult(state, np.asarray(steps, np.int64), history, loss,
                           np.asarray(self.chunk_ends, np.int64), seconds, np.asarray(stop, np.int32))


class Progress:
    """One progress line at most once a second: runs, step, tokens/s, ETA, loss.

    In a terminal (any stream) it is rewritten in place on stderr with carriage returns. In a
    Jupyter notebook (an IPython kernel) it is one output updated in place (IPython.display
    with a display id); where that display fails, one printed line per update at most every
    ``LINE_EVERY_S`` seconds. Rates are measured from the end of the first chunk, so
    compilation does not drag the tokens/s figure down.
    """

    LINE_EVERY_S = 5.0

    def __init__(self, runs: int, total: int, tokens_per_step: int, start: int, enabled: bool,
                 mode: str | None = None):
        """``mode``: "terminal", "notebook" or "lines" (default: "notebook" in a kernel, else "terminal")."""
        if mode not in (None, "terminal", "notebook", "lines"):
            raise ValueError(f"mode={mode!r} is not allowed: choose one of 'terminal', 'notebook', 'lines'")
        self.runs, self.total, self.tps = runs, total, tokens_per_step
        self.enabled = enabled and total > start
        self.first: tuple[int, float] | None = None
        self.last = 0.0
        self.mode = mode or ("notebook" if self.enabled and self.in_notebook() else "terminal")
        self._display = None   # the notebook's display handle, once shown

    @staticmethod
    def in_notebook() -> bool:
        """True inside an IPython kernel (Jupyter, Colab, VS Code notebooks). Never imports IPython:
        a kernel has imported it already."""
        ipython = sys.modules.get("IPython")
        try:
            shell = ipython.get_ipython() if ipython is not None else None
            return shell is not None and (type(shell).__name__ == "ZMQInteractiveShell"
                                          or "IPKernelApp" in getattr(shell, "config", {}))
        except Exception:   # a half-imported or stand-in IPython module: not a kernel
            return False

    def update(self, step: int, loss: float):
        """Report reaching ``step`` with mean loss ``loss``; shows it at most once a second."""
        now = time.perf_counter()
        if not self.enabled:
            return
        if self.first is None:
            self.first = (step, now)
        if now - self.last < (self.LINE_EVERY_S if self.mode == "lines" else 1.0) and step < self.total:
            return
        self.last = now
        s0, t0 = self.first
        rate = (step - s0) / (now - t0) if step > s0 else 0.0
        speed = f"{rate * self.tps:,.0f} tok/s | ETA {(self.total - step) / rate:4.0f}s" if rate else "compiled"
        self._show(f"[{self.runs} run{'s' * (self.runs > 1)}] step {step}/{self.total} | {speed} | loss {loss:.4f}")

    def _show(self, text: str):
        if self.mode == "notebook":
            try:
                if self._display is None:
                    from IPython.display import display
                    self._display = display({"text/plain": text}, raw=True, display_id=True)
                else:
                    self._display.update({"text/plain": text}, raw=True)
                return
            except Exception as err:   # an IPython or frontend without display updates: plain lines
                self.mode = "lines"
                sys.stderr.write(f"(progress display unavailable: {type(err).__name__}; printing lines)\n")
        sys.stderr.write(f"{text}\n" if self.mode == "lines" else f"\r{text}   ")
        sys.stderr.flush()

    def close(self):
        """End the progress line."""
        if self.enabled and self.mode == "terminal":
            sys.stderr.write("\n")
