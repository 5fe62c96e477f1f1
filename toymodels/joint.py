"""A model trained together with sparse dictionaries on its residual streams.

Every block's residual stream at ``site`` (``blocks.{l}.{site}``, every position of every
training batch) feeds either one dictionary per block ("per_block") or one dictionary shared
by all blocks ("shared": the blocks' rows stacked). Each step minimises

    CE(model) + coeff * mean_l FVU_l(model; dictionary frozen)  +  dictionary loss(residuals frozen)

FVU_l is block l's fraction of variance unexplained, sum ||x - x_hat||^2 / sum ||x - mean x||^2
over the batch's rows: scale-free, so the model cannot lower it by shrinking its stream. The
first two terms move the model (the dictionary's gradient is stopped there); the last moves the
dictionaries (the residuals' gradient is stopped there) with ``toymodels.dictionaries``' own loss
(AuxK included) and its Adam, so the dictionaries train the same way whatever ``coeff`` is.
coeff = 0 is the control: the model trains exactly as ``toymodels.train.Trainer`` trains it (the
same init, batches and update), with dictionaries learning alongside it on the fly.

The model side honours TrainConfig's steps, batch_size, lr, weight_decay, decay, warmup and
schedule, Adam's b1/b2/eps, grad_clip, chunk_steps, the eval grid and eval batch, and seed;
settings the engine alone implements (myopia, teacher context, distillation, trainable subsets,
stop criteria, init_from noise, bf16) are refused. Runs (seeds x coeffs) train as one vmapped
program of jitted chunks; a killed call starts over (callers cache what they measure).
Shape letters: E runs, L blocks, G dictionaries (L or 1), B batch, T positions, D d_model, S latents.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from toymodels import dictionaries as dl
from toymodels.config import ConfigError, check_choice, check_range, fail
from toymodels.hooks import run_with_cache
from toymodels.model import Transformer, TransformerConfig, abstract_model
from toymodels.programs import _DATA, _init_programs, lr_factor, param_masks, sample_mixture
from toymodels.tasks.base import Task, masked_mean, metrics, token_losses
from toymodels.trainconfig import TrainConfig

Array = jax.Array
LAYOUTS = ("per_block", "shared")
SITES = ("resid_pre", "resid_mid", "resid_post")
_ENGINE_ONLY = {"myopic": False, "context": "live", "objective": "data", "trainable": "", "trainable_rows": (),
                "stop_when": "", "init_noise": 0.0, "precision": "fp32", "data_offset": 0, "grad_diagnostics": False}


@dataclasses.dataclass(frozen=True)
class JointConfig:
    """How the dictionaries sit on the model. ``dictionary``: their kind, size and training (its
    d_in must be d_model; its steps, batch_size and seed are unused: the model's govern)."""
    dictionary: dl.DictConfig
    layout: str = "per_block"
    site: str = "resid_post"

    def __post_init__(self):
        if not isinstance(self.dictionary, dl.DictConfig):
            fail("dictionary", self.dictionary, "must be a toymodels.dictionaries.DictConfig")
        check_choice("layout", self.layout, LAYOUTS)
        check_choice("site", self.site, SITES)


class JointResult(NamedTuple):
    """Per run e (seeds x coeffs, seed-major): the trained model and its dictionaries."""
    seeds: list[int]
    coeffs: list[float]
    models: list[Transformer]
    dictionaries: list[list[dict]]           # per run: G dictionaries' params (numpy)
    history: dict[str, np.ndarray]           # step (P,), ce/acc (P, E), fvu/l0 (P, E, L)


def _row(x, e: int):
    return x[e]


def validate(mcfg: TransformerConfig, tcfg: TrainConfig, jcfg: JointConfig, seeds, coeffs) -> None:
    """One clear error before anything compiles."""
    for f, default in _ENGINE_ONLY.items():
        if getattr(tcfg, f) != default:
            fail(f, getattr(tcfg, f), f"joint training supports only {f}={default!r} (the engine's Trainer does)")
    if mcfg.dropout:
        fail("dropout", mcfg.dropout, "joint training supports only dropout=0")
    if mcfg.output_kind != "logits" or mcfg.input_kind != "tokens":
        raise ConfigError("joint training needs a token model with output_kind='logits'")
    if jcfg.dictionary.d_in != mcfg.d_model:
        fail("dictionary.d_in", jcfg.dictionary.d_in, f"must equal the model's d_model={mcfg.d_model}")
    if jcfg.site == "resid_mid" and not mcfg.mlp_dim:
        fail("site", jcfg.site, "resid_mid needs a model with an MLP; use resid_pre or resid_post")
    if not seeds or not coeffs:
        raise ConfigError(f"seeds and coeffs must be non-empty (got {list(seeds)!r}, {list(coeffs)!r})")
    for c in coeffs:
        check_range("coeff", c, 0.0, np.inf)


def _fvu(x_ND: Array, xh_ND: Array) -> Array:
    return jnp.sum((x_ND - xh_ND) ** 2) / jnp.maximum(jnp.sum((x_ND - x_ND.mean(0)[None]) ** 2), 1e-30)


def _reconstruct(params, x_ND: Array, st: dl._Static, h: dict) -> tuple[Array, Array]:
    z = dl._activate(params, dl._pre(params, x_ND), st.kind, h["k"], st.k_max, h["bandwidth"])
    return dl.decode(params, z), z


def _of_block(dparams, b: int, shared: bool) -> dict:
    """The dictionary block b reads (params with a leading G axis)."""
    return jax.tree.map(lambda p: p[0 if shared else b], dparams)


@functools.lru_cache(maxsize=16)
def _programs(mcfg: TransformerConfig, tcfg: TrainConfig, jcfg: JointConfig, tasks: tuple[tuple[str, Task], ...],
              probs: tuple[float, ...]):
    graphdef, abstract = abstract_model(mcfg)
    names = [f"blocks.{i}.{jcfg.site}" for i in range(mcfg.n_layers)]
    L, D, shared = mcfg.n_layers, mcfg.d_model, jcfg.layout == "shared"
    dc = jcfg.dictionary
    st = dl._Static(dc.kind, 0, dc.normalize_decoder, dc.k, dc.k_aux, dc.aux_coeff > 0)
    h = {f: jnp.asarray(getattr(dc, f), jnp.int32 if f in dl._INT_FIELDS else jnp.float32) for f in dl.RUN_FIELDS}
    train_tasks = [t for _, t in tasks]
    loss_kind = train_tasks[0].loss
    T = max(t.seq_len for t in train_tasks)
    adam = optax.scale_by_adam(tcfg.b1, tcfg.b2, tcfg.eps)
    trained, decayed = param_masks(tcfg, abstract)
    decays = jax.tree.unflatten(jax.tree.structure(abstract), decayed)

    def acts_of(mparams, inputs):
        logits, cache = run_with_cache(nnx.merge(graphdef, mparams), inputs, names)
        return logits, jnp.stack([cache[n].reshape(-1, D) for n in names])     # (L, BT, D)

    def rows_of(acts_LND):   # what each of the G dictionaries reads
        return acts_LND.reshape(1, -1, D) if shared else acts_LND

    def loss_fn(both, batch, dead_GS, coeff):
        mparams, dparams = both
        logits, acts_LND = acts_of(mparams, batch.inputs)
        ce = masked_mean(token_losses(logits, batch.targets, loss_kind), batch.mask)
        frozen = jax.lax.stop_gradient(dparams)
        fvu_L = jnp.stack([_fvu(acts_LND[b], _reconstruct(_of_block(frozen, b, shared), acts_LND[b], st, h)[0])
                           for b in range(L)])
        dloss_G, (_, z_GNS) = jax.vmap(lambda p, x, d: dl._loss(p, x, h, d, st))(
            dparams, rows_of(jax.lax.stop_gradient(acts_LND)), dead_GS)
        return ce + coeff * fvu_L.mean() + dloss_G.sum(), (ce, z_GNS)

    def step(carry, t, seed, coeff, lr, wd):
        mparams, mopt, dparams, dopt, since_GS = carry
        k_data = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), _DATA), t)
        batch = sample_mixture(train_tasks, jnp.asarray(probs), k_data, tcfg.batch_size, T)
        dead_GS = since_GS >= h["dead_after"]
        (_, (ce, z_GNS)), (gm, gd) = jax.value_and_grad(loss_fn, has_aux=True)((mparams, dparams), batch, dead_GS,
                                                                                 coeff)
        if tcfg.grad_clip > 0:
            norm = optax.tree.norm(gm)
            gm = jax.tree.map(lambda g: g * jnp.minimum(1.0, tcfg.grad_clip / (norm + 1e-12)), gm)
        updates, mopt = (gm, mopt) if tcfg.optimizer == "sgd" else adam.update(gm, mopt)
        rate = lr * lr_factor(tcfg, t)
        mparams = jax.tree.map(lambda p, u, decay: p - rate * (u + wd * p) if decay else p - rate * u,
                               mparams, updates, decays)
        dupd, dopt = dl._ADAM.update(gd, dopt)
        dparams = jax.tree.map(lambda p, u: p - dc.lr * u, dparams, dupd)
        if dc.normalize_decoder:
            dparams["W_dec"] = dparams["W_dec"] / jnp.linalg.norm(dparams["W_dec"], axis=-1, keepdims=True)
        fired_GS = (z_GNS > 0).any(1)
        rows = z_GNS.shape[1]
        since_GS = jnp.where(fired_GS, 0, since_GS + rows)
        return (mparams, mopt, dparams, dopt, since_GS), ce

    def chunk(carry_E, seed_E, coeff_E, start, n_steps, lr, wd):
        def one(carry, seed, coeff):
            return jax.lax.fori_loop(0, n_steps, lambda i, c: step(c, start + i, seed, coeff, lr, wd)[0], carry)
        return jax.vmap(one)(carry_E, seed_E, coeff_E)

    def evaluate(mparams, dparams, batch):
        logits, acts_LND = acts_of(mparams, batch.inputs)
        out = {m: v for m, v in metrics(logits, batch, loss_kind).items() if m in ("loss", "acc")}
        rec = [_reconstruct(_of_block(dparams, b, shared), acts_LND[b], st, h) for b in range(L)]
        out["fvu"] = jnp.stack([_fvu(acts_LND[b], rec[b][0]) for b in range(L)])
        out["l0"] = jnp.stack([(z > 0).sum(-1).mean() for _, z in rec])
        return out

    return jax.jit(chunk, donate_argnums=0), jax.jit(jax.vmap(evaluate, in_axes=(0, 0, None)))


