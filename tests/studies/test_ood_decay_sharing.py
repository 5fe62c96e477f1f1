"""ood_decay part 2, the sharing axis: its run graph, its tasks, and its tables on hand-made curves.

The smoke path end to end runs in tests/studies/test_common.py (SHRINK entry)."""

import dataclasses
import math
import re

import jax
import numpy as np
import pytest

import studies.ood_decay as study
from studies.ood_decay import grid, ladder, sharing
from studies.ood_decay.presets import CRITERION_EXACT, PRESETS, Sharing
from toymodels.analysis.stats import survival
from toymodels.params import param_paths, param_shapes
from toymodels.schedule import NEVER
from toymodels.train import Trainer

PAPER = PRESETS["paper"].sharing
TINY = Sharing(arms=tuple(sharing.ARMS), sharing=(0.0, 0.5, 1.0), seeds=2, n_layers=1, d_model=16, n_languages=3,
               max_pre=40, window=30, n_evals=4, control_window=20)


def _tags(spec):
    return dict(spec.tags)


def test_paper_preset_meets_the_protocol():
    assert len(PAPER.sharing) >= 5 and min(PAPER.sharing) == 0.0 and max(PAPER.sharing) == 1.0
    assert PAPER.window >= 20_000 and PAPER.seeds >= 5 and set(PAPER.arms) == set(sharing.ARMS)


def test_run_graph_roles_parents_and_criterion():
    specs = sharing.specs(TINY)
    by_id = {s.run_id: s for s in specs}
    assert len(by_id) == len(specs) == len(TINY.arms) * len(TINY.sharing) * TINY.seeds * len(sharing.ROLES)
    parent = {"pre": None, "never": None, "drop": "pre", "joint": "pre"}
    for s in specs:
        t = _tags(s)
        assert (_tags(by_id[s.init_from])["role"] if s.init_from else None) == parent[t["role"]]
        if s.init_from:
            p = by_id[s.init_from]
            assert (p.train.seed, _tags(p)["arm"], _tags(p)["sharing"]) == (s.train.seed, t["arm"], t["sharing"])
        # only pre stops at the criterion, on X's trained pairs
        assert s.train.stop_when == (f"{t['x_train']}.exact>={CRITERION_EXACT}" if t["role"] == "pre" else "")
        (event,) = s.mixture.events
        assert event.task == t["x_lang"] and event.fraction == 0.0
        assert event.step == (0 if t["role"] in ("drop", "never") else NEVER)   # X absent from step 0 or never
        assert t["x_train"] not in s.mixture.tasks and t["x_lang"] in s.mixture.tasks
        assert s.train.steps == {"pre": TINY.max_pre, "drop": TINY.window}.get(t["role"], TINY.control_window)
    # the seeds of one arm, sharing value and role share one compiled program
    groups = {s.group_key() for s in specs}
    assert len(groups) == len(TINY.arms) * len(TINY.sharing) * 4


def test_early_run_is_the_drop_runs_first_steps():
    specs = sharing.specs(dataclasses.replace(TINY, early_window=10))
    by_id = {s.run_id: s for s in specs}
    early = [s for s in specs if _tags(s)["role"] == "early"]
    assert len(early) == len(TINY.arms) * len(TINY.sharing) * TINY.seeds
    for s in early:
        drop = by_id[s.run_id.replace("_early", "_drop")]
        assert s.init_from == drop.init_from and s.mixture == drop.mixture and s.tasks == drop.tasks
        assert s.train.steps == 10 and dataclasses.replace(s.train, steps=drop.train.steps,
                                                           n_evals=drop.train.n_evals) == drop.train
    assert not [s for s in sharing.specs(TINY) if _tags(s)["role"] == "early"]
    for bad in (-1, TINY.window):
        with pytest.raises(ValueError, match=f"early_window={bad}: 0 \\(none\\) or a step count below window=30"):
            sharing.specs(dataclasses.replace(TINY, early_window=bad))


def test_arm_tasks_put_x_on_the_kept_surface_and_its_trained_pairs_in_an_eval_copy():
    for arm, kept_function in sharing.ARMS.items():
        tasks = dict(sharing.arm_tasks(arm, 1.0, 3))
        names = list(tasks)
        x, x_train = names[-2], names[-1]
        assert x_train == f"{x}_train" and tasks[x].function == "add"
        assert all(tasks[k].function == kept_function for k in names[:-2])
        assert len(names) == (4 if arm != "two_task" else 3)
        assert tasks[x_train].eval_pairs == "train" and dataclasses.replace(tasks[x_train], eval_pairs="held_out") \
            == tasks[x]
        np.testing.assert_array_equal(tasks[x].token_ids(int(x[1:])), tasks[names[0]].token_ids(0))
    assert 0 < sharing.template_exact() < 0.2      # the best constant answer of 80 pairs a + b
    with pytest.raises(ValueError, match="sharing="):
        sharing.specs(dataclasses.replace(TINY, sharing=(1.5,)))


