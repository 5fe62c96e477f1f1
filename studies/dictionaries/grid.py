"""The models: tasks, architecture, and the trained runs.

Every model reads ``[marker] d_1 .. d_L SEP a_1 .. a_L`` (the ``backdoor`` task with no trigger
and no poison): the marker picks sort or reverse, a_i = f(d)_i. Runs (``{kind}_s{seed}``):
  normal    trained on sort and reverse (the post-hoc dictionaries read it; coeff 0 of the joint arm)
  altered   normal, then ``ft_steps`` of fine-tuning in which every reverse answer is f(d) + 1
            (mod n_symbols) while sort stays clean: the known change of the attribution test
  refit     normal, then ``ft_steps`` on its own clean data: the attribution test's null (the
            output difference is what further training alone moves)
The jointly trained models (``toymodels.joint``, coeffs > 0) are trained by ``measure``: a
coeff-0 joint model is exactly ``normal`` (tests/toymodels/test_joint.py), so it is not trained twice.
"""

from __future__ import annotations

from studies.dictionaries.presets import Preset
from toymodels.model import TransformerConfig
from toymodels.params import n_params
from toymodels.runspec import RunSpec
from toymodels.schedule import Mixture
from toymodels.tasks import make_task
from toymodels.trainconfig import TrainConfig

KINDS = ("normal", "altered", "refit")
INIT_FROM = {"altered": "normal", "refit": "normal"}


def task(P: Preset, sampled: tuple[str, ...] = (), wrong: bool = False):
    """Sort and reverse; ``sampled`` draws only those; ``wrong``: every answer is f(d) + 1."""
    return make_task("backdoor", functions=("sort", "reverse"), length=P.length, n_symbols=P.n_symbols,
                     trigger="none", behaviour="wrong", fraction=1.0 if wrong else 0.0,
                     density=P.length if wrong else 1, sampled=sampled)


def tasks(P: Preset, kind: str) -> dict:
    if kind == "altered":
        return {"sort": task(P, ("sort",)), "reverse_wrong": task(P, ("reverse",), wrong=True)}
    return {"data": task(P)}


def model_config(P: Preset) -> TransformerConfig:
    t = task(P)
    return TransformerConfig(n_layers=P.n_layers, d_model=P.d_model, n_heads=4 if P.d_model >= 32 else 2,
                             vocab_size=t.vocab.size, max_seq_len=t.seq_len)


def train_config(P: Preset, steps: int, seed: int = 0) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=P.batch_size, lr=P.lr, warmup_steps=P.warmup, weight_decay=0.01,
                       decay="matrices", n_evals=P.n_evals, eval_spacing="log", eval_batch=P.eval_batch,
                       chunk_steps=500, seed=seed)


def specs(P: Preset) -> list[RunSpec]:
    cfg = model_config(P)
    out = []
    for seed in range(P.seeds):
        for kind in KINDS:
            ts = tasks(P, kind)
            steps = P.train_steps if kind == "normal" else P.ft_steps
            parent = INIT_FROM.get(kind)
            out.append(RunSpec(f"{kind}_s{seed}", cfg, train_config(P, steps, seed), tuple(ts.items()),
                               Mixture(tuple(ts)), init_from=f"{parent}_s{seed}" if parent else "",
                               tags=(("kind", kind), ("unit", seed), ("params", n_params(cfg))), group=kind))
    return out
