"""Sparse dictionaries (sparse autoencoders): configs, encode/decode, training many settings as
one program, and the metrics SAELens reports.

Shape letters: N inputs, B minibatch, D d_in, S d_sae (latents), E runs (ensemble axis).
A dictionary is a plain dict of arrays: W_enc (D, S), b_enc (S,), W_dec (S, D), b_dec (D,),
plus log_threshold (S,) for jumprelu, and threshold (S,) for a trained batchtopk (its inference
threshold, kept as SAELens keeps it). Encoding subtracts b_dec first, as SAELens does with
apply_b_dec_to_input=True: pre = (x - b_dec) @ W_enc + b_enc; decoding is z @ W_dec + b_dec.

Kinds:
  topk       ReLU of the k largest pre-activations of each input (Gao et al. 2024)
  batchtopk  ReLU of the k*B largest over a batch of B inputs (Bussmann et al. 2024)
  jumprelu   z = pre * H(pre - theta), theta = exp(log_threshold), trained with an L0 penalty
             through a straight-through estimator (Rajamanoharan et al. 2024)
  relu       z = ReLU(pre) with an L1 penalty (SAELens's "standard")
Every kind may add the AuxK loss (Gao et al. 2024): latents that have not fired for dead_after
training tokens reconstruct the residual x - x_hat with their top k_aux pre-activations.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from toymodels.config import check_bool, check_choice, check_int, check_range, check_seed, set_field
from toymodels.hooks import forward, patch, run_with_interventions
from toymodels.tasks.base import Batch, masked_mean, token_losses

Array = jax.Array
KINDS = ("topk", "batchtopk", "jumprelu", "relu")
# Values that may differ between the runs of one program (vmapped); the rest fix its shapes.
RUN_FIELDS = ("k", "k_aux", "l1_coeff", "l0_coeff", "bandwidth", "aux_coeff", "dead_after", "lr")
_INT_FIELDS = ("k", "k_aux", "dead_after")
DENSE_ABOVE = 0.1      # dense_fraction counts latents firing on more than this fraction of inputs
BATCHTOPK_THRESHOLD_RATE = 0.01   # EMA rate of batchtopk's inference threshold (SAELens's default)
_ADAM = optax.scale_by_adam()     # optax.adam's defaults; the per-run lr multiplies its updates


@dataclasses.dataclass(frozen=True)
class DictConfig:
    """One dictionary and its training; a bad field raises ConfigError naming it."""
    d_in: int
    d_sae: int
    kind: str = "topk"
    k: int = 4                   # topk: latents per input; batchtopk: per input on average (k*B a batch)
    l1_coeff: float = 1e-3       # relu: weight of the L1 penalty
    l0_coeff: float = 1e-3       # jumprelu: weight of the L0 penalty
    threshold_init: float = 0.1  # jumprelu: initial theta
    bandwidth: float = 0.05      # jumprelu: width eps of the straight-through kernel
    aux_coeff: float = 1 / 32    # AuxK weight (Gao et al.'s 1/32); 0 turns it off
    k_aux: int = 0               # dead latents used by AuxK; 0 = d_in // 2 (at most d_sae)
    dead_after: int = 10_000     # training tokens without firing after which a latent is dead
    lr: float = 1e-3
    steps: int = 2000
    batch_size: int = 256
    seed: int = 0
    normalize_decoder: bool = True   # unit-norm decoder rows, renormalised after every step

    def __post_init__(self):
        for f in ("d_in", "d_sae", "dead_after", "steps", "batch_size"):
            set_field(self, f, check_int(f, getattr(self, f), 1))
        check_choice("kind", self.kind, KINDS)
        top = self.kind in ("topk", "batchtopk")
        set_field(self, "k", check_int("k", self.k, 1, self.d_sae if top else None,
                                       "at most d_sae latents can fire" if top else ""))
        k_aux = check_int("k_aux", self.k_aux, 0, self.d_sae, "0 = d_in // 2; at most d_sae")
        set_field(self, "k_aux", k_aux or min(max(self.d_in // 2, 1), self.d_sae))
        for f in ("l1_coeff", "l0_coeff", "aux_coeff"):
            set_field(self, f, check_range(f, getattr(self, f), 0.0, math.inf))
        for f in ("threshold_init", "bandwidth", "lr"):
            set_field(self, f, check_range(f, getattr(self, f), 0.0, math.inf, lo_open=True))
        set_field(self, "seed", check_seed("seed", self.seed))
        set_field(self, "normalize_decoder", check_bool("normalize_decoder", self.normalize_decoder))


def group_key(cfg: DictConfig) -> tuple:
    """Configs with equal keys train as one vmapped program."""
    return (cfg.d_in, cfg.d_sae, cfg.kind, cfg.steps, cfg.batch_size, cfg.normalize_decoder)


def init_params(cfg: DictConfig, key: Array) -> dict[str, Array]:
    """Random unit-norm decoder rows, encoder = decoder transpose (Gao et al.), zero biases."""
    W_dec_SD = jax.random.normal(key, (cfg.d_sae, cfg.d_in), jnp.float32)
    W_dec_SD = W_dec_SD / jnp.linalg.norm(W_dec_SD, axis=1, keepdims=True)
    params = {"W_enc": W_dec_SD.T, "b_enc": jnp.zeros(cfg.d_sae), "W_dec": W_dec_SD, "b_dec": jnp.zeros(cfg.d_in)}
    if cfg.kind == "jumprelu":
        params["log_threshold"] = jnp.full(cfg.d_sae, math.log(cfg.threshold_init), jnp.float32)
    return params


def _rectangle(u: Array) -> Array:
    """The kernel K(u) = 1[-1/2 < u < 1/2]."""
    return (jnp.abs(u) < 0.5).astype(u.dtype)


@jax.custom_vjp
def jumprelu(pre: Array, theta: Array, eps: Array) -> Array:
    """z = pre * H(pre - theta), elementwise (theta has pre's shape). Gradients (the paper's STE):
    dz/dpre = H(pre - theta);  dz/dtheta = -(theta / eps) * K((pre - theta) / eps)."""
    return pre * (pre > theta)


def _jumprelu_bwd(res, g):
    pre, theta, eps = res
    return (pre > theta) * g, -(theta / eps) * _rectangle((pre - theta) / eps) * g, jnp.zeros_like(eps)


jumprelu.defvjp(lambda pre, theta, eps: (jumprelu(pre, theta, eps), (pre, theta, eps)), _jumprelu_bwd)


@jax.custom_vjp
def heaviside(pre: Array, theta: Array, eps: Array) -> Array:
    """H(pre - theta), elementwise. Gradients: d/dpre = 0;  d/dtheta = -(1 / eps) * K((pre - theta) / eps)."""
    return (pre > theta).astype(pre.dtype)


def _heaviside_bwd(res, g):
    pre, theta, eps = res
    return jnp.zeros_like(pre), -(1.0 / eps) * _rectangle((pre - theta) / eps) * g, jnp.zeros_like(eps)


heaviside.defvjp(lambda pre, theta, eps: (heaviside(pre, theta, eps), (pre, theta, eps)), _heaviside_bwd)


def _keep_top(pre_NS: Array, k, k_max: int, relu: bool = True) -> Array:
    """(ReLU of) the k largest finite entries of each row, zero elsewhere; k may be traced (<= k_max)."""
    vals_NK, idx_NK = jax.lax.top_k(pre_NS, k_max)
    keep_NK = (jnp.arange(k_max)[None] < k) & jnp.isfinite(vals_NK)
    vals_NK = jnp.where(keep_NK, jax.nn.relu(vals_NK) if relu else vals_NK, 0.0)
    return jnp.zeros_like(pre_NS).at[jnp.arange(pre_NS.shape[0])[:, None], idx_NK].set(vals_NK)


def _theta(params, pre_NS: Array) -> Array:
    return jnp.broadcast_to(jnp.exp(params["log_threshold"])[None], pre_NS.shape)


def _pre(params, x_ND: Array) -> Array:
    return (x_ND - params["b_dec"][None]) @ params["W_enc"] + params["b_enc"][None]


def _activate(params, pre_NS: Array, kind: str, k, k_max: int, eps) -> Array:
    if kind == "relu":
        return jax.nn.relu(pre_NS)
    if kind == "jumprelu":
        return jumprelu(pre_NS, _theta(params, pre_NS), jnp.asarray(eps, pre_NS.dtype))
    if kind == "topk":
        return _keep_top(pre_NS, k, k_max)
    N = pre_NS.shape[0]
    return _keep_top(pre_NS.reshape(1, -1), k * N, k_max * N).reshape(pre_NS.shape)


@functools.partial(jax.jit, static_argnames="cfg")   # one compile, not one per eager op
def encode(params, x_ND: Array, cfg: DictConfig) -> Array:
    """Latents z (N, S) of inputs x (N, D); batchtopk selects over these N inputs together."""
    return _activate(params, _pre(params, jnp.asarray(x_ND, jnp.float32)), cfg.kind, cfg.k, cfg.k, cfg.bandwidth)


def decode(params, z_NS: Array) -> Array:
    """Reconstruction (N, D) of latents z (N, S)."""
    return z_NS @ params["W_dec"] + params["b_dec"][None]


# -- training ----------------------------------------------------------------------------------

class Trained(NamedTuple):
    cfg: DictConfig
    params: dict[str, Array]
    history: dict[str, np.ndarray]   # per step (steps,): loss, mse, l0, n_dead (dead before the step)
    since_fired_S: np.ndarray        # training tokens since each latent last fired


class _Static(NamedTuple):
    kind: str
    batch_size: int
    normalize_decoder: bool
    k_max: int
    k_aux_max: int
    use_aux: bool


def _loss(params, x_BD: Array, h: dict, dead_S: Array, st: _Static):
    pre_BS = _pre(params, x_BD)
    z_BS = _activate(params, pre_BS, st.kind, h["k"], st.k_max, h["bandwidth"])
    xh_BD = decode(params, z_BS)
    mse = jnp.sum((xh_BD - x_BD) ** 2, -1).mean()   # per input summed over D, as SAELens trains
    loss = mse
    if st.kind == "relu":
        # weighted by decoder norms so that shrinking z while growing W_dec cannot dodge the penalty
        norm_S = jnp.linalg.norm(params["W_dec"], axis=1)
        loss = loss + h["l1_coeff"] * jnp.sum(z_BS * norm_S[None], -1).mean()
    if st.kind == "jumprelu":
        loss = loss + h["l0_coeff"] * jnp.sum(heaviside(pre_BS, _theta(params, pre_BS), h["bandwidth"]), -1).mean()
    if st.use_aux:
        resid_BD = jax.lax.stop_gradient(x_BD - xh_BD)
        # no ReLU (as SAELens): a dead latent with negative pre-activations still learns from it
        za_BS = _keep_top(jnp.where(dead_S[None], pre_BS, -jnp.inf), h["k_aux"], st.k_aux_max, relu=False)
        aux = jnp.sum((za_BS @ params["W_dec"] - resid_BD) ** 2, -1).mean()
        scale = jnp.minimum(dead_S.sum() / h["k_aux"], 1.0)   # SAELens: fewer dead latents, less weight
        loss = loss + h["aux_coeff"] * scale * aux
    return loss, (mse, z_BS)


def _step(carry: dict, t: Array, x_ND: Array, h: dict, st: _Static):
    idx_B = jax.random.randint(jax.random.fold_in(carry["key"], t), (st.batch_size,), 0, x_ND.shape[0])
    x_BD = x_ND[idx_B]
    dead_S = carry["since"] >= h["dead_after"]
    (loss, (mse, z_BS)), grads = jax.value_and_grad(_loss, has_aux=True)(carry["params"], x_BD, h, dead_S, st)
    updates, opt = _ADAM.update(grads, carry["opt"])
    params = jax.tree.map(lambda p, u: p - h["lr"] * u, carry["params"], updates)
    if st.normalize_decoder:
        params["W_dec"] = params["W_dec"] / jnp.linalg.norm(params["W_dec"], axis=1, keepdims=True)
    fired_S = (z_BS > 0).any(0)
    thr = carry["thr"]
    if st.kind == "batchtopk":   # SAELens's inference threshold: EMA of the smallest kept activation
        lo = jnp.min(jnp.where(z_BS > 0, z_BS, jnp.inf))
        ema = jnp.where(thr == 0, lo, (1 - BATCHTOPK_THRESHOLD_RATE) * thr + BATCHTOPK_THRESHOLD_RATE * lo)
        thr = jnp.where(jnp.isfinite(lo), ema, thr)
    carry = {"params": params, "opt": opt, "since": jnp.where(fired_S, 0, carry["since"] + st.batch_size),
             "thr": thr, "key": carry["key"]}
    return carry, {"loss": loss, "mse": mse, "l0": (z_BS > 0).sum(-1).mean(), "n_dead": dead_S.sum()}


@functools.lru_cache(maxsize=64)
def _chunk_fn(st: _Static, n_steps: int):
    """n_steps of every run, as one jitted scan over a vmapped step."""
    def run(carry_E, h_E, x_ND, t0):
        def body(carry, t):
            return jax.vmap(lambda c, h: _step(c, t, x_ND, h, st))(carry, h_E)
        return jax.lax.scan(body, carry_E, t0 + jnp.arange(n_steps))
    return jax.jit(run)


def _check_finite(metrics: dict, cfgs: Sequence[DictConfig]) -> None:
    bad = ~np.isfinite(np.asarray(metrics["loss"])).all(0)
    if bad.any():
        raise FloatingPointError(f"non-finite dictionary loss in {int(bad.sum())} run(s), first: "
                                 f"{cfgs[int(np.argmax(bad))]}; lower lr or check the activations")


def _start(cfg: DictConfig, params0) -> dict:
    init_key, data_key = jax.random.split(jax.random.key(cfg.seed))
    params = init_params(cfg, init_key)
    if params0 is not None:
        given = {n: jnp.asarray(v, jnp.float32) for n, v in params0.items() if n != "threshold"}
        if sorted(given) != sorted(params) or any(given[n].shape != params[n].shape for n in params):
            raise ValueError(f"params0 must hold {({n: p.shape for n, p in params.items()})} for {cfg}; got "
                             f"{({n: v.shape for n, v in given.items()})}")
        params = given
    return {"params": params, "opt": _ADAM.init(params), "since": jnp.zeros(cfg.d_sae, jnp.int32),
            "thr": jnp.float32(0.0), "key": data_key}


def _train_group(x_ND: Array, cfgs: list[DictConfig], params0: list, chunk: int) -> list[Trained]:
    c0 = cfgs[0]
    st = _Static(c0.kind, c0.batch_size, c0.normalize_decoder, max(c.k for c in cfgs),
                 max(c.k_aux for c in cfgs), any(c.aux_coeff > 0 for c in cfgs))
    carry = jax.tree.map(lambda *a: jnp.stack(a), *[_start(c, p) for c, p in zip(cfgs, params0)])
    h = {f: jnp.asarray([getattr(c, f) for c in cfgs], jnp.int32 if f in _INT_FIELDS else jnp.float32)
         for f in RUN_FIELDS}
    history: list[dict] = []
    for t in range(0, c0.steps, chunk):
        carry, metrics = _chunk_fn(st, min(chunk, c0.steps - t))(carry, h, x_ND, jnp.int32(t))
        if history:   # one chunk late: the host never waits on the chunk it just dispatched
            _check_finite(history[-1], cfgs)
        history.append(metrics)
    _check_finite(history[-1], cfgs)
    hist = {m: np.concatenate([np.asarray(c[m]) for c in history]) for m in history[0]}   # (steps, E)
    out = []
    for e, cfg in enumerate(cfgs):
        params = {n: v[e] for n, v in carry["params"].items()}
        if cfg.kind == "batchtopk":
            params["threshold"] = jnp.full(cfg.d_sae, carry["thr"][e])
        out.append(Trained(cfg, params, {m: v[:, e] for m, v in hist.items()}, np.asarray(carry["since"][e])))
    return out


def train_dictionaries(x_ND, cfgs: Sequence[DictConfig], *, chunk: int = 1000,
                       params0: Sequence[dict | None] | None = None) -> list[Trained]:
    """Train each config on the rows of x (N, D), minibatches drawn on device from its seed.

    Configs that share ``group_key`` train as one jitted program vmapped over runs (k, k_aux,
    coefficients, lr, dead_after and seed are per-run values), in scans of ``chunk`` steps.
    ``params0``: starting params per config (None: ``init_params``). Results follow ``cfgs``.
    """
    cfgs = list(cfgs)
    if not cfgs or not all(isinstance(c, DictConfig) for c in cfgs):
        raise ValueError(f"cfgs must be a non-empty sequence of DictConfig, got {cfgs!r}")
    x = jnp.asarray(x_ND, jnp.float32)
    bad = [c for c in cfgs if x.ndim != 2 or x.shape[1] != c.d_in]
    if bad or x.shape[0] == 0:
        raise ValueError(f"x_ND must be (N >= 1, d_in={bad[0].d_in if bad else cfgs[0].d_in}); got {x.shape}")
    params0 = list(params0) if params0 is not None else [None] * len(cfgs)
    if len(params0) != len(cfgs):
        raise ValueError(f"params0 has {len(params0)} entries for {len(cfgs)} configs")
    check_int("chunk", chunk, 1)
    out: list = [None] * len(cfgs)
    for key in dict.fromkeys(map(group_key, cfgs)):
        idx = [i for i, c in enumerate(cfgs) if group_key(c) == key]
        for i, r in zip(idx, _train_group(x, [cfgs[i] for i in idx], [params0[i] for i in idx], chunk)):
            out[i] = r
    return out


# -- metrics -----------------------------------------------------------------------------------

def reconstruction_metrics(params, x_ND, cfg: DictConfig) -> dict[str, float]:
    """SAELens's names on an evaluation set x (N, D): l0 (latents firing per input), mse (mean
    squared error per element), explained_variance (1 - sum sq residual / sum sq of x minus its
    mean), dead_fraction (latents firing on no input), dense_fraction (on more than 10 %)."""
    return {name: float(v) for name, v in _reconstruction_metrics(params, jnp.asarray(x_ND, jnp.float32), cfg).items()}


@functools.partial(jax.jit, static_argnames="cfg")
def _reconstruction_metrics(params, x_ND: Array, cfg: DictConfig) -> dict[str, Array]:
    z_NS = encode(params, x_ND, cfg)
    resid_ND = decode(params, z_NS) - x_ND
    fires_S = (z_NS > 0).mean(0)
    return {"l0": (z_NS > 0).sum(-1).mean(), "mse": jnp.mean(resid_ND ** 2),
            "explained_variance": 1 - jnp.sum(resid_ND ** 2) / jnp.sum((x_ND - x_ND.mean(0)[None]) ** 2),
            "dead_fraction": jnp.mean(fires_S == 0), "dense_fraction": jnp.mean(fires_S > DENSE_ABOVE)}


_SPLICED: dict = {}


def _patched_logits(model, inputs: Array, hook_name: str, value: Array) -> Array:
    graphdef, state = nnx.split(model)
    fn = _SPLICED.get((model.cfg, hook_name))
    if fn is None:   # one compile per architecture and hook, as hooks.forward does
        fn = _SPLICED[(model.cfg, hook_name)] = jax.jit(lambda s, x, v: run_with_interventions(
            nnx.merge(graphdef, s), x, {hook_name: patch(v)}))
    return fn(state, inputs, value)


@jax.jit
def _ce_kl(clean_BTV: Array, logits_BTV: Array, batch: Batch) -> tuple[Array, Array]:
    """Masked means of next-token CE and of KL(clean || this) over the scored positions."""
    logp_clean, logp = jax.nn.log_softmax(clean_BTV, -1), jax.nn.log_softmax(logits_BTV, -1)
    kl_BT = jnp.sum(jnp.exp(logp_clean) * (logp_clean - logp), -1)
    return masked_mean(token_losses(logits_BTV, batch.targets, "xent"), batch.mask), masked_mean(kl_BT, batch.mask)


def splice_scores(model, batch: Batch, hook_name: str, reconstruct: Callable[[Array], Array]) -> dict[str, float]:
    """SAELens's ce_loss_score = (CE_ablated - CE_spliced) / (CE_ablated - CE_clean) and
    kl_div_score = (KL_ablated - KL_spliced) / KL_ablated, KL from the clean next-token
    distribution, when ``hook_name``'s activation is replaced by ``reconstruct`` of it (rows
    (N, last axis)); ablated = zero-ablated. Means over the batch's scored positions."""
    if model.cfg.output_kind != "logits":
        raise ValueError("splice_scores needs a model with output_kind='logits' (it scores next-token CE)")
    clean_BTV, cache = forward(model, batch.inputs, [hook_name])
    act = cache[hook_name]
    recon = jnp.asarray(reconstruct(act.reshape(-1, act.shape[-1]))).reshape(act.shape)
    out = {}
    for name, logits in (("clean", clean_BTV), ("spliced", _patched_logits(model, batch.inputs, hook_name, recon)),
                         ("ablated", _patched_logits(model, batch.inputs, hook_name, jnp.zeros_like(act)))):
        ce, kl = _ce_kl(clean_BTV, logits, batch)
        out |= {f"ce_loss_{name}": float(ce), f"kl_div_{name}": float(kl)}
    out["ce_loss_score"] = (out["ce_loss_ablated"] - out["ce_loss_spliced"]) / (
        out["ce_loss_ablated"] - out["ce_loss_clean"])
    out["kl_div_score"] = (out["kl_div_ablated"] - out["kl_div_spliced"]) / out["kl_div_ablated"]
    return out