def _rows(arm, s, seed, x_curve, t, stop=(100, 1.0)):
    """Metric rows of one cell: pre ends at 0.97 on X, drop follows ``x_curve`` over ``t``."""
    out = []
    x, xt = "K2", "K2_train"
    tags = dict(part="sharing", arm=arm, sharing=s, x_lang=x, x_train=xt, seed=seed)
    curves = {"pre": ([0, 100], [0.0, 0.97]), "drop": (t, x_curve), "joint": (t, [0.97] * len(t)),
              "never": (t, [0.0] * len(t))}
    for role, (steps, vals) in curves.items():
        run = f"{arm}_{s}_{seed}_{role}"
        for task in (x, xt, "K0"):
            out += [dict(run=run, role=role, task=task, metric="exact", step=int(a), value=float(b), **tags)
                    for a, b in zip(steps, vals)]
        if role == "pre":
            out.append(dict(run=run, role=role, task="train", metric="stopped", step=stop[0], value=stop[1], **tags))
    return out


def test_censored_half_lives_are_never_reported_as_observed():
    t = np.array([0, 1, 10, 100, 1000])
    decays = 0.97 * np.exp(-t / 50)                     # halves at 50 ln 2 = 34.7 (between 10 and 100)
    holds = np.full(len(t), 0.97)
    rows = (_rows("interfere", 1.0, 0, decays, t) + _rows("interfere", 1.0, 1, holds, t)
            + _rows("interfere", 1.0, 2, holds * 0.7, t))        # lost 30 %: not half
    got = {r["seed"]: r for r in sharing.seed_rows(rows)}
    # the crossing interpolates linearly between evaluations 10 and 100
    r10, r100 = decays[2], decays[3]
    assert got[0]["censored"] == 0
    assert got[0]["half_life_steps"] == pytest.approx(10 + 90 * (r10 - 0.485) / (r10 - r100))
    for seed in (1, 2):
        assert got[seed]["censored"] == 1 and got[seed]["half_life_steps"] == 1000   # the window, flagged
    assert got[0]["pre_steps"] == 100 and got[0]["pre_exact"] == pytest.approx(0.97)
    assert got[1]["final_exact"] == pytest.approx(0.97) and got[0]["never_exact"] == 0
    surv = {r["step"]: r["surviving"] for r in sharing.survival_rows(list(got.values()))}
    # one of three decays at ~35 steps; the two censored ones keep the curve at 2/3 to the end
    assert surv[0.0] == 1.0 and surv[1000.0] == pytest.approx(2 / 3)
    np.testing.assert_allclose(survival([got[0]["half_life_steps"], 1000, 1000], [True, False, False], [1000]), 2 / 3)
    summary = {r["quantity"]: r for r in sharing.summary_rows(list(got.values()))}
    assert "half_life_steps" not in summary                 # censored values are never averaged
    for q, r in summary.items():
        if q != "pre_steps":
            assert 0.0 <= r["lo"] <= r["mean"] <= r["hi"] <= 1.0 and r["n"] == 3
    assert math.isfinite(summary["pre_steps"]["mean"])


def test_incomplete_cells_are_left_out():
    t = np.array([0, 1, 10])
    rows = [r for r in _rows("same", 0.0, 0, [0.97, 0.5, 0.1], t) if not r["run"].endswith("never")]
    assert sharing.seed_rows(rows) == [] and sharing.tables(rows) == {}


def test_a_part_alone_trains_exactly_that_parts_runs_of_the_full_preset():
    full = PRESETS["smoke"]
    alone = study.part(full, "sharing")
    assert grid.specs(alone) == [] and sharing.specs(alone.sharing) == sharing.specs(full.sharing)
    cases = study.part(full, "cases")
    assert cases.sharing is None and grid.specs(cases) == grid.specs(full)


# ---------------------------------------------------------------- the intervention ladder
LADDER = dataclasses.replace(TINY, ladder=tuple(ladder.RUNGS), ladder_sharing=(0.0, 1.0), ladder_steps=10)


def test_ladder_rungs_name_the_parameters_they_train():
    model = sharing.specs(TINY)[0].model
    paths = list(param_shapes(model))
    chosen = {rung: {p for p in paths if re.fullmatch(rx, p)} for rung, rx in ladder.RUNGS.items()}
    assert chosen["readout_bias"] == {"ln_final.bias"} and chosen["unembed"] == {"W_U"}
    assert chosen["embed"] == {"W_E", "W_pos"} and chosen["full"] == set(paths)
    assert chosen["norms"] == {p for p in paths if ".ln" in f".{p}" and p.endswith((".scale", ".bias"))}
    assert chosen["layer"] == {p for p in paths if p.startswith("blocks.0.")}
    assert chosen["tag"] == {"W_E"} and ladder.trainable_params(model, "tag") == model.d_model
    counts = [ladder.trainable_params(model, r) for r in ladder.RUNGS]
    assert counts[0] == model.d_model and counts[-1] == sum(int(np.prod(s)) for s in param_shapes(model).values())


