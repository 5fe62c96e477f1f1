"""Weight tokens: one token per non-zero rank-one piece, symlog features, scrambles keep the shape."""

from __future__ import annotations

import numpy as np
import pytest

from toymodels.compiler import accepts, compile_program
from toymodels.decompile import Layout, weight_tokens
from toymodels.decompile.weights import KINDS
from toymodels.rasp import fountain
from toymodels.scramble import scramble

ABC = ("a", "b", "c")


def test_weight_tokens_layout_and_scrambles():
    layout = Layout(max_layers=6, d_max=40, max_heads=4)
    compiled = compile_program(fountain.generate(5, n_ops=5, accept=accepts), ABC, 5)
    x_NI = weight_tokens(compiled, layout)
    assert x_NI.dtype == np.float32 and x_NI.shape[1] == layout.width
    kinds = x_NI[:, layout.kind_offset:layout.kind_offset + len(KINDS)]
    assert (kinds.sum(1) == 1).all()
    cfg = compiled.cfg
    n_of = lambda kind: int(kinds[:, KINDS.index(kind)].sum())
    nonzero_rows = lambda w: int(np.any(w != 0, axis=1).sum())  # zero pieces are skipped
    p = compiled.params()
    assert (n_of("embed"), n_of("pos")) == (nonzero_rows(p["W_E"]), nonzero_rows(p["W_pos"]))
    assert n_of("mlp") == nonzero_rows(np.concatenate([p[f"blocks.{i}.mlp.W_in"].T for i in
                                                       range(cfg.n_layers)]))
    np.testing.assert_array_equal(weight_tokens(compiled.model, layout), x_NI)  # Transformer too
    raw = weight_tokens(compiled, layout, transform="raw")
    assert np.abs(raw).max() > 20 > np.abs(x_NI).max()
    scrambled = weight_tokens(scramble(compiled.model, 1), layout)
    assert scrambled.shape == x_NI.shape and not np.allclose(scrambled, x_NI, atol=1e-2)
    meta = slice(layout.kind_offset, layout.head_offset)   # kind and layer survive scrambling
    np.testing.assert_array_equal(scrambled[:, meta], x_NI[:, meta])
    with pytest.raises(ValueError, match="exceed"):
        weight_tokens(compiled, Layout(max_layers=6, d_max=cfg.d_model - 1))
