"""The compiled-vs-trained study: its grid, its comparison function's sanity check, its
summary-table functions on hand-made rows, and the whole smoke path with a shrunk preset."""

from __future__ import annotations

import collections
import dataclasses
import math
import shutil

import numpy as np
import pytest

import studies.compiled_vs_trained as cvt
from studies.common import run_study
from studies.compiled_vs_trained import fair as fair_mod
from studies.compiled_vs_trained import fair_twins as fair_twins_mod
from studies.compiled_vs_trained import grid, measure, tables
from studies.compiled_vs_trained.presets import PRESETS
from toymodels.analysis.activations import collect, default_layers
from toymodels.analysis.stats import aggregate, bounded_ci
from toymodels.decompile.tokens import program_tokens
from toymodels.params import build_model, model_params
from toymodels.rasp.catalogue import LIBRARY
from toymodels.results import read_rows
from toymodels.scramble import scramble
from toymodels.tasks.rasp_io import resolve_program

# Two fountain programs (each the other's other-program null), two seeds, a few steps, a
# decompiler of a few steps on 30 programs.
SHRUNK = dataclasses.replace(
    PRESETS["smoke"], library=(), n_fountain=2, seeds=2, steps=30, max_inputs=64, mlp_steps=20,
    dec_programs=30, dec_extra_train=10, dec_eval=6, dec_weight_tokens=48, dec_program_tokens=40,
    dec_d_model=16, dec_layers=1, dec_steps=5, dec_seeds=2, fair_eval=12, fair_samples=2, fair_checks=4)


def test_grid_has_every_program_width_and_seed():
    P = PRESETS["smoke"]
    specs = grid.specs(P)
    assert len({s.run_id for s in specs}) == len(specs)
    tags = [dict(s.tags) for s in specs]
    twin = collections.Counter((t["program"], t["width"], t["seed"]) for t in tags if t["kind"] == "twin")
    progs = [p for _, p in grid.programs(P)]
    assert len(progs) == len(P.library) + P.n_fountain and progs[:len(P.library)] == list(P.library)
    # the fair held-out programs' twins at the reference width, once where a program is also a main one
    fair_progs = [p for p in grid.fair_twin_programs(P) if p not in progs]
    assert len(grid.fair_twin_programs(P)) == P.fair_twins
    assert twin == {(p, w, s): 1 for p in progs for w in P.widths for s in range(P.seeds)} | {
        (p, P.ref_width, s): 1 for p in fair_progs for s in range(P.seeds)}
    for kind, split_by in (("decompiler", "tokens"), ("decompiler_fair", "function")):
        dec = collections.Counter((t["weights"], t["seed"]) for t in tags if t["kind"] == kind)
        assert dec == {(w, s): 1 for w in ("clean", "scrambled") for s in range(P.dec_seeds)}
        assert {s.tasks[0][1].split_by for s in specs if dict(s.tags)["kind"] == kind} == {split_by}
    for spec, t in zip(specs, tags):
        if t["kind"] != "twin":
            continue
        compiled = grid.twin_task(t["program"]).compile()
        cfg = spec.model
        # the compiled architecture, only wider or narrower
        assert (cfg.n_layers, cfg.n_heads, cfg.norm, cfg.causal, cfg.use_bias, cfg.act) == \
            (compiled.n_layers, compiled.cfg.n_heads, "none", False, False, "relu")
        assert cfg.d_model == max(1, round(t["width"] * compiled.d_model))
    # one compiled program per (program, width): seeds share a group
    assert len({s.group_key() for s in specs}) == len(progs) * len(P.widths) + len(fair_progs) + 4


def test_paper_preset_sizes():
    P = PRESETS["paper"]
    assert set(P.library) == set(LIBRARY) and P.n_fountain >= 30
    assert P.widths == (0.5, 1.0, 2.0) and P.seeds >= 3 and P.dec_seeds >= 3


