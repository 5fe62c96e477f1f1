"""Training: AdamW, on-device data, jitted chunks of steps, a vmapped runs axis.

One ``Trainer`` trains E runs that share array shapes as ONE compiled program:
params and optimizer state carry a leading runs axis E, and every per-run
hyperparameter (seed, lr, weight decay, dropout, myopic beta, mixture event
steps and fractions) is an array row of ``Runs``. Python touches the host once
per chunk (eval, progress, NaN check); a chunk is a ``lax.fori_loop`` over a
traced number of steps, so an eval grid of any spacing compiles once.

Data and dropout keys are ``fold_in(seed key, step)``: a run's numbers do not
depend on how training is chunked, which is what makes resume exact.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import time
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from toymodels.config import ConfigError, check_choice, check_int, check_range
from toymodels.model import Transformer, TransformerConfig, abstract_model, init_model, residual_inputs
from toymodels.schedule import Mixture, MixtureParams
from toymodels.tasks.base import Batch, Task, masked_mean, metrics, token_losses
from toymodels.trainlog import Progress, TrainLog, TrainResult, TrainState

Array = jax.Array
_INIT, _DATA, _DROPOUT = 0, 1, 2
CONTEXTS = ("live", "teacher", "none")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 0
    lr_schedule: str = "constant"   # "constant" | "cosine" (after warmup)
    min_lr_frac: float = 0.0        # cosine floor, as a fraction of lr
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 0.0          # global-norm clip; 0 = off
    chunk_steps: int = 500          # most steps between two host syncs
    n_evals: int = 20
    eval_spacing: str = "linear"    # "linear" | "log"
    eval_at: tuple[int, ...] = ()   # extra eval steps (e.g. a dense grid after a mixture event)
    eval_batch: int = 256
    eval_seed: int = 12345
    seed: int = 0
    myopic: bool = False
    myopic_beta: float = 0.0
    trainable: str = ""             # regex over parameter paths (e.g. "W_U"); "" = train all
    # Where attention reads its off-diagonal keys/values from: "live" (the model's own
    # states), "teacher" (a frozen teacher's residual streams: local-myopic training,
    # Wu et al. 2024) or "none" (zeros: the no-context "transformer bigram" baseline).
    # Training and evaluation both use it.
    context: str = "live"
    # At every eval, the gradient of each task's eval loss split into its myopic part and
    # the off-diagonal rest (vanilla - myopic): metrics offdiag_ratio (norm ratio) and
    # offdiag_cos (cosine between the two).
    grad_diagnostics: bool = False

    def __post_init__(self):
        for f in ("steps", "batch_size", "chunk_steps", "n_evals", "eval_batch"):
            check_int(f, getattr(self, f), 1)
        check_int("warmup_steps", self.warmup_steps, 0)
        check_range("lr", self.lr, 0.0, math.inf, lo_open=True)
        check_range("weight_decay", self.weight_decay, 0.0, math.inf)
        check_choice("lr_schedule", self.lr_schedule, ("constant", "cosine"))
        check_range("min_lr_frac", self.min_lr_frac, 0.0, 1.0)
        check_range("b1", self.b1, 0.0, 1.0, hi_open=True)
        check_range("b2", self.b2, 0.0, 1.0, hi_open=True)
        check_range("grad_clip", self.grad_clip, 0.0, math.inf)
        check_choice("eval_spacing", self.eval_spacing, ("linear", "log"))
        object.__setattr__(self, "eval_at", tuple(self.eval_at))
        for s in self.eval_at:
            check_int("eval_at step", s, 0)
            if s > self.steps:
                raise ConfigError(f"eval_at step {s} is beyond steps={self.steps}")
        check_range("myopic_beta", self.myopic_beta, 0.0, 1.0)
        check_choice("context", self.context, CONTEXTS)
        if self.grad_diagnostics and self.context != "live":
            raise ConfigError(f"grad_diagnostics needs context='live' (got {self.context!r}): the "
                              "off-diagonal gradient only exists when the past is the model's own")
        try:
            re.compile(self.trainable)
        except re.error as e:
            raise ConfigError(f"trainable={self.trainable!r} is not a valid regular expression: {e}") from None

    def eval_steps(self) -> np.ndarray:
        """Steps at which every task is evaluated (always includes 0 and ``steps``)."""
        if self.eval_spacing == "linear":
            pts = np.linspace(0, self.steps, self.n_evals + 1)
        else:
            pts = np.concatenate([[0], np.geomspace(1, self.steps, self.n_evals)])
        return np.unique(np.concatenate([np.round(pts), self.eval_at]).astype(np.int64))


class Runs(NamedTuple):
    """Per-run hyperparameters; each field has a leading runs axis E."""
    seed: Array          # (E,) int32
    lr: Array            # (E,) float32
    weight_decay: Array  # (E,)
    dropout: Array       # (E,)
    myopic_beta: Array   # (E,)
    mixture: MixtureParams  # fields (E, ...)

    @property
    def size(self) -> int:
        return int(self.seed.shape[0])

    def take(self, i: int | Sequence[int]) -> "Runs":
        idx = np.atleast_1d(np.asarray(i))
        return jax.tree.map(lambda x: x[idx], self)


def make_runs(tcfg: TrainConfig, mcfg: TransformerConfig, mixture: Mixture, *,
              seeds: Sequence[int] | None = None, **per_run: Sequence[Any]) -> Runs:
    """Runs from configs; ``per_run`` overrides a field with one value per run.

    e.g. ``make_runs(t, m, mix, seeds=[0, 1], lr=[1e-3, 3e-3])``; ``event_steps`` takes
    one list of event steps per run, ``fractions`` one list of replay fractions.
    """
    valid = {"lr", "weight_decay", "dropout", "myopic_beta", "event_steps", "fractions", "weights"}
    unknown = sorted(set(per_run) - valid)
    if unknown:
        raise ConfigError(f"unknown per-run field(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    seeds = [tcfg.seed] if seeds is None else list(seeds)
    n = max([len(seeds)] + [len(v) for v in per_run.values()])
    for name, vals in [("seeds", seeds)] + list(per_run.items()):
        if len(vals) not in (1, n):
            raise ConfigError(f"{name} has {len(vals)} values; give 1 or {n} (one per run)")

    def col(vals, default):
        vals = [default] if vals is None else list(vals)
        return vals * n if len(vals) == 1 else vals

    base = mixture.params()
    mix = MixtureParams(
        jnp.asarray(col(per_run.get("weights"), np.asarray(base.weights)), jnp.float32),
        jnp.asarray(col(per_run.get("event_steps"), np.asarray(base.event_steps)), jnp.int32).reshape(n, -1),
        jnp.asarray(col(per_run.get("fractions"), np.asarray(base.fractions)), jnp.float32).reshape(n, -1))
    for f, lo, hi in (("dropout", 0, 0.999), ("myopic_beta", 0, 1), ("weight_decay", 0, math.inf)):
        for v in col(per_run.get(f), 0.0):
            check_range(f, float(v), lo, hi)
    return Runs(
        seed=jnp.asarray(col(seeds, None), jnp.int32),
        lr=jnp.asarray(col(per_run.get("lr"), tcfg.lr), jnp.float32),
        weight_decay=jnp.asarray(col(per_run.get("weight_decay"), tcfg.weight_decay), jnp.float32),
        dropout=jnp.asarray(col(per_run.get("dropout"), mcfg.dropout), jnp.float32),
        myopic_beta=jnp.asarray(col(per_run.get("myopic_beta"), tcfg.myopic_beta), jnp.float32),
        mixture=mix)


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


def param_paths(params) -> list[str]:
    """Dotted paths of the leaves of a parameter tree (``blocks.0.attn.W_QKV``), in leaf order."""
    out = []
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        parts = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
        out.append(".".join(p for p in parts if p != "value"))
    return out


def _pad(b: Batch, T: int) -> Batch:
    pad = T - b.inputs.shape[1]
    if pad == 0:
        return b
    widths = lambda x: [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2)  # noqa: E731
    return Batch(*(jnp.pad(x, widths(x)) for x in b))


def sample_mixture(tasks: Sequence[Task], probs: Array, key: Array, batch_size: int, T: int) -> Batch:
    """Each example comes from task i with probability probs[i]."""
    k_choice, *k_tasks = jax.random.split(key, len(tasks) + 1)
    batches = [_pad(t.sample(k, batch_size), T) for t, k in zip(tasks, k_tasks)]
    if len(tasks) == 1:
        return batches[0]
    choice_B = jax.random.choice(k_choice, len(tasks), (batch_size,), p=probs)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *batches)
    return jax.tree.map(lambda x: x[choice_B, jnp.arange(batch_size)], stacked)


def lr_factor(tcfg: TrainConfig, step: Array) -> Array:
    step = step.astype(jnp.float32)
    warm = jnp.minimum(1.0, (step + 1.0) / tcfg.warmup_steps) if tcfg.warmup_steps else 1.0
    if tcfg.lr_schedule == "constant":
        return warm
    frac = jnp.clip((step - tcfg.warmup_steps) / max(tcfg.steps - tcfg.warmup_steps, 1), 0.0, 1.0)
    cos = 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
    return warm * (tcfg.min_lr_frac + (1.0 - tcfg.min_lr_frac) * cos)


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


class Programs(NamedTuple):
    graphdef: Any
    init: Callable        # seeds (E,) -> (params, opt)
    opt_init: Callable    # params (E, ...) -> fresh optimizer state
    chunk: Callable       # (params, opt, runs, teacher, start, n_steps) -> (params, opt, mean loss (E,))
    evaluate: Callable    # (params, eval sets, teacher) -> task -> metric -> (E,)


@functools.lru_cache(maxsize=64)
def _init_programs(mcfg: TransformerConfig):
    """Init and optimizer-init programs depend on the architecture only, so every training
    variant of one model (myopic, teacher, trainable subsets, ...) shares one compile.
    Adam's state layout does not depend on its hyperparameters."""
    adam = optax.scale_by_adam()

    def init_one(seed):
        key = jax.random.fold_in(jax.random.key(seed), _INIT)
        params = nnx.state(init_model(mcfg, key), nnx.Param)
        return params, adam.init(params)
    return jax.jit(jax.vmap(init_one)), jax.jit(jax.vmap(adam.init))


