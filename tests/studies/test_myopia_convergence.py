"""The myopia study's part "convergence": its runs, the parts' separation, and its tables on
hand-made rows. Its smoke path runs in tests/studies/test_common.py (the myopia SHRINK entry)."""

import dataclasses

import pytest

import studies.myopia as study
from studies.myopia import convergence
from studies.myopia.grid import points
from studies.myopia.presets import BASE_LR, FAMILIES, PRESETS
from toymodels.config import ConfigError

POINT = dict(family="text_long", point="L1d8-T32", n_layers=1, d_model=8, params=2700, p=-1, fillers=-1, length=32)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_runs_train_the_main_text_task_at_each_arms_rate(preset):
    P = study.part(PRESETS[preset], "convergence")
    C = P.convergence
    everything = convergence.specs(P)
    assert len({s.run_id for s in everything}) == len(everything)
    runs = [s for s in everything if dict(s.tags)["family"] == convergence.FAMILY]
    by_id = {s.run_id: s for s in runs}
    rate = dict(C.lr_factors)
    main_text = next(pt for pt in points(PRESETS[preset]) if pt.family == "text").task
    checked = set()
    for s in runs:
        tags = dict(s.tags)
        assert tags["family"] == convergence.FAMILY
        assert s.tasks[0][1] == main_text   # the same corpus, split and length as the main part's text runs
        if tags["arm"] == "local":   # fine-tunes its seed's vanilla run, reading it as teacher
            parent = by_id[s.init_from]
            assert s.teacher == s.init_from and dict(parent.tags)["arm"] == "vanilla"
            assert dict(parent.tags)["seed"] == tags["seed"] and s.train.steps == int(C.steps * P.local_frac)
            assert s.train.lr == pytest.approx(parent.train.lr * 0.1)
            continue
        assert s.train.steps == C.steps and s.train.n_evals == C.n_evals and s.train.eval_spacing == "log"
        own = rate["myopic" if tags["arm"] == "myopic" else "vanilla"]
        assert s.train.lr == pytest.approx(BASE_LR["text"] * tags["lr_factor"])
        if tags["lr_factor"] != own:   # only the reference size's tuned arms try the other rates
            assert tags["reference"] == 1 and tags["arm"] in ("vanilla", "myopic")
            checked.add((tags["arm"], tags["lr_factor"]))
    assert checked == {(arm, f) for arm in ("vanilla", "myopic") for f in C.check_factors if f != rate[arm]}
    counts = {arm: sum(dict(s.tags)["arm"] == arm for s in runs) for arm in convergence.ARMS}
    assert counts["bigram"] == counts["local"] == len(C.sizes) * C.seeds


def test_parts_split_the_preset():
    P = PRESETS["paper"]
    main, conv = study.part(P, "main"), study.part(P, "convergence")
    assert main.convergence is None and main.families == FAMILIES
    assert conv.families == () and points(conv) == [] and conv.convergence == P.convergence
    with pytest.raises(ValueError, match="choose one of main, convergence"):
        study.part(P, "text")
    with pytest.raises(ConfigError, match="families=.*runs all of wu, mult"):
        dataclasses.replace(P, families=("text",))


def _row(run, arm, task, metric, step, value, factor=3.0, seed=0):
    return {**POINT, "run": run, "arm": arm, "task": task, "metric": metric, "step": step, "tokens": step * 1024,
            "value": value, "lr_factor": factor, "seed": seed, "beta": -1, "band": -1}


def test_tables_by_hand():
    chosen = {("text_long", "vanilla"): 3.0, ("text_long", "myopic"): 1.0}
    rows = []
    for seed, (van, myo, big, loc) in enumerate([(1.8, 2.4, 2.7, 1.78), (2.0, 2.5, 2.6, 1.99)]):
        for arm, final, f in (("vanilla", van, 3.0), ("myopic", myo, 1.0), ("bigram", big, 3.0),
                              ("local", loc, 3.0)):
            run = f"{arm}-{seed}"
            rows += [_row(run, arm, "text", "loss", s, final + 0.1 * (s < 1000) + 0.3 * (s < 100), f, seed)
                     for s in (0, 99, 499, 999, 1999)]
            rows.append(_row(run, arm, "train", "train_loss", 1999, final - 0.05, f, seed))
        rows.append(_row(f"myopic-at-3-{seed}", "myopic", "text", "loss", 1999, myo + 0.2, 3.0, seed))
    t = convergence.tables(rows, chosen)
    gaps = {r["quantity"]: r for r in t["convergence_gaps.csv"]}
    assert gaps["gap"]["values"] == "0.6 0.5" and gaps["gap"]["n"] == 2
    assert gaps["local_bonus"]["mean"] == pytest.approx(0.015)
    assert gaps["gap_at_vanilla_lr"]["mean"] == pytest.approx(0.75)   # the myopic check run at vanilla's rate
    assert gaps["gap_share"]["values"] == f"{0.6 / 0.9:.6g} {0.5 / 0.6:.6g}"
    late = {r["quantity"]: r for r in t["convergence_late.csv"]}
    assert set(late) == {"late_loss", "heldout_minus_train"}   # text: no exact match
    # the eval nearest half of step 1999 is step 999, where the loss was 0.1 above its final value
    assert (late["late_loss"]["from_step"], late["late_loss"]["to_step"]) == (999, 1999)
    assert late["late_loss"]["mean"] == pytest.approx(-0.1)
    assert late["heldout_minus_train"]["mean"] == pytest.approx(0.05)
    curves = t["convergence_curves.csv"]
    assert {(r["task"], r["metric"]) for r in curves} == {("text", "loss"), ("train", "train_loss")}
    assert all(r["lo"] >= 0 for r in curves)


