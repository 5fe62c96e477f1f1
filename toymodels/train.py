"""Training: the Trainer loop over jitted chunks, and the checks run before anything compiles.

One ``Trainer`` trains E runs that share array shapes as ONE compiled program
(``toymodels.programs``); every per-run hyperparameter is a row of ``Runs``
(``toymodels.runs``). Python touches the host once per chunk: eval, progress,
NaN check, stop steps and the ``on_chunk`` callback (checkpoints, ``toymodels.fit``).
``Trainer.continue_training`` trains a trained state on, with its data stream continued.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import time
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from toymodels.config import ConfigError, check_bool, check_choice, replace
from toymodels.model import Transformer, TransformerConfig, abstract_model
from toymodels.params import param_distance
from toymodels.programs import PROGRAMS_CACHED, Programs, build_programs, check_trainable, param_masks
from toymodels.runs import (Runs, default_mesh, make_runs, per_device, place_like, runs_devices, runs_exec, shard_runs,
                            to_host)
from toymodels.schedule import NEVER, Mixture
from toymodels.tasks.base import Batch, Task, metrics
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
    check_trainable(mcfg, tcfg)
    rule = tcfg.stop_rule()
    if rule is not None and rule.task not in tasks:
        raise ConfigError(f"stop_when={tcfg.stop_when!r} names task {rule.task!r}; tasks: {', '.join(tasks)}")
    if rule is not None and rule.metric not in metric_names(tasks[rule.task].loss):
        raise ConfigError(f"stop_when={tcfg.stop_when!r}: task {rule.task!r} has no metric {rule.metric!r}; "
                          f"metrics: {', '.join(metric_names(tasks[rule.task].loss))}")
    if tcfg.objective == "distill" and losses != {"xent"}:
        raise ConfigError(f"objective='distill' matches next-token distributions: it needs token tasks "
                          f"with loss 'xent', got {sorted(losses)}")
    if tcfg.warmup_steps > tcfg.steps:
        raise ConfigError(f"warmup_steps={tcfg.warmup_steps} exceeds steps={tcfg.steps}")
    mixture.check_steps(tcfg.steps)
    # Training takes myopia from TrainConfig alone (one program serves myopic and vanilla
    # models), so the model's own switch would be silently ignored: refuse it.
    if mcfg.myopic or mcfg.myopic_beta != 0.0:
        raise ConfigError(f"model.myopic={mcfg.myopic}, model.myopic_beta={mcfg.myopic_beta} are not used in "
                          "training: set train.myopic (and train.myopic_beta) instead and leave the model's "
                          "at their defaults (False, 0.0)")


def metric_names(loss: str) -> list[str]:
    """The metrics ``metrics`` reports for a task with this loss (from shapes alone: nothing runs)."""
    xent = loss == "xent"
    out = jax.ShapeDtypeStruct((1, 1, 2), jnp.float32)
    targets = jax.ShapeDtypeStruct((1, 1) if xent else (1, 1, 2), jnp.int32 if xent else jnp.float32)
    mask = jax.ShapeDtypeStruct((1, 1), jnp.float32)
    return list(jax.eval_shape(lambda o, t, m: metrics(o, Batch(t, t, m), loss), out, targets, mask))


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


@functools.lru_cache(maxsize=PROGRAMS_CACHED)
def _per_device_programs(programs: Programs) -> Programs:
    """``programs`` with chunk, chunk_until and evaluate run per device (``runs.per_device``);
    one wrapped copy per built program (keyed by its functions' identity), so equal configs still
    share one object. Bounded like ``build_programs``: a wrapper keeps its programs, and with them
    their compiled executables, alive, and every executable holds memory maps of its own (a study
    compiling hundreds of programs in one process ran out of the kernel's map count)."""
    return programs._replace(
        chunk=per_device(programs.chunk, (0, 1, 2, 3)), evaluate=per_device(programs.evaluate, (0, 2)),
        chunk_until=programs.chunk_until and per_device(programs.chunk_until, (0, 1, 2, 3, 6)))


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
        programs = build_programs(self.model_cfg, static_t, tuple(self.tasks.items()), self.mixture, use_dropout,
                                  execution or runs_exec(runs))
        if jax.default_backend() == "cpu" and len(runs_devices(runs)) > 1:
            # One CPU device per core: each trains its block of runs with the one-device program
            programs = _per_device_programs(programs)
        return programs

    def runs(self, **kwargs) -> Runs:
        """This trainer's runs: ``make_runs`` with its configs (``seeds=[...]``, per-run overrides),
        placed by ``default_mesh``: on CPU an ensemble is spread over the cores (one device each)
        when the count divides evenly; a run's numbers are the same wherever it trains."""
        runs = make_runs(self.train_cfg, self.model_cfg, self.mixture, **kwargs)
        mesh = default_mesh(runs.size, divide=True)
        return shard_runs(runs, mesh)[0] if mesh.devices.size > 1 else runs

    def init(self, runs: Runs) -> TrainState:
        """Fresh parameters and optimizer state of every run, at step 0."""
        params, opt = self.programs(runs).init(runs.seed)
        sharding = getattr(runs.seed, "sharding", None)
        if sharding is not None and len(sharding.device_set) > 1:
            # XLA leaves init's output mostly replicated: the second chunk would recompile
            params, opt = place_like((params, opt), sharding)
        return TrainState(params, opt, 0)

    def state_from_params(self, params, runs: Runs) -> TrainState:
        """Start ``runs`` from given parameters (leading runs axis) with a fresh optimizer, at step 0.

        E.g. continue a trained model on another mixture, or retrain only ``trainable`` parts;
        ``train.init_noise`` mixes in the run's fresh init (a noised copy).
        The parameters are copied: training donates its state's buffers, and the caller's
        arrays must survive that.
        """
        params = jax.tree.map(jnp.copy, params)
        alpha = self.train_cfg.init_noise
        if alpha > 0:   # a noised copy: (1 - alpha) * params + alpha * this run's fresh init
            fresh = self.programs(runs).init(runs.seed)[0]
            params = jax.tree.map(lambda p, f: (1.0 - alpha) * p + alpha * f, params, fresh)
        return TrainState(params, self.programs(runs).opt_init(params), 0)

    def continuation(self, start: TrainResult | TrainState, runs: Runs, *, steps: int,
                     mixture: Mixture | None = None, tasks: Mapping[str, Task] | None = None,
                     keep_optimizer: bool = True, **train_overrides) -> tuple["Trainer", Runs, TrainState]:
        """The (trainer, runs, state) that train ``start`` on for ``steps`` more steps; see
        ``continue_training`` (which trains them; ``fit`` them instead for checkpoints)."""
        state = start.state if isinstance(start, TrainResult) else start
        state = state._replace(step=int(state.step))
        if "data_offset" in train_overrides:
            raise ConfigError("data_offset is set by continue_training (to where the state's data stream "
                              "stopped); build a Trainer yourself to choose another")
        check_bool("keep_optimizer", keep_optimizer)
        tcfg = replace(self.train_cfg, **{"eval_at": (), **train_overrides, "steps": steps,
                                          "data_offset": self.train_cfg.data_offset + state.step})
        same = mixture is None and tasks is None
        tasks = self.tasks if tasks is None else dict(tasks)
        host = to_host(runs)
        # Each run keeps its own values, except of a field the overrides set for every run.
        per_run = {"seeds": host.seed, "lr": host.lr, "weight_decay": host.weight_decay,
                   "dropout": host.dropout, "myopic_beta": host.myopic_beta}
        per_run = {k: v for k, v in per_run.items() if {"seeds": "seed"}.get(k, k) not in train_overrides}

        def shift(e: int) -> int:
            """An event at old step e fires at new step e - state.step (at once if it has fired)."""
            return NEVER if e == NEVER or e - state.step > steps else max(e - state.step, 0)
        if same:   # the same mixture, where it stood
            mixture = self.mixture.with_values(self.mixture.weights, [shift(e.step) for e in self.mixture.events],
                                               [e.fraction for e in self.mixture.events])
            per_run.update(weights=host.mixture.weights, fractions=host.mixture.fractions,
                           event_steps=[[shift(int(e)) for e in row] for row in host.mixture.event_steps])
        trainer = Trainer(self.model_cfg, tcfg, tasks, mixture)
        runs = place_like(trainer.runs(**per_run), runs.seed.sharding)
        params = jax.tree.map(jnp.copy, state.params)   # training donates its state's buffers
        if not keep_optimizer:
            return trainer, runs, TrainState(params, trainer.programs(runs).opt_init(params), 0)
        abstract = abstract_model(self.model_cfg)[1]
        if param_masks(tcfg, abstract)[0] != param_masks(self.train_cfg, abstract)[0]:
            raise ConfigError(f"keep_optimizer=True needs the same trained parameters, but trainable="
                              f"{tcfg.trainable!r} differs from {self.train_cfg.trainable!r}: Adam's moments "
                              "were accumulated for another set; pass keep_optimizer=False for a fresh optimizer")
        return trainer, runs, TrainState(params, jax.tree.map(jnp.copy, state.opt), 0)

    def continue_training(self, start: TrainResult | TrainState, runs: Runs, *, steps: int,
                          mixture: Mixture | None = None, tasks: Mapping[str, Task] | None = None,
                          keep_optimizer: bool = True, progress: bool = True, teacher=None,
                          **train_overrides) -> TrainResult:
        """Train ``start`` (this trainer's result or state of ``runs``) ``steps`` more steps.

        The data stream continues where it stopped (``data_offset`` = this config's + the state's
        step), so no batch is replayed; params are ``start``'s, and so is Adam's state unless
        ``keep_optimizer=False`` (refused when the trainable set changes). ``mixture``/``tasks``:
        train on a new mixture (its events count from the continuation's step 0; every run gets
        its default rows); by default this mixture goes on where it stood (events shifted).
        ``train_overrides``: TrainConfig fields (lr, warmup_steps, stop_when, ...); a per-run
        field named there replaces every run's value, else each run keeps its own. The rest of
        this config carries over (``eval_at`` excepted), ``stop_when`` too: a run that already
        meets it stops at step 0 (``stop_when=""`` trains every run on).
        The result's steps count from 0 again. The warmup and lr schedule start over, so only
        with a constant lr and no warmup do n steps plus k continued equal n + k steps bit for
        bit; under a cosine schedule the continuation runs its own cosine over ``steps``.
        """
        trainer, runs, state = self.continuation(start, runs, steps=steps, mixture=mixture, tasks=tasks,
                                                 keep_optimizer=keep_optimizer, **train_overrides)
        return trainer.train(runs, state, progress=progress, teacher=teacher)

    def abstract_state(self, runs: Runs) -> TrainState:
        """Shapes and dtypes of ``init(runs)`` without computing it (checkpoint restore target)."""
        params, opt = jax.eval_shape(self.programs(runs).init, runs.seed)
        return TrainState(params, opt, 0)

    def describe(self, runs: Runs) -> dict:
        """The resolved configuration as JSON-ready data (stored with results and checkpoints)."""
        return {"model": dataclasses.asdict(self.model_cfg), "train": self.train_cfg.as_dict(),
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
        """A teacher (params with a runs axis) is given exactly when ``context='teacher'`` or
        ``objective='distill'``."""
        tcfg = self.train_cfg
        if (teacher is None) == tcfg.needs_teacher:
            raise ConfigError(f"context={tcfg.context!r}, objective={tcfg.objective!r} " + (
                "needs teacher parameters (one per run)" if teacher is None
                else "takes no teacher; set context='teacher' or objective='distill'"))
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
              teacher=None, origin=None) -> TrainResult:
        """Train to ``train_cfg.steps``; ``state`` (and its ``log``) resume from ``state.step``.

        ``on_chunk(state, log)`` runs after every chunk (e.g. to checkpoint), with the
        metrics of that chunk already on the host. ``teacher``: frozen parameters (leading
        runs axis) whose residual streams each run reads its past from (``context='teacher'``).
        With ``stop_when``, once every run has stopped the remaining chunks are skipped: the
        state jumps to ``steps`` (the frozen params are what those chunks would have left),
        the remaining eval steps record the frozen models, and ``on_chunk`` runs once more
        with that final state (no new chunk in the log). ``origin``: the parameters the runs
        started from, which ``displacement`` measures from (default: ``state``'s, which must
        then be at step 0).
        """
        tcfg, rule = self.train_cfg, self.train_cfg.stop_rule()
        runs = runs if runs is not None else self.runs()
        self.check_teacher(runs, teacher)
        programs = self.programs(runs)
        chunk = programs.chunk
        state = state if state is not None else self.init(runs)
        log = log if log is not None else TrainLog()
        eval_sets = self.eval_sets()
        if tcfg.displacement and origin is None and state.step != 0:
            raise ConfigError(f"displacement=True: resuming at step {state.step} needs the parameters the runs "
                              "started from (Trainer.train's origin=)")
        # a copy: the first chunk donates the state's buffers
        origin = jax.tree.map(jnp.copy, state.params if origin is None else origin) if tcfg.displacement else None

        def evaluate(params, eval_sets, teacher):
            ev = programs.evaluate(params, eval_sets, teacher)
            return ev if origin is None else {**ev, "train": {"displacement": param_distance(params, origin)}}

        stop = None
        if rule is not None:   # the stop steps live on the device between chunks, and in the log
            log.stop_step = log.stop_step if log.stop_step is not None else np.full(runs.size, NEVER, np.int32)
            stop = place_like(jnp.asarray(log.stop_step, jnp.int32), runs.seed.sharding)
        eval_steps = set(int(s) for s in tcfg.eval_steps())
        bounds = _chunk_bounds(tcfg.eval_steps(), tcfg.chunk_steps, state.step)
        tokens_per_step = runs.size * tcfg.batch_size * max(t.seq_len for t in self.tasks.values())
        bar = Progress(runs.size, tcfg.steps, tokens_per_step, state.step, enabled=progress)
        t0 = time.perf_counter()
        if state.step in eval_steps and state.step not in log.evals:
            log.evals[state.step] = to_host(evaluate(state.params, eval_sets, teacher))
        # Without a callback, a chunk's metrics are fetched after the next chunk is
        # dispatched, so the device never waits on the host. A callback (checkpoint)
        # needs the state before the next chunk consumes (donates) its buffers; a stop
        # criterion needs the stop steps, so training ends at the first chunk end where
        # every run has stopped, with or without a callback.
        pending, wait = None, on_chunk is not None or rule is not None
        for start, end in bounds:
            if log.all_stopped():
                break
            if rule is None:
                params, opt, loss = chunk(state.params, state.opt, runs, teacher, start, end - start)
            else:
                params, opt, loss, stop = programs.chunk_until(state.params, state.opt, runs, teacher, start,
                                                               end - start, stop, eval_sets[rule.task])
            state = TrainState(params, opt, end)
            ev = evaluate(params, eval_sets, teacher) if end in eval_steps else None
            if pending is not None:
                self._finish(pending, log, bar, on_chunk)
            pending = (start, end, loss, ev, state, stop)
            if wait:
                self._finish(pending, log, bar, on_chunk)
                pending = None
        if pending is not None:
            self._finish(pending, log, bar, on_chunk)
        if state.step < tcfg.steps:   # every run has stopped: the chunks left would change nothing
            ev = to_host(evaluate(state.params, eval_sets, teacher))
            log.evals.update({s: ev for s in sorted(eval_steps) if s > state.step})
            state = TrainState(state.params, state.opt, tcfg.steps)
            if on_chunk is not None:
                on_chunk(state, log)
        bar.close()
        return log.result(state, runs.size, time.perf_counter() - t0)

    @staticmethod
    def _finish(pending, log: TrainLog, bar, on_chunk):
        """Bring a finished chunk's metrics to the host, check for NaN, log, report, call back."""
        start, end, loss, ev, state, stop = pending
        loss = to_host(loss)
        bad = np.flatnonzero(~np.isfinite(loss))
        if bad.size:
            raise FloatingPointError(f"non-finite training loss in run(s) {bad.tolist()} during steps "
                                     f"{start}..{end}: lower the learning rate or enable grad_clip")
        log.train_loss.append(loss)
        log.chunk_ends.append(end)
        if stop is not None:
            log.stop_step = to_host(stop)
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
