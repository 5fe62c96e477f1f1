"""Training: the Trainer loop over jitted chunks, and the checks run before anything compiles.

One ``Trainer`` trains E runs that share array shapes as ONE compiled program
(``toymodels.programs``); every per-run hyperparameter is a row of ``Runs``
(``toymodels.runs``). Python touches the host once per chunk: eval, progress,
NaN check and the ``on_chunk`` callback (checkpoints, ``toymodels.fit``).
"""

from __future__ import annotations

import dataclasses
import numbers
import re
import time
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from toymodels.config import ConfigError, check_choice
from toymodels.model import Transformer, TransformerConfig, abstract_model
from toymodels.params import param_paths
from toymodels.programs import Programs, build_programs
from toymodels.runs import Runs, make_runs, runs_exec, to_host
from toymodels.schedule import Mixture
from toymodels.tasks.base import Batch, Task
from toymodels.trainconfig import TrainConfig
from toymodels.trainlog import Progress, TrainLog, TrainResult, TrainState


def validate(mcfg: TransformerConfig, tcfg: TrainConfig, tasks: Mapping[str, Task], mixture: Mixture) -> None:
    """Every cross-config check, raised before anything is compiled."""
    if not tasks:
        raise ConfigError("tasks is empty: give at least one task")
    for name in mixture.tasks:
        if name not in tasks:
            raise ConfigError(f"mixture task {name!r} is not among the tasks: {', '.join(tasks)}")
    losses = {tasks[n].loss for n in mixture.tasks}
    if len(losses) > 1:
        raise ConfigError(f"tasks in one mixture must share a loss; got {sorted(losses)}")
    for name, task in tasks.items():
        if task.input_kind != mcfg.input_kind:
            raise ConfigError(f"task {name!r} has {task.input_kind} inputs but model.input_kind="
                              f"{mcfg.input_kind!r}")
        if task.seq_len > mcfg.max_seq_len:
            raise ConfigError(f"task {name!r} needs sequences of {task.seq_len} positions but "
                              f"model.max_seq_len={mcfg.max_seq_len}; raise max_seq_len to >= {task.seq_len}")
        if task.input_kind == "tokens" and task.vocab.size > mcfg.vocab_size:
            raise ConfigError(f"task {name!r} needs {task.vocab.size} tokens but model.vocab_size="
                              f"{mcfg.vocab_size}; raise vocab_size to >= {task.vocab.size}")
        if task.input_kind == "vectors" and (task.d_input, task.d_output) != (mcfg.d_input, mcfg.d_output):
            raise ConfigError(f"task {name!r} has d_input={task.d_input}, d_output={task.d_output} but the "
                              f"model has d_input={mcfg.d_input}, d_output={mcfg.d_output}")
        if (task.loss == "xent") != (mcfg.output_kind == "logits"):
            raise ConfigError(f"task {name!r} uses loss {task.loss!r}, which needs output_kind="
                              f"{'logits' if task.loss == 'xent' else 'vectors'}")
    if tcfg.trainable:
        paths = param_paths(abstract_model(mcfg)[1])
        if not any(re.fullmatch(tcfg.trainable, p) for p in paths):
            raise ConfigError(f"trainable={tcfg.trainable!r} matches no parameter; parameters: {', '.join(paths)}")
    if tcfg.warmup_steps > tcfg.steps:
        raise ConfigError(f"warmup_steps={tcfg.warmup_steps} exceeds steps={tcfg.steps}")
    mixture.check_steps(tcfg.steps)
    # Training takes myopia from TrainConfig alone (one program serves myopic and vanilla
    # models), so the model's own switch would be silently ignored: refuse it.
    if mcfg.myopic or mcfg.myopic_beta != 0.0:
        raise ConfigError(f"model.myopic={mcfg.myopic}, model.myopic_beta={mcfg.myopic_beta} are not used in "
                          "training: set train.myopic (and train.myopic_beta) instead and leave the model's "
                          "at their defaults (False, 0.0)")


def task_config(task: Task) -> dict:
    """JSON-ready ``{"name": registered name, **fields}``; a field holding a task (``pool``'s
    base) is written the same way, so its name is part of the config too."""
    out = {"name": task.name, **dataclasses.asdict(task)}
    out.update({f.name: task_config(getattr(task, f.name)) for f in dataclasses.fields(task)
                if isinstance(getattr(task, f.name), Task)})
    return out


