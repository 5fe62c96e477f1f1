import json
import math

import jax
import numpy as np
import pytest

from toymodels.config import ConfigError
from toymodels.dictionaries import DictConfig, encode, init_params
from toymodels.dictionary_io import CFG_FILE, WEIGHTS_FILE, load_dictionary, save_dictionary, saelens_cfg

pytest.importorskip("safetensors")

KINDS = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu", "batchtopk": "jumprelu"}


def _dictionary(kind: str):
    cfg = DictConfig(d_in=6, d_sae=10, kind=kind, k=3, threshold_init=0.3, seed=2)
    params = {n: np.asarray(v) for n, v in init_params(cfg, jax.random.key(1)).items()}
    rng = np.random.default_rng(0)
    params["b_enc"] = rng.normal(size=10).astype(np.float32)   # nonzero biases: a real round trip
    params["b_dec"] = rng.normal(size=6).astype(np.float32)
    if kind == "jumprelu":
        params["log_threshold"] = np.log(rng.uniform(0.01, 1.0, 10)).astype(np.float32)
    if kind == "batchtopk":
        params["threshold"] = np.full(10, 0.25, np.float32)
    return cfg, params


@pytest.mark.parametrize("kind", list(KINDS))
def test_save_load_round_trips_bitwise(tmp_path, kind):
    cfg, params = _dictionary(kind)
    folder = save_dictionary(tmp_path / "sae", params, cfg, hook_name="blocks.0.resid_post", model_name="toy")
    assert sorted(p.name for p in folder.iterdir()) == sorted([CFG_FILE, WEIGHTS_FILE])
    info, loaded = load_dictionary(folder)
    assert info.cfg == cfg and info.architecture == KINDS[kind]
    assert (info.hook_name, info.model_name) == ("blocks.0.resid_post", "toy")
    assert sorted(loaded) == sorted(params)
    for name, value in params.items():
        assert loaded[name].dtype == np.float32 and loaded[name].tobytes() == value.tobytes(), name


def test_cfg_json_has_saelens_keys(tmp_path):
    cfg, params = _dictionary("topk")
    raw = json.loads((save_dictionary(tmp_path / "sae", params, cfg, hook_name="final") / CFG_FILE).read_text())
    assert {"architecture", "d_in", "d_sae", "dtype", "device", "apply_b_dec_to_input", "normalize_activations",
            "reshape_activations", "k", "rescale_acts_by_decoder_norm", "metadata"} <= set(raw)
    assert (raw["architecture"], raw["d_in"], raw["d_sae"], raw["k"], raw["dtype"]) == ("topk", 6, 10, 3, "float32")
    assert raw["apply_b_dec_to_input"] is True and raw["normalize_activations"] == "none"
    assert raw["metadata"]["hook_name"] == "final" and raw["metadata"]["sae_lens_version"] >= "6"
    assert "k" not in saelens_cfg(DictConfig(d_in=6, d_sae=10, kind="relu"))


def test_jumprelu_threshold_tensor_is_exp_log_threshold(tmp_path):
    from safetensors.numpy import load_file
    cfg, params = _dictionary("jumprelu")
    tensors = load_file(save_dictionary(tmp_path / "sae", params, cfg) / WEIGHTS_FILE)
    assert sorted(tensors) == ["W_dec", "W_enc", "b_dec", "b_enc", "threshold"]
    np.testing.assert_array_equal(tensors["threshold"], np.exp(params["log_threshold"]))


def test_foreign_folder_without_our_metadata_loads_with_folding(tmp_path):
    cfg, params = _dictionary("jumprelu")
    folder = save_dictionary(tmp_path / "sae", params, cfg)
    raw = json.loads((folder / CFG_FILE).read_text())
    del raw["metadata"]["toymodels_config"]
    raw["apply_b_dec_to_input"] = False     # a Gemma Scope-style folder: pre = x W_enc + b_enc
    (folder / CFG_FILE).write_text(json.dumps(raw))
    info, loaded = load_dictionary(folder)
    assert (info.cfg.kind, info.cfg.d_in, info.cfg.d_sae) == ("jumprelu", 6, 10)
    x = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32)
    pre = x @ params["W_enc"] + params["b_enc"]
    want = np.where(pre > np.exp(params["log_threshold"]), pre, 0)
    np.testing.assert_allclose(encode(loaded, x, info.cfg), want, rtol=1e-5, atol=1e-5)


