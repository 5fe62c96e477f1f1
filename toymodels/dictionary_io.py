"""Sparse dictionaries on disk in SAELens's format: a folder holding ``cfg.json`` and
``sae_weights.safetensors`` (float32 W_enc (D, S), b_enc (S,), W_dec (S, D), b_dec (D,), and
threshold (S,) for jumprelu), which SAELens 6 opens with ``SAE.load_from_disk(folder)``.

The format, as read in SAELens's source (decoderesearch/SAELens, formerly jbloomAus/SAELens):
  sae_lens/constants.py           SAE_CFG_FILENAME = "cfg.json", SAE_WEIGHTS_FILENAME = "sae_weights.safetensors"
  sae_lens/saes/sae.py            SAEConfig fields d_in, d_sae, dtype, device, apply_b_dec_to_input,
                                  normalize_activations, reshape_activations, metadata; to_dict() adds
                                  "architecture"; encode subtracts b_dec when apply_b_dec_to_input
  sae_lens/saes/topk_sae.py       "topk": k, rescale_acts_by_decoder_norm; ReLU of the top k
  sae_lens/saes/jumprelu_sae.py   "jumprelu": tensor "threshold" (no longer log_threshold);
                                  z = ReLU(pre) * (pre > ReLU(threshold))
  sae_lens/saes/standard_sae.py   "standard": z = ReLU(pre)
  sae_lens/saes/batchtopk_sae.py  "batchtopk" trains only: saved as "jumprelu", threshold = the
                                  running EMA of the smallest kept activation
  sae_lens/loading/pretrained_sae_loaders.py  handle_config_defaulting: a config whose
                                  metadata.sae_lens_version is missing or < 6.0.0-rc.0 is read as
                                  the pre-6 layout, so we write "6.0.0" there
Our kinds map relu -> "standard", topk -> "topk", jumprelu and batchtopk -> "jumprelu"; the
DictConfig itself travels in metadata (``toymodels_config``), and a jumprelu's exact
log_threshold in the safetensors header, so a reload is bitwise.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from toymodels.dictionaries import DictConfig
from toymodels.interop import safetensors_numpy
from toymodels.results import is_stale_tmp

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
FORMAT_VERSION = "6.0.0"             # SAELens's config layout we write (see the module docstring)
CONFIG_KEY = "toymodels_config"       # cfg.json metadata key holding our DictConfig
LOG_THRESHOLD_KEY = "toymodels.log_threshold"   # safetensors header: exact float32 bytes, base64
ARCHITECTURE = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu", "batchtopk": "jumprelu"}
BASE_TENSORS = ("W_enc", "b_enc", "W_dec", "b_dec")


@dataclasses.dataclass(frozen=True)
class DictInfo:
    """What a loaded folder describes: our config, SAELens's architecture and its cfg.json."""
    cfg: DictConfig
    architecture: str
    hook_name: str | None
    model_name: str | None
    saelens_cfg: dict


def saelens_cfg(cfg: DictConfig, hook_name: str | None = None, model_name: str | None = None) -> dict:
    """The ``cfg.json`` SAELens 6 reads for a dictionary of ``cfg``."""
    out = {"architecture": ARCHITECTURE[cfg.kind], "d_in": cfg.d_in, "d_sae": cfg.d_sae, "dtype": "float32",
           "device": "cpu", "apply_b_dec_to_input": True, "normalize_activations": "none",
           "reshape_activations": "none"}
    if cfg.kind == "topk":
        # our decoder rows are unit-norm when trained, and encode never rescales: say so
        out |= {"k": cfg.k, "rescale_acts_by_decoder_norm": False}
    out["metadata"] = {"sae_lens_version": FORMAT_VERSION, "sae_lens_training_version": FORMAT_VERSION,
                       "hook_name": hook_name, "model_name": model_name, "training_architecture": cfg.kind,
                       CONFIG_KEY: dataclasses.asdict(cfg)}
    return out