def test_fountain_twins_are_held_out_from_the_decompiler():
    train = grid.decompile_task(SHRUNK, scrambled=False)
    held, seen = train.programs("eval"), train.programs("train")
    assert held and not {e["id"] for e in held} & {e["id"] for e in seen}
    assert not {tuple(e["tokens"]) for e in held} & {tuple(e["tokens"]) for e in seen}
    scrambled = grid.decompile_task(SHRUNK, scrambled=True)
    assert [e["tokens"] for e in scrambled.programs("eval")] == [e["tokens"] for e in held]
    names = grid.fountain_programs(SHRUNK)
    assert len(names) == SHRUNK.n_fountain
    held_tokens = {tuple(e["tokens"]) for e in held}
    for name in names:
        # the twin task's program is the held-out program itself
        assert tuple(program_tokens(resolve_program(name)[0])) in held_tokens
        task = grid.twin_task(name)
        y = np.concatenate([task.table(s)[1] for s in ("train", "eval")])
        assert len(np.unique(y, axis=0)) > 1   # the output depends on the input


@pytest.fixture(scope="module")
def reverse():
    task = grid.twin_task("reverse")
    compiled = task.compile()
    inputs = measure.inputs(task, 128)
    return task, compiled, inputs, collect(compiled.model, inputs, positions="non_bos")


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
    rows = measure.compare_layers(ref, collect(scramble(compiled.model, 3), inputs, positions="non_bos"), L)
    pooled, per_position = _by(rows), _by(rows, pooled=False)
    n_layers = len(default_layers(compiled.model))
    assert len(pooled["cka"]) == n_layers and len(per_position["cka"]) == n_layers * L
    for metric in ("cka", "debiased_cka", "affine_r2_to_ref", "affine_r2_from_ref"):
        np.testing.assert_allclose(pooled[metric], 1.0, atol=1e-6, err_msg=metric)
    assert max(pooled["procrustes"]) < 1e-4
    np.testing.assert_allclose(per_position["cka"], 1.0, atol=1e-6)
    assert max(per_position["procrustes"]) < 1e-4
    assert [r["final"] for r in rows if r["metric"] == "cka" and r["position"] == "all"] == \
        [0] * (n_layers - 1) + [1]


def test_partialled_measures_drop_the_embedding_and_keep_a_scramble_identical(reverse):
    from toymodels.analysis.activations import input_features

    _, compiled, inputs, ref = reverse
    Z = input_features(inputs, compiled.cfg.vocab_size, positions="non_bos")
    rows = measure.compare_layers(ref, collect(scramble(compiled.model, 1), inputs, positions="non_bos"),
                                  inputs.shape[1] - 1, positions=False, partial=Z)
    partial = {r["layer_label"]: r["value"] for r in rows if r["metric"] == "cka_partial"}
    # the compiled embedding is token + position, and reverse's first block computes the length
    # (constant) and the mirrored position: nothing is left to compare there
    from toymodels.analysis.similarity import partial_out
    left = [measure.layer_label(n, True) for n in ref if partial_out(ref[n], Z).any()]
    assert "embed" not in partial and list(partial) == left == ["1.attn", "1.mlp"]
    np.testing.assert_allclose(list(partial.values()), 1.0, atol=1e-6)


def test_nulls_run_on_the_comparisons_inputs(reverse, tmp_path):
    from toymodels.analysis.activations import input_features

    task, compiled, inputs, ref = reverse
    P = dataclasses.replace(PRESETS["smoke"], seeds=2)
    got = list(measure.null_activations(P, tmp_path, "reverse", inputs,
                                        input_features(inputs, compiled.cfg.vocab_size, positions="non_bos"),
                                        ref, 1.0, None, []))
    assert [(c, s) for c, s, _ in got] == [("compiled_vs_random_init", 0), ("compiled_vs_random_init", 1),
                                           ("compiled_vs_input_only", 0)]
    for _, _, acts in got:
        assert list(acts) == list(ref) and all(acts[n].shape[0] == ref[n].shape[0] for n in ref)
    # the untrained twin is the twin's architecture, not a trained twin's initial weights
    assert got[0][2]["blocks.0.resid_pre"].shape[1] == grid.twin_model("reverse", 1.0).d_model
    assert not np.allclose(got[0][2]["blocks.0.resid_post"], got[1][2]["blocks.0.resid_post"])


