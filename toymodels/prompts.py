"""Soft prompts over a frozen model (Lester et al. 2021): how much information elicits a behaviour.

A soft prompt is P trainable vectors that replace the residual stream entering block 0
(``blocks.0.resid_pre``, the token embedding plus the positional embedding) at P chosen input
positions. It may change nothing else: the model's weights stay frozen, the other positions keep
their own embeddings, and the task's targets and scored mask are untouched. Replacing positions
(rather than prepending) works on models whose context is exactly a task's length; a prefix is the
case of left-padded inputs whose first P positions are replaced. Of the P slots a run uses the
first ``n_tokens``; the rest keep the model's own embedding.

``norm_bound`` measures vectors against the mean norm of the token embedding rows W_E (not the
positional embedding): a prompt vector is projected to norm <= norm_bound x that mean after every
step. The hard-prompt baseline of the same length writes vocabulary tokens into the input ids.

``noise`` regularises against fragile (adversarial) prompts: in training only, each step's loss
sees every prompt vector plus noise of norm noise x its own norm in a uniform direction, from a
key of its own (noise 0 trains exactly as without it). ``perturbation_sensitivity`` measures that
kind of noise after training, ``prompt_grad_norm`` how steeply the loss changes around a prompt.

A curve of score vs n_tokens says little alone: compare it with the same curve on a random-init
model of the same shape (the caller builds it with ``toymodels.model.init_model``), whose
behaviour any prompt must build from scratch.

Shape letters as in ``toymodels.model``; here P prompt slots, E runs, C candidate tokens,
S perturbation scales, R noise draws, N prompt tokens of a hard prompt.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from toymodels.config import ConfigError, check_choice, check_int, check_range, check_seed, fail, set_field
from toymodels.hooks import patch, run_with_interventions
from toymodels.tasks.base import Batch, masked_mean, metrics, token_losses

Array = jax.Array
HOOK = "blocks.0.resid_pre"
INITS = ("embedding", "zeros")
_ADAM = optax.scale_by_adam()      # optax.adam's defaults; the per-run lr multiplies its updates
_EVAL_STREAM = 0x50A7              # folded into key(0), twice, for the default eval batch
_NOISE_STREAM = 0x7015E            # folded into a step's data key for its training noise


@dataclasses.dataclass(frozen=True)
class PromptConfig:
    """One soft prompt and its training; a bad field raises ConfigError naming it."""
    positions: tuple[int, ...] = (0,)   # input positions the prompt may occupy, in slot order
    n_tokens: int = 1                   # slots used: the first n_tokens of positions
    steps: int = 200
    lr: float = 0.05
    batch_size: int = 64
    seed: int = 0
    norm_bound: float = 0.0             # 0 = none; else norm <= norm_bound x mean ||W_E row||
    init: str = "embedding"             # "embedding" (random tokens' embedding output) | "zeros"
    noise: float = 0.0                  # training only: noise of norm noise x each vector's own

    def __post_init__(self):
        set_field(self, "positions", check_positions_field(self.positions))
        set_field(self, "n_tokens", check_int("n_tokens", self.n_tokens, 0, len(self.positions),
                                              "at most len(positions) slots"))
        set_field(self, "steps", check_int("steps", self.steps, 0))
        set_field(self, "lr", check_range("lr", self.lr, 0.0, math.inf, lo_open=True))
        set_field(self, "batch_size", check_int("batch_size", self.batch_size, 1))
        set_field(self, "seed", check_seed("seed", self.seed))
        set_field(self, "norm_bound", check_range("norm_bound", self.norm_bound, 0.0, math.inf))
        check_choice("init", self.init, INITS)
        set_field(self, "noise", check_range("noise", self.noise, 0.0, math.inf))


def check_positions_field(positions) -> tuple[int, ...]:
    """A non-empty tuple of distinct non-negative integer positions."""
    if (not isinstance(positions, (tuple, list)) or not positions
            or any(isinstance(p, bool) or not isinstance(p, numbers.Integral) or p < 0 for p in positions)
            or len(set(positions)) != len(positions)):
        fail("positions", positions, "must be a non-empty tuple of distinct integers >= 0")
    return tuple(int(p) for p in positions)


class PromptResult(NamedTuple):
    cfg: PromptConfig
    prompt_PD: np.ndarray          # slots >= n_tokens are unused (they hold their initial values)
    score: dict[str, float]        # acc, exact, loss on the eval batch after training
    history: dict[str, np.ndarray]  # step (H,) and each metric (H,) on the eval batch
    train_loss: np.ndarray         # (steps,) training loss before each step


class HardPrompt(NamedTuple):
    tokens: np.ndarray             # (n_tokens,) token ids written at positions[:n_tokens]
    score: dict[str, float]        # on the eval batch
    search_acc: float              # acc on the search batch the tokens were chosen on


# -- checks and the patched forward pass ---------------------------------------------------------

def _check_model(model) -> None:
    c = model.cfg
    if c.input_kind != "tokens" or c.output_kind != "logits" or c.n_layers < 1:
        raise ConfigError(f"prompts need a token-in, logits-out model with at least one block "
                          f"(it patches {HOOK!r}); got input_kind={c.input_kind!r}, "
                          f"output_kind={c.output_kind!r}, n_layers={c.n_layers}")


def _check_fit(model, positions: tuple[int, ...], inputs_shape) -> None:
    """The inputs are (B, T) token ids and every position is inside them."""
    _check_model(model)
    if len(inputs_shape) != 2:
        raise ValueError(f"batch inputs must be (B, T) token ids, got shape {tuple(inputs_shape)}")
    T = inputs_shape[1]
    if max(positions) >= min(T, model.cfg.max_seq_len):
        fail("positions", positions, f"every position must be < T={T}, the inputs' length "
             f"(the model's max_seq_len is {model.cfg.max_seq_len})")


def _patched_logits(graphdef, state, inputs_BT: Array, prompt_PD: Array, n_tokens, pos_P: Array) -> Array:
    """Logits with slots < n_tokens of the prompt replacing the residual entering block 0."""
    T, D = inputs_BT.shape[1], prompt_PD.shape[1]
    used_P = jnp.arange(prompt_PD.shape[0]) < n_tokens
    mask_T = jnp.zeros(T, bool).at[pos_P].set(used_P)
    value_TD = jnp.zeros((T, D), prompt_PD.dtype).at[pos_P].set(prompt_PD)
    return run_with_interventions(nnx.merge(graphdef, state), inputs_BT, {HOOK: patch(value_TD[None], mask_T)})


def _batch_metrics(graphdef, state, batch: Batch, prompt_PD, n_tokens, pos_P) -> dict[str, Array]:
    return metrics(_patched_logits(graphdef, state, batch.inputs, prompt_PD, n_tokens, pos_P), batch, "xent")


def _batch_loss(graphdef, state, batch: Batch, prompt_PD, n_tokens, pos_P) -> Array:
    """The masked mean xent loss: what training minimises and prompt_grad_norm differentiates."""
    logits = _patched_logits(graphdef, state, batch.inputs, prompt_PD, n_tokens, pos_P)
    return masked_mean(token_losses(logits, batch.targets, "xent"), batch.mask)


def _unit_rows(g_xD: Array) -> Array:
    """Each row of the last axis scaled to norm 1: a standard normal draw becomes a uniform direction."""
    return g_xD / jnp.maximum(jnp.linalg.norm(g_xD, axis=-1, keepdims=True), 1e-30)


def _noisy(p_PD: Array, key: Array, noise) -> Array:
    """p_PD plus noise of norm noise x each row's own norm, in a uniform direction."""
    # the scale is a constant to the gradient; noise 0 adds exact zeros, so p_PD comes back bitwise
    scale_P1 = jax.lax.stop_gradient(noise * jnp.linalg.norm(p_PD, axis=1, keepdims=True))
    return p_PD + scale_P1 * _unit_rows(jax.random.normal(key, p_PD.shape))


