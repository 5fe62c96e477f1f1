"""Weights in and out, without pickle: safetensors files of our own models, and Hugging Face
GPT-2 folders that ``transformers`` and TransformerLens 4's ``TransformerBridge`` open.

  save_safetensors(model, path) / load_safetensors(path)   every parameter by dotted path,
                                                            the config as JSON metadata
  export_gpt2(model, folder)                               config.json + model.safetensors

Only ``safetensors`` is needed (``pip install -e ".[interop]"``); torch and transformers are
needed to read an exported folder, not to write it. See docs/interop.md for the mapping.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from toymodels.config import ConfigError
from toymodels.model import Transformer, TransformerConfig
from toymodels.params import build_model, model_params, param_shapes
from toymodels.results import atomic_write_bytes, atomic_write_text, is_stale_tmp

CONFIG_KEY = "toymodels.config"           # safetensors metadata key holding the config as JSON
GPT2_FILES = ("model.safetensors", "config.json")   # what export_gpt2 writes (and may replace)


def safetensors_numpy():
    """``safetensors.numpy``, or an ImportError naming the extra that installs it."""
    try:
        import safetensors.numpy
    except ImportError as e:
        raise ImportError('safetensors is not installed: pip install -e ".[interop]" '
                          '(or pip install safetensors)') from e
    return safetensors.numpy


# -- our own files -----------------------------------------------------------------------------

def save_safetensors(model: Transformer, path: str | os.PathLike) -> Path:
    """Every parameter of ``model`` (float32, by dotted path) and its config, atomically."""
    st = safetensors_numpy()
    tensors = {p: np.ascontiguousarray(v, np.float32) for p, v in model_params(model).items()}
    meta = {CONFIG_KEY: json.dumps(dataclasses.asdict(model.cfg), sort_keys=True)}
    path = Path(path)
    atomic_write_bytes(path, st.save(tensors, metadata=meta))
    return path


def load_safetensors(path: str | os.PathLike) -> Transformer:
    """The model ``save_safetensors`` wrote; a file of anything else, or whose tensors do not
    fit its config, raises ValueError naming what is wrong."""
    safetensors_numpy()
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 -- safe_open is not iterable
    except FileNotFoundError:
        raise
    except (OSError, SafetensorError) as e:
        raise ValueError(f"{path} is not a safetensors file ({type(e).__name__}: {e})") from None
    if CONFIG_KEY not in meta:
        raise ValueError(f"{path} has no {CONFIG_KEY!r} metadata: not written by save_safetensors "
                         f"(metadata keys: {sorted(meta) or 'none'}). A GPT-2 export is read with "
                         "transformers, not load_safetensors.")
    try:
        cfg = TransformerConfig(**json.loads(meta[CONFIG_KEY]))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: its {CONFIG_KEY!r} metadata is not a valid TransformerConfig: {e}") from None
    want = param_shapes(cfg)
    problems = [f"missing {p} {s}" for p, s in want.items() if p not in tensors]
    problems += [f"unexpected {p} {tuple(t.shape)}" for p, t in tensors.items() if p not in want]
    problems += [f"{p} has shape {tuple(tensors[p].shape)}, the config needs {s}"
                 for p, s in want.items() if p in tensors and tuple(tensors[p].shape) != s]
    if problems:
        raise ValueError(f"{path}: tensors do not match the saved config ({len(problems)} problem(s)): "
                         + "; ".join(problems[:8]))
    return build_model(cfg, tensors)


# -- Hugging Face GPT-2 ------------------------------------------------------------------------

def gpt2_problems(cfg: TransformerConfig) -> list[str]:
    """What in ``cfg`` a GPT-2 cannot express (empty: exportable)."""
    problems = []
    if cfg.norm != "layernorm":
        problems.append(f"norm={cfg.norm!r} (GPT-2 has a pre-LayerNorm before every attention, MLP "
                        "and the unembedding; only norm='layernorm' is exported)")
    if not cfg.causal:
        problems.append("causal=False (GPT-2 attention is always causal)")
    for field, value in (("input_kind", cfg.input_kind), ("output_kind", cfg.output_kind)):
        if value == "vectors":
            problems.append(f"{field}='vectors' (GPT-2 maps token ids to logits over its vocabulary)")
    if cfg.head_dim * cfg.n_heads != cfg.d_model:
        problems.append(f"d_head={cfg.head_dim} with n_heads={cfg.n_heads} and d_model={cfg.d_model} "
                        "(GPT-2 needs d_head * n_heads == d_model)")
    return problems


def gpt2_config(cfg: TransformerConfig) -> dict:
    """The transformers ``config.json`` of ``cfg``'s GPT-2 (every dropout 0)."""
    return {
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
        "vocab_size": cfg.vocab_size, "n_positions": cfg.max_seq_len,
        "n_embd": cfg.d_model, "n_layer": cfg.n_layers, "n_head": cfg.n_heads,
        "n_inner": cfg.mlp_dim or 1,   # attention-only: a 1-wide all-zero MLP adds exactly 0
        "activation_function": {"gelu": "gelu_new", "relu": "relu"}[cfg.act],
        "layer_norm_epsilon": cfg.ln_eps, "initializer_range": cfg.init_std,
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "summary_first_dropout": 0.0,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False, "tie_word_embeddings": cfg.tie_embeddings,
        # GPT-2's defaults (50256) name no token of a small vocabulary
        "bos_token_id": None, "eos_token_id": None, "pad_token_id": None,
        "use_cache": True, "dtype": "float32",
    }


