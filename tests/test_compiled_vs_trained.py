"""The compiled-vs-trained study: its grid, its comparison function's sanity check, its
summary functions on hand-made rows, and the whole smoke path with a shrunk preset."""

from __future__ import annotations

import collections
import math

import numpy as np
import pytest

from studies import compiled_vs_trained as cvt
from studies.common import run_study
from toymodels.analysis import twins
from toymodels.compiler.assemble import build_model, model_params
from toymodels.decompile.tokens import program_tokens
from toymodels.results import read_rows
from toymodels.scramble import scramble
from toymodels.tasks.rasp_io import resolve_program

# One fountain program, two seeds, a few steps, a decompiler of a few steps on 30 programs.
SHRINK = dict(library=(), n_fountain=1, seeds=2, steps=30, max_inputs=64, mlp_steps=20,
              dec_programs=30, dec_extra_train=10, dec_eval=6, dec_weight_tokens=48, dec_program_tokens=40,
              dec_d_model=16, dec_layers=1, dec_steps=5, dec_seeds=2)


@pytest.fixture
def shrunk(monkeypatch):
    monkeypatch.setitem(cvt.PRESETS, "smoke", {**cvt.PRESETS["smoke"], **SHRINK})


def test_grid_has_every_program_width_and_seed():
    P = cvt.PRESETS["smoke"]
    specs = cvt.specs("smoke")
    assert len({s.run_id for s in specs}) == len(specs)
    tags = [dict(s.tags) for s in specs]
    twin = collections.Counter((t["program"], t["width"], t["seed"]) for t in tags if t["kind"] == "twin")
    progs = [p for _, p in cvt.programs("smoke")]
    assert len(progs) == len(P["library"]) + P["n_fountain"] and progs[:len(P["library"])] == list(P["library"])
    assert twin == {(p, w, s): 1 for p in progs for w in P["widths"] for s in range(P["seeds"])}
    dec = collections.Counter((t["weights"], t["seed"]) for t in tags if t["kind"] == "decompiler")
    assert dec == {(w, s): 1 for w in ("clean", "scrambled") for s in range(P["dec_seeds"])}
    for spec, t in zip(specs, tags):
        if t["kind"] != "twin":
            continue
        compiled = cvt.twin_task(t["program"]).compile()
        cfg = spec.model
        # the compiled architecture, only wider or narrower
        assert (cfg.n_layers, cfg.n_heads, cfg.norm, cfg.causal, cfg.use_bias, cfg.act) == \
            (compiled.n_layers, compiled.cfg.n_heads, "none", False, False, "relu")
        assert cfg.d_model == max(1, round(t["width"] * compiled.d_model))
    # one compiled program per (program, width): seeds share a group
    assert len({s.group_key() for s in specs}) == len(progs) * len(P["widths"]) + 2


def test_paper_preset_sizes():
    P = cvt.PRESETS["paper"]
    assert set(P["library"]) == set(cvt.LIBRARY) and P["n_fountain"] >= 30
    assert P["widths"] == (0.5, 1.0, 2.0) and P["seeds"] >= 3 and P["dec_seeds"] >= 3


def test_fountain_twins_are_held_out_from_the_decompiler(shrunk):
    train = cvt.decompile_task("smoke", scrambled=False)
    held, seen = train.programs("eval"), train.programs("train")
    assert held and not {e["id"] for e in held} & {e["id"] for e in seen}
    assert not {tuple(e["tokens"]) for e in held} & {tuple(e["tokens"]) for e in seen}
    scrambled = cvt.decompile_task("smoke", scrambled=True)
    assert [e["tokens"] for e in scrambled.programs("eval")] == [e["tokens"] for e in held]
    names = cvt.fountain_programs("smoke")
    assert len(names) == SHRINK["n_fountain"]
    held_tokens = {tuple(e["tokens"]) for e in held}
    for name in names:
        # the twin task's program is the held-out program itself
        assert tuple(program_tokens(resolve_program(name)[0])) in held_tokens
        task = cvt.twin_task(name)
        y = np.concatenate([task.table(s)[1] for s in ("train", "eval")])
        assert len(np.unique(y, axis=0)) > 1   # the output depends on the input


@pytest.fixture(scope="module")
def reverse():
    task = cvt.twin_task("reverse")
    compiled = task.compile()
    inputs = cvt._inputs(task, 128)
    return task, compiled, inputs, twins.collect(compiled.model, inputs, positions="non_bos")


