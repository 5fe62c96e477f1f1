"""The myopia study: its grid and learning-rate tuning, its summary tables on hand-made rows,
its validation split, and its cached analyses.

The smoke path end to end runs in tests/studies/test_common.py (SHRINK entry).
"""

import dataclasses
import math

import jax
import numpy as np
import pytest

import studies.myopia as study
from studies.myopia import wu_band
from studies.myopia.grid import grid_specs, points, reference, run_id, specs, start_grid
from studies.myopia.measure import choose, eval_batch, widen, wu_probes
from studies.myopia.presets import BASE_LR, FAMILIES, LR_STEP, PRESETS, VAL_SEED
from toymodels.config import ConfigError
from studies.myopia.tables import (anchors, band_rows, diagnostics_table, final_table, gap_rows, gap_table,
                                   positions_table, probes_table)
from toymodels.sweep import run_sweep

POINT = dict(n_layers=1, d_model=16, params=1000, p=-1, fillers=-1, length=6)
ONES = {(f, arm): 1.0 for f in FAMILIES for arm in ("vanilla", "myopic")}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_grid_is_well_formed(preset):
    P = PRESETS[preset]
    grid = grid_specs(P, start_grid(P))
    chosen = {**ONES, ("text", "myopic"): 3.0, ("pairs", "vanilla"): 0.3333}
    rest = specs(P, chosen)
    by_id = {s.run_id: s for s in grid}
    for s in rest:   # a run both lists have (the myopic arm at vanilla's rate, in its grid) is one run
        assert by_id.setdefault(s.run_id, s) == s
    assert len(by_id) < len(grid) + len(rest) and len(rest) == len({s.run_id for s in rest})
    arms = ("vanilla", "myopic")
    assert len(grid) == sum(len(P.start_factors(f, arm)) for f in FAMILIES for arm in arms) * P.lr_seeds
    for s in rest:
        tags = dict(s.tags)
        fam, arm = tags["family"], tags["arm"]
        factor = chosen[(fam, "myopic" if arm == "myopic" else "vanilla")]
        if arm == "local":   # a fine-tune of its own seed's vanilla run (at vanilla's rate), reading it as teacher
            parent = by_id[s.init_from]
            assert s.teacher == s.init_from and dict(parent.tags)["arm"] == "vanilla"
            assert parent.train.seed == s.train.seed and parent.model == s.model
            assert dict(parent.tags)["lr_factor"] == factor
            assert s.train.steps == max(1, int(parent.train.steps * P.local_frac))
        elif arm == "myopic" and tags["lr_factor"] != factor:   # the reference's myopic arm at vanilla's rate
            assert tags["reference"] and tags["lr_factor"] == chosen[(fam, "vanilla")]
        else:
            assert s.train.lr == pytest.approx(BASE_LR[fam] * factor) and tags["lr_factor"] == factor
        assert (arm == "band") == (s.train.myopic_band > 0)
    for fam in FAMILIES:   # each family's reference has both tuned arms at every seed
        ref = reference(P, fam)
        assert run_id(fam, ref.point, "myopic", 1.0, P.lr_seeds - 1) in by_id
        van = chosen[(fam, "vanilla")]   # and the myopic arm at vanilla's rate, for the gap at one rate
        assert all(run_id(fam, ref.point, "myopic", van, seed) in by_id for seed in range(P.lr_seeds))
    for fam, ks in P.bands:
        ref = reference(P, fam).point
        assert all(run_id(fam, ref, f"band{k}", chosen[(fam, "vanilla")], P.seeds - 1) in by_id for k in ks)


def test_paper_preset_budget_and_shared_program():
    paper, smoke = PRESETS["paper"], PRESETS["smoke"]
    assert paper.lr_seeds >= 5 and paper.mult_seeds >= 5 and len(paper.text_sizes) >= 4
    params = [dict(s.tags)["params"] for s in specs(paper, ONES) if dict(s.tags)["family"] == "text"]
    assert max(params) >= 10 * min(params)
    by_id = {s.run_id: s for s in grid_specs(smoke, {("wu", "vanilla"): (1.0,), ("wu", "myopic"): (1.0,)})}
    ref = reference(smoke, "wu").point
    van, myo = by_id[f"wu-{ref}-vanilla-lr1-s0"].train, by_id[f"wu-{ref}-myopic-lr1-s0"].train
    assert van.myopic and van.myopic_beta == 1.0 and myo.myopic and myo.myopic_beta == 0.0   # one program