def embed_norm(model) -> float:
    """The norm bound's reference: the mean norm of the token embedding rows W_E."""
    return float(np.linalg.norm(np.asarray(model.W_E[...]), axis=1).mean())


def _project(p_PD: Array, max_norm) -> Array:
    """Rows scaled down to norm <= max_norm; max_norm 0 = no bound."""
    norm_P1 = jnp.linalg.norm(p_PD, axis=1, keepdims=True)
    shrink_P1 = jnp.minimum(1.0, max_norm / jnp.maximum(norm_P1, 1e-30))
    return jnp.where(max_norm > 0, p_PD * shrink_P1, p_PD)


_COMPILED: dict = {}


def _compiled(model, what: str, make: Callable):
    """One jitted function per (model config, what): every model of one shape shares a compile."""
    key = (model.cfg, what)
    if key not in _COMPILED:
        _COMPILED[key] = make(nnx.graphdef(model))
    return _COMPILED[key]


def _prompt_args(model, batch: Batch, prompt_PD, n_tokens: int, positions) -> tuple:
    positions = check_positions_field(positions)
    _check_fit(model, positions, batch.inputs.shape)
    prompt_PD = jnp.asarray(prompt_PD, jnp.float32)
    if prompt_PD.shape != (len(positions), model.cfg.d_model):
        raise ValueError(f"prompt_PD must be (len(positions)={len(positions)}, d_model={model.cfg.d_model}), "
                         f"got {prompt_PD.shape}")
    n_tokens = check_int("n_tokens", n_tokens, 0, len(positions), "at most len(positions) slots")
    return prompt_PD, jnp.int32(n_tokens), jnp.asarray(positions, jnp.int32)


