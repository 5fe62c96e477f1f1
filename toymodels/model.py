"""Decoder-only transformer: one class for trained and compiled networks.

Shape letters used in names throughout toymodels:
  E runs (ensemble axis)   B batch          T positions (S: key positions)
  D d_model                H heads          K d_head
  F d_mlp                  V vocab          I input features   O output features
  N = B*T (flattened tokens)
  L residual points (n_layers + 1)   C components of a residual   P runs of a patching sweep

Activations are kept 2-D (N, D) around dense layers: XLA:CPU compiles the
backward of 3-D dot_generals with an element-wise epilogue (tanh-GELU) much
worse than 2-D ones (~+20 % step speed measured, see BENCHMARKS.md).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from toymodels.config import ConfigError, check_bool, check_choice, check_int, check_range, set_field
from toymodels.hooks import Hooks

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 0            # 0 = d_model // n_heads
    d_mlp: int = -1            # -1 = 4 * d_model; 0 = attention-only
    vocab_size: int = 64
    max_seq_len: int = 64
    pos_embed: bool = True     # learned positional embedding
    norm: Literal["layernorm", "none"] = "layernorm"   # pre-LN, or no norm
    act: Literal["gelu", "relu"] = "gelu"   # MLP activation; gelu is the tanh approximation
    dropout: float = 0.0       # default rate; training may pass a per-run rate
    tie_embeddings: bool = False
    causal: bool = True        # compiled RASP programs attend both ways
    use_bias: bool = True      # biases on every dense layer except the unembedding
    input_kind: Literal["tokens", "vectors"] = "tokens"   # token ids, or vectors in R^d_input
    d_input: int = 0
    output_kind: Literal["logits", "vectors"] = "logits"   # logits over the vocab, or vectors in R^d_output
    d_output: int = 0
    init_std: float = 0.02     # residual-output projections use init_std / sqrt(2 n_layers)
    myopic: bool = False       # myopic gradient (Wu et al. 2024) of direct calls; training uses train.myopic
    myopic_beta: float = 0.0   # 0 = myopic, 1 = vanilla; scales each past-position gradient link (beta**k)
    ln_eps: float = 1e-5       # LayerNorm epsilon (added to the variance)

    def __post_init__(self):
        ints = {"n_layers": 0, "d_model": 1, "n_heads": 1, "d_head": 0, "d_mlp": -1, "vocab_size": 1,
                "max_seq_len": 1, "d_input": 0, "d_output": 0}
        for f, lo in ints.items():
            set_field(self, f, check_int(f, getattr(self, f), lo))
        for f in ("pos_embed", "tie_embeddings", "causal", "use_bias", "myopic"):
            set_field(self, f, check_bool(f, getattr(self, f)))
        if self.d_head == 0 and self.d_model % self.n_heads:
            raise ConfigError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}: "
                "choose n_heads dividing d_model, or set d_head explicitly")
        check_choice("norm", self.norm, ("layernorm", "none"))
        check_choice("act", self.act, ("gelu", "relu"))
        for f, lo, hi, hi_open in (("dropout", 0.0, 1.0, True), ("myopic_beta", 0.0, 1.0, False),
                                   ("init_std", 0.0, math.inf, False), ("ln_eps", 0.0, math.inf, False)):
            set_field(self, f, check_range(f, getattr(self, f), lo, hi, hi_open=hi_open))
        check_choice("input_kind", self.input_kind, ("tokens", "vectors"))
        check_choice("output_kind", self.output_kind, ("logits", "vectors"))
        if self.input_kind == "vectors":
            check_int("d_input", self.d_input, 1)
        if self.output_kind == "vectors":
            check_int("d_output", self.d_output, 1)
        if self.tie_embeddings and (self.input_kind, self.output_kind) != ("tokens", "logits"):
            raise ConfigError("tie_embeddings=True needs input_kind='tokens' and output_kind='logits'")

    @property
    def head_dim(self) -> int:
        return self.d_head or self.d_model // self.n_heads

    @property
    def mlp_dim(self) -> int:
        return 4 * self.d_model if self.d_mlp < 0 else self.d_mlp


def _normal(rngs: nnx.Rngs | None, shape, std: float) -> nnx.Param:
    if rngs is None:    # no draw: shapes only, or weights that are set afterwards
        return _zeros(shape)
    return nnx.Param(std * jax.random.normal(rngs.params(), shape, jnp.float32))


def _zeros(shape) -> nnx.Param:
    return nnx.Param(jnp.zeros(shape, jnp.float32))


class LayerNorm(nnx.Module):
    def __init__(self, d: int, eps: float):
        self.scale = nnx.Param(jnp.ones((d,), jnp.float32))
        self.bias = _zeros((d,))
        self.eps = eps

    def __call__(self, x_ND: Array, hooks: Hooks | None = None, name: str = "") -> Array:
        """``hooks``: exposes ``{name}.rstd`` (..., 1), the 1/sqrt(var + eps) factor."""
        mean = x_ND.mean(-1, keepdims=True)
        xc = x_ND - mean
        var = (xc * xc).mean(-1, keepdims=True)
        r = jax.lax.rsqrt(var + self.eps)
        if hooks is not None:
            r = hooks(f"{name}.rstd", r)
        lead = (None,) * (x_ND.ndim - 1)
        return xc * r * self.scale[...][lead] + self.bias[...][lead]


class Identity(nnx.Module):
    def __call__(self, x: Array, hooks: Hooks | None = None, name: str = "") -> Array:
        return x


def _norm(cfg: TransformerConfig) -> nnx.Module:
    return LayerNorm(cfg.d_model, cfg.ln_eps) if cfg.norm == "layernorm" else Identity()


def dropout(x: Array, rate, key: Array | None) -> Array:
    """Inverted dropout; ``rate`` may be traced (a per-run value). No key = eval mode."""
    if key is None:
        return x
    keep = 1.0 - rate
    return jnp.where(jax.random.bernoulli(key, keep, x.shape), x / keep, 0.0)


class Attention(nnx.Module):
    def __init__(self, cfg: TransformerConfig, rngs: nnx.Rngs | None):
        D, H, K = cfg.d_model, cfg.n_heads, cfg.head_dim
        out_std = cfg.init_std / math.sqrt(2 * max(cfg.n_layers, 1))
        self.W_QKV = _normal(rngs, (D, 3, H, K), cfg.init_std)
        self.b_QKV = _zeros((3, H, K)) if cfg.use_bias else None
        self.W_O = _normal(rngs, (H, K, D), out_std)
        self.b_O = _zeros((D,)) if cfg.use_bias else None
        self.causal = cfg.causal

    def __call__(self, h_BTD: Array, hp_BTD: Array | None, hooks: Hooks, name: str,
                 myopic_beta=None, myopic_band: int = 0, myopic_far: str = "") -> Array:
        """``hp_BTD``: normed external past states that off-diagonal keys/values are
        computed from (None = the live input). ``myopic_beta`` (not None = myopic):
        off-diagonal keys/values are the live ones with their gradient scaled by beta,
        so at beta 0 no later loss shapes an earlier position's key or value, nor
        anything computed before it (Wu et al. 2024's myopic descent). The diagonal
        (a position attending to itself) always uses the live keys and values; so do links
        with 0 < t - s <= ``myopic_band`` (myopic only), at full gradient; ``myopic_far`` ("key"
        or "value"): that path of the links beyond the band keeps its full gradient too."""
        B, T, D = h_BTD.shape
        _, three, H, K = self.W_QKV.shape
        W = self.W_QKV[...].reshape(D, three * H * K)
        qkv = h_BTD.reshape(B * T, D) @ W
        b_QKV = None
        if self.b_QKV is not None:
            # The key bias adds q.b_K to every score of a query: its exact gradient is 0 and its
            # float gradient rounding noise that Adam would blow up: held out of the gradient.
            b = self.b_QKV[...]
            b_QKV = jnp.concatenate([b[:1], jax.lax.stop_gradient(b[1:2]), b[2:]])
            qkv = qkv + b_QKV.reshape(1, -1)
        qkv_BTCHK = qkv.reshape(B, T, 3, H, K)
        q, k, v = (qkv_BTCHK[:, :, i] for i in range(3))
        q = hooks(f"{name}.q", q)
        k = hooks(f"{name}.k", k)
        v = hooks(f"{name}.v", v)
        band = hp_BTD is None and myopic_beta is not None and (myopic_band > 0 or myopic_far != "")
        if band:   # gradient weight per link: 1 on the diagonal and within the band, beta beyond
            lag_TS = jnp.arange(T)[:, None] - jnp.arange(T)[None, :]
            w_11TS = jnp.where(lag_TS <= myopic_band, 1.0, myopic_beta).astype(q.dtype)[None, None]
            wk_11TS, wv_11TS = (1.0 if myopic_far == path else w_11TS for path in ("key", "value"))
            kp, vp = jax.lax.stop_gradient(k), jax.lax.stop_gradient(v)
        elif hp_BTD is None and myopic_beta is None:
            kp, vp = k, v
        elif hp_BTD is None:
            kp, vp = (jax.lax.stop_gradient(a) + myopic_beta * (a - jax.lax.stop_gradient(a)) for a in (k, v))
        else:
            kv = hp_BTD.reshape(B * T, D) @ W[:, H * K:]
            if b_QKV is not None:
                kv = kv + b_QKV[1:].reshape(1, -1)
            kv_BTCHK = kv.reshape(B, T, 2, H, K)
            kp, vp = kv_BTCHK[:, :, 0], kv_BTCHK[:, :, 1]
        q = q * (1.0 / math.sqrt(K))
        s_BHTS = jnp.einsum("bthk,bshk->bhts", q, kp)
        if band:   # 0 in the forward pass; carries the weighted gradient to k
            s_BHTS = s_BHTS + wk_11TS * jnp.einsum("bthk,bshk->bhts", q, k - kp)
        elif hp_BTD is not None:
            # The diagonal (a position attending to itself) reads the live key.
            s_live = jnp.einsum("bthk,bshk->bhts", q, k)
            s_BHTS = jnp.where(jnp.eye(T, dtype=bool)[None, None], s_live, s_BHTS)
        elif myopic_beta is not None:
            # Same, cheaper: q.(k - kp) is 0 forward and routes the diagonal's gradient to k; a
            # scatter-add onto the diagonal, not eye * d over (B,H,T,T) (1.29x -> 1.1x a step).
            t_T = jnp.arange(T)
            d_BHT = jnp.einsum("bthk,bthk->bht", q, k - kp)
            s_BHTS = s_BHTS.at[:, :, t_T, t_T].add(d_BHT)
        if self.causal:
            s_BHTS = jnp.where(jnp.tril(jnp.ones((T, T), bool))[None, None], s_BHTS, -jnp.inf)
        s_BHTS = hooks(f"{name}.scores", s_BHTS)
        p_BHTS = hooks(f"{name}.pattern", jax.nn.softmax(s_BHTS, axis=-1))
        z_BTHK = jnp.einsum("bhts,bshk->bthk", p_BHTS, vp)
        if band:   # the pattern's gradient through this term is dz.(v - vp) = 0 exactly: stopped
            z_BTHK = z_BTHK + jnp.einsum("bhts,bshk->bthk", jax.lax.stop_gradient(p_BHTS) * wv_11TS, v - vp)
        elif hp_BTD is not None or myopic_beta is not None:
            # Forward: v - vp == 0 (outputs equal vanilla); backward: the live value gets the
            # diagonal's gradient. (External past states: this puts the live value on the diagonal.)
            p_diag_BTH = jnp.swapaxes(jnp.diagonal(p_BHTS, axis1=-2, axis2=-1), 1, 2)
            if hp_BTD is None:
                # the pattern's gradient here is dz.(v - vp) = 0 exactly: stopped, not scattered
                p_diag_BTH = jax.lax.stop_gradient(p_diag_BTH)
            z_BTHK = z_BTHK + p_diag_BTH[..., None] * (v - vp)
        z_BTHK = hooks(f"{name}.z", z_BTHK)
        W_O = self.W_O[...]
        out = z_BTHK.reshape(B * T, H * K) @ W_O.reshape(H * K, D)
        if hooks.wants(f"{name}.result"):
            # Per-head outputs cost H x the memory: computed only on request. Caching them
            # leaves the output as it was (bitwise); an edit makes it their sum over heads.
            r_BTHD = hooks(f"{name}.result", jnp.einsum("bthk,hkd->bthd", z_BTHK, W_O))
            if hooks.edits(f"{name}.result"):
                out = r_BTHD.sum(2).reshape(B * T, D)
        if self.b_O is not None:
            out = out + self.b_O[...][None]
        return out.reshape(B, T, D)


class MLP(nnx.Module):
    def __init__(self, cfg: TransformerConfig, rngs: nnx.Rngs | None):
        D, F = cfg.d_model, cfg.mlp_dim
        out_std = cfg.init_std / math.sqrt(2 * max(cfg.n_layers, 1))
        self.W_in = _normal(rngs, (D, F), cfg.init_std)
        self.b_in = _zeros((F,)) if cfg.use_bias else None
        self.W_out = _normal(rngs, (F, D), out_std)
        self.b_out = _zeros((D,)) if cfg.use_bias else None
        self.act = cfg.act

    def __call__(self, h_BTD: Array, hooks: Hooks, name: str) -> Array:
        B, T, D = h_BTD.shape
        pre = h_BTD.reshape(B * T, D) @ self.W_in[...]
        if self.b_in is not None:
            pre = pre + self.b_in[...][None]
        pre = hooks(f"{name}.pre", pre.reshape(B, T, -1)).reshape(B * T, -1)
        post = jax.nn.gelu(pre, approximate=True) if self.act == "gelu" else jax.nn.relu(pre)
        post = hooks(f"{name}.post", post.reshape(B, T, -1)).reshape(B * T, -1)
        out = post @ self.W_out[...]
        if self.b_out is not None:
            out = out + self.b_out[...][None]
        return out.reshape(B, T, D)


class Block(nnx.Module):
    def __init__(self, cfg: TransformerConfig, rngs: nnx.Rngs | None):
        self.ln1 = _norm(cfg)
        self.attn = Attention(cfg, rngs)
        self.ln2 = _norm(cfg) if cfg.mlp_dim else None
        self.mlp = MLP(cfg, rngs) if cfg.mlp_dim else None

    def __call__(self, x_BTD, *, past_BTD, hooks, name, rate, key, myopic_beta=None, myopic_band=0, myopic_far=""):
        x_BTD = hooks(f"{name}.resid_pre", x_BTD)
        h = self.ln1(x_BTD, hooks, f"{name}.ln1")
        hp = None if past_BTD is None else self.ln1(past_BTD)
        a = hooks(f"{name}.attn.out", self.attn(h, hp, hooks, f"{name}.attn", myopic_beta, myopic_band, myopic_far))
        k1, k2 = (None, None) if key is None else jax.random.split(key)
        x_BTD = x_BTD + dropout(a, rate, k1)
        if self.mlp is not None:
            x_BTD = hooks(f"{name}.resid_mid", x_BTD)
            m = hooks(f"{name}.mlp.out", self.mlp(self.ln2(x_BTD, hooks, f"{name}.ln2"), hooks, f"{name}.mlp"))
            x_BTD = x_BTD + dropout(m, rate, k2)
        return hooks(f"{name}.resid_post", x_BTD)


class Transformer(nnx.Module):
    """``model(inputs)``: tokens (B, T) int -> logits (B, T, V), or vectors (B, T, I) -> (B, T, O).

    ``rngs=None`` makes every parameter zero with no random draw: for shapes (``nnx.eval_shape``
    traces ~7x faster than a random init) and for weights set afterwards (compiled networks).
    """

    def __init__(self, cfg: TransformerConfig, rngs: nnx.Rngs | None):
        self.cfg = cfg
        D = cfg.d_model
        if cfg.input_kind == "tokens":
            self.W_E = _normal(rngs, (cfg.vocab_size, D), cfg.init_std)
        else:
            self.W_in = _normal(rngs, (cfg.d_input, D), cfg.init_std)
            self.b_in = _zeros((D,)) if cfg.use_bias else None
        self.W_pos = _normal(rngs, (cfg.max_seq_len, D), cfg.init_std) if cfg.pos_embed else None
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
        self.ln_final = _norm(cfg)
        if cfg.output_kind == "logits":
            self.W_U = None if cfg.tie_embeddings else _normal(rngs, (D, cfg.vocab_size), cfg.init_std)
        else:
            self.W_U = _normal(rngs, (D, cfg.d_output), cfg.init_std)
            self.b_U = _zeros((cfg.d_output,)) if cfg.use_bias else None

    def hook_names(self) -> list[str]:
        """Every activation name, in forward order. Opt-in (computed only when cached or edited):
        ``blocks.{i}.attn.result``. ``*.rstd`` (a LayerNorm's 1/sqrt(var + eps)): not with norm="none"."""
        ln = self.cfg.norm != "none"
        names = ["embed"] + (["pos_embed"] if self.cfg.pos_embed else [])
        for i in range(self.cfg.n_layers):
            p = f"blocks.{i}"
            names += [f"{p}.resid_pre"] + [f"{p}.ln1.rstd"] * ln + [f"{p}.attn.{n}" for n in
                                           ("q", "k", "v", "scores", "pattern", "z", "result", "out")]
            if self.cfg.mlp_dim:
                names += [f"{p}.resid_mid"] + [f"{p}.ln2.rstd"] * ln + [
                    f"{p}.mlp.pre", f"{p}.mlp.post", f"{p}.mlp.out"]
            names.append(f"{p}.resid_post")
        return names + ["final.rstd"] * ln + ["final"]

    def check_inputs(self, inputs) -> None:
        """Raise on token ids outside [0, vocab_size) (which would embed as NaN); ids that are
        traced (under jit or vmap) cannot be read and are not checked."""
        if self.cfg.input_kind != "tokens" or isinstance(inputs, jax.core.Tracer):
            return
        ids, V = np.asarray(inputs), self.cfg.vocab_size
        bad = ids[(ids < 0) | (ids >= V)] if ids.size else ids
        if bad.size:
            raise ValueError(f"token ids must be in [0, vocab_size={V}); got {bad.reshape(-1)[0].item()!r} "
                             f"({bad.size} id(s) out of range)")

    def __call__(self, inputs: Array, *, key: Array | None = None, dropout_rate=None,
                 myopic: bool | None = None, myopic_beta=None, myopic_band: int = 0, myopic_far: str = "",
                 past_resid: Array | None = None, hooks: Hooks | None = None) -> Array:
        """Forward pass. key: dropout key (None = no dropout). dropout_rate: overrides cfg.dropout
        (may be traced). myopic / myopic_beta: override the config (beta may be traced);
        myopic_band (static): links at most this far back keep their full gradient; myopic_far
        (static, "key" or "value"): that path of the links beyond it keeps it too. past_resid
        (n_layers, B, T, D): residual streams that every attention layer reads its off-diagonal
        keys/values from (local-myopic and no-context baselines). hooks: what to cache and
        intervene on (hooks.py)."""
        cfg = self.cfg
        hooks = hooks if hooks is not None else Hooks()
        myopic = cfg.myopic if myopic is None else myopic
        beta = cfg.myopic_beta if myopic_beta is None else myopic_beta
        rate = cfg.dropout if dropout_rate is None else dropout_rate
        if cfg.input_kind == "tokens":
            B, T = inputs.shape
            self.check_inputs(inputs)
            x_BTD = jnp.take(self.W_E[...], inputs, axis=0)
        else:
            B, T, I = inputs.shape
            x_BTD = (inputs.reshape(B * T, I) @ self.W_in[...]).reshape(B, T, -1)
            if self.b_in is not None:
                x_BTD = x_BTD + self.b_in[...][None, None]
        if T > cfg.max_seq_len:
            raise ConfigError(f"sequence length {T} exceeds max_seq_len={cfg.max_seq_len}")
        x_BTD = hooks("embed", x_BTD)
        if self.W_pos is not None:
            x_BTD = x_BTD + hooks("pos_embed", self.W_pos[...][:T])[None]
        keys = [None] * (cfg.n_layers + 1) if key is None else list(jax.random.split(key, cfg.n_layers + 1))
        x_BTD = dropout(x_BTD, rate, keys[-1])
        for i, block in enumerate(self.blocks):
            past = None if past_resid is None else past_resid[i]
            if myopic and past is not None:
                sg = jax.lax.stop_gradient(past)
                past = sg + beta * (past - sg)  # forward: exactly sg; gradient scaled by beta
            x_BTD = block(x_BTD, past_BTD=past, hooks=hooks, name=f"blocks.{i}", rate=rate, key=keys[i],
                          myopic_beta=beta if myopic and past is None else None, myopic_band=myopic_band,
                          myopic_far=myopic_far)
        x_BTD = hooks("final", self.ln_final(x_BTD, hooks, "final"))
        x_ND = x_BTD.reshape(B * T, -1)
        if cfg.output_kind == "logits":
            W_U = self.W_E[...].T if cfg.tie_embeddings else self.W_U[...]
            return (x_ND @ W_U).reshape(B, T, -1)
        out = x_ND @ self.W_U[...]
        if self.b_U is not None:
            out = out + self.b_U[...][None]
        return out.reshape(B, T, -1)


def residual_inputs(model: Transformer, inputs: Array) -> Array:
    """(n_layers, B, T, D): the residual stream entering each block, i.e. what that block's
    attention reads keys and values from. Passed back as ``past_resid`` it reproduces the
    forward pass; a frozen model's streams make a local-myopic student (Wu et al. 2024)."""
    names = [f"blocks.{i}.resid_pre" for i in range(model.cfg.n_layers)]
    hooks = Hooks(names)
    model(inputs, hooks=hooks)
    return jnp.stack([hooks.cache[n] for n in names])


@functools.lru_cache(maxsize=64)
def abstract_model(cfg: TransformerConfig):
    """(graphdef, parameter shapes) of a config's model, without drawing any weights."""
    return nnx.split(nnx.eval_shape(lambda: Transformer(cfg, None)), nnx.Param)


def init_model(cfg: TransformerConfig, seed: int | Array = 0) -> Transformer:
    """A freshly initialised model; ``seed`` may be an int or a PRNG key."""
    key = jax.random.key(seed) if isinstance(seed, int) else seed
    return Transformer(cfg, nnx.Rngs(params=key))


def param_count(model: Transformer) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