def test_paper_grids_start_per_arm_and_its_long_parts_are_opt_in(tmp_path):
    paper = PRESETS["paper"]
    for fam in FAMILIES:   # each arm's own three rates, a factor LR_STEP apart
        for arm in ("vanilla", "myopic"):
            f = paper.start_factors(fam, arm)
            assert len(f) == 3 and all(b / a == pytest.approx(LR_STEP, rel=1e-3) for a, b in zip(f, f[1:]))
    assert paper.opt_in == ("convergence", "wu_band") and paper.convergence and paper.wu_band
    assert study.part(paper, "convergence").opt_in == () and study.part(paper, "wu_band").opt_in == ()
    # opt-in parts alone: nothing is trained unless asked for by name
    idle = dataclasses.replace(study.part(PRESETS["smoke"], "convergence"), opt_in=("convergence",))
    study.run(idle, tmp_path, progress=False)
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ConfigError, match="lr_start entry"):
        dataclasses.replace(paper, lr_start=(("wu", "vanilla", (1.0, 3.0)),))
    with pytest.raises(ConfigError, match="opt_in"):
        dataclasses.replace(paper, opt_in=("main",))


def _val(task, arm, factor, seed, loss):
    return dict(task=task, point="A", arm=arm, lr=BASE_LR[task] * factor, lr_factor=factor, seed=seed, val_loss=loss)


def test_choose_and_widen_until_the_best_rate_is_inside():
    val = [_val("text", "vanilla", f, s, 3.0 - f / 10 + s / 100) for f in (0.3333, 1.0, 3.0) for s in (0, 1)]
    val += [_val("text", "myopic", f, s, abs(f - 1.0) + s / 100) for f in (0.3333, 1.0, 3.0) for s in (0, 1)]
    choice = {c["arm"]: c for c in choose(val)}
    assert choice["vanilla"]["lr_factor"] == 3.0 and choice["vanilla"]["edge"] == "high"
    assert choice["myopic"]["lr_factor"] == 1.0 and choice["myopic"]["edge"] == ""
    assert choice["myopic"]["n"] == 2 and choice["myopic"]["lr"] == pytest.approx(BASE_LR["text"])
    start = {("text", arm): (0.3333, 1.0, 3.0) for arm in ("vanilla", "myopic")}
    wider = widen(start, list(choice.values()), start, max_widen=1)   # vanilla's grid only
    assert wider == {("text", "vanilla"): (0.3333, 1.0, 3.0, 9.0), ("text", "myopic"): (0.3333, 1.0, 3.0)}
    assert widen(wider, [dict(choice["vanilla"], lr_factor=9.0)], start, max_widen=1) == wider   # the limit
    assert widen(start, [choice["myopic"]], start, max_widen=3) == start     # inside: done
    low = dict(choice["myopic"], lr_factor=0.3333, edge="low")   # each arm from its own starting grid
    own = {("text", "vanilla"): (1.0, 3.0, 9.0), ("text", "myopic"): (0.3333, 1.0, 3.0)}
    assert widen(own, [low], own, max_widen=1)[("text", "myopic")] == (0.1111, 0.3333, 1.0, 3.0)
    assert widen(own, [low], own, max_widen=1)[("text", "vanilla")] == (1.0, 3.0, 9.0)


def _final(arm, seed, value, metric="loss", lr_factor=1.0, family="pairs", point="A", **kw):
    return {"family": family, "point": point, **POINT, "arm": arm, "beta": -1, "band": -1, "lr_factor": lr_factor,
            "seed": seed, "metric": metric, "value": value, "step": 100, "task": family, **kw}


