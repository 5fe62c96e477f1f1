"""Compiled vs trained "twins": layer-by-layer representation comparisons and weight statistics.

A twin is a network trained on the ``rasp_io`` task of a RASP program, with the compiled
net's depth and (possibly scaled) width (``twin_config``). Both are run on the same inputs
and their residual streams compared at matching layers:

    acts_c = collect(compiled.model, batch.inputs, positions="non_bos")
    acts_t = collect(trained, batch.inputs, positions="non_bos")
    compare(acts_c, acts_t)                          # CKA, Procrustes, affine R^2 per layer
    variable_r2(acts_t, compiled, acts_c)            # can the twin's layers linearly hold
                                                     # each RASP variable of the compiled net?
    weight_summary(trained)                          # sparsity, effective / stable rank

Activation dicts come from ``collect`` (``toymodels.analysis.activations``): a layer (a hook
name) -> an (N, D) matrix whose rows are (input, position) pairs in batch-major order, so
two dicts collected from the same inputs and positions are row-aligned.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from toymodels.analysis.similarity import (
    affine_r2_split,
    debiased_linear_cka,
    linear_cka,
    mlp_r2,
    procrustes_distance,
    weight_stats,
)
from toymodels.config import replace
from toymodels.model import Transformer, TransformerConfig
from toymodels.params import model_params

# Compiled attention leaks e^-50 of a value onto unselected positions: codes that vary by
# less than this are constant (not computed yet, or constant on these inputs), not a
# signal to regress on.
CONSTANT_TOL = 1e-6


def twin_config(compiled, width: float = 1.0, **overrides) -> TransformerConfig:
    """The config of a trained twin of ``compiled`` (a CompiledModel): its depth, heads,
    vocabulary, positions and output kind, with d_model / d_head / d_mlp scaled by
    ``width`` (0.5, 2, ...), then ``overrides`` (e.g. ``norm="layernorm"``, ``use_bias=True``).
    The compiled architecture (no norm, ReLU, bidirectional) is kept unless overridden."""
    cfg = compiled.cfg

    def scaled(n: int) -> int:
        return max(1, round(n * width))

    return replace(cfg, d_model=scaled(cfg.d_model), d_head=scaled(cfg.head_dim),
                   d_mlp=scaled(cfg.mlp_dim) if cfg.mlp_dim else 0, **overrides)


def _nan_on_degenerate(fn, *args) -> float:
    try:
        return float(fn(*args))
    except ValueError:   # constant activations: Procrustes is undefined
        return float("nan")


def _pairs(acts_a: dict, acts_b: dict, pairs) -> list[tuple[str, str]]:
    if pairs is None:
        pairs = [(n, n) for n in acts_a if n in acts_b]
    pairs = [(a, b) for a, b in pairs]
    missing = [a for a, _ in pairs if a not in acts_a] + [b for _, b in pairs if b not in acts_b]
    if missing:
        raise KeyError(f"layers {missing} are not in the activations; have "
                       f"{sorted(acts_a)} and {sorted(acts_b)}")
    if not pairs:
        raise KeyError(f"no layer in common: {sorted(acts_a)} vs {sorted(acts_b)}; pass pairs=")
    return pairs


def _holdout(n: int, test_frac: float, seed: int, max_rows: int | None):
    perm = np.random.default_rng(seed).permutation(n)
    if max_rows is not None and n > max_rows:
        perm = perm[:max_rows]
    n_test = round(test_frac * len(perm))
    return perm[n_test:], perm[:n_test]


def compare(acts_a: dict[str, np.ndarray], acts_b: dict[str, np.ndarray], *,
            pairs: Iterable[tuple[str, str]] | None = None, mlp: bool = False,
            test_frac: float = 0.25, seed: int = 0, mlp_max_rows: int = 20_000,
            **mlp_kwargs) -> list[dict]:
    """One row per compared layer pair: ``layer_a``, ``layer_b``, ``n``, ``d_a``, ``d_b``,
    ``cka``, ``debiased_cka``, ``procrustes`` (NaN if a side is constant), held-out
    ``affine_r2_a_to_b`` / ``affine_r2_b_to_a`` and, with ``mlp=True``, ``mlp_r2_a_to_b``
    (fitted on at most ``mlp_max_rows`` rows; ``mlp_kwargs`` go to ``similarity.mlp_r2``).

    ``pairs``: (layer of a, layer of b); default every layer name the two dicts share.
    """
    rows = []
    for name_a, name_b in _pairs(acts_a, acts_b, pairs):
        X_NA, Y_NB = acts_a[name_a], acts_b[name_b]
        if X_NA.shape[0] != Y_NB.shape[0]:
            raise ValueError(f"{name_a} has {X_NA.shape[0]} rows but {name_b} has {Y_NB.shape[0]}: "
                             "collect both from the same inputs and positions")
        row = {"layer_a": name_a, "layer_b": name_b, "n": X_NA.shape[0],
               "d_a": X_NA.shape[1], "d_b": Y_NB.shape[1],
               "cka": linear_cka(X_NA, Y_NB),
               "debiased_cka": debiased_linear_cka(X_NA, Y_NB),
               "procrustes": _nan_on_degenerate(procrustes_distance, X_NA, Y_NB),
               "affine_r2_a_to_b": affine_r2_split(X_NA, Y_NB, test_frac, seed).overall,
               "affine_r2_b_to_a": affine_r2_split(Y_NB, X_NA, test_frac, seed).overall}
        if mlp:
            train, test = _holdout(X_NA.shape[0], test_frac, seed, mlp_max_rows)
            row["mlp_r2_a_to_b"] = mlp_r2(X_NA[train], Y_NB[train], X_NA[test], Y_NB[test],
                                          seed=seed, **mlp_kwargs).overall
        rows.append(row)
    return rows


def _variable_labels(compiled, sops) -> list[str]:
    impl = compiled.plan.impl
    if sops is None:
        # Fused SOps have no code in the residual stream; everything else can be read out.
        return [label for label, kind in impl.items() if kind != "fused"]
    return [compiled._label(s) for s in sops]


def _variable_code(compiled, label: str, resid_ND: np.ndarray) -> np.ndarray:
    """The SOp's code (N, k): its own residual directions when materialized, else its
    linear read-out (virtual SOps have no directions of their own)."""
    if compiled.plan.impl[label] == "virtual":
        R_DK, _ = compiled.readout(label)
        return resid_ND.astype(np.float64) @ R_DK
    return resid_ND[:, compiled.subspace(label)].astype(np.float64)


def variable_r2(trained_acts: dict[str, np.ndarray], compiled, compiled_acts: dict[str, np.ndarray],
                sops=None, *, pairs: Iterable[tuple[str, str]] | None = None,
                test_frac: float = 0.25, seed: int = 0) -> list[dict]:
    """Affine R^2 between each layer of a trained net and each RASP variable of ``compiled``.

    ``compiled_acts`` must come from ``compiled.model`` on the same inputs and positions as
    ``trained_acts`` (use positions="non_bos": every code is zero at BOS). ``sops``: SOps or
    labels (default: every non-fused node of the compiled plan, including ``tokens``,
    ``indices`` and SelectorWidth ``.attn`` outputs). ``pairs``: (trained layer, compiled
    layer), default the shared names.

    Rows: ``layer`` (trained), ``layer_compiled``, ``sop``, ``kind`` (source / attention /
    mlp / virtual), ``width`` (code columns), ``varies`` (whether the code varies over the
    rows at that compiled layer: False before the SOp is computed, and for SOps constant on
    these inputs, such as ``length`` at one input length), ``r2_to_sop`` (trained layer ->
    code: does the layer linearly contain the variable?) and ``r2_from_sop`` (code ->
    trained layer: how much of the layer's variance the variable explains). Both are NaN
    where the code does not vary.
    """
    labels = _variable_labels(compiled, sops)
    rows = []
    for name_t, name_c in _pairs(trained_acts, compiled_acts, pairs):
        X_NA = trained_acts[name_t]
        for label in labels:
            code_NK = _variable_code(compiled, label, compiled_acts[name_c])
            std_K = code_NK.std(axis=0)
            varies = bool(std_K.size and std_K.max() > CONSTANT_TOL)
            row = {"layer": name_t, "layer_compiled": name_c, "sop": label,
                   "kind": compiled.plan.impl[label], "width": code_NK.shape[1], "varies": varies,
                   "r2_to_sop": float("nan"), "r2_from_sop": float("nan")}
            if varies:
                # Leaked e^-50 noise in unused columns would count as variance to explain.
                code_NK[:, std_K <= CONSTANT_TOL] = 0.0
                row["r2_to_sop"] = affine_r2_split(X_NA, code_NK, test_frac, seed).overall
                row["r2_from_sop"] = affine_r2_split(code_NK, X_NA, test_frac, seed).overall
            rows.append(row)
    return rows


def _matrices(params: dict[str, np.ndarray], circuits: bool) -> list[tuple[str, np.ndarray]]:
    out = []
    for path, w in params.items():
        if w.ndim < 2:
            continue   # biases and norm parameters
        if path.endswith("attn.W_QKV"):
            D, _, H, K = w.shape
            prefix = path[: -len("W_QKV")]
            for j, part in enumerate("QKV"):
                out.append((f"{prefix}W_{part}", w[:, j].reshape(D, H * K)))
            if circuits:
                W_O_HKD = params[f"{prefix}W_O"]
                for h in range(H):
                    # QK reads (query resid, key resid); OV maps a key's resid to the output.
                    out.append((f"{prefix}head{h}.QK", w[:, 0, h] @ w[:, 1, h].T))
                    out.append((f"{prefix}head{h}.OV", w[:, 2, h] @ W_O_HKD[h]))
        elif path.endswith("attn.W_O"):
            H, K, D = w.shape
            out.append((path, w.reshape(H * K, D)))
        else:
            out.append((path, w))
    return out


def weight_summary(model: Transformer, circuits: bool = True) -> list[dict]:
    """``similarity.weight_stats`` per weight matrix: one row with ``name``, ``shape`` and the
    stats. Attention ``W_QKV`` is split into ``W_Q``/``W_K``/``W_V`` (D, H*K) and ``W_O`` is
    (H*K, D); with ``circuits`` also each head's (D, D) ``QK`` = W_Q W_K^T and ``OV`` = W_V W_O,
    whose singular values do not depend on the residual or head-internal basis."""
    rows = []
    for name, W in _matrices(model_params(model), circuits):
        rows.append({"name": name, "shape": tuple(W.shape), **weight_stats(W)})
    return rows
