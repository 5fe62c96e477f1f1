"""The causal test: does a trained twin use a subspace that plays the role of a compiled
RASP variable? (``toymodels.analysis.interchange``: distributed alignment search.)

For every library program with categorical output, every materialized variable (source,
attention or MLP SOp) that varies over the inputs, and every reference-width twin seed:
at the residual point where the compiled net first writes the variable, a k-dim subspace
of the twin (k = the variable's compiled width) is learned so that interchanging it from
a source input makes the twin output the program's counterfactual (the compiled net with
that variable interchanged: exact by construction). Pairs of the twin's training inputs
fit the subspace (full-batch Adam, RESTARTS initial bases, the lowest fitting loss kept);
pairs of its held-out inputs score it.

The same fit on the compiled net itself, scrambled (residual basis rotated, so the
variable sits in an unknown subspace), is the positive control: it shows where the
method can find a variable that is there by construction (net ``scrambled_compiled``;
compiled attention is saturated, and fits through it can fail).

Scores per (program, variable, net, seed), learned subspace and a random k-dim subspace:
  iia           fraction of output positions equal to the counterfactual
  iia_changed   the same over positions where the counterfactual differs from the base
                output (what the intervention must change; an intervention that changes
                nothing scores 0 here and ``floor`` on iia)
  floor         fraction of positions where counterfactual == base output
Variables whose interchange never changes the output on the held-out pairs (e.g.
``indices`` at one input length) are listed with n_changed = 0 and no scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from studies.compiled_vs_trained.grid import twin_task
from studies.compiled_vs_trained.presets import Preset
from toymodels import plotting
from toymodels.analysis import interchange as ic
from toymodels.analysis.activations import collect
from toymodels.analysis.stats import aggregate, seed_means
from toymodels.hooks import forward
from toymodels.runspec import RunSpec
from toymodels.scramble import scramble
from toymodels.store import load_models

CONSTANT_TOL = 1e-6
METHODS = ("learned", "random")
RANDOM_SEED = 100    # random subspaces: seeds 100 + twin seed
CONTROL_FOUND = 0.9  # the positive control "found" a variable at this held-out iia_changed
RESTARTS = 3         # initial bases per fit, the lowest final fitting loss kept


def _pairs(x_BT: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return x_BT[rng.integers(0, len(x_BT), n)], x_BT[rng.integers(0, len(x_BT), n)]


def variables(compiled, x_BT) -> list[tuple[str, str, str, int]]:
    """(label, kind, birth layer, k) of every materialized variable that varies over ``x_BT``:
    the birth layer is the first residual point where its code varies."""
    acts = collect(compiled.model, x_BT, positions="non_bos")
    out = []
    for label, kind in compiled.plan.impl.items():
        if kind in ("fused", "virtual"):
            continue
        idx = compiled.subspace(label)
        birth = next((layer for layer, a in acts.items() if idx and a[:, idx].std(0).max() > CONSTANT_TOL), None)
        if birth is not None:
            out.append((label, kind, birth, len(idx)))
    return out


def analyse_interchange(P: Preset, out: Path, program: str, runs: list[RunSpec]) -> list[dict]:
    """Rows for one program's reference-width twins (``runs``); none for numerical output."""
    task = twin_task(program)
    compiled = task.compile()
    if compiled.numerical_output:
        return []
    n_classes = len(compiled.output_values)
    x_fit = np.asarray(task.full_batch("train").inputs)
    x_test = np.asarray(task.full_batch("eval").inputs)
    b_fit, s_fit = _pairs(x_fit, P.iia_pairs, 0)
    b_test, s_test = _pairs(x_test, P.iia_test_pairs, 1)
    mask_fit, mask_test = np.ones(b_fit.shape), np.ones(b_test.shape, bool)
    mask_fit[:, 0] = 0
    mask_test[:, 0] = False
    base_out = np.asarray(forward(compiled.model, b_test)[0])[..., :n_classes].argmax(-1)
    models = load_models(out, runs)
    rows = []
    for label, kind, layer, k in variables(compiled, x_fit):
        cf_fit = ic.counterfactual(compiled, label, layer, b_fit, s_fit)
        cf_test = ic.counterfactual(compiled, label, layer, b_test, s_test)
        changed = mask_test & (cf_test != base_out)
        base = dict(program=program, variable=label, kind=kind, layer=layer, k=k, n_positions=int(mask_test.sum()),
                    n_changed=int(changed.sum()), floor=float((cf_test == base_out)[mask_test].mean()))
        if not changed.any():
            rows.append(dict(base, net="", method="", seed="", iia="", iia_changed="", final_loss=""))
            continue
        nets = [("twin", dict(spec.tags)["seed"], model) for spec, model in zip(runs, models)]
        nets.append(("scrambled_compiled", 0, scramble(compiled.model, 0)))
        for net, seed, model in nets:
            Q, losses = ic.fit_basis(model, layer, k, b_fit, s_fit, cf_fit, mask_fit, n_classes=n_classes,
                                     steps=P.iia_steps, lr=1e-2, restarts=RESTARTS, seed=seed)
            for method, basis, loss in (("learned", Q, float(losses[-1])),
                                        ("random", ic.random_basis(model.cfg.d_model, k, RANDOM_SEED + seed), "")):
                pred = ic.interchange_logits(model, layer, basis, b_test, s_test)[..., :n_classes].argmax(-1)
                right = pred == cf_test
                rows.append(dict(base, net=net, method=method, seed=seed, iia=float(right[mask_test].mean()),
                                 iia_changed=float(right[changed].mean()), final_loss=loss))
    return rows


