"""Weights in and out: our safetensors round trip, and GPT-2 exports read back by transformers
and TransformerLens 4's bridge, logit for logit. Models are tiny, with every LayerNorm
parameter and bias drawn at random, so a wrong mapping moves the logits."""

import dataclasses
import json
import os
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from extras import require

from toymodels.config import ConfigError
from toymodels.hooks import run_with_cache
from toymodels.interop import export_gpt2, load_safetensors, save_safetensors
from toymodels.model import TransformerConfig, init_model
from toymodels.params import build_model, model_params

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # an exported folder is local: never reach for the Hub
st = require("safetensors.numpy")

BASE = dict(n_layers=2, d_model=32, n_heads=4, vocab_size=16, max_seq_len=12, init_std=0.1)
IDS = np.random.default_rng(0).integers(0, 16, (3, 12))
ATOL = 1e-4   # float32, two layers: measured differences are ~1e-6


def perturbed(seed=0, **overrides):
    """A tiny model whose LayerNorm scales/biases and dense biases are random, not 1 and 0."""
    cfg = TransformerConfig(**{**BASE, **overrides})
    params = model_params(init_model(cfg, seed))
    rng = np.random.default_rng(seed)
    for path, value in params.items():
        leaf = path.rsplit(".", 1)[-1]
        if leaf == "scale":
            params[path] = 1 + 0.3 * rng.standard_normal(value.shape)
        elif leaf.startswith("b"):
            params[path] = 0.3 * rng.standard_normal(value.shape)
    return build_model(cfg, params)


def logits(model):
    return np.asarray(model(jnp.asarray(IDS)))


# -- our own files -----------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [{}, dict(d_mlp=0, use_bias=False, tie_embeddings=True, act="relu")])
def test_safetensors_round_trip_is_bit_exact(tmp_path, overrides):
    model = perturbed(**overrides)
    path = save_safetensors(model, tmp_path / "m.safetensors")
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")   # safetensors: u64 header size, JSON header, raw tensors
    header = json.loads(data[8:8 + n])
    assert json.loads(header.pop("__metadata__")["toymodels.config"]) == dataclasses.asdict(model.cfg)
    assert len(data) == 8 + n + max(t["data_offsets"][1] for t in header.values())   # nothing else: no pickle
    assert {t["dtype"] for t in header.values()} == {"F32"}
    back = load_safetensors(path)
    assert back.cfg == model.cfg
    a, b = model_params(model), model_params(back)
    assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(logits(back), logits(model))
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]   # no temporary left


def test_files_that_are_not_ours_or_do_not_fit_their_config_are_refused(tmp_path):
    (tmp_path / "junk").write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(ValueError, match="junk is not a safetensors file"):
        load_safetensors(tmp_path / "junk")
    st.save_file({"W_E": np.zeros((16, 32), np.float32)}, tmp_path / "plain.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="no 'toymodels.config' metadata.*keys: \\['format'\\]"):
        load_safetensors(tmp_path / "plain.safetensors")
    model = perturbed()
    tensors = {k: v.astype(np.float32) for k, v in model_params(model).items()}
    meta = {"toymodels.config": json.dumps({**BASE, "d_mlp": 64})}   # the weights have d_mlp 128
    st.save_file(tensors, tmp_path / "bad.safetensors", metadata=meta)
    with pytest.raises(ValueError, match=r"tensors do not match.*blocks.0.mlp.W_in has shape \(32, 128\), "
                                         r"the config needs \(32, 64\)"):
        load_safetensors(tmp_path / "bad.safetensors")
    del tensors["W_U"]
    st.save_file(tensors, tmp_path / "short.safetensors", metadata={"toymodels.config": json.dumps(BASE)})
    with pytest.raises(ValueError, match=r"missing W_U \(32, 16\)"):
        load_safetensors(tmp_path / "short.safetensors")


def test_a_missing_safetensors_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)   # what an uninstalled package looks like
    with pytest.raises(ImportError, match=r'pip install -e "\.\[interop\]"'):
        save_safetensors(perturbed(), tmp_path / "m.safetensors")
    assert not any(tmp_path.iterdir())


# -- GPT-2 for transformers and TransformerLens ------------------------------------------------