def prompt_score(model, batch: Batch, prompt_PD, n_tokens: int, positions) -> dict[str, float]:
    """acc, exact and loss on ``batch`` with the first n_tokens prompt vectors patched in."""
    args = _prompt_args(model, batch, prompt_PD, n_tokens, positions)
    fn = _compiled(model, "score", lambda g: jax.jit(functools.partial(_batch_metrics, g)))
    return {k: float(v) for k, v in fn(nnx.state(model), batch, *args).items()}


def _make_grad_norm(graphdef):
    def grad_norm(state, batch, prompt_PD, n_tokens, pos_P):
        g_PD = jax.grad(functools.partial(_batch_loss, graphdef), argnums=2)(state, batch, prompt_PD, n_tokens, pos_P)
        # unused slots get no gradient through the patch; the mask makes their zeros explicit
        used_P1 = (jnp.arange(g_PD.shape[0]) < n_tokens)[:, None]
        return jnp.linalg.norm(jnp.where(used_P1, g_PD, 0.0))
    return jax.jit(grad_norm)


def prompt_grad_norm(model, batch: Batch, prompt_PD, n_tokens: int, positions) -> float:
    """Norm of the gradient of ``batch``'s masked mean xent loss w.r.t. the first n_tokens prompt vectors."""
    # slots >= n_tokens reach nothing, so they contribute nothing: n_tokens 0 gives exactly 0.0
    args = _prompt_args(model, batch, prompt_PD, n_tokens, positions)
    return float(_compiled(model, "grad_norm", _make_grad_norm)(nnx.state(model), batch, *args))