def test_save_is_atomic_and_refuses_to_overwrite(tmp_path):
    cfg, params = _dictionary("relu")
    save_dictionary(tmp_path / "sae", params, cfg)
    with pytest.raises(FileExistsError):
        save_dictionary(tmp_path / "sae", params, cfg)
    params2 = params | {"b_dec": params["b_dec"] + 1}
    save_dictionary(tmp_path / "sae", params2, cfg, overwrite=True)
    assert load_dictionary(tmp_path / "sae")[1]["b_dec"].tobytes() == params2["b_dec"].tobytes()
    with pytest.raises(ValueError, match="W_dec has shape"):
        save_dictionary(tmp_path / "bad", params | {"W_dec": params["W_dec"][:, :5]}, cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]   # nothing half-written left behind


def test_load_checks_shapes_and_config(tmp_path):
    cfg, params = _dictionary("topk")
    folder = save_dictionary(tmp_path / "sae", params, cfg)
    raw = json.loads((folder / CFG_FILE).read_text())
    (folder / CFG_FILE).write_text(json.dumps(raw | {"d_sae": 11}))
    with pytest.raises(ValueError, match="disagrees"):
        load_dictionary(folder)
    raw["metadata"]["toymodels_config"]["d_sae"] = 11
    (folder / CFG_FILE).write_text(json.dumps(raw | {"d_sae": 11}))
    with pytest.raises(ValueError, match="W_enc has shape"):
        load_dictionary(folder)
    raw["metadata"]["toymodels_config"]["k"] = 99   # a bad config raises ConfigError naming the field
    (folder / CFG_FILE).write_text(json.dumps(raw | {"d_sae": 11}))
    with pytest.raises(ConfigError, match="^k="):
        load_dictionary(folder)
    (folder / CFG_FILE).write_text(json.dumps(raw | {"architecture": "gated"}))
    with pytest.raises(ValueError, match="architecture 'gated'"):
        load_dictionary(folder)


@pytest.mark.parametrize("kind", ["topk", "jumprelu", "relu"])
def test_saelens_opens_our_folder_and_we_open_its(tmp_path, kind):
    sae_lens = pytest.importorskip("sae_lens")
    torch = pytest.importorskip("torch")
    cfg, params = _dictionary(kind)
    sae = sae_lens.SAE.load_from_disk(str(save_dictionary(tmp_path / "ours", params, cfg)))
    x = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32)
    np.testing.assert_allclose(sae.encode(torch.from_numpy(x)).detach().numpy(), encode(params, x, cfg),
                               rtol=1e-5, atol=1e-5)
    assert sae.cfg.metadata.hook_name is None and math.isclose(sae.W_dec.detach().numpy()[0, 0], params["W_dec"][0, 0])
    with torch.no_grad():   # a folder SAELens saved itself, with its own cfg.json
        sae.b_dec.add_(1.0)
    sae.save_model(str(tmp_path / "theirs"))
    info, loaded = load_dictionary(tmp_path / "theirs")
    assert info.cfg.kind == kind and info.architecture == KINDS[kind]
    np.testing.assert_allclose(sae.encode(torch.from_numpy(x)).detach().numpy(), encode(loaded, x, info.cfg),
                               rtol=1e-5, atol=1e-5)


def test_batchtopk_needs_its_threshold(tmp_path):
    cfg, params = _dictionary("batchtopk")
    del params["threshold"]
    with pytest.raises(ValueError, match="threshold"):
        save_dictionary(tmp_path / "sae", params, cfg)
    assert not (tmp_path / "sae").exists()