def test_gap_rows_by_hand():
    chosen = {("pairs", "vanilla"): 1.0, ("pairs", "myopic"): 3.0}
    finals = [_final("vanilla", 0, 1.0), _final("vanilla", 1, 1.2), _final("bigram", 0, 2.0), _final("bigram", 1, 2.2),
              _final("local", 0, 0.9),
              _final("myopic", 0, 1.5), _final("myopic", 1, 1.6),                                  # at vanilla's rate
              _final("myopic", 0, 1.4, lr_factor=3.0), _final("myopic", 1, 1.45, lr_factor=3.0),  # its own
              _final("vanilla", 0, 0.7, lr_factor=3.0),     # not vanilla's chosen rate: unused
              _final("vanilla", 0, 0.5, point="B"),         # B has no myopic run: no gap, nothing averaged
              _final("vanilla", 0, 0.3, metric="acc")]
    got = {(r["point"], r["seed"], r["quantity"]): r["value"] for r in gap_rows(finals, chosen)}
    assert got[("A", 0, "gap")] == pytest.approx(0.4) and got[("A", 1, "gap")] == pytest.approx(0.25)
    assert got[("A", 0, "gap_at_vanilla_lr")] == pytest.approx(0.5)
    assert got[("A", 0, "exp_gap")] == pytest.approx(math.exp(0.4))
    assert got[("A", 0, "gap_share")] == pytest.approx(0.4 / 1.0)
    assert got[("A", 0, "local_bonus")] == pytest.approx(0.1) and ("A", 1, "local_bonus") not in got
    assert not any(k[0] == "B" for k in got)
    table = {r["quantity"]: r for r in gap_table(finals, chosen)}
    assert table["gap"]["mean"] == pytest.approx(0.325) and table["gap"]["n"] == 2
    assert table["local_bonus"]["n"] == 1 and table["local_bonus"]["values"] == "0.1"
    # losses and exp(gap) stay >= 0; the gap, a difference, keeps its symmetric t-interval
    assert table["L_vanilla"]["lo"] >= 0 and table["exp_gap"]["lo"] >= 0
    gap = table["gap"]
    assert gap["mean"] - gap["lo"] == pytest.approx(gap["hi"] - gap["mean"])


def test_band_rows_by_hand():
    chosen = {("pairs", "vanilla"): 1.0, ("pairs", "myopic"): 3.0}
    finals = [_final("vanilla", 0, 1.0), _final("myopic", 0, 1.6), _final("myopic", 0, 1.3, lr_factor=3.0),
              _final("band", 0, 1.1, band=2), _final("band", 0, 1.0, band=5),
              # a band run at another rate, with its own vanilla (part "wu_band"): not in the main table
              _final("vanilla", 0, 1.5, lr_factor=0.3333), _final("band", 0, 2.5, band=2, lr_factor=0.3333)]
    got = {(r["k"], r["quantity"]): r["value"] for r in band_rows(finals, chosen)}
    assert got[(0, "gap")] == pytest.approx(0.6)      # myopic at vanilla's rate, not its own
    assert got[(2, "gap")] == pytest.approx(0.1) and got[(5, "gap")] == pytest.approx(0.0)
    assert got[(2, "L_band")] == pytest.approx(1.1) and len(got) == 6


def test_validation_batches_are_disjoint_from_training_data():
    """Each family's validation batch comes from its task's eval split: no row is a training row
    (multiplication and adjacent_pair hold out inputs by hash; text by document)."""
    P = PRESETS["smoke"]
    grid = {dict(s.tags)["family"]: s for s in grid_specs(P, {(f, "vanilla"): (1.0,) for f in FAMILIES})}
    for fam in ("mult", "pairs", "text"):
        spec = grid[fam]
        val, test = eval_batch(spec, VAL_SEED), eval_batch(spec)
        assert not np.array_equal(np.asarray(val.inputs), np.asarray(test.inputs))
        task = spec.tasks[0][1]
        train = task.sample(jax.random.key(0), 4096, "train")
        seen = {tuple(r) for r in np.asarray(train.inputs).tolist()}
        assert not seen & {tuple(r) for r in np.asarray(val.inputs).tolist()}, fam
        if fam == "text":   # every validation window lies in the eval corpus
            held = task.corpus("eval").tobytes()
            assert all(np.asarray(r, np.uint8).tobytes() in held for r in np.asarray(val.inputs)[:16])


def test_final_table_bounds_each_metric():
    finals = [_final("vanilla", 0, 0.9, metric="acc"), _final("vanilla", 1, 0.99, metric="acc"),
              _final("vanilla", 0, 0.05), _final("vanilla", 1, 0.5),
              _final("vanilla", 0, 0.3, metric="offdiag_ratio")]
    table = {r["metric"]: r for r in final_table(finals)}
    assert set(table) == {"acc", "loss"}      # gradient diagnostics have their own table
    acc, loss = table["acc"], table["loss"]
    assert acc["mean"] == pytest.approx(0.945) and 0 < acc["lo"] < acc["mean"] < acc["hi"] < 1
    assert loss["mean"] == pytest.approx(0.275) and 0 <= loss["lo"] < loss["mean"] < loss["hi"]
    assert acc["values"] == "0.9 0.99" and acc["n"] == 2


