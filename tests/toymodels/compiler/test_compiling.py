"""Compiled RASP programs: shared named cases, sizes vs Tracr, Tracr's failure cases,
errors that name the node, and reading SOps out of activations."""

import numpy as np
import pytest
from rasp_cases import CASES, LIBRARY, run_many, same_output

from toymodels.compiler import CompileError, accepts, compile_program, forward
from toymodels.compiler.graph import extract_graph
from toymodels.compiler.valuesets import infer_value_sets
from toymodels.hooks import run_with_cache
from toymodels.model import Transformer
from toymodels.rasp import Comparison, evaluate, rasp
from toymodels.rasp import library as lib


def test_named_cases_compile_to_the_expected_outputs():
    items = [(compile_program(c.make(), c.vocab, c.max_seq_len), [list(x) for x, _ in c.examples])
             for c in CASES]
    for case, outs in zip(CASES, run_many(items)):
        for (xs, expected), got in zip(case.examples, outs):
            assert same_output(got, expected), (case.name, xs, got, expected)


@pytest.mark.parametrize("lp", [lp for lp in LIBRARY if lp.tracr_size], ids=lambda lp: lp.name)
def test_no_larger_than_tracr(lp):
    n = lp.size_max_seq_len
    m = compile_program(lp.make(n), lp.vocab, n)
    layers, width = lp.tracr_size
    assert m.n_layers <= layers and m.d_model <= width, (m.n_layers, m.d_model, lp.tracr_size)


def test_compiled_model_is_a_plain_toymodels_transformer():
    m = compile_program(lib.make_frac_prevs(rasp.tokens == "a"), "abc", 5)
    cfg = m.model.cfg
    assert isinstance(m.model, Transformer)
    assert (cfg.norm, cfg.act, cfg.causal, cfg.use_bias, cfg.max_seq_len) == ("none", "relu", False, False, 6)
    assert m.residual_labels[:5] == ["tokens:BOS", "tokens:a", "tokens:b", "tokens:c", "indices:0"]
    assert "frac_prevs" in m.residual_labels and "indices:4" in m.residual_labels
    assert len(m.residual_labels) == m.d_model
    assert "layer 0" in m.summary()
    with pytest.raises(ValueError, match="BOS"):
        m.run(["a", "b"])
    with pytest.raises(ValueError, match="vocabulary"):
        m.run(["BOS", "z"])
    with pytest.raises(ValueError, match="max_seq_len"):
        m.run(["BOS"] + ["a"] * 6)


def test_a_model_of_the_same_architecture_replaces_the_compiled_one():
    import dataclasses

    from toymodels.model import init_model
    m = compile_program(lib.make_frac_prevs(rasp.tokens == "a"), "abc", 5)
    ids = m.encode([["BOS", "a", "b", "a"]])
    twin = init_model(dataclasses.replace(m.cfg, init_std=0.3), 0)   # a twin's init scale: same spaces
    m.model = twin
    assert m.model is twin and np.array_equal(np.asarray(forward(m.model, ids)), np.asarray(forward(twin, ids)))
    with pytest.raises(ValueError, match="same config"):
        m.model = init_model(dataclasses.replace(m.cfg, d_model=m.cfg.d_model + 1), 0)


# ---------------------------------------------------------------- Tracr's failure cases


def test_tracr_failure_a_selector_width_is_exact_up_to_64():
    """Tracr's SelectorWidth MLP (one slope, 100) is wrong from width ~10; ours is exact."""
    n = 64
    length = compile_program(lib.make_length(), "ab", n)
    hist = compile_program(lib.make_hist(), "ab", n)
    for t in (10, 33, 64):
        assert length.run_batch([["BOS"] + ["a"] * t, ["BOS"] + ["b", "a"] * (t // 2) + ["b"] * (t % 2)]) \
            == [[t] * t] * 2
    seqs = [["a"] * k + ["b"] * (n - k) for k in range(1, n)]      # every width 1..63, and 64
    outs = hist.run_batch([["BOS", *s] for s in seqs + [["a"] * n]])
    assert outs == [evaluate(lib.make_hist(), s) for s in seqs + [["a"] * n]]


def test_tracr_failure_b_numerical_mean_value_sets_are_exact():
    """Tracr infers {v/n} for a mean of v in {0, 1}, missing k/n such as 2/3."""
    prog = rasp.numerical(rasp.Map(lambda x: 1 if x > 0.5 else 0,
                                   lib.make_frac_prevs(rasp.tokens == "a"))).named("majority")
    graph = extract_graph(prog)
    values = infer_value_sets(graph, ["a", "b"], 5)
    frac = next(n for n in graph.nodes if n.label == "frac_prevs")
    expected = {j / k for k in range(1, 6) for j in range(k + 1)}
    assert set(values[frac].values) == expected
    m = compile_program(prog, "ab", 16)
    rng = np.random.default_rng(0)
    seqs = [list(rng.choice(["a", "b"], 16)) for _ in range(16)]
    assert m.run_batch([["BOS", *s] for s in seqs]) == [evaluate(prog, s) for s in seqs]


def test_tracr_failure_c_categorical_aggregate_of_nothing_is_none():
    prog = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == q + 1),
                          rasp.tokens)
    m = compile_program(prog, "abc", 5)
    assert m.output_values[-1] is None
    assert m.run(["BOS", "a", "b", "c"]) == ["b", "c", None]
    logits = forward(m.model, m.encode([["BOS", "a", "b", "c"]]))[0, -1, : len(m.output_values)]
    assert logits.argmax() == len(m.output_values) - 1          # the None logit wins
    assert np.allclose(logits, [0, 0, 0, 0.5], atol=1e-6)


# ---------------------------------------------------------------- errors name the node


@pytest.mark.parametrize("make, match", [
    (lambda: rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, Comparison.TRUE),
                                           rasp.numerical(rasp.tokens == "a")).named("bad_mean")),
     "bad_mean.*default=0"),
    (lambda: rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, Comparison.TRUE), rasp.tokens,
                            default="a").named("bad_default"), "bad_default.*default=None"),
    (lambda: rasp.SelectorWidth((rasp.Select(rasp.tokens, rasp.tokens, Comparison.EQ)
                                 | rasp.Select(rasp.indices, rasp.indices, Comparison.LT))
                                .named("either")), "either.*SelectorOr"),
    (lambda: rasp.numerical(rasp.Map(lambda x: 1, lib.shift_by(1, rasp.tokens))).named("from_none"),
     "from_none.*None"),
    (lambda: rasp.numerical(rasp.Map(lambda x: "x", rasp.tokens)).named("text"), "text.*numbers"),
    (lambda: rasp.numerical(rasp.tokens), "tokens.*categorical"),
    (lambda: rasp.Select(rasp.tokens, rasp.tokens, Comparison.EQ), "must be an SOp"),
    (lambda: rasp.Map(lambda x: x < 1.5e-12, rasp.numerical(rasp.Map(
        lambda x: x * 1e-12, rasp.indices)), simplify=False).named("tiny_gap"), "tiny_gap.*float32"),
])
def test_compile_errors_name_the_offending_node(make, match):
    with pytest.raises(CompileError, match=match):
        compile_program(make(), "ab", 4)
    assert rasp.is_categorical(rasp.tokens)   # annotating the shared primitive changed nothing


