"""The ood_decay study: its run graph, its mixtures, and its summary tables on hand-made curves.

The smoke path end to end runs in tests/test_studies.py (SHRINK entry).
"""

import dataclasses
import math
from collections import Counter

import numpy as np
import pytest

from studies.ood_decay import fits, grid, measure, tables
from studies.ood_decay.figures import figures
from studies.ood_decay.presets import CHUNK, PRESETS
from studies.ood_decay.sharing import arm_tasks, model_of
from toymodels.analysis.decay import weight_decay_half_life
from toymodels.analysis.stats import aggregate
from toymodels.config import ConfigError
from toymodels.params import n_params
from toymodels.results import read_rows, write_record, write_rows
from toymodels.tables import index_runs

SMOKE = PRESETS["smoke"]


def _tags(spec):
    return dict(spec.tags)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_run_graph_is_well_formed(preset):
    p = PRESETS[preset]
    specs = grid.specs(p)
    by_id = {s.run_id: s for s in specs}
    assert len(by_id) == len(specs)
    for s in specs:
        if s.init_from:
            parent = by_id[s.init_from]          # names a run of this preset ...
            assert parent.model.n_layers == s.model.n_layers and parent.model.d_model == s.model.d_model
            same_cell = ("case", "size", "reg")
            assert [_tags(parent)[k] for k in same_cell] == [_tags(s)[k] for k in same_cell]
            assert parent.train.seed == s.train.seed
    expected_parent = {"pre": None, "never1": None, "drop": "pre", "joint": "pre", "never2": "never1",
                       "relearn": "drop", "never_relearn": "never2", "fewshot": "drop", "never_fewshot": "never2"}
    for s in specs:
        role, parent = _tags(s)["role"], expected_parent[_tags(s)["role"]]
        assert (_tags(by_id[s.init_from])["role"] if s.init_from else None) == parent
        if role in ("relearn", "fewshot"):
            assert _tags(by_id[s.init_from])["p"] == 0     # relearning starts from the full drop
    # every case has every role in its base cell, and the size / regularisation axes
    for case in p.cases:
        mine = [s for s in specs if _tags(s)["case"] == case]
        base = Counter(_tags(s)["role"] for s in mine if _tags(s)["axis"] == "base")
        assert set(base) == set(grid.FULL_ROLES)
        assert base["drop"] == len(p.ps) * p.seeds
        assert {_tags(s)["size"] for s in mine} == {label for label, *_ in p.sizes}
        assert {_tags(s)["reg"] for s in mine} == {label for label, *_ in p.regs}
    assert all(s.train.trainable == "" for s in specs)


def test_base_cell_groups_share_one_size():
    """Group labels ("lanes") split the base cell into sweep groups of two runs per cell, so one
    compiled program (per model and group size) serves them all, and no group holds a run together
    with the run it starts from (which would be a dependency cycle)."""
    specs = grid.specs(SMOKE)
    assert {s.train.chunk_steps for s in specs} == {CHUNK}     # one chunk size: labels do the splitting
    groups = {}
    for s in specs:
        groups.setdefault(s.group_key(), []).append(s)
    for members in groups.values():
        ids = {m.run_id for m in members}
        assert not any(m.init_from in ids for m in members)
        if _tags(members[0])["axis"] == "base":
            assert len(members) == 2 * SMOKE.seeds
    unlabelled = {dataclasses.replace(s, group="").group_key() for s in specs}
    assert len(unlabelled) < len(groups)


def test_replay_fractions_must_include_the_full_drop():
    with pytest.raises(ConfigError, match="ps="):
        grid.specs(dataclasses.replace(SMOKE, ps=(0.01,)))