def test_diagnostics_positions_and_probes_tables():
    chosen = {("pairs", "vanilla"): 1.0, ("pairs", "myopic"): 1.0}
    rows = [_final("vanilla", s, v, metric="offdiag_cos", step=10) for s, v in ((0, 0.9), (1, 0.99), (2, -0.2))]
    rows += [_final("myopic", 0, 0.5, metric="offdiag_cos", step=10),            # not a vanilla run
             _final("vanilla", 0, 0.5, metric="offdiag_cos", step=10, lr_factor=3.0),   # not the chosen lr
             _final("vanilla", 0, 1.0, metric="loss", step=10)]
    (cos,) = diagnostics_table(rows, chosen)
    assert cos["n"] == 3 and cos["mean"] == pytest.approx(1.69 / 3) and -1 <= cos["lo"] and cos["hi"] <= 1
    pos = positions_table([dict(family="wu", point="p1", arm="vanilla", seed=s, position=3, value=v)
                           for s, v in ((0, 0.01), (1, 0.2))])
    assert pos[0]["mean"] == pytest.approx(0.105) and pos[0]["lo"] >= 0
    probes = probes_table([dict(arm="vanilla", seed=s, layer=1, name="blocks.0.resid_post", value=v)
                           for s, v in ((0, 0.99), (1, 0.9), (2, 0.97))])
    assert probes[0]["mean"] == pytest.approx(2.86 / 3) and probes[0]["hi"] <= 1


def test_anchors_at_chosen_rates_and_most_fillers():
    chosen = {("wu", "vanilla"): 1.0, ("wu", "myopic"): 3.0, ("mult", "vanilla"): 1.0, ("mult", "myopic"): 1.0}

    def row(family, point, arm, metric, mean, lr_factor=1.0, **kw):
        return dict(family=family, point=point, arm=arm, lr_factor=lr_factor, metric=metric, mean=mean,
                    lo=mean - 0.01, hi=mean + 0.01, n=3, **{**POINT, **kw})
    final = [row("wu", "p1", "myopic", "loss", 1.3, p=1.0), row("wu", "p1", "myopic", "loss", 1.2, 3.0, p=1.0),
             row("mult", "3x3b4-F0", "vanilla", "exact", 0.5, fillers=0),
             row("mult", "3x3b4-F8", "vanilla", "exact", 0.4, fillers=8)]
    probes = [dict(arm="vanilla", layer=1, name="blocks.0.resid_post", mean=0.97, lo=0.9, hi=0.99, n=3)]
    got = {r["quantity"]: r for r in anchors(final, probes, chosen)}
    assert got["D_1 myopic loss (Huber)"]["ours"] == 1.2                                  # its chosen rate
    assert got["multiplication, most fillers, vanilla exact match"]["ours"] == 0.4      # F = 8
    assert got["D_1 layer-1 probe R^2 of sin(freq x), vanilla"]["ours"] == 0.97
    assert len(got) == 3    # anchors without a row in this preset are left out


def test_probes_are_cached_and_resume(tmp_path):
    P = dataclasses.replace(PRESETS["smoke"], lr_seeds=1, steps=tuple((f, 4) for f in FAMILIES), eval_batch=16,
                            wu_model=(1, 16))
    grid = grid_specs(P, {("wu", "vanilla"): (1.0,), ("wu", "myopic"): (1.0,)})
    run_sweep(grid, tmp_path, progress=False)
    by_id = {s.run_id: s for s in grid}
    rows = wu_probes(P, tmp_path, by_id, ONES)
    assert [(r["arm"], r["layer"]) for r in rows] == [("vanilla", 0), ("vanilla", 1), ("myopic", 0), ("myopic", 1)]
    assert all(r["value"] <= 1 for r in rows)
    record = tmp_path / "analyses" / "probes" / "wu-p1.json"
    stamp = record.stat().st_mtime_ns
    assert wu_probes(P, tmp_path, by_id, ONES) == rows and record.stat().st_mtime_ns == stamp   # read, not recomputed


def test_package_entry_points():
    assert study.NAME == "myopia" and study.PRESETS is PRESETS
    assert callable(study.run) and callable(study.summarize) and callable(study.figures) and callable(study.tune)
    assert [p.family for p in points(PRESETS["smoke"]) if p.reference] == list(FAMILIES)


