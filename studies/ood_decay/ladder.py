"""Part 2, the intervention ladder: gated or scrambled?

After the drop, X is retrained alone (its trained pairs) for ``ladder_steps`` steps with only
one rung's parameters trainable, from the dropped model (``drop``) and, as its control, from
the model that never saw X (``never``), with the same rung, budget and data:
  tag           the row of W_E for X's tag token alone (X's marker embedding). The tag stands
                at position 0 of X's inputs and nowhere else, so a rank-1 steering vector
                added there entering block 0 is the same function class (W_E[tag] + v); in
                the 1-layer models of this part, one added after the block is read only by
                the unscored logits at position 0. This rung is both the steering vector and
                the tag embedding of the issue's ladder.
  readout_bias  ln_final.bias: a shift of the residual the unembedding reads (every logit
                offset the unembedding can express)
  unembed       W_U
  norms         every LayerNorm scale and bias
  layer         block 0 (attention and MLP)
  embed         W_E and W_pos
  full          every parameter
If a small rung brings the dropped model back well above what it gives the never-saw-X model,
X was gated (the knowledge is intact behind a switch that rung controls); if the dropped model
recovers no better than never at every rung, what it knew of X is gone or scrambled beyond
what that rung can read out.
"""

from __future__ import annotations

import math
import re

import numpy as np

from studies.ood_decay.presets import CHUNK, Sharing
from studies.ood_decay.sharing import arm_model, arm_tasks
from toymodels.analysis.stats import aggregate
from toymodels.model import TransformerConfig
from toymodels.params import param_shapes
from toymodels.runspec import RunSpec
from toymodels.schedule import Mixture
from toymodels.tables import held_out, index_runs
from toymodels.tasks.languages import LanguageTask
from toymodels.trainconfig import TrainConfig

RUNGS = {"tag": r"W_E", "readout_bias": r"ln_final\.bias", "unembed": r"W_U", "norms": r".*ln\w*\.(scale|bias)",
         "layer": r"blocks\.0\..*", "embed": r"W_(E|pos)", "full": r".*"}
ROW_RUNGS = ("tag",)   # rungs that train one row of their parameter (X's tag token's row)
SOURCES = ("drop", "never")


def trainable_params(model: TransformerConfig, rung: str) -> int:
    """Parameters a rung trains (its regex over the model's parameter paths; a row rung, one row)."""
    shapes = [shape for path, shape in param_shapes(model).items() if re.fullmatch(RUNGS[rung], path)]
    return int(sum(np.prod(shape[1:] if rung in ROW_RUNGS else shape) for shape in shapes))


def x_tag(task: LanguageTask) -> int:
    """The token id of a knob language's tag (position 0 of each of its inputs)."""
    if task.case != "knob":
        raise ValueError(f"the tag rung needs a knob language (got case {task.case!r})")
    return task.index


def specs(S: Sharing) -> list[RunSpec]:
    out = []
    for rung in S.ladder:
        if rung not in RUNGS:
            raise ValueError(f"ladder rung {rung!r}: choose from {', '.join(RUNGS)}")
    for arm in S.arms:
        for s in S.ladder_sharing:
            if s not in S.sharing:
                raise ValueError(f"ladder_sharing {s!r} is not one of the preset's sharing values {S.sharing}")
            tasks = arm_tasks(arm, s, S.n_languages)
            model = arm_model(S, tasks)
            x, x_train = tasks[-2][0], tasks[-1][0]
            for seed in range(S.seeds):
                prefix = f"sharing_{arm}_s{s:g}_seed{seed}"
                for rung in S.ladder:
                    for source in SOURCES:
                        tc = TrainConfig(steps=S.ladder_steps, batch_size=S.batch_size, lr=S.lr, weight_decay=0.0,
                                         warmup_steps=min(S.warmup, S.ladder_steps), lr_schedule="constant",
                                         n_evals=4, eval_spacing="log", eval_batch=S.eval_batch, seed=seed,
                                         chunk_steps=CHUNK, trainable=RUNGS[rung],
                                         trainable_rows=(x_tag(dict(tasks)[x]),) if rung in ROW_RUNGS else ())
                        tags = dict(part="ladder", arm=arm, sharing=s, rung=rung, source=source, x_lang=x,
                                    x_train=x_train, trainable_params=trainable_params(model, rung))
                        out.append(RunSpec(f"{prefix}_ladder_{rung}_{source}", model, tc, tasks, Mixture((x,)),
                                           tags=tuple(tags.items()), init_from=f"{prefix}_{source}",
                                           group=f"ladder_{rung}_{source}"))
    return out


def seed_rows(rows) -> list[dict]:
    """ladder.csv: one row per (arm, sharing, rung, seed): X's exact match on its trained (and
    held-out) pairs after the rung's budget, from the dropped model and from never-saw-X."""
    got: dict[tuple, dict] = {}
    for rec in index_runs(held_out(rows)).values():
        t = rec["tags"]
        if t.get("part") == "ladder":
            got.setdefault((t["arm"], float(t["sharing"]), t["rung"], int(t["seed"])), {})[t["source"]] = rec
    out = []
    for (arm, s, rung, seed), src in sorted(got.items(), key=lambda kv: (kv[0][0], kv[0][1], list(RUNGS).index(
            kv[0][2]), kv[0][3])):
        if set(src) != set(SOURCES):
            continue
        t = src["drop"]["tags"]
        final = {k: {task: float(rec["curves"][(task, "exact")][1][-1]) for task in (t["x_train"], t["x_lang"])}
                 for k, rec in src.items()}
        out.append({"case_or_arm": arm, "sharing": s, "rung": rung, "trainable_params": int(t["trainable_params"]),
                    "seed": seed, "recovered_exact": final["drop"][t["x_train"]],
                    "never_exact": final["never"][t["x_train"]],
                    "recovered_exact_heldout": final["drop"][t["x_lang"]],
                    "never_exact_heldout": final["never"][t["x_lang"]],
                    "advantage": final["drop"][t["x_train"]] - final["never"][t["x_train"]]})
    return out


def summary_rows(per_seed) -> list[dict]:
    """ladder_summary.csv: mean, bounded 95% interval and per-seed values per (arm, sharing, rung);
    ``advantage`` (dropped minus never-saw-X, paired by seed) is bounded to [-1, 1]."""
    qs = ("recovered_exact", "never_exact", "recovered_exact_heldout", "never_exact_heldout", "advantage")
    long = [{"case_or_arm": r["case_or_arm"], "sharing": r["sharing"], "rung": r["rung"],
             "trainable_params": r["trainable_params"], "quantity": q, "value": r[q]} for r in per_seed for q in qs]
    return aggregate(long, ("case_or_arm", "sharing", "rung", "trainable_params", "quantity"), points=True,
                     bounds=lambda k: (-1.0, 1.0) if k["quantity"] == "advantage" else (0.0, 1.0))


def tables(rows) -> dict[str, list[dict]]:
    per_seed = seed_rows(rows)
    return {"ladder": per_seed, "ladder_summary": summary_rows(per_seed)} if per_seed else {}


def smallest_recovering_rung(summary, arm: str, sharing: float, margin: float = 0.0) -> str | None:
    """The rung with the fewest trainable parameters whose advantage interval lies above ``margin``
    (the dropped model recovers more of X than never-saw-X does), or None."""
    rows = [r for r in summary if (r["case_or_arm"], r["sharing"], r["quantity"]) == (arm, sharing, "advantage")
            and math.isfinite(r["lo"]) and r["lo"] > margin]
    return min(rows, key=lambda r: r["trainable_params"])["rung"] if rows else None