@pytest.mark.parametrize("case", ["A", "B", "C", "D"])
def test_dropped_part_gets_zero_weight_after_the_drop(case):
    specs = [s for s in grid.specs(SMOKE) if _tags(s)["case"] == case and _tags(s)["axis"] == "base"
             and s.train.seed == 0]
    role = {(_tags(s)["role"], _tags(s)["p"]): s for s in specs}
    _, held, x_tasks, x_lang = grid.suite(case, SMOKE.n_languages)
    assert x_lang in x_tasks
    if case in ("C", "D"):
        assert len(x_tasks) > 1       # translations into X are part of X
    for (name, p), s in role.items():
        mix = s.mixture
        if name.endswith("fewshot"):   # X's own language alone, from a fixed pool
            pool = dict(s.tasks)[mix.tasks[0]]
            assert len(mix.tasks) == 1 and pool.base == dict(s.tasks)[x_lang] and pool.n == 10
            continue
        x = np.asarray([mix.tasks.index(t) for t in x_tasks])
        for step in (0, 1, s.train.steps):
            probs = np.asarray(mix.probs(step))
            assert probs.sum() == pytest.approx(1.0, abs=1e-6)
            if name in ("drop", "never1", "never2"):
                share = 0.0 if name != "drop" else p
                assert probs[x].sum() == pytest.approx(share, abs=1e-7)
            else:
                assert np.all(probs[x] > 0.05)
    # D's held-out pair is evaluated (in tasks) but never trained (not in the mixture)
    for s in specs:
        assert all(n in dict(s.tasks) and n not in s.mixture.tasks for n, _ in held)
    assert bool(held) == (case == "D")


def test_fewshot_runs_share_one_group_per_case():
    specs = [s for s in grid.specs(SMOKE) if _tags(s)["role"].endswith("fewshot")]
    groups = {(_tags(s)["case"], s.group_key()) for s in specs}
    assert len({c for c, _ in groups}) == len(groups) == 4
    assert len(specs) == 4 * 2 * SMOKE.seeds


# ---------------------------------------------------------------- summary tables
def _rows(run, tags, curves, seed=0, lr=1e-3, wd=0.1):
    """Tidy rows as load_rows gives them: curves = {(task, metric): (steps, values)}."""
    base = {"run": run, "seed": seed, "lr": lr, "weight_decay": wd, "dropout": 0.0, "tokens": 0,
            "case": "A", "axis": "base", "size": "1L-d8", "params": 100, "n_layers": 1, "reg": "wd0.1",
            "p": "", "x_lang": "A2", "zeroshot": "", **tags}
    return [{**base, "task": task, "metric": metric, "step": int(t), "value": float(v)}
            for (task, metric), (ts, vs) in curves.items() for t, v in zip(ts, vs)]


T = np.arange(0, 101, 10)


def _ramp(t_reach):
    """X accuracy rising linearly from 0 to 1 at t_reach (then flat)."""
    return np.minimum(T / t_reach, 1.0)


def test_savings_from_hand_made_curves():
    rows = (_rows("pre", {"role": "pre"}, {("A2", "exact"): (T, _ramp(100))})
            + _rows("rel", {"role": "relearn"}, {("A2", "exact"): (T, _ramp(10))})
            + _rows("nev", {"role": "never_relearn"}, {("A2", "exact"): (T, _ramp(50))}))
    q = {r["quantity"]: r["value"] for r in tables.savings_rows(index_runs(rows))}
    # criterion 0.9 x final pre accuracy (1.0): fresh 90 steps, never 45, relearn 9
    assert q["steps_fresh"] == pytest.approx(90) and q["steps_never"] == pytest.approx(45)
    assert q["steps_relearn"] == pytest.approx(9)
    assert q["savings_vs_fresh"] == pytest.approx((90 - 9) / 90)
    assert q["savings_vs_never"] == pytest.approx((45 - 9) / 45)
    # shortfall areas below 0.9 up to the crossing: 0.5 * 0.9 * T_crossing
    assert q["area_savings_vs_fresh"] == pytest.approx(1 - 9 / 90)
    assert q["area_savings_vs_never"] == pytest.approx(1 - 9 / 45)


def test_forgetting_conventions():
    pre = np.linspace(0, 1, len(T))
    pre[-3:] = [0.95, 0.9, 0.8]                      # best 0.95 before the drop, 0.8 at it
    drop = np.linspace(0.8, 0.2, len(T))
    kept = np.linspace(0.5, 0.9, len(T))
    curves = {("A0", "exact"): (T, kept), ("A1", "exact"): (T, kept)}    # the kept languages of case A, n = 3
    rows = (_rows("pre", {"role": "pre"}, {("A2", "exact"): (T, pre), **curves})
            + _rows("d0", {"role": "drop", "p": 0.0}, {("A2", "exact"): (T, drop), **curves}))
    f = {r["quantity"] if r["convention"] == "bwt" else r["convention"]: r["value"]
         for r in tables.forgetting_rows(index_runs(rows))}
    assert f["peak"] == pytest.approx(0.95 - 0.2) and f["first_last"] == pytest.approx(0.8 - 0.2)
    # backward transfer with the phases as tasks: X's change over phase 2; the kept mix's change
    assert f["bwt"] == pytest.approx(0.2 - 0.8) and f["kept_change"] == pytest.approx(0.9 - 0.5)