CASES = {"gelu_untied": {}, "relu_tied": dict(act="relu", tie_embeddings=True), "no_bias": dict(use_bias=False),
         "no_pos_embed": dict(pos_embed=False), "attention_only": dict(d_mlp=0)}


@pytest.mark.parametrize("case", CASES)
def test_transformers_gpt2_reads_our_export_with_the_same_logits(tmp_path, case):
    torch = require("torch")
    transformers = require("transformers")
    model = perturbed(**CASES[case])
    folder = export_gpt2(model, tmp_path / "gpt2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpt2"]   # built aside, renamed whole
    config = json.loads((folder / "config.json").read_text())
    assert config["activation_function"] == {"gelu": "gelu_new", "relu": "relu"}[model.cfg.act]
    assert config["tie_word_embeddings"] == model.cfg.tie_embeddings
    hf = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    with torch.no_grad():
        theirs = hf(torch.tensor(IDS)).logits.numpy()
    np.testing.assert_allclose(theirs, logits(model), rtol=0, atol=ATOL)
    if model.cfg.use_bias:   # the key bias changes no logit (softmax ignores it), so check it is there
        ours = model_params(model)["blocks.1.attn.b_QKV"][1].reshape(-1)
        np.testing.assert_array_equal(st.load_file(folder / "model.safetensors")[
            "transformer.h.1.attn.c_attn.bias"][32:64], ours.astype(np.float32))
    if not model.cfg.mlp_dim:   # the stand-in MLP adds exactly 0, whatever it reads
        with torch.no_grad():
            assert not hf.transformer.h[0].mlp(100 * torch.randn(2, 5, 32)).any()


def test_transformer_lens_bridge_caches_the_same_activations(tmp_path):
    torch = require("torch")
    bridge = require("transformer_lens.model_bridge")
    model = perturbed()
    folder = export_gpt2(model, tmp_path / "gpt2")
    tl = bridge.TransformerBridge.boot_transformers(str(folder), device="cpu")
    theirs, cache = tl.run_with_cache(torch.tensor(IDS))
    ours, ours_cache = run_with_cache(model, jnp.asarray(IDS), ["blocks.0.resid_post", "blocks.1.attn.pattern"])
    np.testing.assert_allclose(theirs.detach().numpy(), np.asarray(ours), rtol=0, atol=ATOL)
    np.testing.assert_allclose(cache["blocks.0.hook_resid_post"].numpy(), np.asarray(ours_cache["blocks.0.resid_post"]),
                               rtol=0, atol=ATOL)
    np.testing.assert_allclose(cache["blocks.1.attn.hook_pattern"].numpy(), np.asarray(ours_cache["blocks.1.attn.pattern"]),
                               rtol=0, atol=ATOL)


@pytest.mark.parametrize("overrides, named", [
    (dict(norm="none"), "norm='none'"), (dict(causal=False), "causal=False"),
    (dict(input_kind="vectors", d_input=3), "input_kind='vectors'"),
    (dict(output_kind="vectors", d_output=3), "output_kind='vectors'"),
    (dict(d_head=4), "d_head=4 with n_heads=4 and d_model=32"),
])
def test_what_gpt2_cannot_express_is_refused_before_anything_is_written(tmp_path, overrides, named):
    model = build_model(TransformerConfig(**{**BASE, **overrides}), {})
    with pytest.raises(ConfigError, match="cannot export to GPT-2: " + named.replace("(", r"\(")):
        export_gpt2(model, tmp_path / "gpt2")
    assert not any(tmp_path.iterdir())


def test_an_existing_folder_is_replaced_only_when_asked_and_only_our_files(tmp_path):
    first, second = perturbed(0), perturbed(1)
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "README.md").write_text("mine")
    with pytest.raises(ConfigError, match="not empty.*overwrite=True"):
        export_gpt2(first, folder)
    assert [p.name for p in folder.iterdir()] == ["README.md"]
    export_gpt2(first, folder, overwrite=True)
    export_gpt2(second, folder, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert (folder / "README.md").read_text() == "mine"
    wte = st.load_file(folder / "model.safetensors")["transformer.wte.weight"]
    np.testing.assert_array_equal(wte, model_params(second)["W_E"].astype(np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpt2"]