@functools.lru_cache(maxsize=32)
def _programs(mcfg: TransformerConfig, tcfg: TrainConfig, tasks: tuple[tuple[str, Task], ...],
              mixture: Mixture, use_dropout: bool, runs_exec: str):
    """The jitted init / chunk / eval functions; cached so equal configs share one compile.

    ``tcfg`` arrives with its per-run fields (lr, weight decay, seed, beta) zeroed,
    so runs that differ only in those share the cache entry. ``runs_exec`` says how
    the training chunk walks the runs axis: "vmap" (batched into every op) or "map"
    (``lax.map``: each run runs the solo program in turn, inside one compiled program).
    """
    graphdef, abstract = abstract_model(mcfg)
    task_map = dict(tasks)
    train_tasks = [task_map[n] for n in mixture.tasks]
    loss_kind = train_tasks[0].loss
    T = max(t.seq_len for t in train_tasks)
    adam = optax.scale_by_adam(tcfg.b1, tcfg.b2, tcfg.eps)
    # Frozen parameters (not matching tcfg.trainable) get neither updates nor decay.
    trainable = jax.tree.unflatten(jax.tree.structure(abstract), [
        not tcfg.trainable or re.fullmatch(tcfg.trainable, p) is not None for p in param_paths(abstract)])

    def past_of(teacher, inputs):
        """The residual streams attention reads its past keys/values from (None = its own)."""
        if tcfg.context == "live":
            return None
        if tcfg.context == "none":
            return jnp.zeros((mcfg.n_layers, *inputs.shape[:2], mcfg.d_model), jnp.float32)
        return jax.lax.stop_gradient(residual_inputs(nnx.merge(graphdef, teacher), inputs))

    def loss_fn(params, batch, key, run, teacher):
        model = nnx.merge(graphdef, params)
        out = model(batch.inputs, key=key, dropout_rate=run.dropout, myopic=tcfg.myopic,
                    myopic_beta=run.myopic_beta, past_resid=past_of(teacher, batch.inputs))
        return masked_mean(token_losses(out, batch.targets, loss_kind), batch.mask)

    def step_one(step, carry, run, teacher):
        params, opt, loss_sum = carry
        key = jax.random.key(run.seed)
        k_data = jax.random.fold_in(jax.random.fold_in(key, _DATA), step)
        k_drop = jax.random.fold_in(jax.random.fold_in(key, _DROPOUT), step) if use_dropout else None
        batch = sample_mixture(train_tasks, mixture.probs(step, run.mixture), k_data, tcfg.batch_size, T)
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, k_drop, run, teacher)
        if tcfg.grad_clip > 0:
            norm = optax.tree.norm(grads)
            grads = jax.tree.map(lambda g: g * jnp.minimum(1.0, tcfg.grad_clip / (norm + 1e-12)), grads)
        updates, opt = adam.update(grads, opt)
        lr = run.lr * lr_factor(tcfg, step)
        params = jax.tree.map(lambda p, u, train: p - lr * (u + run.weight_decay * p) if train else p,
                              params, updates, trainable)
        return params, opt, loss_sum + loss

    def chunk_one(params, opt, run, teacher, start, n_steps):
        body = lambda i, c: step_one(start + i, c, run, teacher)  # noqa: E731
        params, opt, loss_sum = jax.lax.fori_loop(0, n_steps, body, (params, opt, jnp.float32(0)))
        return params, opt, loss_sum / jnp.maximum(n_steps, 1)

    def offdiag_diagnostics(params, batch, loss):
        """Split the loss gradient into its myopic part and the off-diagonal rest."""
        def f(p, myopic):
            out = nnx.merge(graphdef, p)(batch.inputs, myopic=myopic, myopic_beta=0.0)
            return masked_mean(token_losses(out, batch.targets, loss), batch.mask)
        g_myo = jax.grad(f)(params, True)
        g_off = jax.tree.map(jnp.subtract, jax.grad(f)(params, False), g_myo)
        dot = lambda a, b: sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))  # noqa: E731
        n_off, n_myo = jnp.sqrt(dot(g_off, g_off)), jnp.sqrt(dot(g_myo, g_myo))
        return {"offdiag_ratio": n_off / jnp.maximum(n_myo, 1e-30),
                "offdiag_cos": dot(g_off, g_myo) / jnp.maximum(n_off * n_myo, 1e-30)}

    def eval_one(params, eval_sets, teacher):
        model = nnx.merge(graphdef, params)
        out = {}
        for name, b in eval_sets.items():
            loss = task_map[name].loss
            out[name] = metrics(model(b.inputs, past_resid=past_of(teacher, b.inputs)), b, loss)
            if tcfg.grad_diagnostics:
                out[name].update(offdiag_diagnostics(params, b, loss))
        return out

    def chunk_runs(params, opt, run, teacher, start, n_steps):
        if runs_exec == "vmap" or run.seed.shape[0] == 1:
            return jax.vmap(chunk_one, in_axes=(0, 0, 0, 0, None, None))(params, opt, run, teacher, start, n_steps)
        return jax.lax.map(lambda prrt: chunk_one(*prrt, start, n_steps), (params, opt, run, teacher))

    chunk = jax.jit(chunk_runs, donate_argnums=(0, 1))
    evaluate = jax.jit(jax.vmap(eval_one, in_axes=(0, None, 0)))
    return Programs(graphdef, *_init_programs(mcfg), chunk, evaluate)