def with_roles(rows: list[dict]) -> list[dict]:
    """Rows with ``role``: input (tokens, indices), output (the program's own output SOp, at
    the compiled net's last layer: any twin that solves the task must decode it linearly
    there) or intermediate (what the test is about); and ``control_found``: whether the fit
    found the variable in the scrambled compiled net (iia_changed >= CONTROL_FOUND), i.e.
    whether a miss on a twin can be read as the twin lacking it rather than the fit failing."""
    sinks = {p: twin_task(p).compile().plan.sink for p in {r["program"] for r in rows}}
    control = {(r["program"], r["variable"]): r["iia_changed"] for r in rows
               if (r["net"], r["method"]) == ("scrambled_compiled", "learned")}
    return [dict(r, role="input" if r["kind"] == "source" else "output" if r["variable"] == sinks[r["program"]]
                 else "intermediate",
                 control_found=int(control.get((r["program"], r["variable"]), 0.0) >= CONTROL_FOUND))
            for r in rows]


def interchange_pooled(rows: list[dict]) -> list[dict]:
    """Per (net, method, role, control_found (0, 1 or "all"), metric): the mean over variables
    within a seed, then mean and 95 % interval over seeds (seed_means), variables that change
    some output only."""
    keys = ("net", "method", "role", "control_found")
    long = [dict(net=r["net"], method=r["method"], role=r["role"], control_found=r["control_found"], seed=r["seed"],
                 metric=m, value=r[m], variable=f'{r["program"]}:{r["variable"]}')
            for r in rows if r["method"] for m in ("iia", "iia_changed")]
    long += [dict(r, control_found="all") for r in long]
    table = seed_means(long, (*keys, "metric"), bounds=(0.0, 1.0), points=True)
    n_vars: dict[tuple, set] = {}
    for r in long:
        n_vars.setdefault(tuple(r[k] for k in keys), set()).add(r["variable"])
    return [dict(r, variables=len(n_vars[tuple(r[k] for k in keys)])) for r in table]


def interchange_summary(rows: list[dict]) -> list[dict]:
    """Per (program, variable, method, metric): mean over twin seeds with a 95 % interval in
    [0, 1] and the per-seed values."""
    long = [dict(program=r["program"], variable=r["variable"], kind=r["kind"], role=r["role"], layer=r["layer"],
                 k=r["k"], floor=r["floor"], n_changed=r["n_changed"], net=r["net"], method=r["method"], seed=r["seed"],
                 metric=m, value=r[m]) for r in rows if r["method"] for m in ("iia", "iia_changed")]
    return aggregate(long, ("program", "variable", "kind", "role", "layer", "k", "floor", "n_changed", "net",
                            "method", "metric"),
                     bounds=(0.0, 1.0), points=True)


def interchange_figure(rows: list[dict], path: Path) -> list[Path]:
    """Per variable (one row each, grouped by program), held-out interchange accuracy on the
    positions the intervention must change: learned subspace vs a random one (bars: mean
    over twin seeds, dots: each seed), and the learned fit on the scrambled compiled net
    (x: the positive control)."""
    control = [r for r in rows if r["net"] == "scrambled_compiled" and r["method"] == "learned"]
    rows = [r for r in rows if r["net"] == "twin"]
    keys = sorted({(r["program"], r["variable"]) for r in rows}, reverse=True)
    fig, axes = plotting.figure(width=5.0, height=max(2.5, 0.16 * len(keys)))
    ax = axes[0, 0]
    for j, (method, color) in enumerate((("learned", "C0"), ("random", "0.5"))):
        for i, key in enumerate(keys):
            vals = [r["iia_changed"] for r in rows if (r["program"], r["variable"], r["method"]) == (*key, method)]
            y = i + (0.5 - j) * 0.35
            label = f"{method} subspace, twins (bar: mean of n={len(vals)} seeds; dots: seeds)"
            ax.barh(y, np.mean(vals), height=0.35, color=color, alpha=0.5, label=label if i == 0 else None)
            ax.plot(vals, [y] * len(vals), "o", ms=2, color=color)
    for i, key in enumerate(keys):
        vals = [r["iia_changed"] for r in control if (r["program"], r["variable"]) == key]
        ax.plot(vals, [i] * len(vals), "x", color="k", ms=4,
                label="learned, scrambled compiled net (positive control)" if i == 0 else None)
    ax.set_yticks(range(len(keys)), [f"{p}: {v}" for p, v in keys], fontsize=6)
    ax.set_ylim(-0.7, len(keys) - 0.3)
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("interchange accuracy on changed positions (held-out pairs)")
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.9 / max(2.5, 0.16 * len(keys))), ncol=1)
    ax.set_title("causal test: 1x twins vs the compiled variables", fontsize=8)
    return plotting.save(fig, path)
