"""The jitted programs of training: init, a chunk of steps, evaluation.

One ``Programs`` serves E runs that share array shapes: params and optimizer
state carry a leading runs axis E and every per-run hyperparameter arrives as a
row of ``Runs``. A chunk is a ``lax.fori_loop`` over a traced number of steps, so
an eval grid of any spacing compiles once. Programs are cached on their configs,
so equal configs share one compile.

Data and dropout keys are ``fold_in(seed key, data_offset + step)``: a run's numbers
do not depend on how training is chunked, which is what makes resume exact.

With ``TrainConfig.stop_when`` a second chunk program, ``chunk_until``, also carries each
run's stop step: every ``stop_every`` steps it evaluates the criterion on the run's eval
batch (a ``lax.cond`` on the step alone, so it stays one branch under vmap) and from its
stop step on a run's params and optimizer state pass through unchanged.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from toymodels.config import ConfigError
from toymodels.model import TransformerConfig, abstract_model, init_model, residual_inputs
from toymodels.params import param_paths, param_shapes
from toymodels.schedule import Mixture
from toymodels.tasks.base import Batch, Task, masked_mean, metrics, token_losses
from toymodels.trainconfig import TrainConfig

Array = jax.Array
_INIT, _DATA, _DROPOUT = 0, 1, 2


def _pad(b: Batch, T: int) -> Batch:
    """Pad a batch's positions to ``T`` (padding is masked out of the loss)."""
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


def distill_losses(student_BTV: Array, teacher_BTV: Array) -> Array:
    """KL(teacher || student) of the next-token distributions per position (B, T)."""
    log_t = jax.nn.log_softmax(teacher_BTV, axis=-1)
    log_s = jax.nn.log_softmax(student_BTV, axis=-1)
    return jnp.sum(jnp.exp(log_t) * (log_t - log_s), axis=-1)


def lr_factor(tcfg: TrainConfig, step: Array) -> Array:
    """Learning-rate multiplier at ``step``: linear warmup, then constant or cosine."""
    step = step.astype(jnp.float32)
    warm = jnp.minimum(1.0, (step + 1.0) / tcfg.warmup_steps) if tcfg.warmup_steps else 1.0
    if tcfg.lr_schedule == "constant":
        return warm
    frac = jnp.clip((step - tcfg.warmup_steps) / max(tcfg.steps - tcfg.warmup_steps, 1), 0.0, 1.0)
    cos = 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
    return warm * (tcfg.min_lr_frac + (1.0 - tcfg.min_lr_frac) * cos)


def param_masks(tcfg: TrainConfig, params) -> tuple[list[bool], list[bool]]:
    """Per leaf of ``params``: is it trained (``tcfg.trainable``), and is it decayed (``tcfg.decay``:
    "matrices" decays the W_* leaves only, not biases nor LayerNorm)."""
    paths = param_paths(params)
    trained = [not tcfg.trainable or re.fullmatch(tcfg.trainable, p) is not None for p in paths]
    decayed = [tcfg.decay == "all" or p.rpartition(".")[2].startswith("W_") for p in paths]
    return trained, decayed


def check_trainable(mcfg: TransformerConfig, tcfg: TrainConfig) -> None:
    """``tcfg.trainable`` must match a parameter, and ``trainable_rows`` fit every one it matches."""
    if not tcfg.trainable:
        return
    shapes = param_shapes(mcfg)
    if not any(re.fullmatch(tcfg.trainable, p) for p in shapes):
        raise ConfigError(f"trainable={tcfg.trainable!r} matches no parameter; parameters: {', '.join(shapes)}")
    for path, shape in shapes.items() if tcfg.trainable_rows else ():
        if re.fullmatch(tcfg.trainable, path) and max(tcfg.trainable_rows) >= shape[0]:
            raise ConfigError(f"trainable_rows={tcfg.trainable_rows} reaches past {path}'s {shape[0]} rows "
                              f"(shape {shape}); allowed: rows 0..{shape[0] - 1} of every parameter trainable selects")


def row_masks(tcfg: TrainConfig, params, trained: list[bool]) -> list[np.ndarray | None]:
    """Per leaf: None (every row as ``trained``, from ``param_masks``, says), or, for a trained leaf
    when ``tcfg.trainable_rows`` is set, a bool column over its first axis marking the rows that train."""
    out = []
    for leaf, train in zip(jax.tree.leaves(params), trained):
        if not (train and tcfg.trainable_rows):
            out.append(None)
            continue
        mask = np.zeros((leaf.shape[0],) + (1,) * (len(leaf.shape) - 1), bool)
        mask[list(tcfg.trainable_rows)] = True
        out.append(mask)
    return out