def test_wu_band_part_reuses_the_main_runs_and_compares_at_each_rate():
    P = PRESETS["paper"]
    W = dataclasses.replace(PRESETS["smoke"].wu_band, lr_factors=(0.3333, 0.1111), seeds=3, bands=(2, 10))
    part = dataclasses.replace(study.part(P, "wu_band"), wu_band=W)
    assert part.families == () and part.convergence is None
    runs = wu_band.specs(part)
    main = {s.run_id: s for s in grid_specs(P, {(f, arm): (0.3333, 0.1111) for f in FAMILIES
                                                for arm in ("vanilla", "myopic")})
            + specs(P, {**ONES, ("wu", "vanilla"): 0.3333})}
    long = [s for s in runs if dict(s.tags)["family"] == wu_band.LONG]
    far = [s for s in runs if dict(s.tags)["family"] in wu_band.FAR.values()]
    assert len(runs) - len(long) - len(far) == 2 * 3 * (2 + 2)
    # the causal check: each far band at the first rate, the key or the value path restored, own ids
    assert sorted((s.train.myopic_far, s.train.myopic_band, dict(s.tags)["family"], dict(s.tags)["lr_factor"])
                  for s in far) == sorted([(path, k, fam, f) for path, fam in wu_band.FAR.items() for k in W.far_bands
                                           for f in W.lr_factors] * 3)
    assert {(s.train.steps, s.train.myopic) for s in far} == {(P.family_steps("wu"), True)}
    assert not {s.run_id for s in far} & set(main) and len({s.run_id for s in far}) == len(far)
    for s in runs:   # the main part's D_1 runs where they coincide: same id, same config
        if s.run_id in main:
            assert s == main[s.run_id]
    assert {dict(s.tags)["band"] for s in runs} == {-1, 2, 10}
    # the long runs: vanilla, myopic and each long band at the first rate, W.long_steps long, own ids
    assert sorted((dict(s.tags)["arm"], dict(s.tags)["band"]) for s in long) == sorted(
        [("vanilla", -1), ("myopic", -1)] * 3 + [("band", k) for k in W.long_bands] * 3)
    assert {(s.train.steps, dict(s.tags)["lr_factor"], s.train.grad_diagnostics) for s in long} == {
        (W.long_steps, 0.3333, False)}
    assert not {s.run_id for s in long} & set(main)
    plan = wu_band.plan_rows(part)
    finals = [_final("vanilla", 0, 0.1, family="wu", lr_factor=0.1111, p=1.0),
              _final("myopic", 0, 1.1, family="wu", lr_factor=0.1111, p=1.0),
              _final("band", 0, 0.3, family="wu", lr_factor=0.1111, p=1.0, band=10),
              _final("band", 3, 0.9, family="wu", lr_factor=0.1111, p=1.0, band=10),   # seed past the plan
              _final("band", 0, 0.9, family="wu", lr_factor=1.0, p=1.0, band=10)]      # rate past the plan
    got = {(r["lr_factor"], r["k"], r["quantity"]): r["value"] for r in wu_band.band_rows(finals, plan)}
    assert got == {(0.1111, 0, "L_band"): 1.1, (0.1111, 0, "gap"): pytest.approx(1.0),
                   (0.1111, 10, "L_band"): 0.3, (0.1111, 10, "gap"): pytest.approx(0.2),
                   (0.1111, -1, "L_vanilla"): 0.1}
    # the long runs' curves: a gap per eval step, against vanilla at that step
    curve = [_final(arm, 0, v, family=wu_band.LONG, lr_factor=0.3333, p=1.0, step=step, **kw)
             for step, van, band in ((10, 1.0, 1.1), (20, 0.5, 0.9)) for arm, v, kw in
             (("vanilla", van, {}), ("band", band, dict(band=2)))]
    got = {(r["step"], r["quantity"]): r["value"] for r in wu_band.band_rows(curve, plan, family=wu_band.LONG)
           if r["k"] == 2}
    assert got == {(10, "L_band"): 1.1, (10, "gap"): pytest.approx(0.1), (20, "L_band"): 0.9,
                   (20, "gap"): pytest.approx(0.4)}