class Trainer:
    """Trains E runs of one architecture on a task mixture as one vmapped program."""

    def __init__(self, model: TransformerConfig, train: TrainConfig, tasks: Mapping[str, Task],
                 mixture: Mixture | None = None):
        mixture = mixture or Mixture(tuple(tasks))
        validate(model, train, tasks, mixture)
        self.model_cfg, self.train_cfg, self.tasks, self.mixture = model, train, dict(tasks), mixture

    # -- programs -----------------------------------------------------------------------
    def _fns(self, runs: Runs):
        static_t = dataclasses.replace(self.train_cfg, lr=1.0, weight_decay=0.0, seed=0, myopic_beta=0.0,
                                       chunk_steps=1, n_evals=1, eval_spacing="linear", eval_at=(),
                                       eval_batch=1, eval_seed=0)
        use_dropout = bool(np.any(to_host(runs.dropout) > 0))
        return _programs(self.model_cfg, static_t, tuple(self.tasks.items()), self.mixture, use_dropout,
                         runs_exec(runs))

    def runs(self, **kwargs) -> Runs:
        return make_runs(self.train_cfg, self.model_cfg, self.mixture, **kwargs)

    def init(self, runs: Runs) -> TrainState:
        params, opt = self._fns(runs).init(runs.seed)
        return TrainState(params, opt, 0)

    def state_from_params(self, params, runs: Runs) -> TrainState:
        """Start ``runs`` from given parameters (leading runs axis) with a fresh optimizer, at step 0.

        E.g. continue a trained model on another mixture, or retrain only ``trainable`` parts.
        The parameters are copied: training donates its state's buffers, and the caller's
        arrays must survive that.
        """
        params = jax.tree.map(jnp.copy, params)
        return TrainState(params, self._fns(runs).opt_init(params), 0)

    def abstract_state(self, runs: Runs) -> TrainState:
        """Shapes and dtypes of ``init(runs)`` without computing it (checkpoint restore target)."""
        params, opt = jax.eval_shape(self._fns(runs).init, runs.seed)
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
        return to_host(self._fns(runs).evaluate(state.params, self.eval_sets(), teacher))

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
        programs = self._fns(runs)
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