def test_multiplication_runs_and_late_exact_match():
    P = PRESETS["paper"]
    C = P.convergence
    mult = [s for s in convergence.specs(P) if dict(s.tags)["family"] == convergence.MULT]
    assert len(mult) == len(P.fillers) * 2 * C.mult_seeds
    main = {pt.fillers: pt.task for pt in points(P) if pt.family == "mult"}
    rate = dict(C.mult_lr_factors)
    for s in mult:
        tags = dict(s.tags)
        assert s.tasks[0][1] == main[tags["fillers"]] and s.train.steps == C.mult_steps
        assert s.train.lr == pytest.approx(BASE_LR["mult"] * rate[tags["arm"]])
    point = dict(POINT, family="mult_long", point="2x2b6-F8", fillers=8)
    rows = [{**_row("v", "vanilla", "mult", m, s, v), **point}
            for m, vals in (("loss", (1.0, 0.5, 0.4)), ("exact", (0.2, 0.7, 0.9))) for s, v in zip((0, 499, 999), vals)]
    chosen = {("mult_long", "vanilla"): 1.0, ("mult_long", "myopic"): 0.1}
    late = {r["quantity"]: r for r in convergence.tables(rows, chosen)["convergence_late.csv"]}
    assert late["late_exact"]["mean"] == pytest.approx(0.2) and late["late_loss"]["mean"] == pytest.approx(-0.1)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_multiplication_plateau_runs_are_vanilla_at_the_longer_budget(preset):
    P = study.part(PRESETS[preset], "convergence")
    C = P.convergence
    runs = convergence.specs(P)
    plateau = [s for s in runs if dict(s.tags)["family"] == convergence.PLATEAU]
    mult = {(dict(s.tags)["fillers"], dict(s.tags)["seed"]): s for s in runs
            if dict(s.tags)["family"] == convergence.MULT and dict(s.tags)["arm"] == "vanilla"}
    assert C.mult_plateau_steps > C.mult_steps and len(plateau) == len(P.fillers) * C.mult_seeds
    for s in plateau:   # the 20,000-step vanilla run's task, model and rate; only the budget differs
        tags = dict(s.tags)
        twin = mult[(tags["fillers"], tags["seed"])]
        assert tags["arm"] == "vanilla" and s.train.steps == C.mult_plateau_steps and s.run_id != twin.run_id
        assert s.tasks == twin.tasks and s.model == twin.model and s.train.lr == twin.train.lr
    rates = {(c["task"], c["arm"]): c["lr_factor"] for c in convergence.choice_rows(C)}
    assert rates[(convergence.PLATEAU, "vanilla")] == rates[(convergence.MULT, "vanilla")]


def test_filler_effect_is_the_seed_matched_difference_per_budget_and_arm():
    rows = []
    for fam, base in (("mult_long", 0.7), ("mult_plateau", 0.8)):
        for seed, (f0, f8) in enumerate([(base + 0.1, base), (base + 0.2, base + 0.05), (base, base - 0.1)]):
            for fillers, v in ((0, f0), (8, f8)):
                point = dict(POINT, family=fam, point=f"2x2b6-F{fillers}", fillers=fillers)
                rows += [{**_row(f"{fam}-{fillers}-{seed}", "vanilla", "mult", m, 999, x, 1.0, seed), **point}
                         for m, x in (("exact", v), ("loss", 1 - v))]
    chosen = {(f, arm): 1.0 for f in ("mult_long", "mult_plateau") for arm in ("vanilla", "myopic")}
    table = {r["family"]: r for r in convergence.tables(rows, chosen)["convergence_fillers.csv"]}
    assert table["mult_long"]["mean"] == pytest.approx(-0.35 / 3) and table["mult_long"]["n"] == 3
    assert table["mult_plateau"]["values"] == "-0.1 -0.15 -0.1" and table["mult_plateau"]["hi"] < 0
    assert (table["mult_long"]["fillers_from"], table["mult_long"]["fillers_to"]) == (0, 8)