def test_wu_band_far_rows_compare_each_far_run_with_vanilla_and_its_plain_band():
    plan = [dict(lr_factor=0.3333, seeds=2)]
    kw = dict(lr_factor=0.3333, p=1.0)
    finals = [_final("vanilla", 0, 0.1, family="wu", **kw), _final("myopic", 0, 1.1, family="wu", **kw),
              _final("band", 0, 0.6, family="wu", band=10, **kw),
              _final("band", 0, 0.2, family="wu_key", band=10, **kw),      # key path restored
              _final("band", 0, 0.5, family="wu_value", band=10, **kw),
              _final("band", 0, 0.3, family="wu_key", band=0, **kw),       # k = 0: against myopic
              _final("band", 0, 0.9, family="wu_key", band=2, **kw),       # no plain band 2: left out
              _final("band", 2, 0.1, family="wu_key", band=10, **kw),      # seed past the plan
              _final("band", 0, 0.1, family="wu_key", band=10, lr_factor=1.0, p=1.0)]   # rate past the plan
    got = {(r["path"], r["k"], r["quantity"]): r["value"] for r in wu_band.far_rows(finals, plan)}
    assert got == pytest.approx({
        ("key", 10, "L"): 0.2, ("key", 10, "gap"): 0.1, ("key", 10, "vs_plain"): -0.4,
        ("value", 10, "L"): 0.5, ("value", 10, "gap"): 0.4, ("value", 10, "vs_plain"): -0.1,
        ("none", 10, "L"): 0.6, ("none", 10, "gap"): 0.5,
        ("key", 0, "L"): 0.3, ("key", 0, "gap"): 0.2, ("key", 0, "vs_plain"): -0.8,
        ("none", 0, "L"): 1.1, ("none", 0, "gap"): 1.0})
    assert len(wu_band.far_rows(finals, plan)) == len(got)   # the plain run once per (k, seed)


