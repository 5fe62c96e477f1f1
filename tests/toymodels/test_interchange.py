"""Interchange interventions and the learned subspace (distributed alignment search)."""

from __future__ import annotations

import numpy as np
import pytest

from toymodels.analysis import interchange as ic
from toymodels.hooks import forward
from toymodels.rasp import interpreter
from toymodels.scramble import scramble
from toymodels.tasks import make_task


@pytest.fixture(scope="module")
def hist():
    task = make_task("rasp_io", program="hist", length=4)
    compiled = task.compile()
    x = np.asarray(task.full_batch("train").inputs)
    rng = np.random.default_rng(0)
    base, source = x[rng.integers(0, len(x), 256)], x[rng.integers(0, len(x), 256)]
    return task, compiled, base, source


def test_a_full_rank_basis_runs_the_source(hist):
    _, compiled, base, source = hist
    Q = ic.random_basis(compiled.d_model, compiled.d_model, seed=3)
    got = ic.interchange_logits(compiled.model, "blocks.0.resid_mid", Q, base, source)
    np.testing.assert_allclose(got, np.asarray(forward(compiled.model, source)[0]), atol=1e-4)


def test_interchanging_the_compiled_tokens_computes_the_program_on_the_source(hist):
    """hist reads tokens only (every position compares its token with every other), so
    tokens taken from the source at the embedding give hist(source) (lengths are equal)."""
    task, compiled, base, source = hist
    cf = ic.counterfactual(compiled, "tokens", "blocks.0.resid_pre", base, source)
    values = compiled.output_values
    inv = {i: v for v, i in compiled.input_ids.items()}
    for row_cf, row_src in zip(cf[:16], source[:16]):
        want = interpreter.evaluate(compiled.sops["hist"], [inv[i] for i in row_src[1:]])
        assert [values[c] for c in row_cf[1:]] == want


def test_the_learned_subspace_finds_a_variable_hidden_by_a_rotation(hist):
    """Positive control: a scrambled compiled net (residual basis rotated) holds hist's
    attention output in some 2-dim subspace; the fit finds one whose interchange gives the
    counterfactual on held-out pairs, and a random subspace of that size does not. (Single
    fits can stall in this saturated net: three restarts, the best kept.)"""
    task, compiled, base, source = hist
    label, layer = "hist.attn", "blocks.0.resid_mid"
    k = len(compiled.subspace(label))
    cf = ic.counterfactual(compiled, label, layer, base, source)
    net = scramble(compiled.model, 0)
    mask = np.ones(base.shape)
    mask[:, 0] = 0
    n = len(compiled.output_values)
    fit, test = slice(0, 192), slice(192, None)
    Q, losses = ic.fit_basis(net, layer, k, base[fit], source[fit], cf[fit], mask[fit], n_classes=n, steps=200,
                             lr=1e-2, restarts=3)
    # the compiled net's logits have margins of ~1, so the loss floor is ~1.1, not 0
    assert losses[-1] < 0.7 * losses[0] and len(losses) == 201
    np.testing.assert_allclose(Q.T @ Q, np.eye(k), atol=1e-5)
    changed = (cf != np.asarray(forward(compiled.model, base)[0])[..., :n].argmax(-1)) & mask.astype(bool)
    assert changed[test].sum() > 20

    def acc(basis):
        pred = ic.interchange_logits(net, layer, basis, base[test], source[test])[..., :n].argmax(-1)
        return (pred == cf[test])[changed[test]].mean()

    assert acc(Q) > 0.95 and acc(ic.random_basis(compiled.d_model, k, 1)) < 0.5


def test_bad_layers_and_bases_are_refused(hist):
    _, compiled, base, source = hist
    with pytest.raises(ValueError, match="needs a residual point"):
        ic.interchange_logits(compiled.model, "blocks.0.attn.z", np.eye(compiled.d_model)[:, :2], base, source)
    with pytest.raises(ValueError, match="expected \\(d_model="):
        ic.interchange_logits(compiled.model, "blocks.0.resid_mid", np.eye(3), base, source)
    with pytest.raises(ValueError, match="1 <= k <= d_model"):
        ic.fit_basis(compiled.model, "blocks.0.resid_mid", 0, base, source, base, base, n_classes=2)