# -- training ------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=32)
def _train_fn(graphdef, sample: Callable, positions: tuple, batch_size: int):
    """Steps [t0, t1) of every run as one jitted program: a fori_loop over a vmapped step."""
    # the loop's bounds are traced, so the chunks between history points share one compile
    pos_P = np.asarray(positions, np.int32)

    def loss_fn(prompt_PD, state, batch, n_tokens, key, noise):
        return _batch_loss(graphdef, state, batch, _noisy(prompt_PD, key, noise), n_tokens, pos_P)

    def step(prompt_PD, opt, t, state, h):
        key = jax.random.fold_in(jax.random.key(h["seed"]), t)
        batch = sample(key, batch_size)
        noise_key = jax.random.fold_in(key, _NOISE_STREAM)   # folded once more: no data key is this one
        loss, g_PD = jax.value_and_grad(loss_fn)(prompt_PD, state, batch, h["n_tokens"], noise_key, h["noise"])
        upd_PD, opt = _ADAM.update(g_PD, opt)
        return _project(prompt_PD - h["lr"] * upd_PD, h["max_norm"]), opt, loss

    def run(state, carry, h_E, t0, t1):
        def body(t, c):
            prompt_EPD, opt_E, loss_SE = c
            prompt_EPD, opt_E, loss_E = jax.vmap(step, in_axes=(0, 0, None, None, 0))(prompt_EPD, opt_E, t, state, h_E)
            return prompt_EPD, opt_E, loss_SE.at[t].set(loss_E)
        return jax.lax.fori_loop(t0, t1, body, carry)

    return jax.jit(run)


def _init_prompt(model, cfg: PromptConfig, ref: float) -> np.ndarray:
    """(P, D): what block 0 reads at the positions when random tokens sit there, or zeros; bounded."""
    P, D = len(cfg.positions), model.cfg.d_model
    if cfg.init == "zeros":
        return np.zeros((P, D), np.float32)
    # drawn on the host: a threefry draw here would cost a compile per ensemble size
    x_PD = np.asarray(model.W_E[...])[np.random.default_rng(cfg.seed % 2**32).integers(0, model.cfg.vocab_size, P)]
    if model.W_pos is not None:
        x_PD = x_PD + np.asarray(model.W_pos[...])[list(cfg.positions)]
    if cfg.norm_bound:
        norm_P1 = np.linalg.norm(x_PD, axis=1, keepdims=True)
        x_PD = x_PD * np.minimum(1.0, cfg.norm_bound * ref / np.maximum(norm_P1, 1e-30))
    return x_PD.astype(np.float32)


def train_prompts(model, sample: Callable[[Array, int], Batch], cfgs: Sequence[PromptConfig], *,
                  eval_batch: Batch | None = None, history: int = 5) -> list[PromptResult]:
    """Train one soft prompt per config on ``sample(key, batch_size)`` as one vmapped program."""
    # n_tokens, lr, seed, norm_bound, init and noise are per-run values; positions, steps and
    # batch_size fix the program's shapes. ``sample`` must be jit- and vmap-safe. Results follow ``cfgs``.
    cfgs = list(cfgs)
    if not cfgs or not all(isinstance(c, PromptConfig) for c in cfgs):
        raise ValueError(f"cfgs must be a non-empty sequence of PromptConfig, got {cfgs!r}")
    c0 = cfgs[0]
    for f in ("positions", "steps", "batch_size"):
        if any(getattr(c, f) != getattr(c0, f) for c in cfgs):
            fail(f, [getattr(c, f) for c in cfgs], "must be the same in every config of one call "
                 "(it fixes the program's shapes); call train_prompts once per value")
    history = check_int("history", history, 1)
    _check_fit(model, c0.positions, jax.eval_shape(lambda k: sample(k, c0.batch_size), jax.random.key(0)).inputs.shape)
    if eval_batch is None:   # folded twice: no training key, fold_in(key(seed), t), is this one
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(0), _EVAL_STREAM), 0)
        eval_batch = jax.jit(sample, static_argnums=1)(key, c0.batch_size)
    _check_fit(model, c0.positions, eval_batch.inputs.shape)
    ref = embed_norm(model)
    h_E = {"seed": np.asarray([c.seed for c in cfgs], np.int32),
           "n_tokens": np.asarray([c.n_tokens for c in cfgs], np.int32),
           "lr": np.asarray([c.lr for c in cfgs], np.float32),
           "max_norm": np.asarray([c.norm_bound * ref for c in cfgs], np.float32),
           "noise": np.asarray([c.noise for c in cfgs], np.float32)}
    run, state = _train_fn(nnx.graphdef(model), sample, c0.positions, c0.batch_size), nnx.state(model)
    prompt_EPD = np.stack([_init_prompt(model, c, ref) for c in cfgs])
    # Adam starts from zeros (count, mu, nu): built on the host, no compile
    opt_E = jax.tree.map(lambda a: np.zeros(prompt_EPD.shape[:1] + a.shape, a.dtype),
                         jax.eval_shape(_ADAM.init, jax.ShapeDtypeStruct(prompt_EPD.shape[1:], np.float32)))
    carry = (prompt_EPD, opt_E, np.zeros((c0.steps, len(cfgs)), np.float32))
    record = sorted({round(s) for s in np.linspace(c0.steps, 0, history)})   # history=1: the end only
    hist, t = [], 0
    for r in record:
        if r > t:
            carry, t = run(state, carry, h_E, np.int32(t), np.int32(r)), r
        # the history reuses prompt_score's compiled function: no extra program per ensemble size
        hist.append([prompt_score(model, eval_batch, p_PD, c.n_tokens, c.positions)
                     for p_PD, c in zip(np.asarray(carry[0]), cfgs)])
    prompt_EPD, loss_SE = np.asarray(carry[0]), np.asarray(carry[2])
    bad = [c for c, s in zip(cfgs, hist[-1]) if not np.isfinite(s["loss"])]
    if bad:
        raise FloatingPointError(f"non-finite prompt loss in {len(bad)} run(s), first: {bad[0]}; "
                                 "lower lr or set norm_bound")
    return [PromptResult(c, prompt_EPD[e], hist[-1][e],
                         {"step": np.asarray(record), **{m: np.asarray([h[e][m] for h in hist], np.float32)
                                                         for m in hist[-1][e]}}, loss_SE[:, e])
            for e, c in enumerate(cfgs)]