def test_random_twin_scores_lower_and_mlp_gap_is_reported(reverse):
    _, compiled, inputs, ref = reverse
    # a random net of the compiled shape, drawn in numpy (no per-op compiles)
    rng = np.random.default_rng(0)
    params = {k: rng.normal(0, 0.3, w.shape) for k, w in model_params(compiled.model).items()}
    random = build_model(compiled.cfg, params)
    rows = measure.compare_layers(ref, collect(random, inputs, positions="non_bos"), inputs.shape[1] - 1,
                                  mlp=True, mlp_steps=30, positions=False)
    pooled = _by(rows)
    assert max(pooled["cka"][1:]) < 0.95 and min(pooled["procrustes"]) > 0.1
    gap = [r["value"] - a for r, a in zip((r for r in rows if r["metric"] == "mlp_r2_to_ref"),
                                          pooled["affine_r2_to_ref"])]
    np.testing.assert_allclose(pooled["mlp_minus_affine"], gap)
    assert all(r["position"] == "all" for r in rows)


def test_constant_position_drops_procrustes_keeps_nothing_undefined():
    # position 1 of X is constant: Procrustes (and CKA) are undefined there and dropped
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8 * 2, 3))
    X[0::2] = 1.0
    acts = {"blocks.0.resid_pre": X}
    rows = measure.compare_layers({"blocks.0.resid_pre": rng.normal(size=(16, 3))}, acts, 2, positions=True)
    per_position = [(r["position"], r["metric"]) for r in rows if r["position"] != "all"]
    assert (2, "procrustes") in per_position and (1, "procrustes") not in per_position
    assert all(np.isfinite(r["value"]) for r in rows)


@pytest.mark.parametrize("program", ["reverse", "frac_prevs"])
def test_compiled_net_is_fully_accurate(program):
    task = grid.twin_task(program)
    acc = measure.heldout_accuracy(task.compile().model, task)
    assert acc == dict(acc=1.0, exact=1.0, matched=1.0, train_acc=1.0)


def test_heldout_ceiling_counts_classes_never_trained():
    # count's table: its one held-out all-equal row has count 5, which no training row has
    count = grid.twin_task("count")
    y_tr, y_ev = count.table("train")[1], count.table("eval")[1]
    unseen = ~np.isin(y_ev, np.unique(y_tr))
    assert unseen.any() and measure.heldout_ceiling(count) == pytest.approx(1 - unseen.mean())
    assert measure.heldout_ceiling(grid.twin_task("reverse")) == 1.0
    assert measure.heldout_ceiling(grid.twin_task("frac_prevs")) == 1.0      # numerical
    rows = [dict(program="count", source="compiled", width=1.0, seed=0, metric="acc", value=1.0)] + [
        dict(program="count", source="trained", width=1.0, seed=s, metric="acc", value=v)
        for s, v in enumerate((1 - unseen.mean(), 0.9))]
    out = tables.with_ceiling(rows)
    assert [r["value"] for r in out if r["metric"] == "reached"] == [1.0, 0.0]
    assert [r["value"] for r in out if r["source"] == "ceiling"] == [measure.heldout_ceiling(count)]


# ------------------------------------------------------------------ summary tables, on rows written by hand
def test_variable_summary_reads_birth_final_and_best_layer():
    base = dict(family="library", program="p", width=1.0, seed=0, sop="x", sop_kind="mlp")
    rows = [dict(base, layer_index=i, final=int(i == 3), metric="r2_to_sop", value=v)
            for i, v in ((1, 0.5), (2, 0.9), (3, 0.7))]
    rows.append(dict(base, layer_index=3, final=1, metric="r2_from_sop", value=0.25))
    got = {r["quantity"]: r for r in tables.variable_summary(rows)}
    assert {q: r["value"] for q, r in got.items()} == dict(
        r2_to_sop_birth=0.5, r2_to_sop_max=0.9, r2_to_sop_final=0.7, r2_from_sop_final=0.25)
    assert all(r["birth_layer"] == 1 for r in got.values())