def _measure(role, measure, value, p="", seed=0, reg="wd0.1", layer=""):
    return {"case": "A", "axis": "" if role == "random" else "base", "size": "s", "reg": "" if role == "random"
            else reg, "role": role, "p": p, "seed": seed, "measure": measure, "layer": layer, "value": value}


def test_readout_recovery_is_normalised_between_never_and_pre():
    measures = [_measure("pre", "refit_acc", 0.8), _measure("never2", "refit_acc", 0.4),
                _measure("drop", "refit_acc", 0.6, p=0.0), _measure("drop", "native_acc", 0.1, p=0.0),
                _measure("random", "refit_acc", 0.2),
                _measure("drop", "native_acc", 0.9, p=0.0, reg="wd1")]     # another cell: ignored
    q = {r["quantity"]: r["mean"] for r in tables.readout_table(measures)}
    assert q["refit_recovery"] == pytest.approx((0.6 - 0.4) / (0.8 - 0.4))
    assert q["native_drop_p0"] == pytest.approx(0.1) and q["refit_random"] == pytest.approx(0.2)


def test_fit_recovers_an_exponential_half_life_and_the_clock():
    t = np.concatenate([[0], np.unique(np.round(np.geomspace(1, 2000, 30)))])
    acc = 0.2 + 0.7 * np.exp(-t / 150.0)
    f = fits.fit_one(t, acc, lr=3e-3, wd=1.0)
    assert f["half_life"] == pytest.approx(150 * math.log(2), rel=1e-3)
    assert f["floor"] == pytest.approx(0.2, abs=1e-3)
    assert f["wd_clock"] == pytest.approx(math.log(2) / 3e-3)
    flat = fits.fit_one(t, np.full(len(t), 0.5), lr=3e-3, wd=0.0)   # nothing decays: no crash
    assert flat["wd_clock"] == math.inf and flat["half_life"] == math.inf and flat["half_life_reached"] == 0
    # a curve that improves (continued training on shared structure) has no half-life either
    rising = fits.fit_one(t, 0.8 - 0.3 * np.exp(-t / 150.0), lr=3e-3, wd=1.0)
    assert rising["half_life"] == math.inf and rising["half_life_reached"] == 0
    # a rising loss is decay: fit_one is told which way is worse
    loss = fits.fit_one(t, 2.0 - 1.9 * np.exp(-t / 150.0), lr=3e-3, wd=1.0, worse=1)
    assert loss["half_life"] == pytest.approx(150 * math.log(2), rel=1e-3)


def test_scaling_exponent():
    points = []
    for params, nl in ((1000, 1), (4000, 1), (16000, 1), (8000, 2)):
        for seed in range(3):
            hl = 50.0 * (params / 1000) ** 0.5 * (1 + 0.01 * seed)
            points.append({"case": "A", "axis": "base" if params == 1000 else "size", "params": params,
                         "n_layers": nl, "p": 0.0, "metric": "exact", "quantity": "half_life", "value": hl})
    rows = {r["series"]: r for r in fits.scaling_rows(points)}
    assert rows["all sizes"]["slope"] == pytest.approx(0.5, abs=0.01)
    assert rows["all sizes"]["n"] == 12 and rows["all sizes"]["n_sizes"] == 4
    assert rows["width"]["n_sizes"] == 3


def test_probe_normalisation_between_random_init_and_pre():
    measures = [_measure("random", "probe_r2", 0.2, layer=0), _measure("pre", "probe_r2", 0.8, layer=0),
                _measure("drop", "probe_r2", 0.5, p=0.0, layer=0)]
    rows = {(r["role"], r["quantity"]): r["mean"] for r in tables.probe_table(measures)}
    assert rows[("drop", "normalized")] == pytest.approx(0.5)
    assert rows[("pre", "normalized")] == pytest.approx(1.0)
    assert rows[("drop", "r2")] == pytest.approx(0.5)