def task_configs(tasks: Mapping[str, Task]) -> dict:
    """JSON-ready ``{label: task_config(task)}`` of a task mapping."""
    return {k: task_config(t) for k, t in sorted(dict(tasks).items())}


class Trainer:
    """Trains E runs of one architecture on a task mixture as one vmapped program."""

    def __init__(self, model: TransformerConfig, train: TrainConfig, tasks: Mapping[str, Task],
                 mixture: Mixture | None = None):
        mixture = mixture or Mixture(tuple(tasks))
        validate(model, train, tasks, mixture)
        self.model_cfg, self.train_cfg, self.tasks, self.mixture = model, train, dict(tasks), mixture

    # -- programs -----------------------------------------------------------------------
    def programs(self, runs: Runs, execution: str | None = None) -> Programs:
        """The compiled programs that train ``runs``; ``execution`` ("map" | "vmap") overrides
        how a chunk walks the runs axis (default: ``runs_exec(runs)``, chosen per backend)."""
        if execution is not None:
            check_choice("execution", execution, ("map", "vmap"))
        static_t = dataclasses.replace(self.train_cfg, lr=1.0, weight_decay=0.0, seed=0, myopic_beta=0.0,
                                       chunk_steps=1, n_evals=1, eval_spacing="linear", eval_at=(),
                                       eval_batch=1, eval_seed=0)
        use_dropout = bool(np.any(to_host(runs.dropout) > 0))
        return build_programs(self.model_cfg, static_t, tuple(self.tasks.items()), self.mixture, use_dropout,
                              execution or runs_exec(runs))

    def runs(self, **kwargs) -> Runs:
        """This trainer's runs: ``make_runs`` with its configs (``seeds=[...]``, per-run overrides)."""
        return make_runs(self.train_cfg, self.model_cfg, self.mixture, **kwargs)

    def init(self, runs: Runs) -> TrainState:
        """Fresh parameters and optimizer state of every run, at step 0."""
        params, opt = self.programs(runs).init(runs.seed)
        return TrainState(params, opt, 0)

    def state_from_params(self, params, runs: Runs) -> TrainState:
        """Start ``runs`` from given parameters (leading runs axis) with a fresh optimizer, at step 0.

        E.g. continue a trained model on another mixture, or retrain only ``trainable`` parts.
        The parameters are copied: training donates its state's buffers, and the caller's
        arrays must survive that.
        """
        params = jax.tree.map(jnp.copy, params)
        return TrainState(params, self.programs(runs).opt_init(params), 0)

    def abstract_state(self, runs: Runs) -> TrainState:
        """Shapes and dtypes of ``init(runs)`` without computing it (checkpoint restore target)."""
        params, opt = jax.eval_shape(self.programs(runs).init, runs.seed)
        return TrainState(params, opt, 0)

    def describe(self, runs: Runs) -> dict:
        """The resolved configuration as JSON-ready data (stored with results and checkpoints)."""
        return {"model": dataclasses.asdict(self.model_cfg), "train": dataclasses.asdict(self.train_cfg),
                "tasks": task_configs(self.tasks),
                "mixture": dataclasses.asdict(self.mixture),
                "runs": jax.tree.map(lambda x: x.tolist(), to_host(runs._asdict()))}

    def eval_sets(self) -> dict[str, Batch]:
        """Fixed per-task eval batches, from a key no training step uses, ``split="eval"``."""
        key = jax.random.key(self.train_cfg.eval_seed)
        return {name: task.sample(jax.random.fold_in(key, i), self.train_cfg.eval_batch, split="eval")
                for i, (name, task) in enumerate(sorted(self.tasks.items()))}

    def model(self, state: TrainState, run: int = 0) -> Transformer:
        """Run ``run``'s model as an ordinary nnx module (for analysis)."""
        n = jax.tree.leaves(state.params)[0].shape[0]
        if isinstance(run, bool) or not isinstance(run, numbers.Integral) or not -n <= run < n:
            raise IndexError(f"run={run!r} is out of range: this state holds {n} run(s) (0..{n - 1})")
        graphdef = abstract_model(self.model_cfg)[0]
        return nnx.merge(graphdef, jax.tree.map(lambda x: x[run], state.params))

    # -- the loop -----------------------------------------------------------------------
    def check_teacher(self, runs: Runs, teacher) -> None:
        """A teacher (params with a runs axis) is given exactly when ``context='teacher'``."""
        ctx = self.train_cfg.context
        if (teacher is None) != (ctx != "teacher"):
            raise ConfigError(f"context={ctx!r} " + ("needs teacher parameters (one per run)" if teacher is None
                                                     else "takes no teacher; set context='teacher'"))
        if teacher is None:
            return
        want = jax.tree.map(lambda x: (runs.size, *x.shape), abstract_model(self.model_cfg)[1])
        got = jax.tree.map(lambda x: tuple(x.shape), teacher)
        if jax.tree.structure(want) != jax.tree.structure(got) or jax.tree.leaves(want) != jax.tree.leaves(got):
            raise ConfigError("teacher parameters must have the student's architecture with a leading runs "
                              f"axis of {runs.size}")

    def evaluate(self, state: TrainState, runs: Runs, teacher=None) -> dict:
        """Every task's metrics on its fixed eval set: task -> metric -> (E,) numpy."""
        self.check_teacher(runs, teacher)
        return to_host(self.programs(runs).evaluate(state.params, self.eval_sets(), teacher))

    def train(self, runs: Runs | None = None, state: TrainState | None = None, *,
              log: TrainLog | None = None, progress: bool = True,
              on_chunk: Callable[[TrainState, TrainLog], None] | None = None,
              teacher=None) -> TrainResult:
        """Train to ``train_cfg.steps``; ``state`` (and its ``log``) resume from ``state.step``.

        ``on_chunk(state, log)`` runs after every chunk (e.g. to checkpoint), with the
        metrics of that chunk already on the host. ``teacher``: frozen parameters (leading
        runs axis) whose residual streams each run reads its past from (``context='teacher'``).
        """
        tcfg = self.train_cfg
        runs = runs if runs is not None else self.runs()
        self.check_teacher(runs, teacher)
        programs = self.programs(runs)
        chunk, evaluate = programs.chunk, programs.evaluate
        state = state if state is not None else self.init(runs)
        log = log if log is not None else TrainLog()
        eval_sets = self.eval_sets()
        eval_steps = set(int(s) for s in tcfg.eval_steps())
        bounds = _chunk_bounds(tcfg.eval_steps(), tcfg.chunk_steps, state.step)
        tokens_per_step = runs.size * tcfg.batch_size * max(t.seq_len for t in self.tasks.values())
        bar = Progress(runs.size, tcfg.steps, tokens_per_step, state.step, enabled=progress)
        t0 = time.perf_counter()
        if state.step in eval_steps and state.step not in log.evals:
            log.evals[state.step] = to_host(evaluate(state.params, eval_sets, teacher))
        # Without a callback, a chunk's metrics are fetched after the next chunk is
        # dispatched, so the device never waits on the host. A callback (checkpoint)
        # needs the state before the next chunk consumes (donates) its buffers.
        pending = None
        for start, end in bounds:
            params, opt, loss = chunk(state.params, state.opt, runs, teacher, start, end - start)
            state = TrainState(params, opt, end)
            ev = evaluate(params, eval_sets, teacher) if end in eval_steps else None
            if pending is not None:
                self._finish(pending, log, bar, on_chunk)
            pending = (start, end, loss, ev, state)
            if on_chunk is not None:
                self._finish(pending, log, bar, on_chunk)
                pending = None
        if pending is not None:
            self._finish(pending, log, bar, on_chunk)
        bar.close()
        return log.result(state, runs.size, time.perf_counter() - t0)

    @staticmethod
    def _finish(pending, log: TrainLog, bar, on_chunk):
        """Bring a finished chunk's metrics to the host, check for NaN, log, report, call back."""
        start, end, loss, ev, state = pending
        loss = to_host(loss)
        bad = np.flatnonzero(~np.isfinite(loss))
        if bad.size:
            raise FloatingPointError(f"non-finite training loss in run(s) {bad.tolist()} during steps "
                                     f"{start}..{end}: lower the learning rate or enable grad_clip")
        log.train_loss.append(loss)
        log.chunk_ends.append(end)
        if ev is not None:
            log.evals[end] = to_host(ev)
        bar.update(end, float(loss.mean()))
        if on_chunk is not None:
            on_chunk(state, log)


def _chunk_bounds(eval_steps: np.ndarray, chunk_steps: int, start: int) -> list[tuple[int, int]]:
    """(start, end) pairs that end on every eval step and are at most ``chunk_steps`` long."""
    out, s = [], start
    for e in [int(x) for x in eval_steps if x > start]:
        while s < e:
            n = min(chunk_steps, e - s)
            out.append((s, s + n))
            s += n
    return out