def test_decompiler_by_size_is_the_per_seed_fraction_right():
    rows = []
    for seed, right in ((0, (1, 0, 1)), (1, (1, 1, 0))):
        for program, (n_lines, ok) in enumerate(zip((2, 2, 5), right)):
            rows.append(dict(train_weights="clean", test_weights="clean", seed=seed, program=program,
                             n_lines=n_lines, n_ops=n_lines, metric="exact", value=float(ok)))
    table = {r["n_lines"]: r for r in tables.decompiler_by_size(rows)}
    assert table[2]["mean"] == pytest.approx(0.75) and table[2]["programs"] == 2
    assert table[5]["mean"] == pytest.approx(0.5) and table[5]["programs"] == 1
    assert table["all"]["mean"] == pytest.approx(2 / 3) and table["all"]["programs"] == 3
    assert all(r["n"] == 2 for r in table.values())
    # per-seed fractions at size 5: 1 and 0, the widest spread two seeds can have; the
    # interval stays inside [0, 1] (a t-interval would be [-5.9, 6.9])
    assert table[2]["values"] == "0.5 1" and table[5]["values"] == "1 0"
    assert 0 < table[5]["lo"] < 1e-6 and 1 - 1e-6 < table[5]["hi"] < 1
    lo, hi = bounded_ci(0.75, np.std([0.5, 1.0], ddof=1), 2, (0.0, 1.0))
    assert (table[2]["lo"], table[2]["hi"]) == pytest.approx((lo, hi)) and 0 < lo < 0.75 < hi < 1


def test_fair_tables_average_within_seed_then_bootstrap_over_programs():
    rows = []
    for seed, exact in ((0, (1, 0, 0, 1)), (1, (1, 1, 0, 1))):
        for program, x in enumerate(exact):
            rows.append(dict(method="decompiler", candidates=1, weights="clean", seed=seed, program=program,
                             size=2 + program % 2,
                             degenerate=int(program == 3), exact=float(x), equivalent=float(x), parsable=1.0,
                             agreed=float(x)))
    tables = fair_mod.fair_tables(rows)
    per_seed = {(r["size"], r["degenerate"], r["seed"]): r for r in tables["decompiler_fair"]}
    assert per_seed[("all", "all", 0)]["exact"] == 0.5 and per_seed[("all", "all", 1)]["exact"] == 0.75
    assert per_seed[("all", 0, 1)]["exact"] == pytest.approx(2 / 3) and per_seed[("all", 0, 1)]["n_programs"] == 3
    assert per_seed[(3, "all", 0)]["exact"] == 0.5 and per_seed[(3, 1, 0)]["n_programs"] == 1
    (s,) = [r for r in tables["decompiler_fair_summary"]
            if (r["size"], r["degenerate"], r["metric"]) == ("all", "all", "exact")]
    # per program: 1, 0.5, 0, 1 (mean over seeds), so 0.625 over 4 programs, 2 seeds
    assert s["mean"] == 0.625 and (s["n"], s["seeds"]) == (4, 2) and s["values"] == "0.5 0.75"
    assert 0.0 <= s["lo"] < s["mean"] < s["hi"] <= 1.0
    assert tables["decompiler_fair_paired"] == []   # no beam rows: nothing to pair


def test_paired_differences_match_programs_across_methods():
    rows = []
    # beam+check better on program 0, worse on 1, equal on 2; program 3 degenerate
    for method, scores in (("decompiler+check", (0, 1, 1, 0)), ("beam+check", (1, 0, 1, 1))):
        for seed in (0, 1):
            for program, x in enumerate(scores):
                rows.append(dict(method=method, weights="clean", seed=seed, program=program, size=2,
                                 degenerate=int(program == 3), exact=float(x), equivalent=float(x)))
    got = {(r["degenerate"], r["metric"]): r for r in fair_mod.paired(rows)}
    non = got[(0, "equivalent")]
    assert (non["difference"], non["n"], non["better"], non["worse"]) == (0.0, 3, 1, 1)
    assert non["lo"] < 0 < non["hi"]
    every = got[("all", "exact")]
    assert (every["difference"], every["n"], every["better"], every["worse"]) == (0.25, 4, 2, 1)
    assert {(r["method"], r["against"], r["weights"]) for r in got.values()} == {("beam+check", "decompiler+check",
                                                                                   "clean")}


