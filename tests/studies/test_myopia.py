"""The myopia study: its grid, its summary tables on hand-made rows, and its cached analyses.

The smoke path end to end runs in tests/test_studies.py (SHRINK entry).
"""

import dataclasses
import math

import pytest

import studies.myopia as study
from studies.myopia.grid import points, reference, run_id, specs
from studies.myopia.measure import wu_probes
from studies.myopia.presets import PRESETS
from studies.myopia.tables import (anchors, diagnostics_table, final_table, gap_rows, gap_table, positions_table,
                                   probes_table)
from toymodels.sweep import run_sweep

POINT = dict(n_layers=1, d_model=16, params=1000, p=-1, fillers=-1, length=6)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_grid_is_well_formed(preset):
    P = PRESETS[preset]
    all_specs = specs(P)
    by_id = {s.run_id: s for s in all_specs}
    assert len(by_id) == len(all_specs)
    for s in all_specs:
        tags = dict(s.tags)
        if tags["arm"] == "local":   # a fine-tune of its own seed's vanilla run, reading it as teacher
            parent = by_id[s.init_from]
            assert s.teacher == s.init_from and dict(parent.tags)["arm"] == "vanilla"
            assert parent.train.seed == s.train.seed and parent.model == s.model
            assert s.train.steps == max(1, int(parent.train.steps * P.local_frac))
    # the position points have every arm; tuning cells every lr factor
    for family, point in [("wu", "p1"), ("text", reference(P, "text")), ("markov", points(P)[-1].point)]:
        assert run_id(family, point, "bigram", 1.0, P.seeds - 1) in by_id
    for f in P.lr_factors:
        assert run_id("pairs", reference(P, "pairs"), "myopic", f, 0) in by_id


def test_preset_steps_and_shared_program():
    paper, smoke = PRESETS["paper"], PRESETS["smoke"]
    assert {f: paper.family_steps(f) for f in ("wu", "mult", "pairs", "text", "markov")} == \
        dict(wu=2500, mult=6000, pairs=1500, text=600, markov=500)
    by_id = {s.run_id: s for s in specs(smoke)}
    van, myo = by_id["wu-p1-vanilla-lr1-s0"].train, by_id["wu-p1-myopic-lr1-s0"].train
    assert van.myopic and van.myopic_beta == 1.0 and myo.myopic and myo.myopic_beta == 0.0   # one program
    van = {s.run_id: s for s in specs(dataclasses.replace(smoke, one_program=False))}["wu-p1-vanilla-lr1-s0"]
    assert not van.train.myopic


def _final(arm, seed, value, metric="loss", lr_factor=1.0, family="pairs", point="A", **kw):
    return {"family": family, "point": point, **POINT, "arm": arm, "beta": -1, "lr_factor": lr_factor, "seed": seed,
            "metric": metric, "value": value, "step": 100, "task": family, **kw}