# -- the hard-prompt baseline --------------------------------------------------------------------

def _write_tokens(inputs_BT: Array, tokens_N: Array, pos_N: Array) -> Array:
    return inputs_BT.at[:, pos_N].set(jnp.broadcast_to(tokens_N[None], (inputs_BT.shape[0], pos_N.shape[0])))


def _make_candidates(graphdef):
    def scores(state, batch, tokens_N, pos_N, slot, cand_C):
        """acc and loss (C,) of every candidate token at slot ``slot``, the other tokens fixed."""
        def one(c):
            inputs = _write_tokens(batch.inputs, tokens_N.at[slot].set(c), pos_N)
            m = metrics(run_with_interventions(nnx.merge(graphdef, state), inputs, {}), batch, "xent")
            return m["acc"], m["loss"]
        return jax.vmap(one)(cand_C)
    return jax.jit(scores)


def with_tokens(batch: Batch, tokens_N, positions) -> Batch:
    """The batch with token ``tokens_N[i]`` written into every row's input at ``positions[i]``."""
    inputs_BT = np.array(batch.inputs)
    inputs_BT[:, list(positions)[:len(tokens_N)]] = np.asarray(tokens_N)[None]
    return batch._replace(inputs=jnp.asarray(inputs_BT))


def hard_prompt_search(model, sample: Callable[[Array, int], Batch], positions, n_tokens: int, *, seed: int,
                       eval_batch: Batch, candidates=None, sweeps: int = 2, batch_size: int = 64) -> HardPrompt:
    """Greedy coordinate search for tokens at positions[:n_tokens] maximising acc (ties: lower loss)."""
    # The search batch is sample(key(seed), batch_size) and the score is on eval_batch, so a hard
    # prompt is selected on other data than it is scored on, like a soft prompt. The tokens start
    # as random candidates (NumPy, from seed); each sweep visits every slot in order.
    positions = check_positions_field(positions)
    n_tokens = check_int("n_tokens", n_tokens, 0, len(positions), "at most len(positions) slots")
    check_int("sweeps", sweeps, 1)
    V = model.cfg.vocab_size
    cand_C = np.arange(V) if candidates is None else np.unique(np.asarray(candidates))
    if (not cand_C.size or not np.issubdtype(cand_C.dtype, np.integer) or cand_C.min() < 0
            or cand_C.max() >= V):
        fail("candidates", candidates, f"must be a non-empty sequence of token ids in [0, {V})")
    key = jax.random.key(check_seed("seed", seed))
    search = jax.jit(sample, static_argnums=1)(key, check_int("batch_size", batch_size, 1))
    _check_fit(model, positions, search.inputs.shape)
    _check_fit(model, positions, eval_batch.inputs.shape)
    state, pos_N = nnx.state(model), jnp.asarray(positions[:n_tokens], jnp.int32)
    pick_N = np.random.default_rng(seed % 2**32).integers(0, cand_C.size, n_tokens)
    cands, fn = jnp.asarray(cand_C, jnp.int32), _compiled(model, "candidates", _make_candidates)
    for _ in range(sweeps):
        changed = False
        for i in range(n_tokens):
            acc_C, loss_C = (np.asarray(a) for a in fn(state, search, jnp.asarray(cand_C[pick_N]), pos_N, i, cands))
            top = np.flatnonzero(acc_C == acc_C.max())
            j = top[np.argmin(loss_C[top])]
            # strict improvements only, so ties cannot make the search cycle
            if (acc_C[j], -loss_C[j]) > (acc_C[pick_N[i]], -loss_C[pick_N[i]]):
                pick_N[i], changed = j, True
        if not changed:
            break
    tokens_N = cand_C[pick_N].astype(np.int32)
    no_prompt_PD = np.zeros((len(positions), model.cfg.d_model), np.float32)
    if n_tokens == 0:
        search_acc = prompt_score(model, search, no_prompt_PD, 0, positions)["acc"]
    else:   # the last slot's evaluation had every other slot at its final token
        search_acc = float(acc_C[pick_N[-1]])
    # scored through prompt_score with nothing patched: it shares that compiled program
    return HardPrompt(tokens_N, prompt_score(model, with_tokens(eval_batch, tokens_N, positions), no_prompt_PD, 0,
                                             positions), search_acc)