def test_annotating_a_primitive_does_not_break_later_compiles():
    with pytest.raises(CompileError, match="tokens.*categorical"):
        compile_program(rasp.numerical(rasp.tokens), "ab", 4)
    model = compile_program(lib.make_reverse(rasp.tokens), "ab", 4)
    assert model.run(["BOS", "a", "b"]) == ["b", "a"]


def test_a_map_whose_function_raises_is_a_compile_error_as_in_the_interpreter():
    inv = rasp.numerical(rasp.Map(lambda x: 1 / (x - 1), rasp.indices)).named("inv")
    with pytest.raises(ZeroDivisionError):
        evaluate(inv, "ab")
    with pytest.raises(CompileError, match=r"'inv' \(Map\): its function raised ZeroDivisionError.*input value 1"):
        compile_program(inv, "ab", 4)
    assert not accepts(inv, "ab", 4)


def test_accepts_is_the_front_end_verdict():
    bad = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, Comparison.TRUE), rasp.tokens,
                         default="a")
    assert not accepts(bad, ("a", "b"), 4)
    with pytest.raises(CompileError):
        compile_program(bad, ("a", "b"), 4)
    assert accepts(lib.make_reverse(rasp.tokens), ("a", "b"), 4)


def test_vocab_must_not_contain_bos():
    with pytest.raises(CompileError, match="BOS"):
        compile_program(rasp.tokens == "a", ["a", "BOS"], 4)


# ---------------------------------------------------------------- reading SOps from activations


def test_every_sop_can_be_read_from_the_final_residual():
    prog = lib.make_shuffle_dyck2()
    m = compile_program(prog, "(){}", 5)
    xs = list("({)}(")
    _, cache = run_with_cache(m.model, m.encode([["BOS", *xs]]), names=["final"])
    resid = np.asarray(cache["final"])
    checked = 0
    for label, impl in m.plan.impl.items():
        if impl == "fused" or label.endswith((".attn", ".cat")):
            continue
        expr = m.sops[label]
        got = m.read(expr, resid)[0]
        assert got[0] is None or abs(got[0]) < 1e-6              # BOS position holds nothing
        assert same_output(got[1:], evaluate(expr, xs)), label
        checked += 1
    assert checked >= 10
    assert [m.residual_labels[i] for i in m.subspace("has_neg")] == ["has_neg"]
    with pytest.raises(KeyError, match="virtual"):
        m.subspace("balance_()")                                 # opens - closes, read linearly
    with pytest.raises(KeyError, match="not an SOp"):
        m.subspace("nonsense")


def test_fused_sops_are_reported():
    m = compile_program(lib.make_reverse(rasp.tokens), "abc", 5)
    assert m.plan.impl["length"] == "fused" and m.n_layers == 2
    with pytest.raises(KeyError, match="fused"):
        m.readout("length")


def test_padding_preserves_outputs():
    m = compile_program(lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1),
                        [1, 2, 3], 5)
    p = m.padded(n_layers=5, d_model=60, n_heads=3, d_head=32, d_mlp=40, vocab_size=9, max_seq_len=8)
    ids = m.encode([["BOS", 3, 1, 2, 1]])
    assert p.d_model == 60 and p.residual_labels[-1] == f"pad:{60 - m.d_model - 1}"
    assert np.abs(forward(p.model, ids)[..., :4] - forward(m.model, ids)).max() < 1e-5
    assert p.run(["BOS", 3, 1, 2, 1]) == [1, 1, 2, 3]