def test_interchange_rows_score_learned_and_random_subspaces_of_each_variable(tmp_path):
    from studies.compiled_vs_trained import interchange
    from toymodels.sweep import run_sweep

    P = dataclasses.replace(SHRUNK, library=("hist",), n_fountain=0, steps=200, iia_pairs=64, iia_test_pairs=32,
                            iia_steps=20)
    runs = [s for s in grid.twin_specs(P) if dict(s.tags)["program"] == "hist"]
    run_sweep(runs, tmp_path, progress=False)
    rows = interchange.analyse_interchange(P, tmp_path, "hist", runs)
    scored = [r for r in rows if r["method"]]
    assert {r["variable"] for r in scored} >= {"hist.attn", "hist"}
    assert {(r["net"], r["method"], r["seed"]) for r in scored if r["variable"] == "hist"} == \
        {("twin", m, s) for m in interchange.METHODS for s in range(P.seeds)} | \
        {("scrambled_compiled", m, 0) for m in interchange.METHODS}
    for r in scored:
        assert 0 <= r["iia_changed"] <= 1 and 0 <= r["floor"] < 1 and r["n_changed"] > 0
        # iia mixes changed positions (iia_changed) with unchanged ones the floor counts as right
        assert r["iia"] <= r["floor"] + (1 - r["floor"]) * r["iia_changed"] + 1e-9
    rows = interchange.with_roles(rows)
    roles = {r["variable"]: r["role"] for r in rows}
    assert (roles["hist.attn"], roles["hist"], roles.get("tokens", "input")) == ("intermediate", "output", "input")
    pooled = interchange.interchange_pooled(rows)
    assert {(r["net"], r["method"], r["role"]) for r in pooled if r["role"] == "intermediate"} == \
        {(n, m, "intermediate") for n in ("twin", "scrambled_compiled") for m in interchange.METHODS}
    summary = interchange.interchange_summary(rows)
    assert {(r["net"], r["n"]) for r in summary} == {("twin", P.seeds), ("scrambled_compiled", 1)}
    assert all(0 <= r["lo"] <= r["mean"] <= r["hi"] <= 1 for r in summary)
    paths = interchange.interchange_figure(rows, tmp_path / "interchange")
    assert all(p.stat().st_size > 5000 for p in paths)


def test_decompiler_on_twins_leaves_out_programs_seen_in_training():
    probes = [dict(program=p, source="trained", width=1.0, twin_seed=s, seen_in_training=int(p == "seen"),
                   applicable=int(s == 0)) for p in ("a", "b", "seen") for s in (0, 1)]
    rows = [dict(probe, train_weights="clean", seed=dec, metric="equivalent", value=v)
            for probe in probes if probe["applicable"] for dec, v in ((0, 1.0), (1, 0.0))]
    rows = [dict(r, value=1.0) if r["program"] == "b" else r for r in rows]   # b: right for both decompilers
    (r,) = tables.decompiler_on_twins(rows, probes)
    # seed 0: a and b right -> 1; seed 1: only b -> 1/2; "seen" (right for seed 0) is not averaged
    assert r["mean"] == pytest.approx(0.75) and r["n"] == 2
    assert (r["applicable"], r["nets"]) == (2, 4)
    assert 0 <= r["lo"] < r["mean"] < r["hi"] <= 1
    lo, hi = bounded_ci(0.75, np.std([1.0, 0.5], ddof=1), 2, (0.0, 1.0))
    assert (r["lo"], r["hi"]) == pytest.approx((lo, hi))


def test_a_cka_on_1_up_to_float_error_keeps_a_point_interval():
    # the CKA of a net and its two scrambles: 1 up to float error, on both sides of 1
    rows = [dict(metric="cka", seed=s, value=v) for s, v in ((0, 1.0000000000000009), (1, 0.9999999999999981))]
    (r,) = aggregate(rows, ("metric",), bounds=tables.by_metric)
    assert r["lo"] > 0.999 and r["hi"] <= 1.0