def _by(rows, pooled=True):
    """metric -> values, of the pooled rows or of the per-position rows."""
    out = collections.defaultdict(list)
    for r in rows:
        if (r["position"] == "all") == pooled:
            out[r["metric"]].append(r["value"])
    return out


def test_compiled_vs_scrambled_scores_cka_one_distance_zero(reverse):
    _, compiled, inputs, ref = reverse
    L = inputs.shape[1] - 1
    rows = cvt.compare_layers(ref, twins.collect(scramble(compiled.model, 3), inputs, positions="non_bos"), L)
    pooled, per_position = _by(rows), _by(rows, pooled=False)
    n_layers = len(twins.default_layers(compiled.model))
    assert len(pooled["cka"]) == n_layers and len(per_position["cka"]) == n_layers * L
    for metric in ("cka", "debiased_cka", "affine_r2_to_ref", "affine_r2_from_ref"):
        np.testing.assert_allclose(pooled[metric], 1.0, atol=1e-6, err_msg=metric)
    assert max(pooled["procrustes"]) < 1e-4
    np.testing.assert_allclose(per_position["cka"], 1.0, atol=1e-6)
    assert max(per_position["procrustes"]) < 1e-4
    assert [r["final"] for r in rows if r["metric"] == "cka" and r["position"] == "all"] == \
        [0] * (n_layers - 1) + [1]


def test_random_twin_scores_lower_and_mlp_gap_is_reported(reverse):
    _, compiled, inputs, ref = reverse
    # a random net of the compiled shape, drawn in numpy (no per-op compiles)
    rng = np.random.default_rng(0)
    params = {k: rng.normal(0, 0.3, w.shape) for k, w in model_params(compiled.model).items()}
    random = build_model(compiled.cfg, params)
    rows = cvt.compare_layers(ref, twins.collect(random, inputs, positions="non_bos"), inputs.shape[1] - 1,
                              mlp=True, mlp_steps=30, positions=False)
    pooled = _by(rows)
    assert max(pooled["cka"][1:]) < 0.95 and min(pooled["procrustes"]) > 0.1
    gap = [r["value"] - a for r, a in zip((r for r in rows if r["metric"] == "mlp_r2_to_ref"),
                                          pooled["affine_r2_to_ref"])]
    np.testing.assert_allclose(pooled["mlp_minus_affine"], gap)
    assert all(r["position"] == "all" for r in rows)


@pytest.mark.parametrize("program", ["reverse", "frac_prevs"])
def test_compiled_net_is_fully_accurate(program):
    task = cvt.twin_task(program)
    acc = cvt.heldout_accuracy(task.compile().model, task)
    assert acc == dict(acc=1.0, exact=1.0, matched=1.0, train_acc=1.0)


def test_heldout_ceiling_counts_classes_never_trained():
    # count's table: its one held-out all-equal row has count 5, which no training row has
    count = cvt.twin_task("count")
    y_tr, y_ev = count.table("train")[1], count.table("eval")[1]
    unseen = ~np.isin(y_ev, np.unique(y_tr))
    assert unseen.any() and cvt.heldout_ceiling(count) == pytest.approx(1 - unseen.mean())
    assert cvt.heldout_ceiling(cvt.twin_task("reverse")) == 1.0
    assert cvt.heldout_ceiling(cvt.twin_task("frac_prevs")) == 1.0      # numerical
    rows = [dict(program="count", source="compiled", width=1.0, seed=0, metric="acc", value=1.0)] + [
        dict(program="count", source="trained", width=1.0, seed=s, metric="acc", value=v)
        for s, v in enumerate((1 - unseen.mean(), 0.9))]
    out = cvt.with_ceiling(rows)
    assert [r["value"] for r in out if r["metric"] == "reached"] == [1.0, 0.0]
    assert [r["value"] for r in out if r["source"] == "ceiling"] == [cvt.heldout_ceiling(count)]


# ------------------------------------------------------------------ summary functions
def test_seed_means_average_within_a_seed_then_across_seeds():
    rows = [dict(program=p, seed=s, metric="cka", value=v)
            for p, s, v in (("a", 0, 0.2), ("b", 0, 0.4), ("a", 1, 0.6), ("b", 1, 0.8), ("a", 2, 0.5), ("b", 2, 0.5))]
    (r,) = cvt.seed_means(rows, ("metric",))
    per_seed = [0.3, 0.7, 0.5]
    assert r["n"] == 3 and r["mean"] == pytest.approx(0.5)
    half = r["hi"] - r["mean"]
    assert half == pytest.approx(4.302652729911275 * np.std(per_seed, ddof=1) / math.sqrt(3))
    assert r["mean"] - r["lo"] == pytest.approx(half)