# -- representational fragility ------------------------------------------------------------------

def _make_perturbed(graphdef):
    def perturbed(state, batch, prompt_PD, n_tokens, pos_P, scales_S, key, n_draws):
        # the same draws at every scale (common random numbers): a smoother curve in scale
        g_RPD = _unit_rows(jax.random.normal(key, (n_draws,) + prompt_PD.shape))
        norm_11P1 = jnp.linalg.norm(prompt_PD, axis=1, keepdims=True)[None, None]
        x_SRPD = prompt_PD[None, None] + scales_S[:, None, None, None] * norm_11P1 * g_RPD[None]
        m = jax.vmap(lambda p_PD: _batch_metrics(graphdef, state, batch, p_PD, n_tokens, pos_P))(
            x_SRPD.reshape((-1,) + prompt_PD.shape))
        return {k: v.reshape(scales_S.shape[0], n_draws).mean(1) for k, v in m.items()}
    return jax.jit(perturbed, static_argnums=7)


def perturbation_sensitivity(model, batch: Batch, prompt_PD, n_tokens: int, positions, scales: Sequence[float],
                             key: Array, n_draws: int) -> dict[str, np.ndarray]:
    """Mean acc, exact, loss (S,) over n_draws when each prompt vector gets noise of norm scale x its own."""
    args = _prompt_args(model, batch, prompt_PD, n_tokens, positions)
    scales_S = np.asarray(scales, np.float32).reshape(-1)
    if not scales_S.size or not np.isfinite(scales_S).all() or (scales_S < 0).any():
        fail("scales", scales, "must be a non-empty sequence of finite numbers >= 0")
    n_draws = check_int("n_draws", n_draws, 1)
    fn = _compiled(model, "perturbed", _make_perturbed)
    out = fn(nnx.state(model), batch, *args, jnp.asarray(scales_S), key, n_draws)
    return {"scale": scales_S, **{m: np.asarray(v) for m, v in out.items()}}