def _acc_rows():
    """Two programs x two seeds of a twin, plus each compiled net."""
    rows = []
    for program, accs in (("p", (1.0, 0.8)), ("q", (0.9, 0.9))):
        rows.append(dict(family="library", program=program, source="compiled", width=1.0, seed=0, metric="acc",
                         value=1.0))
        rows += [dict(family="library", program=program, source="trained", width=1.0, seed=s, metric="acc",
                      value=v) for s, v in enumerate(accs)]
    return rows


def _layer_rows():
    """compiled_vs_trained at the final layer: cka and the MLP-minus-affine gap, two programs x two seeds."""
    rows = []
    for program, seed, cka, affine, mlp in (("p", 0, 0.9, 0.5, 0.8), ("p", 1, 0.7, 0.6, 0.7),
                                            ("q", 0, 0.5, 0.9, 0.95), ("q", 1, 0.3, 0.2, 0.1)):
        base = dict(comparison="compiled_vs_trained", family="library", program=program, width=1.0, layer_index=2,
                    layer_label="0.mlp", final=1, seed=seed)
        rows += [dict(base, metric="cka", value=cka), dict(base, metric="mlp_minus_affine", value=mlp - affine)]
    return rows


def test_summary_rows_pool_programs_within_a_seed_and_copy_the_decompiler_rows():
    acc = _acc_rows()
    by_size = [dict(train_weights="clean", test_weights="clean", n_lines="all", metric=m, mean=0.4, lo=0.1, hi=0.8,
                    n=3, programs=9) for m in ("exact", "equivalent")]
    rows = tables.summary_rows(acc, _layer_rows(), [], by_size, [])
    got = {(r["section"], r["quantity"]): r for r in rows}
    twin = got[("twin held-out accuracy", "family=library width=1.0 metric=acc")]
    # seed 0: (1.0 + 0.9) / 2, seed 1: (0.8 + 0.9) / 2
    assert twin["mean"] == pytest.approx(0.9) and twin["n"] == 2
    assert 0 <= twin["lo"] < 0.9 < twin["hi"] <= 1      # an accuracy interval stays in [0, 1]
    cka = got[("final layer", "comparison=compiled_vs_trained width=1.0 metric=cka")]
    assert cka["mean"] == pytest.approx(0.6) and 0 <= cka["lo"] and cka["hi"] <= 1
    gap = got[("final layer", "comparison=compiled_vs_trained width=1.0 metric=mlp_minus_affine")]
    # the gap by hand: seed 0 (0.3 + 0.05) / 2, seed 1 (0.1 - 0.1) / 2; unbounded: a plain t-interval
    assert gap["mean"] == pytest.approx(0.0875)
    half = 12.706204736174707 * np.std([0.175, 0.0], ddof=1) / math.sqrt(2)
    assert (gap["lo"], gap["hi"]) == pytest.approx((0.0875 - half, 0.0875 + half))
    anchors = [r for r in rows if r["section"] == "anchor"]
    assert len(anchors) == 3 and all((r["mean"], r["lo"], r["hi"]) == (0.4, 0.1, 0.8) for r in anchors)
    # only p has an other-program null: the paired section compares on p alone
    null = [dict(r, comparison="compiled_vs_other_program", value=0.2) for r in _layer_rows()
            if r["program"] == "p" and r["metric"] == "cka"]
    got = {(r["section"], r["quantity"]): r for r in tables.summary_rows(acc, _layer_rows() + null, [], by_size, [])}
    section = "final layer, programs with an other-program null"
    assert got[(section, "comparison=compiled_vs_trained width=1.0 metric=cka")]["mean"] == pytest.approx(0.8)
    assert got[(section, "comparison=compiled_vs_other_program width=1.0 metric=cka")]["mean"] == pytest.approx(0.2)
    assert got[("final layer", "comparison=compiled_vs_trained width=1.0 metric=cka")]["mean"] == pytest.approx(0.6)


def test_summary_bounds_follow_the_quantity_summarised():
    def bounds(section, quantity):
        return tables.summary_bounds(dict(section=section, quantity=quantity))
    assert bounds("final layer", "comparison=compiled_vs_trained width=1.0 metric=cka") == (0.0, 1.0)
    assert bounds("final layer", "comparison=compiled_vs_trained width=1.0 metric=mlp_minus_affine") is None
    assert bounds("final layer", "comparison=trained_vs_trained width=1.0 metric=procrustes") == (0, math.sqrt(2))
    assert bounds("RASP variables", "sop_kind=mlp width=1.0 quantity=r2_to_sop_final") == (-math.inf, 1.0)
    assert bounds("anchor", "TraDe functionally equivalent: 73% (Thurnherr & Riesen 2024)") == (0.0, 1.0)


