"""ood_decay part 3, persistence: one factor at a time around the base cell; tables on hand-made
curves (censored half-lives never averaged). The smoke path end to end runs in
tests/studies/test_common.py (SHRINK entry)."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

import studies.ood_decay as study
from studies.ood_decay import persistence
from studies.ood_decay.presets import CRITERION_EXACT, PRESETS, Persistence

TINY = Persistence(sizes=(("1L-d16", 1, 16, 3e-3), ("2L-d16", 2, 16, 1e-2)), tune_lrs=(3e-3, 1e-2), extra=(10,),
                   lr2=(1e-3,), sgd=(0.1,), replay=(0.05,), wd_data=(0.1,), wd_only=(1.0,), seeds=2, max_pre=40,
                   window=30, n_evals=4)
PAPER = PRESETS["paper"].persistence


def _tags(spec):
    return dict(spec.tags)


def test_paper_preset_meets_the_protocol():
    assert len(PAPER.sizes) >= 6 and len(PAPER.tune_lrs) >= 3 and PAPER.seeds >= 5
    assert all(len(getattr(PAPER, f)) >= 2 for f in ("extra", "lr2", "sgd", "replay", "wd_data", "wd_only"))


def test_each_variant_changes_only_its_factor_from_the_base():
    specs = persistence.specs(TINY)
    by_id = {s.run_id: s for s in specs}
    drops = [s for s in specs if _tags(s)["role"] == "drop"]
    assert len(drops) == TINY.seeds * (1 + len(persistence.variants(TINY)))
    for s in drops:
        t, seed = _tags(s), s.train.seed
        base = by_id[f"persist_base_base_seed{seed}_drop"]
        assert s.train.displacement and s.train.steps == TINY.window and s.train.eval_spacing == "log"
        (event,) = s.mixture.events
        assert event.step == 0 and event.task == t["x_lang"] and t["x_train"] not in s.mixture.tasks
        differs = {f for f in ("lr", "optimizer", "objective", "weight_decay")
                   if getattr(s.train, f) != getattr(base.train, f)}
        if event.fraction != base.mixture.events[0].fraction:
            differs.add("replay")
        if s.model != base.model:
            differs.add("model")
        if s.init_from != base.init_from:
            differs.add("init_from")
        want = {"base": set(), "size": {"model", "lr", "init_from"}, "extra": {"init_from"}, "lr2": {"lr"},
                "sgd": {"optimizer", "lr"}, "replay": {"replay"}, "wd_data": {"weight_decay"},
                "wd_only": {"weight_decay", "objective"}}[t["factor"]]
        assert differs == want, (s.run_id, differs)
        # every drop starts from a phase 1 at its size's tuned lr that stops at the criterion
        parent = by_id[s.init_from]
        if t["factor"] == "extra":
            assert parent.train.steps == int(t["level"]) and _tags(parent)["role"] == "phase1"
            parent = by_id[parent.init_from]
        assert parent.train.stop_when == f"{t['x_train']}.exact>={CRITERION_EXACT}"
        if t["factor"] not in ("lr2", "sgd"):
            assert parent.train.lr == s.train.lr
        assert parent.model == s.model and parent.train.seed == seed
    pres = [s for s in specs if _tags(s)["role"] == "pre"]
    assert len(pres) == TINY.seeds * len(TINY.sizes) * len(TINY.tune_lrs)
    assert len({s.group_key() for s in pres}) == len(TINY.sizes)   # the tuning lrs of a size: one program


def test_bad_values_are_refused_before_anything_trains():
    with pytest.raises(ValueError, match=r"lr 0.5 is not one of tune_lrs"):
        persistence.specs(dataclasses.replace(TINY, sizes=(("1L-d16", 1, 16, 0.5),)))
    with pytest.raises(ValueError, match=r"replay=1.5: allowed \[0.0, 1.0\]"):
        persistence.specs(dataclasses.replace(TINY, replay=(1.5,)))
    with pytest.raises(ValueError, match=r"sgd=0: allowed \(0.0"):
        persistence.specs(dataclasses.replace(TINY, sgd=(0,)))
    with pytest.raises(ValueError, match="part='nope'"):
        study.part(PRESETS["smoke"], "nope")


def test_a_part_alone_trains_exactly_that_parts_runs():
    full = PRESETS["smoke"]
    alone = study.part(full, "persistence")
    assert alone.cases == () and alone.sharing is None and alone.persistence == full.persistence
    assert study.part(full, "sharing").persistence is None and study.part(full, "cases").persistence is None


def _rows(factor, level, seed, x_curve, t, disp, stop=(100, 1.0), kept=None):
    """Metric rows of one drop run (and the base pre it starts from)."""
    tags = dict(part="persistence", arm="same", sharing=0.0, x_lang="K2", x_train="K2_train", seed=seed)
    drop = dict(tags, role="drop", factor=factor, level=level, size="1L-d16", params=100, lr1=0.003, lr2=0.003,
                optimizer="adamw", replay=0.0, weight_decay=0.0, objective="data", extra=0)
    run = f"persist_{factor}_{level}_seed{seed}_drop"
    out = [dict(run=run, task=task, metric="exact", step=int(a), value=float(b), **drop)
           for task, curve in (("K2_train", x_curve), ("K2", x_curve), ("K0", [0.9] * len(t) if kept is None else kept))
           for a, b in zip(t, curve)]
    out += [dict(run=run, task="train", metric="displacement", step=int(a), value=float(b), **drop)
            for a, b in zip(t, disp)]
    out.append(dict(run=f"persist_1L-d16_lr0.003_seed{seed}_pre", task="train", metric="stopped", step=stop[0],
                    value=stop[1], **tags, role="pre", size="1L-d16", params=100, lr=0.003))
    return out


def test_censored_half_lives_are_never_reported_as_observed():
    t = np.array([0, 10, 100, 1000])
    disp = np.array([0.0, 1.0, 2.0, 4.0])
    decays = np.array([0.96, 0.8, 0.2, 0.0])     # half (0.48) between steps 10 and 100
    holds = np.full(4, 0.96)
    rows = (_rows("base", "base", 0, decays, t, disp) + _rows("base", "base", 1, holds, t, disp)
            + _rows("base", "base", 2, holds, t, disp))
    got = {r["seed"]: r for r in persistence.seed_rows(rows)}
    h = 10 + 90 * (0.8 - 0.48) / (0.8 - 0.2)
    assert got[0]["censored"] == 0 and got[0]["half_life_steps"] == pytest.approx(h)
    assert got[0]["half_life_displacement"] == pytest.approx(1.0 + (h - 10) / 90)   # displacement at the crossing
    assert got[1]["censored"] == 1 and got[1]["half_life_steps"] == 1000 and got[1]["half_life_displacement"] == 4
    assert got[0]["pre_steps"] == 100 and got[0]["kept_exact"] == pytest.approx(0.9)
    # still falling over the window's second half: end (0.0) minus the middle (step 500, 0.2 * 5 / 9)
    assert got[0]["late_change"] == pytest.approx(-0.2 * 5 / 9) and got[1]["late_change"] == 0.0
    summary = {r["quantity"]: r for r in persistence.summary_rows(list(got.values()))}
    assert "half_life_steps" not in summary
    # two of three censored: the Kaplan-Meier median is beyond the window, not a number
    assert math.isnan(summary["km_median_half_life_steps"]["mean"])
    assert summary["km_median_half_life_steps"]["n_censored"] == 2
    assert summary["km_median_half_life_steps"]["values"] == f"{h:.4g} >1000 >1000"
    assert summary["log10_half_life_steps"]["n"] == 1 and summary["half_life_displacement"]["n"] == 1
    for q in ("final_exact", "kept_exact"):
        assert 0.0 <= summary[q]["lo"] <= summary[q]["mean"] <= summary[q]["hi"] <= 1.0
    # three of five observed at h: the survival curve falls to 2/5 there, so the median is h
    rows2 = rows + _rows("base", "base", 3, decays, t, disp) + _rows("base", "base", 4, decays, t, disp)
    km = {r["quantity"]: r for r in persistence.summary_rows(persistence.seed_rows(rows2))}
    assert km["km_median_half_life_steps"]["mean"] == pytest.approx(h)


def test_kept_disruption_is_the_lowest_kept_value_in_the_first_steps_after_the_drop():
    t = np.array([0, 10, 100, 1000])
    kept = [0.9, 0.2, 0.1, 0.85]     # the dip at step 100 lies beyond EARLY (60): not counted
    got = persistence.seed_rows(_rows("sgd", "0.01", 0, np.full(4, 0.96), t, np.zeros(4), kept=kept))[0]
    assert persistence.EARLY < 100
    assert got["kept_min_early"] == pytest.approx(0.2) and got["kept_exact"] == pytest.approx(0.85)


def test_tuning_summary_marks_the_fastest_lr_with_every_seed_met():
    per_seed = ([dict(size="a", params=1, lr=0.01, seed=s, pre_steps=p, met=1) for s, p in enumerate((100, 120))]
                + [dict(size="a", params=1, lr=0.003, seed=s, pre_steps=p, met=m)
                   for s, (p, m) in enumerate(((50, 1), (6000, 0)))])
    rows = {r["lr"]: r for r in persistence.tune_summary(per_seed, {"a": 0.01})}
    assert rows[0.01]["fastest"] == 1 and rows[0.01]["chosen"] == 1 and rows[0.003]["fastest"] == 0
    assert rows[0.003]["n_met"] == 1 and rows[0.01]["median_pre_steps"] == 110


def test_figure_draws_the_base_cells_floors_from_part_2(monkeypatch):
    from studies.ood_decay import figures_persistence
    t = np.array([0, 10, 100, 1000])
    x = np.array([0.96, 0.8, 0.2, 0.05])
    rows = [r for s in range(2) for f, lv in (("base", "base"), ("replay", "0.05"))
            for r in _rows(f, lv, s, x, t, np.arange(4.0))]
    per_seed = persistence.seed_rows(rows)
    assert {(r["arm"], r["sharing"]) for r in per_seed} == {("same", 0.0)}
    floors = [dict(arm="same", sharing=0.0, quantity="never_exact", mean=0.0, lo=0.0, hi=0.0, n=2),
              dict(arm="same", sharing=0.0, quantity="template_exact", mean=0.1125, lo=0.1125, hi=0.1125, n=2),
              dict(arm="interfere", sharing=0.0, quantity="template_exact", mean=0.3, lo=0.3, hi=0.3, n=2)]
    drawn = []
    monkeypatch.setattr(figures_persistence.plotting, "save", lambda fig, path: drawn.append(fig) or [path])
    tables = {"persistence": per_seed, "persistence_summary": persistence.summary_rows(per_seed),
              "sharing_summary": floors}
    figures_persistence.figure(tables, Path("unused"))
    bottom = drawn[0].axes[-1]   # one factor: the bottom-row panel is the last axes
    flat = {round(float(line.get_ydata()[0]), 4) for line in bottom.get_lines() if len(set(line.get_ydata())) == 1}
    assert {0.0, 0.1125} <= flat and 0.3 not in flat   # this arm's floors, not another arm's