def gpt2_tensors(model: Transformer) -> dict[str, np.ndarray]:
    """``model``'s parameters under transformers' GPT2LMHeadModel names (Conv1D: (in, out))."""
    cfg = model.cfg
    D, F = cfg.d_model, cfg.mlp_dim
    p = {k: np.asarray(v, np.float32) for k, v in model_params(model).items()}
    zeros = np.zeros
    out = {"transformer.wte.weight": p["W_E"],
           "transformer.wpe.weight": p["W_pos"] if cfg.pos_embed else zeros((cfg.max_seq_len, D)),
           "transformer.ln_f.weight": p["ln_final.scale"], "transformer.ln_f.bias": p["ln_final.bias"]}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = p["W_U"].T
    for i in range(cfg.n_layers):
        ours, hf = f"blocks.{i}.", f"transformer.h.{i}."

        def bias(name, size, ours=ours):   # use_bias=False: GPT-2 has biases, so zero ones
            return p[ours + name].reshape(-1) if cfg.use_bias else zeros(size)
        out |= {
            hf + "ln_1.weight": p[ours + "ln1.scale"], hf + "ln_1.bias": p[ours + "ln1.bias"],
            # (D, 3, H, K) -> (D, 3D): [q | k | v], heads contiguous, as GPT-2 splits c_attn
            hf + "attn.c_attn.weight": p[ours + "attn.W_QKV"].reshape(D, 3 * D),
            hf + "attn.c_attn.bias": bias("attn.b_QKV", 3 * D),   # key bias too: it is applied
            hf + "attn.c_proj.weight": p[ours + "attn.W_O"].reshape(D, D),
            hf + "attn.c_proj.bias": bias("attn.b_O", D),
        }
        if F:
            out |= {hf + "ln_2.weight": p[ours + "ln2.scale"], hf + "ln_2.bias": p[ours + "ln2.bias"],
                    hf + "mlp.c_fc.weight": p[ours + "mlp.W_in"], hf + "mlp.c_fc.bias": bias("mlp.b_in", F),
                    hf + "mlp.c_proj.weight": p[ours + "mlp.W_out"], hf + "mlp.c_proj.bias": bias("mlp.b_out", D)}
        else:   # act(0 @ x + 0) = 0 for gelu_new and relu, then 0 @ 0 + 0: the block adds exactly 0
            out |= {hf + "ln_2.weight": np.ones(D), hf + "ln_2.bias": zeros(D),
                    hf + "mlp.c_fc.weight": zeros((D, 1)), hf + "mlp.c_fc.bias": zeros(1),
                    hf + "mlp.c_proj.weight": zeros((1, D)), hf + "mlp.c_proj.bias": zeros(D)}
    return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}


def export_gpt2(model: Transformer, folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``model`` as a transformers GPT-2 folder (config.json, model.safetensors).

    Refuses (ConfigError, nothing written) a config GPT-2 cannot express, and an existing
    non-empty ``folder`` unless ``overwrite``; then only our two files are replaced (each
    whole), and nothing else in the folder is touched. A new folder appears whole or not at all.
    """
    problems = gpt2_problems(model.cfg)
    if problems:
        raise ConfigError("cannot export to GPT-2: " + "; ".join(problems))
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} exists and is not a folder; refusing to export there")
    existing = folder.is_dir() and any(folder.iterdir())
    if existing and not overwrite:
        raise ConfigError(f"{folder} is not empty ({', '.join(sorted(p.name for p in folder.iterdir())[:5])}); "
                          "pass overwrite=True to replace its config.json and model.safetensors "
                          "(nothing else there is touched), or choose another folder")
    st = safetensors_numpy()
    data = st.save(gpt2_tensors(model), metadata={"format": "pt"})   # transformers wants "pt"
    config = json.dumps(gpt2_config(model.cfg), indent=2, sort_keys=True) + "\n"
    if existing:
        # Each file is replaced whole, weights first: a kill between the two leaves new
        # weights beside the old config, which transformers refuses unless the shapes agree.
        atomic_write_bytes(folder / "model.safetensors", data)
        atomic_write_text(folder / "config.json", config)
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_folders(folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        (tmp / "model.safetensors").write_bytes(data)
        (tmp / "config.json").write_text(config)
        os.chmod(tmp, 0o777 & ~_umask())   # mkdtemp makes 0700; an export is an ordinary folder
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _clean_stale_folders(folder: Path) -> None:
    """Remove temporary export folders of ``folder`` left by a kill (only ones holding
    nothing but our own files)."""
    for p in folder.parent.glob(f".{folder.name}.*.tmp"):
        if (is_stale_tmp(p.name) and p.is_dir() and not p.is_symlink()
                and all(f.is_file() and f.name in GPT2_FILES for f in p.iterdir())):
            shutil.rmtree(p)