# ------------------------------------------------------------------ end to end
def test_smoke_path_end_to_end(tmp_path):
    paths = run_study(cvt, "smoke", tmp_path, progress=False, presets={"smoke": SHRUNK})
    # 15 figures (PNG, and PDF unless TOYMODELS_FIGURE_PDF=0 as in the suite)
    assert len({p.with_suffix("") for p in paths}) == 15 and all(p.stat().st_size > 5000 for p in paths)
    table_dir = tmp_path / "figures"
    acc = read_rows(table_dir / "twin_accuracy.csv")
    trained = [r for r in acc if r["source"] == "trained" and r["metric"] == "acc"]
    assert len(trained) == 2 and trained[0]["n"] == 2 and 0 <= trained[0]["lo"] <= trained[0]["hi"] <= 1
    layers = read_rows(table_dir / "layers.csv")
    assert {r["comparison"] for r in layers} == {"compiled_vs_trained", "trained_vs_trained",
                                                 "compiled_vs_scrambled", *measure.NULLS}
    (a, b) = [p for _, p in grid.programs(SHRUNK)]
    assert {(r["program"], r["partner"]) for r in layers if r["comparison"] == "compiled_vs_other_program"} == \
        {(a, b), (b, a)}
    # every null is there for every program (partialled rows are tested on reverse: a net that
    # token and position explain at every layer, as small fountain programs can be, has none)
    for program in (a, b):
        got = {(r["comparison"], r["metric"]) for r in layers if r["program"] == program}
        assert {(c, m) for c in measure.NULLS for m in ("cka", "affine_r2_to_ref")} <= got
    for r in layers:
        if r["comparison"] == "compiled_vs_scrambled" and r["metric"] == "cka":
            assert r["mean"] == pytest.approx(1.0, abs=1e-6)
    summary = read_rows(table_dir / "summary.csv")
    assert {r["section"] for r in summary} >= {"twin held-out accuracy", "final layer", "RASP variables",
                                               "decompiler, held-out programs", "decompiler on fountain nets",
                                               "anchor"}
    assert all(r["lo"] <= r["mean"] + 1e-12 and r["mean"] <= r["hi"] + 1e-12 for r in summary)
    fair = read_rows(table_dir / "decompiler_fair.csv")
    assert {(r["method"], r["weights"]) for r in fair} == {(m, w) for m in fair_mod.METHODS
                                                           for w in ("clean", "scrambled")}
    assert {(r["method"], r["candidates"]) for r in fair} == set(fair_mod.candidates(SHRUNK).items())
    wider = read_rows(table_dir / "decompiler_fair_paired.csv")   # what the wider beam buys, per weights
    assert {(r["method"], r["weights"]) for r in wider if r["against"] == "beam+check"} == {
        ("wide beam+check", w) for w in ("clean", "scrambled")}
    assert {r["seed"] for r in fair if r["method"].startswith(("decompiler", "beam"))} == {0, 1}
    assert {r["seed"] for r in fair if r["method"].startswith("retrieval")} == {0}
    pooled = [r for r in fair if r["size"] == "all" and r["degenerate"] == "all"]
    assert {r["n_programs"] for r in pooled} == {SHRUNK.fair_eval}
    # the fair decompilers on the twins of fair held-out programs, against the check alone
    fair_twins = read_rows(table_dir / "decompiler_fair_twins.csv")
    assert {(r["source"], r["method"]) for r in fair_twins} == {(s, m) for s in fair_twins_mod.SOURCES
                                                                for m in fair_twins_mod.METHODS}
    assert {r["n"] for r in fair_twins} == {SHRUNK.fair_twins}
    entered = read_rows(table_dir / "decompiler_fair_twins_programs.csv")   # chosen so that every net is read
    assert [r["program"] for r in entered] == list(grid.fair_twin_programs(SHRUNK))
    assert all(r["entered"] and 0 <= r["twins_match"] <= 1 for r in entered)
    assert all(0 <= r["lo"] <= r["mean"] + 1e-12 <= r["hi"] + 2e-12 <= 1 + 2e-12 for r in fair_twins)
    probes = read_rows(next((tmp_path / "analyses" / measure.DECOMPILER_ANALYSIS).glob("*.probes.csv")))
    assert probes and not any(p["seen_in_training"] for p in probes)
    # an analysis is reused when its runs and settings are unchanged, and only then
    done = sorted((tmp_path / "analyses").rglob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in done]
    cvt.run(SHRUNK, tmp_path, progress=False)
    assert [p.stat().st_mtime_ns for p in done] == stamps
    # a folder where only part "fair" ran gets the fair tables and figure alone
    fair_out = tmp_path / "fair_only"
    shutil.copytree(tmp_path / "analyses" / measure.FAIR_ANALYSIS, fair_out / "analyses" / measure.FAIR_ANALYSIS)
    cvt.summarize(fair_out, fair_out / "figures")
    assert sorted(p.name for p in (fair_out / "figures").iterdir()) == [
        "decompiler_fair.csv", "decompiler_fair_dataset.csv", "decompiler_fair_paired.csv",
        "decompiler_fair_summary.csv"]
    assert [p.stem for p in cvt.figures(fair_out / "figures")] == ["decompiler_fair"]
    # figures are drawn from the tables alone: delete the raw results and redraw
    shutil.rmtree(tmp_path / "runs")
    assert run_study(cvt, "smoke", tmp_path, figures_only=True, presets={"smoke": SHRUNK}) == paths