def test_gap_rows_by_hand():
    finals = [_final("vanilla", 0, 1.0), _final("vanilla", 1, 1.2), _final("myopic", 0, 1.5),
              _final("myopic", 1, 1.6), _final("bigram", 0, 2.0), _final("bigram", 1, 2.2),
              _final("local", 0, 0.9),
              # tuning: myopic is best at lr x3, vanilla at x1
              _final("vanilla", 0, 1.1, lr_factor=3.0), _final("vanilla", 1, 1.3, lr_factor=3.0),
              _final("myopic", 0, 1.4, lr_factor=3.0), _final("myopic", 1, 1.4, lr_factor=3.0),
              _final("vanilla", 0, 0.5, point="B"),   # B has no myopic run: no gap, nothing averaged
              _final("vanilla", 0, 0.3, metric="acc")]
    got = {(r["point"], r["seed"], r["quantity"]): r["value"] for r in gap_rows(finals)}
    assert got[("A", 0, "gap")] == pytest.approx(0.5) and got[("A", 1, "gap")] == pytest.approx(0.4)
    assert got[("A", 0, "exp_gap")] == pytest.approx(math.exp(0.5))
    assert got[("A", 0, "gap_share")] == pytest.approx(0.5 / 1.0)
    assert got[("A", 0, "local_bonus")] == pytest.approx(0.1) and ("A", 1, "local_bonus") not in got
    assert got[("A", 0, "gap_tuned")] == pytest.approx(1.4 - 1.0)
    assert (got[("A", 0, "lr_best_myopic")], got[("A", 0, "lr_best_vanilla")]) == (3.0, 1.0)
    assert not any(k[0] == "B" for k in got)
    table = {r["quantity"]: r for r in gap_table(finals)}
    assert table["gap"]["mean"] == pytest.approx(0.45) and table["gap"]["n"] == 2
    assert table["local_bonus"]["n"] == 1 and table["local_bonus"]["values"] == "0.1"
    # losses and exp(gap) stay >= 0; the gap, a difference, keeps its symmetric t-interval
    assert table["L_vanilla"]["lo"] >= 0 and table["exp_gap"]["lo"] >= 0
    gap = table["gap"]
    assert gap["mean"] - gap["lo"] == pytest.approx(gap["hi"] - gap["mean"])


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
    rows = [_final("vanilla", s, v, metric="offdiag_cos", step=10) for s, v in ((0, 0.9), (1, 0.99), (2, -0.2))]
    rows += [_final("myopic", 0, 0.5, metric="offdiag_cos", step=10),            # not a vanilla run
             _final("vanilla", 0, 0.5, metric="offdiag_cos", step=10, lr_factor=3.0),   # not the matched lr
             _final("vanilla", 0, 1.0, metric="loss", step=10)]
    (cos,) = diagnostics_table(rows)
    assert cos["n"] == 3 and cos["mean"] == pytest.approx(1.69 / 3) and -1 < cos["lo"] and cos["hi"] < 1
    pos = positions_table([dict(family="wu", point="p1", arm="vanilla", seed=s, position=3, value=v)
                           for s, v in ((0, 0.01), (1, 0.2))])
    assert pos[0]["mean"] == pytest.approx(0.105) and pos[0]["lo"] >= 0
    probes = probes_table([dict(arm="vanilla", seed=s, layer=1, name="blocks.0.resid_post", value=v)
                           for s, v in ((0, 0.99), (1, 0.9), (2, 0.97))])
    assert probes[0]["mean"] == pytest.approx(2.86 / 3) and probes[0]["hi"] <= 1


def test_anchors_scale_and_pick_filler_points():
    def row(family, point, arm, metric, mean, **kw):
        return dict(family=family, point=point, arm=arm, lr_factor=1.0, metric=metric, mean=mean, lo=mean - 0.01,
                    hi=mean + 0.01, n=3, **{**POINT, **kw})
    final = [row("wu", "p0.1", "myopic", "loss", 0.12, p=0.1),
             row("mult", "3x3b4-F0", "vanilla", "exact", 0.5, fillers=0),
             row("mult", "3x3b4-F4", "vanilla", "exact", 0.3, fillers=4),
             row("mult", "3x3b4-F8", "vanilla", "exact", 0.4, fillers=8)]
    probes = [dict(arm="vanilla", layer=1, name="blocks.0.resid_post", mean=0.97, lo=0.9, hi=0.99, n=3)]
    got = {r["quantity"]: r for r in anchors(final, probes)}
    per_p = got["wu p=0.1 myopic loss / p"]
    assert per_p["ours"] == pytest.approx(1.2) and per_p["hi"] == pytest.approx(1.3)
    assert got["multiplication, most fillers, vanilla exact match"]["ours"] == 0.4          # F = 8
    assert got["multiplication, fewest fillers > 0, vanilla exact match"]["ours"] == 0.3    # F = 4, not 0
    assert got["wu layer-1 probe R^2 of sin(freq x), vanilla"]["ours"] == 0.97
    assert len(got) == 4    # anchors without a row in this preset are left out


def test_probes_are_cached_and_resume(tmp_path):
    P = dataclasses.replace(PRESETS["smoke"], seeds=1, steps=4, eval_batch=16, fixed_model=(1, 16))
    by_id = {s.run_id: s for s in specs(P)}
    run_sweep([by_id["wu-p1-vanilla-lr1-s0"], by_id["wu-p1-myopic-lr1-s0"]], tmp_path, progress=False)
    rows = wu_probes(P, tmp_path, by_id)
    assert [(r["arm"], r["layer"]) for r in rows] == [("vanilla", 0), ("vanilla", 1), ("myopic", 0), ("myopic", 1)]
    assert all(r["value"] <= 1 for r in rows)
    record = tmp_path / "analyses" / "probes" / "wu-p1.json"
    stamp = record.stat().st_mtime_ns
    assert wu_probes(P, tmp_path, by_id) == rows and record.stat().st_mtime_ns == stamp   # read, not recomputed


def test_package_entry_points():
    assert study.NAME == "myopia" and study.PRESETS is PRESETS
    assert callable(study.run) and callable(study.summarize) and callable(study.figures)