def test_variable_summary_reads_birth_final_and_best_layer():
    base = dict(family="library", program="p", width=1.0, seed=0, sop="x", sop_kind="mlp")
    rows = [dict(base, layer_index=i, final=int(i == 3), metric="r2_to_sop", value=v)
            for i, v in ((1, 0.5), (2, 0.9), (3, 0.7))]
    rows.append(dict(base, layer_index=3, final=1, metric="r2_from_sop", value=0.25))
    got = {r["quantity"]: r for r in cvt.variable_summary(rows)}
    assert {q: r["value"] for q, r in got.items()} == dict(
        r2_to_sop_birth=0.5, r2_to_sop_max=0.9, r2_to_sop_final=0.7, r2_from_sop_final=0.25)
    assert all(r["birth_layer"] == 1 for r in got.values())


def test_decompiler_by_size_is_the_per_seed_fraction_right():
    rows = []
    for seed, right in ((0, (1, 0, 1)), (1, (1, 1, 0))):
        for program, (n_lines, ok) in enumerate(zip((2, 2, 5), right)):
            rows.append(dict(train_weights="clean", test_weights="clean", seed=seed, program=program,
                             n_lines=n_lines, n_ops=n_lines, metric="exact", value=float(ok)))
    table = {r["n_lines"]: r for r in cvt.decompiler_by_size(rows)}
    assert table[2]["mean"] == pytest.approx(0.75) and table[2]["programs"] == 2
    assert table[5]["mean"] == pytest.approx(0.5) and table[5]["programs"] == 1
    assert table["all"]["mean"] == pytest.approx(2 / 3) and table["all"]["programs"] == 3
    assert all(r["n"] == 2 for r in table.values())


def test_score_decoding():
    toks = program_tokens(resolve_program("fountain:3:4")[0])
    assert cvt.score_decoding(toks, toks) == dict(exact=1.0, equivalent=1.0, parsable=1.0)
    assert cvt.score_decoding(toks[:-1], toks) == dict(exact=0.0, equivalent=0.0, parsable=0.0)
    # the same program written with an extra identity step: equivalent, not exact
    same = ["Map", "f:x+1", "indices", "cat", "Map", "f:x-1", "v1", "cat"]
    assert cvt.score_decoding(same, ["Map", "f:x-1", "indices", "cat", "Map", "f:x+1", "v1", "cat"]) == \
        dict(exact=0.0, equivalent=1.0, parsable=1.0)


# ------------------------------------------------------------------ end to end
def test_smoke_path_end_to_end(tmp_path, shrunk):
    paths = run_study(cvt, "smoke", tmp_path, progress=False)
    assert len(paths) == 22 and all(p.stat().st_size > 5000 for p in paths)   # 11 figures, PNG + PDF
    tables = tmp_path / "figures"
    acc = read_rows(tables / "twin_accuracy.csv")
    trained = [r for r in acc if r["source"] == "trained" and r["metric"] == "acc"]
    assert len(trained) == 1 and trained[0]["n"] == 2 and 0 <= trained[0]["mean"] <= 1
    layers = read_rows(tables / "layers.csv")
    assert {r["comparison"] for r in layers} == {"compiled_vs_trained", "trained_vs_trained", "compiled_vs_scrambled"}
    for r in layers:
        if r["comparison"] == "compiled_vs_scrambled" and r["metric"] == "cka":
            assert r["mean"] == pytest.approx(1.0, abs=1e-6)
    summary = read_rows(tables / "summary.csv")
    assert {r["section"] for r in summary} >= {"twin held-out accuracy", "final layer", "RASP variables",
                                               "decompiler, held-out programs", "decompiler on fountain nets",
                                               "anchor"}
    assert all(r["lo"] <= r["mean"] + 1e-12 and r["mean"] <= r["hi"] + 1e-12 for r in summary)
    probes = read_rows(tmp_path / "analysis" / "decompiler" / "probes.csv")
    assert probes and not any(p["seen_in_training"] for p in probes)
    # (redrawing from the tables alone, raw runs deleted, is tests/test_studies.py's check)