def test_wu_band_far_mask_leaves_no_attention_beyond_the_window(tiny_cfg):
    from toymodels.hooks import run_with_cache
    from toymodels.model import init_model
    T, window = 8, 2
    model = init_model(dataclasses.replace(tiny_cfg, max_seq_len=T), 0)
    x = np.random.default_rng(0).integers(0, tiny_cfg.vocab_size, (3, T))
    names = [f"blocks.{i}.attn.pattern" for i in range(tiny_cfg.n_layers)]
    _, plain = run_with_cache(model, x, names)
    _, cache = run_with_cache(model, x, names, interventions={"blocks.0.attn.scores": wu_band.far_mask(T, window)})
    lag = np.arange(T)[:, None] - np.arange(T)[None, :]
    p0 = np.asarray(cache["blocks.0.attn.pattern"])
    assert np.all(p0[..., lag > window] == 0) and np.allclose(p0.sum(-1), 1.0)
    assert np.abs(p0 - np.asarray(plain["blocks.0.attn.pattern"])).max() > 1e-3   # the mask did remove mass
    # links within the window keep their scores: the pattern there is the plain one renormalised
    near = np.where((lag >= 0) & (lag <= window), np.asarray(plain["blocks.0.attn.pattern"]), 0.0)
    np.testing.assert_allclose(p0, near / near.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_wu_band_mask_table_gain_is_the_loss_the_mask_removes():
    rows = [dict(run=f"r{s}", family="wu", lr_factor=0.3333, k=10, seed=s, masked=m, loss=v)
            for s, vals in ((0, (0.6, 0.5, 0.4)), (1, (0.7, 0.7, 0.3)))
            for m, v in zip(("none", "layer0", "layer1"), vals)]
    got = {(r["masked"], r["quantity"]): (r["mean"], r["n"]) for r in wu_band.mask_table(rows)}
    assert got["layer1", "gain"] == (pytest.approx(0.3), 2) and got["layer0", "gain"] == (pytest.approx(0.05), 2)
    assert got["none", "gain"] == (0.0, 2) and got["layer1", "L"] == (pytest.approx(0.35), 2)


def test_wu_band_attention_regions_by_hand():
    def mass(head, distance, m, layer=0):
        return dict(run="r", family="wu", lr_factor=1.0, k=2, seed=0, window=2, layer=layer, head=head,
                    distance=distance, mass=m)
    rows = ([mass(0, d, m) for d, m in enumerate((0.1, 0.2, 0.3, 0.4))]        # head 0: 0.4 beyond the window
            + [mass(1, d, m) for d, m in enumerate((0.5, 0.5, 0.0, 0.0))]       # head 1: none beyond
            + [mass(0, d, m, layer=1) for d, m in enumerate((1.0, 0.0, 0.0, 0.0))])
    got = {(r["layer"], r["quantity"]): r["value"] for r in wu_band.attention_regions(rows)}
    assert got == pytest.approx({(0, "self"): 0.3, (0, "window"): 0.5, (0, "beyond"): 0.2, (0, "beyond_max_head"): 0.4,
                                 (1, "self"): 1.0, (1, "window"): 0.0, (1, "beyond"): 0.0,
                                 (1, "beyond_max_head"): 0.0})


def test_wu_band_gap_against_attention_pairs_each_run_with_its_own_mass():
    gaps = [dict(lr_factor=1.0, k=k, seed=s, quantity=q, value=v) for k, s, v in
            ((0, 0, 1.1), (2, 0, 0.2), (2, 1, 0.3), (10, 0, 0.5), (10, 1, 0.6), (20, 0, 0.0))
            for q in ("gap", "L_band")]
    regions = [dict(family=fam, lr_factor=1.0, k=k, seed=s, layer=1, quantity=q, value=v)
               for fam, k, s, v in (("wu", 0, 0, 0.5), ("wu", 2, 0, 0.25), ("wu", 2, 1, 0.3), ("wu", 10, 0, 0.4),
                                    ("wu", 10, 1, 0.45), ("wu", 20, 0, 0.06), ("wu_long", 2, 0, 0.9))
               for q in ("beyond", "window")]
    points = wu_band.gap_vs_attention(gaps, regions)
    got = {(p["k"], p["seed"]): (p["gap"], p["beyond"]) for p in points}
    assert got == {(0, 0): (1.1, 0.5), (2, 0): (0.2, 0.25), (2, 1): (0.3, 0.3), (10, 0): (0.5, 0.4),
                   (10, 1): (0.6, 0.45), (20, 0): (0.0, 0.06)}
    (c,) = wu_band.correlations(points)   # the band runs only: myopic (k = 0) left out
    xs, ys = [0.25, 0.3, 0.4, 0.45, 0.06], [0.2, 0.3, 0.5, 0.6, 0.0]
    assert c["n"] == 5 and c["r"] == pytest.approx(np.corrcoef(xs, ys)[0, 1]) and c["lo"] <= c["r"] <= c["hi"]


def test_wu_band_long_curves_figure_draws_from_its_table(tmp_path):
    from studies.myopia import figures_wu_band
    from toymodels.results import write_rows
    rows = [dict(family=wu_band.LONG, lr_factor=0.3333, k=k, quantity=q, step=step, mean=v, lo=v - 0.1, hi=v + 0.1,
                 n=2, values=f"{v - 0.05} {v + 0.05}")
            for step in (0, 10, 100) for k, q, v in ((-1, "L_vanilla", 1.0 / (step + 1)), (2, "L_band", 0.5),
                                                     (2, "gap", 0.5 - 1.0 / (step + 1)))]
    write_rows(tmp_path / "wu_band_long.csv", rows)
    paths = figures_wu_band.long_curves(tmp_path)
    assert paths and all(p.stat().st_size > 5000 for p in paths)



def test_wu_band_causal_figures_draw_from_their_tables(tmp_path):
    from studies.myopia import figures_wu_band
    from toymodels.results import write_rows
    far = [dict(lr_factor=f, path=path, k=k, quantity=q, mean=v, lo=v - 0.1, hi=v + 0.1, n=2,
                values=f"{v - 0.05} {v + 0.05}")
           for f in (0.3333, 0.1111) for path in ("none", "key", "value") for k in (0, 10)
           for q, v in (("gap", 0.5), ("vs_plain", -0.2)) if not (path == "none" and q == "vs_plain")]
    mask = [dict(family="wu", lr_factor=0.3333, k=k, masked=m, quantity="gain", mean=0.1, lo=0.0, hi=0.2, n=2,
                 values="0.05 0.15") for k in (-1, 0, 10) for m in ("none", "layer0", "layer1", "all")]
    write_rows(tmp_path / "wu_band_far.csv", far)
    write_rows(tmp_path / "wu_band_mask.csv", mask)
    paths = figures_wu_band.far_paths(tmp_path) + figures_wu_band.masked(tmp_path)
    assert len(paths) >= 2 and all(p.stat().st_size > 5000 for p in paths)