def runs_exec(runs: Runs) -> str:
    """How the training chunk walks the runs axis, chosen per backend by measurement.

    On one CPU device, ``lax.map`` beats ``vmap``: vmap turns each weight-gradient dot
    into a batched Eigen dot and the attention einsums into many tiny ones (measured
    +19 % tokens/s on 32 micro models, +18 % on 8 tiny ones, 2 cores). Sharded over
    several devices, or on accelerators, vmap lets every device batch its runs.
    """
    one_device = len(runs.seed.sharding.device_set) == 1 if hasattr(runs.seed, "sharding") else True
    return "map" if jax.default_backend() == "cpu" and one_device else "vmap"


def to_host(tree):
    """Numpy copies of (possibly sharded, possibly multi-host) arrays, on every process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
    return jax.tree.map(np.asarray, jax.device_get(tree))


def _chunk_bounds(eval_steps: np.ndarray, chunk_steps: int, start: int) -> list[tuple[int, int]]:
    """(start, end) pairs that end on every eval step and are at most ``chunk_steps`` long."""
    out, s = [], start
    for e in [int(x) for x in eval_steps if x > start]:
        while s < e:
            n = min(chunk_steps, e - s)
            out.append((s, s + n))
            s += n
    return out


if __name__ == "__main__":
    from toymodels.cli import train_main
    train_main()