def dictionary_splice_scores(model, batch: Batch, hook_name: str, params, cfg: DictConfig) -> dict[str, float]:
    """``splice_scores`` of the dictionary's reconstruction."""
    return splice_scores(model, batch, hook_name, lambda x_ND: decode(params, encode(params, x_ND, cfg)))


# -- activations from a model --------------------------------------------------------------------

def collect_activations(model, hook_name: str, sample: Callable, key: Array, n_inputs: int,
                        batch_size: int = 64) -> np.ndarray:
    """(n_inputs, last axis) activations at ``hook_name``, every position of batches drawn by
    ``sample(key, batch_size)`` (a task's ``sample``), through ``hooks.forward`` in chunks."""
    check_int("n_inputs", n_inputs, 1)
    draw = jax.jit(sample, static_argnums=1)
    rows: list[np.ndarray] = []
    while sum(map(len, rows)) < n_inputs:
        _, cache = forward(model, draw(jax.random.fold_in(key, len(rows)), batch_size).inputs, [hook_name])
        rows.append(np.asarray(cache[hook_name]).reshape(-1, cache[hook_name].shape[-1]))
    return np.concatenate(rows)[:n_inputs]


def train_on_model(model, hook_name: str, sample: Callable, cfgs: Sequence[DictConfig], key: Array,
                   n_inputs: int, **train_kwargs) -> tuple[np.ndarray, list[Trained]]:
    """Collect ``n_inputs`` activations at ``hook_name``, then ``train_dictionaries`` on them."""
    x_ND = collect_activations(model, hook_name, sample, key, n_inputs)
    return x_ND, train_dictionaries(x_ND, cfgs, **train_kwargs)