def test_zeroshot_curve_stitches_phases():
    zs = {"zeroshot": "T1-2 T2-1", "case": "D", "x_lang": "B2"}
    curves = {(t, "exact"): (T, np.full(len(T), v)) for t, v in (("T1-2", 0.3), ("T2-1", 0.4), ("B2", 0.9))}
    rows = [row for r in ("pre", "drop_p0", "relearn", "joint")
            for row in _rows(r, {**zs, "role": r.split("_p")[0], "p": 0.0 if r.startswith("drop") else ""}, curves)]
    out = tables.zeroshot_curves(index_runs(rows))
    steps = {r["role"]: sorted({x["step"] for x in out if x["role"] == r["role"]}) for r in out}
    assert steps["pre"][-1] == 100 and steps["drop_p0"][0] == 100 and steps["relearn"][0] == 200
    assert {r["task"] for r in out} == {"T1-2", "T2-1", "B2"}


def test_paper_preset_leaves_size_and_weight_decay_to_the_persistence_part():
    """Part 1's size and regularisation axes were confounded by pre-drop accuracy; the paper preset
    runs its base cell only, and part 3 spans the sizes (>= 6, >= 10x) and weight decay without data."""
    p = PRESETS["paper"]
    assert len(p.sizes) == 1 and len(p.regs) == 1
    assert {_tags(s)["axis"] for s in grid.specs(p)} == {"base"}
    S = p.persistence
    tasks = arm_tasks(S.arm, S.sharing, S.n_languages)
    sizes = [n_params(model_of(tasks, nl, d)) for _, nl, d, _ in S.sizes]
    assert len(sizes) >= 6 and max(sizes) / min(sizes) >= 10 and S.wd_only
    _, wd, _ = p.regs[0]   # the base cell's weight-decay clock still lands inside its decay window
    assert weight_decay_half_life(p.lr, wd) < p.steps[1]


def test_fewshot_recovery_from_hand_made_curves():
    ramp = (T, np.linspace(0.0, 1.0, len(T)))
    rows = (_rows("pre", {"role": "pre"}, {("A2", "exact"): (T, 0.9 * ramp[1])})
            + _rows("drop", {"role": "drop", "p": 0}, {("A2", "exact"): (T, 0.9 - 0.8 * ramp[1])})
            + _rows("fs", {"role": "fewshot"}, {("A2", "exact"): (T, 0.1 + 0.6 * ramp[1])})
            + _rows("nfs", {"role": "never_fewshot"}, {("A2", "exact"): (T, 0.3 * ramp[1])}))
    q = {r["quantity"]: r["value"] for r in tables.fewshot_rows(index_runs(rows))}
    assert q["fewshot_before_pre"] == pytest.approx(0.9) and q["fewshot_before_drop"] == pytest.approx(0.1)
    assert q["fewshot_dropped"] == pytest.approx(0.7) and q["fewshot_never"] == pytest.approx(0.3)
    assert q["fewshot_recovery"] == pytest.approx((0.7 - 0.3) / (0.9 - 0.3))


# ---------------------------------------------------------------- aggregated tables, two seeds by hand
def _two_seed_runs(floors=(0.2, 0.4)):
    """pre, drop_p0, joint and never2 of one base cell, seeds 0 and 1 (case A, X = A2); X decays
    from 0.9 to the seed's floor with time constant 20 steps (a floor of 0.9: no decay)."""
    rows = []
    for seed, floor in enumerate(floors):
        drop = floor + (0.9 - floor) * np.exp(-T / 20.0)
        kept = {("A0", "exact"): (T, np.full(len(T), 0.8)), ("A1", "exact"): (T, np.full(len(T), 0.8))}
        loss = {("A2", "loss"): (T, 2.0 - drop)}
        rows += _rows(f"pre{seed}", {"role": "pre"}, {("A2", "exact"): (T, np.linspace(0.1, 0.9, len(T))),
                                                      **kept, **loss}, seed=seed)
        rows += _rows(f"drop{seed}", {"role": "drop", "p": 0.0}, {("A2", "exact"): (T, drop), **kept, **loss},
                      seed=seed)
        rows += _rows(f"joint{seed}", {"role": "joint"}, {("A2", "exact"): (T, np.full(len(T), 0.9)), **kept,
                                                          **loss}, seed=seed)
        rows += _rows(f"never{seed}", {"role": "never2"}, {("A2", "exact"): (T, np.full(len(T), 0.0 + seed)),
                                                           **kept, **loss}, seed=seed)
    return rows