@pytest.mark.parametrize("rung", ["norms", "tag"])
def test_training_a_rung_changes_only_its_parameters(rung):
    spec = next(s for s in ladder.specs(LADDER) if dict(s.tags)["rung"] == rung)
    train = dataclasses.replace(spec.train, steps=3, warmup_steps=0, n_evals=1)
    trainer = Trainer(spec.model, train, dict(spec.tasks), spec.mixture)
    runs = trainer.runs(seeds=[0])
    start = trainer.init(runs)
    before = jax.tree.map(np.asarray, start.params)      # training donates the start state's buffers
    res = trainer.train(runs, start, progress=False)
    tag = ladder.x_tag(dict(spec.tasks)[dict(spec.tags)["x_lang"]])
    for path, a, b in zip(param_paths(before), jax.tree.leaves(before), jax.tree.leaves(res.state.params)):
        named = bool(re.fullmatch(ladder.RUNGS[rung], path))
        if rung == "tag" and named:   # X's tag row alone: (runs, vocab, d_model)
            moved = np.any(a != np.asarray(b), axis=(0, 2))
            assert moved.tolist() == [i == tag for i in range(moved.size)], path
        else:
            assert bool(np.any(a != np.asarray(b))) == named, path


def test_ladder_graph_starts_from_drop_and_never_with_one_budget():
    specs = ladder.specs(LADDER)
    ids = {s.run_id for s in sharing.specs(LADDER)}
    assert len(specs) == len(LADDER.arms) * 2 * LADDER.seeds * len(ladder.RUNGS) * 2
    for s in specs:
        t = dict(s.tags)
        assert s.init_from in ids and s.init_from.endswith(f"_{t['source']}")
        assert s.mixture.tasks == (t["x_lang"],) and s.train.steps == 10
        assert s.train.trainable == ladder.RUNGS[t["rung"]]
        assert s.train.trainable_rows == ((ladder.x_tag(dict(s.tasks)[t["x_lang"]]),) if t["rung"] == "tag" else ())
    with pytest.raises(ValueError, match="ladder_sharing"):
        ladder.specs(dataclasses.replace(LADDER, ladder_sharing=(0.3,)))
    with pytest.raises(ValueError, match="rung"):
        ladder.specs(dataclasses.replace(LADDER, ladder=("bias",)))


def test_ladder_rows_pair_each_seed_with_its_never_saw_x_control():
    rows = []
    for seed, (dropped, never) in enumerate([(0.9, 0.1), (0.8, 0.2), (0.7, 0.1)]):  # noqa: B007
        for source, v in (("drop", dropped), ("never", never)):
            tags = dict(part="ladder", arm="same", sharing=1.0, rung="unembed", source=source, x_lang="K2",
                        x_train="K2_train", trainable_params=100, seed=seed)
            rows += [dict(run=f"{seed}{source}", task=task, metric="exact", step=st, value=val, **tags)
                     for task in ("K2", "K2_train") for st, val in ((0, 0.0), (10, v))]
    per = ladder.seed_rows(rows)
    assert [round(r["advantage"], 6) for r in per] == [0.8, 0.6, 0.6]
    summary = ladder.summary_rows(per)
    adv = next(r for r in summary if r["quantity"] == "advantage")
    assert adv["n"] == 3 and -1 <= adv["lo"] < adv["mean"] < adv["hi"] <= 1
    assert ladder.smallest_recovering_rung(summary, "same", 1.0) == "unembed"
    assert ladder.smallest_recovering_rung(summary, "same", 1.0, margin=0.9) is None



def test_patching_replaces_the_stream_and_the_receiver_runs_on_from_there():
    """b, and a = b with another embedding: they differ only before the first residual
    point, so b given a's stream at any point outputs exactly what a does; b given its own
    stream outputs its own output."""
    from flax import nnx

    from studies.ood_decay import patching
    from toymodels.analysis.activations import default_layers
    from toymodels.model import init_model
    from toymodels.params import build_model, model_params

    tasks = sharing.arm_tasks("interfere", 0.5, 3)
    cfg = sharing.arm_model(dataclasses.replace(PRESETS["smoke"].sharing, n_layers=1, d_model=16), tasks)
    b = init_model(cfg, seed=0)
    params = dict(model_params(b), W_E=model_params(init_model(cfg, seed=1))["W_E"])
    a = build_model(cfg, params)
    batch = dict(tasks)[tasks[-2][0]].full_batch("train")
    points = tuple(default_layers(b))
    (ga, sa), (gb, sb) = nnx.split(a), nnx.split(b)
    out_a, acts_a = patching._programs(ga, points)[0](sa, batch.inputs)
    out_b, acts_b = patching._programs(gb, points)[0](sb, batch.inputs)
    patched = patching._programs(gb, points)[1]
    assert not np.allclose(np.asarray(out_a), np.asarray(out_b), atol=1e-3)
    for point in points:
        np.testing.assert_allclose(np.asarray(patched(sb, batch.inputs, acts_a[point], point)), np.asarray(out_a),
                                   atol=1e-5)
    np.testing.assert_allclose(np.asarray(patched(sb, batch.inputs, acts_b[points[1]], points[1])), np.asarray(out_b),
                               atol=1e-5)
    assert patching._exact(out_a, batch) == float(np.mean(np.all(
        (np.asarray(out_a).argmax(-1) == np.asarray(batch.targets)) | (np.asarray(batch.mask) == 0), axis=-1)))
