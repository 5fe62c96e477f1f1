"""The backdoors study: its run graph, its detection inputs, the checkpoint runs being exact
prefixes of the persistence run, and its table logic on hand-made rows.

The smoke path end to end runs in tests/studies/test_common.py (SHRINK entry).
"""

import dataclasses
import math

import numpy as np
import pytest

from studies.backdoors import grid, measure, tables
from studies.backdoors.presets import PRESETS, RELEARN_ASR, STUDENT_SEED
from toymodels.store import load_rows
from toymodels.sweep import run_sweep
from toymodels.tables import index_runs
from toymodels.tasks.backdoor import has_trigger

SMOKE = PRESETS["smoke"]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_run_graph_is_well_formed(preset):
    P = PRESETS[preset]
    specs = grid.specs(P) + grid.stage2_specs(P, dataclasses.replace(grid.base_cell(P), density=P.densities[-1]))
    by_id = {s.run_id: s for s in specs}
    assert len(by_id) == len(specs)
    for s in specs:
        t, tasks = dict(s.tags), dict(s.tasks)
        for dep in s.depends_on():
            assert dep in by_id and by_id[dep].model == s.model
        assert tasks["clean"].fraction == 0 and tasks["asr_fixed"].fraction == 1 and tasks["asr_fixed"].density == 1
        mix = tasks["mix"]
        if t["role"] == "insert":
            assert s.init_from == "" and s.train.steps == t["insert_steps"]
            assert mix.fraction * P.batch_size == t["per_batch"] and t["count"] == t["insert_steps"] * t["per_batch"]
            assert (mix.trigger, mix.behaviour, mix.density) == (t["trigger"], t["behaviour"], t["density"])
        elif t["role"].startswith(("clean", "rm_")):
            # clean data, its stream continuing where insertion stopped
            assert mix.fraction == 0 and s.train.data_offset == by_id[s.init_from].train.steps
            assert s.init_from.endswith("_insert")
        if t["role"].startswith("rm_"):
            assert s.teacher == s.init_from and s.train.objective == "distill"
            assert s.train.seed == t["unit"] + STUDENT_SEED and s.train.init_noise == t["noise"]
        if t["role"].startswith("ra_"):
            assert mix.fraction > 0 and s.train.stop_when == f"asr_{t['behaviour']}.acc>={RELEARN_ASR}"
        if t["kind"] == "never":
            assert t["count"] == 0 and (mix.fraction == 0) == (not t["role"].startswith("ra_"))
    # one never-poisoned control per trigger (clean data differs by trigger) and seed
    assert {dict(s.tags)["trigger"] for s in specs if dict(s.tags)["kind"] == "never"} == set(P.triggers)
    n_cells = 1 + len(P.insert_steps) * len(P.poison_per_batch) - 1 + sum(
        len(x) - 1 for x in (P.densities, P.triggers, P.behaviours, P.sizes))
    assert len(grid.cells(P)) == n_cells


def test_detection_inputs_label_and_contrast_correctly():
    P = SMOKE
    for trigger in P.triggers:
        inputs = measure.detection_inputs(P, trigger, "fixed")
        clean = grid.task(P, trigger)
        sep = measure.sep_position(P)
        assert (inputs["trusted"][:, sep] == clean.sep_id).all()
        assert not np.asarray(has_trigger(clean, inputs["trusted"])).any()
        assert not np.asarray(has_trigger(clean, inputs["clean_test"])).any()
        assert np.asarray(has_trigger(clean, inputs["triggered_test"])).all()
        pos, neg = inputs["contrast_pos"], inputs["contrast_neg"]
        assert (pos[:, sep + 1] == clean.resp_id).all() and (neg[:, sep + 1] != clean.resp_id).all()
        np.testing.assert_array_equal(np.delete(pos, sep + 1, axis=1), np.delete(neg, sep + 1, axis=1))


