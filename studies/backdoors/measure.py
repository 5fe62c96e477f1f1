"""Detection: can a detector tell triggered inputs from clean ones in a model's activations?

For each detection cell (every trigger at the base settings), seed and point of the persistence
curve (end of insertion = clean step 0, each checkpoint, end of the clean phase), the
backdoored model and the never-poisoned control of the same trigger and training length read
the same inputs: ``detect_seqs`` trusted clean inputs (train split), as many clean test inputs
and triggered test inputs (eval split). Activations: every residual stream of
``default_layers`` at the SEP position, the last prompt position, where the first answer token
(the backdoor's decision) is predicted (not the embedding itself: at SEP it is the same vector
for every input). Detectors (``toymodels.analysis.detectors``):
  mahalanobis  fitted on the trusted rows alone;
  contrast     a generic contrast pair that knows the behaviour, not the trigger: clean prompts
               followed by the behaviour's first token vs by the correct first token, read at
               that token (MacDiarmid et al. 2024's "are you doing something dangerous? yes/no");
  supervised   logistic regression on trusted rows vs separate triggered train-split rows: the
               ceiling, the only detector that has seen the trigger.
Per model, detector and layer: AUROC and average precision on the test rows. A model's entry is
cached (AnalysisCache "detection"), valid for its run's config and these settings.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from studies.backdoors.grid import task
from studies.backdoors.presets import MEASURE_SEED, Preset
from toymodels.analyses import AnalysisCache
from toymodels.analysis.activations import collect, default_layers
from toymodels.analysis.detectors import ContrastProbe, Mahalanobis, SupervisedProbe, auroc, average_precision
from toymodels.runspec import RunSpec
from toymodels.store import load_models

CACHE = "detection"
DETECTORS = ("mahalanobis", "contrast", "supervised")
LABEL_KEYS = ("cell", "trigger", "behaviour", "kind", "size", "role")


def detection_inputs(P: Preset, trigger: str, behaviour: str) -> dict[str, np.ndarray]:
    """Input batches (N, T): trusted, clean test, triggered train and test, and the contrast pair."""
    key = jax.random.key(MEASURE_SEED)
    clean, triggered = task(P, trigger), task(P, trigger, behaviour, P.batch_size, 1)
    n = P.detect_seqs

    def draw(t, i, split):
        return np.asarray(t.sample(jax.random.fold_in(key, i), n, split=split).inputs)
    out = {"trusted": draw(clean, 0, "train"), "clean_test": draw(clean, 1, "eval"),
           "triggered_train": draw(triggered, 2, "train"), "triggered_test": draw(triggered, 3, "eval")}
    # contrast pair: clean prompts + SEP + the correct first answer (negative) / the behaviour's (positive)
    neg, sep = draw(clean, 4, "train"), sep_position(P)
    pos = neg.copy()
    pos[:, sep + 1] = clean.resp_id if behaviour == "fixed" else (neg[:, sep + 1] + 1) % P.n_symbols
    out.update(contrast_neg=neg, contrast_pos=pos)
    return out


def sep_position(P: Preset) -> int:
    """Index of SEP among the model's inputs: the position that predicts the first answer token."""
    return (1 if len(P.functions) > 1 else 0) + P.length


def model_rows(model, inputs: dict[str, np.ndarray], sep: int) -> list[dict]:
    """(detector, layer, auroc, average_precision) rows of one model."""
    layers = default_layers(model)[1:]   # not the embedding: at SEP it is one vector for every input
    acts = {k: collect(model, v, layers, positions=[sep + 1 if k.startswith("contrast") else sep])
            for k, v in inputs.items()}
    rows = []
    for layer in layers:
        a = {k: v[layer] for k, v in acts.items()}
        fitted = {"mahalanobis": Mahalanobis().fit(a["trusted"]),
                  "contrast": ContrastProbe(a["contrast_pos"], a["contrast_neg"]).fit(a["trusted"]),
                  "supervised": SupervisedProbe().fit(a["trusted"], a["triggered_train"])}
        for name, det in fitted.items():
            clean, trig = det.score(a["clean_test"]), det.score(a["triggered_test"])
            rows.append({"detector": name, "layer": layer, "auroc": auroc(clean, trig),
                         "average_precision": average_precision(clean, trig)})
    return rows


def clean_step(P: Preset, spec: RunSpec) -> int:
    role = dict(spec.tags)["role"]
    return 0 if role == "insert" else P.clean_steps if role == "clean" else int(role.removeprefix("clean_c"))


def measure_detection(P: Preset, measured: list[RunSpec], out: Path) -> None:
    """Detection rows of every model in ``measured`` without a valid cache entry."""
    cache = AnalysisCache(out, CACHE)
    settings = {"seed": MEASURE_SEED, "n": P.detect_seqs, "detectors": DETECTORS}
    todo: dict[tuple, list[RunSpec]] = {}
    for s in measured:
        if cache.get(s.run_id, {"run": s.config(), "settings": settings}) is None:
            tags = dict(s.tags)
            todo.setdefault((tags["trigger"], tags["behaviour"], s.model), []).append(s)
    for (trigger, behaviour, _), members in todo.items():
        inputs = detection_inputs(P, trigger, behaviour)
        for spec, model in zip(members, load_models(out, members)):
            tags = dict(spec.tags)
            label = {k: tags[k] for k in LABEL_KEYS}
            rows = [{**label, "seed": spec.train.seed, "clean_step": clean_step(P, spec), **r}
                    for r in model_rows(model, inputs, sep_position(P))]
            cache.put(spec.run_id, {"run": spec.config(), "settings": settings}, rows)


def detection_rows(out: Path) -> list[dict]:
    return AnalysisCache(out, CACHE).all_rows()