def test_decay_curves_mean_and_bounded_interval():
    out = tables.decay_curves(index_runs(_two_seed_runs()))
    at = {(r["role"], r["metric"], r["step"]): r for r in out}
    r = at[("drop", "exact", 100)]
    finals = [f + (0.9 - f) * math.exp(-5.0) for f in (0.2, 0.4)]
    assert r["mean"] == pytest.approx(np.mean(finals)) and r["n"] == 2
    assert 0.0 <= r["lo"] < r["mean"] < r["hi"] <= 1.0                    # a 2-seed t-interval would leave [0, 1]
    assert [float(v) for v in r["values"].split()] == pytest.approx(finals, rel=1e-5)
    never = at[("never2", "exact", 100)]                                    # seeds at 0 and 1: mean 0.5
    assert never["mean"] == 0.5 and 0.0 <= never["lo"] and never["hi"] <= 1.0
    assert at[("drop", "loss", 0)]["lo"] >= 0.0


def test_summarize_writes_bounded_tables_and_leaves_censored_values_out(tmp_path):
    rows = _two_seed_runs(floors=(0.2, 0.9))                               # seed 1: X does not decay
    for run in {r["run"] for r in rows}:
        mine = [r for r in rows if r["run"] == run]
        write_rows(tmp_path / "runs" / run / "metrics.csv", mine)
        write_record(tmp_path / "runs" / run, ("metrics.csv",), rows=len(mine))   # as run_sweep does, last
    tables.summarize(tmp_path, tmp_path / "figures")
    got = {p.stem: read_rows(p) for p in (tmp_path / "figures").glob("*.csv")}
    # no measures, relearn or case D; no scaling table without a size axis
    assert set(got) == {"decay_curves", "fits", "forgetting"}
    fit = {(r["metric"], r["quantity"]): r for r in got["fits"]}
    # seed 1's half-life is censored (inf): left out of the mean (n = 1), counted in n_runs
    hl = fit[("exact", "half_life")]
    assert hl["mean"] == pytest.approx(20 * math.log(2), rel=1e-3) and (hl["n"], hl["n_runs"]) == (1, 2)
    reached = fit[("exact", "half_life_reached")]
    assert reached["mean"] == 0.5 and reached["n"] == 2 and 0 <= reached["lo"] and reached["hi"] <= 1
    assert fit[("loss", "half_life")]["mean"] == pytest.approx(20 * math.log(2), rel=1e-3)   # loss rises: decay
    forget = {r["convention"]: r for r in got["forgetting"] if r["quantity"] == "forgetting"}
    # X at the drop 0.9 (the end of pre), final 0.2 + 0.7 e^-5 and 0.9
    expect = np.mean([0.9 - (f + (0.9 - f) * math.exp(-5.0)) for f in (0.2, 0.9)])
    assert forget["first_last"]["mean"] == pytest.approx(expect)
    assert -1 <= forget["first_last"]["lo"] < expect < forget["first_last"]["hi"] <= 1
    # base cell only: the size and weight-decay-clock figures are not drawn (no empty panels)
    drawn = {p.stem for p in figures(tmp_path / "figures")}
    assert {"decay_curves", "forgetting"} <= drawn and not drawn & {"half_life_vs_params", "half_life_vs_wd_clock"}


def test_recovery_is_left_out_where_its_floor_and_ceiling_meet():
    """A normalised recovery whose ceiling (pre) is within MIN_RANGE of its floor (never) is a ratio
    of noise: seed 1 (pre 0.60, never 0.55) is left out, seed 0 counts."""
    measures = []
    for seed, (pre, drop, never) in enumerate(((0.9, 0.5, 0.1), (0.60, 0.58, 0.55))):
        measures += [_measure("pre", "refit_acc", pre, seed=seed), _measure("never2", "refit_acc", never, seed=seed),
                     _measure("drop", "refit_acc", drop, p=0.0, seed=seed)]
    rec = {r["quantity"]: r for r in tables.readout_table(measures)}["refit_recovery"]
    assert rec["mean"] == pytest.approx(0.5) and rec["n"] == 1
    assert tables.recovery(0.3, 0.2, 0.25) != tables.recovery(0.3, 0.2, 0.25)   # NaN
    assert tables.recovery(0.3, 0.2, 0.4) == pytest.approx(0.5)