class Programs(NamedTuple):
    """The compiled functions that train and evaluate one group of runs."""
    graphdef: Any
    init: Callable        # seeds (E,) -> (params, opt)
    opt_init: Callable    # params (E, ...) -> fresh optimizer state
    chunk: Callable       # (params, opt, runs, teacher, start, n_steps) -> (params, opt, mean loss (E,))
    evaluate: Callable    # (params, eval sets, teacher) -> task -> metric -> (E,)
    # With a stop criterion: (params, opt, runs, teacher, start, n_steps, stop step (E,), eval batch
    # of the criterion's task) -> (params, opt, mean loss (E,), stop step (E,)); else None.
    chunk_until: Callable | None = None


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


# Built programs kept for reuse. Each holds its compiled executables (on CPU about a thousand
# memory maps per program and device set), so the bound is what keeps a study that compiles
# hundreds of programs in one process under the kernel's map limit (vm.max_map_count, 65530).
PROGRAMS_CACHED = 12


@functools.lru_cache(maxsize=PROGRAMS_CACHED)
def build_programs(mcfg: TransformerConfig, tcfg: TrainConfig, tasks: tuple[tuple[str, Task], ...],
                   mixture: Mixture, use_dropout: bool, runs_exec: str) -> Programs:
    """The jitted init / chunk / eval functions; cached so equal configs share one compile.

    ``tcfg`` should arrive with its per-run fields (lr, weight decay, seed, beta) zeroed,
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
    trained, decayed = param_masks(tcfg, abstract)
    rows = row_masks(tcfg, abstract, trained)
    rule = tcfg.stop_rule()

    def past_of(teacher, inputs):
        """The residual streams attention reads its past keys/values from (None = its own)."""
        if tcfg.context == "live":
            return None
        if tcfg.context == "none":
            return jnp.zeros((mcfg.n_layers, *inputs.shape[:2], mcfg.d_model), jnp.float32)
        return jax.lax.stop_gradient(residual_inputs(nnx.merge(graphdef, teacher), inputs))

    def loss_fn(params, batch, key, run, teacher):
        if tcfg.precision == "bf16":   # a bf16 copy: the gradient flows back to the fp32 params
            params = jax.tree.map(lambda p: p.astype(jnp.bfloat16) if jnp.issubdtype(p.dtype, jnp.floating)
                                  else p, params)
        model = nnx.merge(graphdef, params)
        out = model(batch.inputs, key=key, dropout_rate=run.dropout, myopic=tcfg.myopic,
                    myopic_beta=run.myopic_beta, myopic_band=tcfg.myopic_band, myopic_far=tcfg.myopic_far,
                    past_resid=past_of(teacher, batch.inputs)).astype(jnp.float32)
        if tcfg.objective == "distill":
            target = jax.lax.stop_gradient(nnx.merge(graphdef, teacher)(batch.inputs))
            return masked_mean(distill_losses(out, target), batch.mask)
        loss = masked_mean(token_losses(out, batch.targets, loss_kind), batch.mask)
        return jax.lax.stop_gradient(loss) if tcfg.objective == "none" else loss

    def step_one(step, carry, run, teacher):
        params, opt, loss_sum = carry
        key = jax.random.key(run.seed)
        stream = step + tcfg.data_offset if tcfg.data_offset else step   # where the data stream stands
        k_data = jax.random.fold_in(jax.random.fold_in(key, _DATA), stream)
        k_drop = jax.random.fold_in(jax.random.fold_in(key, _DROPOUT), stream) if use_dropout else None
        batch = sample_mixture(train_tasks, mixture.probs(step, run.mixture), k_data, tcfg.batch_size, T)
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, k_drop, run, teacher)
        if tcfg.grad_clip > 0:
            norm = optax.tree.norm(grads)
            grads = jax.tree.map(lambda g: g * jnp.minimum(1.0, tcfg.grad_clip / (norm + 1e-12)), grads)
        updates, opt = (grads, opt) if tcfg.optimizer == "sgd" else adam.update(grads, opt)
        lr = run.lr * lr_factor(tcfg, step)
        def update(p, u, train, decay, row):
            if not train:
                return p
            new = p - lr * (u + run.weight_decay * p) if decay else p - lr * u
            return new if row is None else jnp.where(row, new, p)   # frozen rows keep their very bits
        leaves, treedef = jax.tree.flatten(params)
        params = jax.tree.unflatten(treedef, [update(*a) for a in zip(
            leaves, jax.tree.leaves(updates), trained, decayed, rows)])
        return params, opt, loss_sum + loss

    def chunk_one(params, opt, run, teacher, start, n_steps):
        body = lambda i, c: step_one(start + i, c, run, teacher)  # noqa: E731
        params, opt, loss_sum = jax.lax.fori_loop(0, n_steps, body, (params, opt, jnp.float32(0)))
        return params, opt, loss_sum / jnp.maximum(n_steps, 1)

    def check_stop(params, stop, step, batch, teacher):
        """``stop`` set to ``step`` if it is unset, ``step`` is a check step and the criterion holds.
        The predicate depends on the step alone, so under vmap the eval stays one real branch."""
        def met():
            value = task_metrics(nnx.merge(graphdef, params), rule.task, batch, teacher)[rule.metric]
            hit = value >= rule.threshold if rule.op == ">=" else value <= rule.threshold
            return jnp.where(hit, jnp.minimum(stop, step), stop)
        return jax.lax.cond(step % tcfg.stop_every == 0, met, lambda: stop)

    def chunk_until_one(params, opt, run, teacher, stop, start, n_steps, batch):
        """``chunk_one`` that checks the stop criterion at every multiple of stop_every in
        [start, start + n_steps] (``start`` itself only at 0: a chunk that ends there checked it)
        and leaves a stopped run's params and optimizer state as they were at its stop step."""
        def body(i, c):
            params, opt, loss_sum, stop = c
            new_params, new_opt, loss_sum = step_one(start + i, (params, opt, loss_sum), run, teacher)
            params, opt = jax.tree.map(lambda old, new: jnp.where(stop <= start + i, old, new),
                                       (params, opt), (new_params, new_opt))
            return params, opt, loss_sum, check_stop(params, stop, start + i + 1, batch, teacher)
        stop = jax.lax.cond(start == 0, lambda: check_stop(params, stop, start, batch, teacher), lambda: stop)
        params, opt, loss_sum, stop = jax.lax.fori_loop(0, n_steps, body, (params, opt, jnp.float32(0), stop))
        return params, opt, loss_sum / jnp.maximum(n_steps, 1), stop

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

    def task_metrics(model, name, b, teacher):
        return metrics(model(b.inputs, past_resid=past_of(teacher, b.inputs)), b, task_map[name].loss)

    def eval_one(params, eval_sets, teacher):
        model = nnx.merge(graphdef, params)
        out = {}
        for name, b in eval_sets.items():
            out[name] = task_metrics(model, name, b, teacher)
            if tcfg.grad_diagnostics:
                out[name].update(offdiag_diagnostics(params, b, task_map[name].loss))
        return out

    def over_runs(fn, per_run, *shared):
        """``fn(*per_run, *shared)`` for every run: vmapped, or each in turn (``lax.map``, also
        for a lone run, so that it computes exactly what it computes in an ensemble)."""
        if runs_exec == "vmap":
            return jax.vmap(fn, in_axes=(0,) * len(per_run) + (None,) * len(shared))(*per_run, *shared)
        return jax.lax.map(lambda xs: fn(*xs, *shared), per_run)

    def chunk_runs(params, opt, run, teacher, start, n_steps):
        return over_runs(chunk_one, (params, opt, run, teacher), start, n_steps)

    def chunk_until_runs(params, opt, run, teacher, start, n_steps, stop, batch):
        return over_runs(chunk_until_one, (params, opt, run, teacher, stop), start, n_steps, batch)

    chunk = jax.jit(chunk_runs, donate_argnums=(0, 1))
    chunk_until = jax.jit(chunk_until_runs, donate_argnums=(0, 1)) if rule else None
    def evaluate_runs(params, eval_sets, teacher):
        if runs_exec == "vmap":
            return jax.vmap(eval_one, in_axes=(0, None, 0))(params, eval_sets, teacher)
        return jax.lax.map(lambda xs: eval_one(xs[0], eval_sets, xs[1]), (params, teacher))

    evaluate = jax.jit(evaluate_runs)   # on CPU each run in turn too: its metrics do not depend on E
    return Programs(graphdef, *_init_programs(mcfg), chunk, evaluate, chunk_until)


def clear_program_caches() -> None:
    """Forget every built program, so the next build compiles afresh (and is counted)."""
    build_programs.cache_clear()
    _init_programs.cache_clear()


def programs_built() -> int:
    """How many distinct training programs were built since the last ``clear_program_caches``."""
    return build_programs.cache_info().misses