def test_a_wide_beam_no_wider_than_the_beam_methods_is_refused():
    from toymodels.config import ConfigError
    with pytest.raises(ConfigError, match="fair_wide_beam=3: must be 0 .* wider than the 3 beams"):
        dataclasses.replace(SHRUNK, fair_wide_beam=3)
    assert "wide beam" not in fair_mod.candidates(dataclasses.replace(SHRUNK, fair_wide_beam=0))


def test_parts_split_the_runs_and_each_is_the_full_presets():
    P = PRESETS["smoke"]   # the paper preset's decompile datasets take ~25 s to build; the split is the same code
    full = {s.run_id: s for s in grid.specs(P)}
    main, fair = (grid.specs(cvt.part(P, name)) for name in ("main", "fair"))
    assert {dict(s.tags)["kind"] for s in fair} == {"decompiler_fair", "twin"}
    assert {dict(s.tags)["program"] for s in fair if dict(s.tags)["kind"] == "twin"} == set(grid.fair_twin_programs(P))
    assert "decompiler_fair" not in {dict(s.tags)["kind"] for s in main}
    # a twin both parts need (a fair program that is also a main one) is one run, in each part
    assert {s.run_id for s in main + fair} == set(full) and all(full[s.run_id] == s for s in main + fair)
    with pytest.raises(ValueError, match="part='twins'"):
        cvt.part(P, "twins")


def test_fair_twins_table_averages_each_program_over_seeds_first():
    rows = [dict(source="trained", train_weights="clean", method="beam+check", program=p, dec_seed=d, twin_seed=t,
                 exact=e, equivalent=q, parsable=1.0, agreed=q)
            for p, d, t, e, q in (("a", 0, 0, 1.0, 1.0), ("a", 0, 1, 0.0, 1.0), ("a", 1, 0, 0.0, 0.0),
                                  ("a", 1, 1, 0.0, 0.0), ("b", 0, 0, 0.0, 1.0))]
    got = {r["metric"]: r for r in fair_twins_mod.twins_table(rows)}
    # program a: exact 1/4, equivalent 2/4; program b: 0 and 1 -> means over the 2 programs
    assert got["exact"]["mean"] == pytest.approx(0.125) and got["equivalent"]["mean"] == pytest.approx(0.75)
    assert got["exact"]["n"] == 2 and got["exact"]["lo"] <= 0.125 <= got["exact"]["hi"]
    assert got["equivalent"]["values"] == "0.5 1"