def saelens_tensors(params: dict, cfg: DictConfig) -> dict[str, np.ndarray]:
    """SAELens's tensors (float32, contiguous) of our params."""
    out = {n: np.ascontiguousarray(params[n], np.float32) for n in BASE_TENSORS}
    if cfg.kind == "jumprelu":
        out["threshold"] = np.exp(np.asarray(params["log_threshold"], np.float32))
    elif cfg.kind == "batchtopk":
        if "threshold" not in params:
            raise ValueError("a batchtopk dictionary is saved as SAELens's jumprelu and needs params['threshold'] "
                             "(train_dictionaries sets it)")
        out["threshold"] = np.ascontiguousarray(params["threshold"], np.float32)
    return out


def save_dictionary(folder: str | os.PathLike, params: dict, cfg: DictConfig, *, hook_name: str | None = None,
                    model_name: str | None = None, overwrite: bool = False) -> Path:
    """Write a SAELens folder; it appears whole or not at all (built beside it, then renamed).
    An existing ``folder`` is refused unless ``overwrite`` (then replaced whole)."""
    folder = Path(folder)
    if folder.exists() and not (overwrite and folder.is_dir()):
        raise FileExistsError(f"{folder} exists; pass overwrite=True to replace it" if folder.is_dir()
                              else f"{folder} exists and is not a folder")
    tensors = saelens_tensors(params, cfg)
    _check_shapes(tensors, cfg, "params")
    meta = {"format": "pt"}   # what torch-side readers expect; SAELens ignores the header
    if cfg.kind == "jumprelu":
        meta[LOG_THRESHOLD_KEY] = base64.b64encode(np.asarray(params["log_threshold"], "<f4").tobytes()).decode()
    data = safetensors_numpy().save(tensors, metadata=meta)
    text = json.dumps(saelens_cfg(cfg, hook_name, model_name), indent=2) + "\n"
    folder.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        (tmp / WEIGHTS_FILE).write_bytes(data)
        (tmp / CFG_FILE).write_text(text)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)   # mkdtemp makes 0700; a saved dictionary is an ordinary folder
        if folder.exists():   # a rename cannot replace a non-empty folder: move the old one aside first
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
            os.replace(folder, old / "old")
            os.replace(tmp, folder)
            shutil.rmtree(old)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _clean_stale(folder: Path) -> None:
    """Remove temporary folders of ``folder`` a killed save left behind."""
    for p in folder.parent.glob(f".{folder.name}.*.tmp"):
        if is_stale_tmp(p.name) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)


def _check_shapes(tensors: dict, cfg: DictConfig, where: str) -> None:
    want = {"W_enc": (cfg.d_in, cfg.d_sae), "b_enc": (cfg.d_sae,), "W_dec": (cfg.d_sae, cfg.d_in), "b_dec": (cfg.d_in,)}
    if cfg.kind in ("jumprelu", "batchtopk"):
        want["threshold"] = (cfg.d_sae,)
    problems = [f"missing {n} {s}" for n, s in want.items() if n not in tensors]
    problems += [f"unexpected {n}" for n in tensors if n not in want]
    problems += [f"{n} has shape {tuple(tensors[n].shape)}, expected {s}" for n, s in want.items()
                 if n in tensors and tuple(tensors[n].shape) != s]
    if problems:
        raise ValueError(f"{where}: tensors do not fit d_in={cfg.d_in}, d_sae={cfg.d_sae}, kind={cfg.kind!r}: "
                         + "; ".join(problems))