def test_checkpoint_runs_are_exact_prefixes_of_the_persistence_run(tmp_path):
    P = dataclasses.replace(SMOKE, sizes=(("1L-d8", 1, 8),), insert_steps=(20,), clean_steps=24, checkpoints=(12,),
                            n_evals=2, eval_batch=16)
    specs = [s for s in grid.cell_specs(P, grid.base_cell(P), "base", 0, detect=True)]
    run_sweep(specs, tmp_path, progress=False)
    runs = index_runs(load_rows(tmp_path))
    full = runs[f"{grid.base_cell(P).label}_s0_clean"]["curves"]
    part = runs[f"{grid.base_cell(P).label}_s0_clean_c12"]["curves"]
    for key in (("clean", "loss"), ("asr_fixed", "loss")):
        steps, values = full[key]
        assert part[key][0][-1] == 12
        assert values[list(steps).index(12)] == part[key][1][-1]


def _seed_row(cell, axis, seed, value, quantity="asr_auc", **kw):
    return {"stage": 1, "axis": axis, "cell": cell.label, "trigger": cell.trigger, "behaviour": cell.behaviour,
            "insert_steps": cell.insert_steps, "per_batch": cell.per_batch, "density": cell.density,
            "size": cell.size[0], "clean_lr": SMOKE.clean_lrs[0], "seed": seed, "quantity": quantity,
            "value": value, **kw}


def test_winner_takes_each_axis_at_its_best_level():
    cells = grid.cells(SMOKE)
    score = {c.label: 0.2 for c, _ in cells}
    by_axis = {}
    for c, axis in cells:
        by_axis.setdefault(axis, []).append(c)
    best_cf = by_axis["count_fraction"][0]
    score[best_cf.label] = 0.9
    score[by_axis["trigger"][0].label] = 0.7
    score[by_axis["density"][0].label] = 0.1   # worse than the base: density stays at the base
    rows = [_seed_row(c, axis, s, score[c.label]) for c, axis in cells for s in range(2)]
    got = tables.winner(SMOKE, rows)
    assert (got.insert_steps, got.per_batch) == (best_cf.insert_steps, best_cf.per_batch)
    assert got.trigger == by_axis["trigger"][0].trigger and got.density == SMOKE.densities[0]


def test_count_fraction_regression_recovers_known_slopes():
    rng = np.random.default_rng(0)
    rows = []
    for steps in (500, 1000, 2000):
        for k in (1, 2, 4):
            count, fraction = steps * k, k / 64
            for seed in range(5):
                v = 0.2 + 0.1 * math.log2(count) + rng.normal(0, 0.01)
                rows.append({"stage": 1, "axis": "count_fraction", "count": count, "fraction": fraction,
                             "clean_lr": 1e-3, "quantity": "asr_auc", "seed": seed, "value": v})
    got = {r["term"]: r for r in tables.count_fraction_rows(rows) if r["quantity"] == "asr_auc"}
    c, f = got["per_doubling_count"], got["per_doubling_fraction"]
    assert c["lo"] < 0.1 < c["hi"] and c["hi"] - c["lo"] < 0.02
    assert f["lo"] < 0.0 < f["hi"] and c["n"] == 45
    # without a grid the table says the regression is not estimable rather than dropping the rows
    few = tables.count_fraction_rows([r for r in rows if r["count"] == 1000])
    assert few and all(math.isnan(r["mean"]) for r in few)


def test_log_auc_weighs_decades_alike_whatever_the_grid():
    coarse = np.array([0, 9, 99, 999]), np.array([1.0, 1.0, 0.0, 0.0])
    fine = np.unique(np.concatenate([np.arange(0, 100), np.geomspace(100, 999, 50).round()]))
    dense = fine, np.interp(np.log1p(fine), np.log1p(coarse[0]), coarse[1])
    assert tables.log_auc(*coarse) == pytest.approx(tables.log_auc(*dense), abs=1e-3)
    assert tables.log_auc(*coarse) == pytest.approx((np.log(10) + 0.5 * np.log(10)) / np.log(1000))
    assert tables.log_auc([0, 10, 1000], [1.0, 1.0, 1.0]) == pytest.approx(1.0)