def train_joint(mcfg: TransformerConfig, tcfg: TrainConfig, tasks: Mapping[str, Task], jcfg: JointConfig, *,
                seeds: Sequence[int] = (0,), coeffs: Sequence[float] = (0.0,),
                probs: Sequence[float] | None = None) -> JointResult:
    """Train one model per (seed, coeff) with its dictionaries, every run in one program.

    ``tasks``: the training mixture, drawn with ``probs`` (default: equal); each is also an eval
    set (its first ``tcfg.eval_batch`` eval-split rows, as the Trainer draws them). History at
    ``tcfg.eval_steps()``: the model's loss and acc (first task), and per block the FVU and l0 of
    its dictionary on that task's eval batch."""
    seeds, coeffs = [int(s) for s in seeds], [float(c) for c in coeffs]
    validate(mcfg, tcfg, jcfg, seeds, coeffs)
    probs = tuple(float(p) for p in (probs if probs is not None else [1 / len(tasks)] * len(tasks)))
    if len(probs) != len(tasks) or abs(sum(probs) - 1) > 1e-6 or min(probs) < 0:
        raise ConfigError(f"probs must be {len(tasks)} non-negative numbers summing to 1, got {probs}")
    static = dataclasses.replace(tcfg, lr=1.0, weight_decay=0.0, seed=0, chunk_steps=1, n_evals=1,
                                 eval_spacing="linear", eval_at=(), eval_batch=1, eval_seed=0)
    chunk, evaluate = _programs(mcfg, static, jcfg, tuple(tasks.items()), probs)
    run_seed = np.repeat(seeds, len(coeffs)).astype(np.int32)
    run_coeff = np.tile(coeffs, len(seeds)).astype(np.float32)
    E, G = len(run_seed), 1 if jcfg.layout == "shared" else mcfg.n_layers
    mparams, mopt = _init_programs(mcfg)[0](jnp.asarray(run_seed))
    dc = jcfg.dictionary
    dparams = jax.tree.map(lambda *a: jnp.stack(a).reshape(E, G, *a[0].shape), *[
        dl.init_params(dc, jax.random.fold_in(jax.random.key(int(s)), 1000 + g)) for s in run_seed for g in range(G)])
    carry = (mparams, mopt, dparams, jax.vmap(dl._ADAM.init)(dparams), jnp.zeros((E, G, dc.d_sae), jnp.int32))
    first = sorted(tasks)[0]
    ekey = jax.random.fold_in(jax.random.key(tcfg.eval_seed), sorted(tasks).index(first))
    ebatch = tasks[first].sample(ekey, tcfg.eval_batch, split="eval")
    hist: dict[str, list] = {"step": []}
    done = 0
    for target in tcfg.eval_steps():
        while done < target:
            n = int(min(tcfg.chunk_steps, target - done))
            carry = chunk(carry, jnp.asarray(run_seed), jnp.asarray(run_coeff), jnp.int32(done), jnp.int32(n),
                          jnp.float32(tcfg.lr), jnp.float32(tcfg.weight_decay))
            done += n
        ev = evaluate(carry[0], carry[2], ebatch)
        hist["step"].append(int(target))
        for m, v in ev.items():
            hist.setdefault(m, []).append(np.asarray(v))
    history = {m: np.stack(v) if m != "step" else np.asarray(v) for m, v in hist.items()}
    if not np.isfinite(history["loss"]).all():
        raise FloatingPointError("non-finite loss in joint training; lower lr or coeff")
    graphdef = abstract_model(mcfg)[0]
    models = [nnx.merge(graphdef, jax.tree.map(functools.partial(_row, e=e), carry[0])) for e in range(E)]
    dicts = [[{n: np.asarray(v[e, g]) for n, v in carry[2].items()} for g in range(G)] for e in range(E)]
    return JointResult(run_seed.tolist(), run_coeff.tolist(), models, dicts, history)