def _our_cfg(raw: dict, path: Path) -> DictConfig:
    """Our DictConfig from cfg.json: the saved one, or one built from SAELens's fields."""
    kinds = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}
    arch = raw.get("architecture", "standard")
    if arch not in kinds:
        raise ValueError(f"{path}: architecture {arch!r} is not supported (choose one of {', '.join(kinds)})")
    for field, allowed in (("normalize_activations", ("none", None)), ("reshape_activations", ("none", None))):
        if raw.get(field) not in allowed:
            raise ValueError(f"{path}: {field}={raw.get(field)!r} is not supported (only 'none')")
    need = ("d_in", "d_sae", "k") if arch == "topk" else ("d_in", "d_sae")
    if any(not isinstance(raw.get(f), int) for f in need):
        raise ValueError(f"{path}: needs integer {', '.join(need)}; got {({f: raw.get(f) for f in need})}")
    saved = (raw.get("metadata") or {}).get(CONFIG_KEY)
    try:
        cfg = DictConfig(**saved) if saved is not None else DictConfig(
            d_in=raw["d_in"], d_sae=raw["d_sae"], kind=kinds[arch], k=raw.get("k", 1))
    except TypeError as e:   # ConfigError (a ValueError) passes through with the field it names
        raise ValueError(f"{path}: metadata {CONFIG_KEY} is not a DictConfig: {e}") from None
    if (cfg.d_in, cfg.d_sae, ARCHITECTURE[cfg.kind]) != (raw["d_in"], raw["d_sae"], arch):
        raise ValueError(f"{path}: its {CONFIG_KEY} ({cfg.d_in}, {cfg.d_sae}, {cfg.kind}) disagrees with "
                         f"d_in={raw['d_in']}, d_sae={raw['d_sae']}, architecture={arch!r}")
    return cfg


def load_dictionary(folder: str | os.PathLike) -> tuple[DictInfo, dict[str, np.ndarray]]:
    """(info, params) of a SAELens folder, ours or another's (standard, topk or jumprelu with
    float32/float16/float64 weights). Shapes are checked against cfg.json; a foreign folder's
    apply_b_dec_to_input=False and rescale_acts_by_decoder_norm=True are folded into the weights
    so that ``encode`` computes what SAELens does."""
    folder = Path(folder)
    safetensors_numpy()
    from safetensors import safe_open   # third-party, and an optional extra: imported when needed
    raw = json.loads((folder / CFG_FILE).read_text())
    cfg = _our_cfg(raw, folder / CFG_FILE)
    with safe_open(str(folder / WEIGHTS_FILE), framework="np") as f:
        header = f.metadata() or {}
        tensors = {n: f.get_tensor(n) for n in f.keys()}  # noqa: SIM118 -- safe_open is not iterable
    bad = {n: str(t.dtype) for n, t in tensors.items() if t.dtype not in (np.float32, np.float16, np.float64)}
    if bad:
        raise ValueError(f"{folder / WEIGHTS_FILE}: unsupported dtypes {bad} (float32, float16, float64 load)")
    tensors = {n: np.asarray(t, np.float32) for n, t in tensors.items()}
    _check_shapes(tensors, cfg, str(folder / WEIGHTS_FILE))
    params = {n: tensors[n] for n in BASE_TENSORS}
    if not raw.get("apply_b_dec_to_input", True):   # pre = x W_enc + b_enc = (x - b_dec) W_enc + (b_enc + b_dec W_enc)
        params["b_enc"] = params["b_enc"] + params["b_dec"] @ params["W_enc"]
    if cfg.kind == "topk" and raw.get("rescale_acts_by_decoder_norm", False):
        norm_S = np.linalg.norm(params["W_dec"], axis=1)   # SAELens's _fold_norm_topk
        params |= {"W_enc": params["W_enc"] * norm_S[None], "b_enc": params["b_enc"] * norm_S,
                   "W_dec": params["W_dec"] / norm_S[:, None]}
    if cfg.kind == "batchtopk":
        params["threshold"] = tensors["threshold"]
    elif cfg.kind == "jumprelu":
        theta_S = np.maximum(tensors["threshold"], 0)    # SAELens gates on ReLU(threshold)
        exact = header.get(LOG_THRESHOLD_KEY)
        exact = None if exact is None else np.frombuffer(base64.b64decode(exact), "<f4").astype(np.float32)
        # the exact log_threshold only if it still gives the stored threshold (nobody edited one)
        if exact is not None and exact.shape == theta_S.shape and np.array_equal(np.exp(exact), theta_S):
            params["log_threshold"] = exact
        else:
            with np.errstate(divide="ignore"):
                params["log_threshold"] = np.log(theta_S)
    meta = raw.get("metadata") or {}
    return DictInfo(cfg, raw.get("architecture", "standard"), meta.get("hook_name", raw.get("hook_name")),
                    meta.get("model_name", raw.get("model_name")), raw), params