def test_readout_and_probe_intervals_stay_in_range():
    measures = []
    for seed, (pre, drop, never) in enumerate(((0.95, 0.90, 0.1), (0.99, 0.98, 0.3))):
        measures += [_measure("pre", "refit_acc", pre, seed=seed), _measure("never2", "refit_acc", never, seed=seed),
                     _measure("drop", "refit_acc", drop, p=0.0, seed=seed),
                     _measure("random", "probe_r2", 0.0, seed=seed, layer=0),
                     _measure("pre", "probe_r2", pre, seed=seed, layer=0),
                     _measure("drop", "probe_r2", drop, p=0.0, seed=seed, layer=0)]
    ro = {r["quantity"]: r for r in tables.readout_table(measures)}
    assert ro["refit_pre"]["mean"] == pytest.approx(0.97) and ro["refit_pre"]["hi"] <= 1.0
    rec = [(0.90 - 0.1) / (0.95 - 0.1), (0.98 - 0.3) / (0.99 - 0.3)]
    assert ro["refit_recovery"]["mean"] == pytest.approx(np.mean(rec))   # normalised: unbounded t-interval
    assert ro["refit_recovery"]["hi"] - ro["refit_recovery"]["mean"] == \
        pytest.approx(ro["refit_recovery"]["mean"] - ro["refit_recovery"]["lo"])
    pr = {(r["role"], r["quantity"]): r for r in tables.probe_table(measures)}
    assert pr[("pre", "r2")]["hi"] <= 1.0 and pr[("drop", "normalized")]["mean"] == pytest.approx(np.mean(
        [0.90 / 0.95, 0.98 / 0.99]))


def test_savings_table_leaves_a_criterion_never_reached_out_of_the_mean():
    rows = []
    for seed, t_rel in ((0, 10), (1, 20), (2, None)):
        rel = _ramp(t_rel) if t_rel else np.full(len(T), 0.5)           # seed 2 never relearns
        rows += (_rows(f"pre{seed}", {"role": "pre"}, {("A2", "exact"): (T, _ramp(100))}, seed=seed)
                 + _rows(f"rel{seed}", {"role": "relearn"}, {("A2", "exact"): (T, rel)}, seed=seed)
                 + _rows(f"nev{seed}", {"role": "never_relearn"}, {("A2", "exact"): (T, _ramp(50))}, seed=seed))
    table = aggregate(tables.savings_rows(index_runs(rows)), fits.LABELS + ("quantity",),
                             bounds=tables.BOUNDS["savings"], finite=True)
    q = {r["quantity"]: r for r in table}
    assert q["steps_relearn"]["mean"] == pytest.approx(13.5) and q["steps_relearn"]["n"] == 2
    assert q["steps_relearn"]["n_runs"] == 3 and q["steps_relearn"]["lo"] >= 0
    assert q["savings_vs_fresh"]["mean"] == pytest.approx(np.mean([(90 - 9) / 90, (90 - 18) / 90]))


def test_model_measures_on_separable_features():
    rng = np.random.default_rng(0)
    targets = rng.integers(3, 6, (40, 4))
    scored = np.zeros((40, 4), bool)
    scored[:, 2:] = True
    is_x = np.arange(40) >= 20
    y = targets[scored]
    final = np.eye(8)[y] * 4 + rng.normal(0, 0.1, (len(y), 8))          # the readout decodes every token
    acts = np.stack([final, final])                                        # one layer, then the final residual
    got = {(m, layer): v for m, layer, v in measure.model_measures(acts, np.eye(8), scored, targets, is_x, True)}
    assert got[("native_acc", "")] == 1.0 and got[("refit_acc", "")] == 1.0
    assert got[("probe_r2", 0)] > 0.9
    assert ("refit_acc", "") not in {(m, la) for m, la, _ in
                                     measure.model_measures(acts, np.eye(8), scored, targets, is_x, False)}


def test_measure_entries_key_every_model_and_its_random_twin():
    members = [s for s in grid.specs(SMOKE) if _tags(s)["case"] == "B" and _tags(s)["role"] in measure.MEASURED
               and _tags(s)["size"] == "1L-d32"]
    got = measure.entries(members)
    keys = [k for k, *_ in got]
    assert keys[:len(members)] == [s.run_id for s in members]
    assert keys[len(members):] == [f"B_1L-d32_s{seed}_random" for seed in range(SMOKE.seeds)]
    assert all(label["role"] == "random" and label["reg"] == "" for _, _, label, _ in got[len(members):])
    # a change in a run's config (here its learning rate) changes its entry's config: it is re-measured
    other = dataclasses.replace(members[0], train=dataclasses.replace(members[0].train, lr=1e-3))
    assert measure.entry(other)[1] != measure.entry(members[0])[1]
