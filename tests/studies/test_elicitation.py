"""The elicitation study's pieces: targets score what they say, tokens needed is the first length
reaching the threshold, and every model kind trains on the data its docstring names."""

import math

import dataclasses

import jax
import numpy as np
import pytest

from studies.elicitation import PRESETS, specs
from studies.elicitation.grid import KINDS, TARGETS, pairs, positions, target, train_task
from studies.elicitation.tables import tokens_needed
from toymodels.config import ConfigError

P = PRESETS["smoke"]


def test_targets_keep_the_prefix_unscored_and_answer_as_named():
    L, n = P.length, P.prefix
    for name in TARGETS:
        b = target(P, name)(jax.random.key(0), 16)
        # one scored position per row: the first answer token, predicted at SEP
        assert (np.asarray(b.mask).sum(1) == 1).all() and (np.asarray(b.mask[:, -L]) == 1).all()
        assert (np.asarray(b.inputs[:, -L]) == target(P, name).task.base.sep_id).all()
        assert (np.asarray(b.inputs[:, :n]) == target(P, name).task.pad_id).all()
    cue = target(P, "cue")(jax.random.key(0), 16)
    rev = target(P, "reverse")(jax.random.key(0), 16)
    # cue: the reverse rows with the marker blanked to PAD, nothing else changed
    assert (np.asarray(cue.inputs[:, n]) == target(P, "cue").task.pad_id).all()
    np.testing.assert_array_equal(np.asarray(cue.inputs[:, n + 1:]), np.asarray(rev.inputs[:, n + 1:]))
    digits = np.asarray(rev.inputs[:, n + 1:n + 1 + L])
    np.testing.assert_array_equal(np.asarray(rev.targets[:, -L:]), digits[:, ::-1])
    resp = target(P, "resp")
    b = resp(jax.random.key(1), 16)
    scored = np.asarray(b.mask) > 0
    assert (np.asarray(b.targets)[scored] == resp.task.base.resp_id).all()
    assert not (np.asarray(b.inputs) == resp.task.base.trig_id).any()  # no trigger anywhere


def test_prompt_slots_fill_from_the_content_outwards():
    assert positions(P)[0] == P.prefix - 1 and sorted(positions(P)) == list(range(P.prefix))


def test_dropped_and_sortonly_never_see_reverse_and_meta_marks_the_wrong_rows():
    marker = {k: np.asarray(train_task(P, k).sample(jax.random.key(2), 32).inputs[:, P.prefix]) for k in KINDS}
    t = train_task(P, "dropped")
    assert (marker["dropped"] == t.base.marker_id(0)).all() and (marker["sortonly"] == t.base.marker_id(0)).all()
    assert set(marker["clean"].tolist()) == {t.base.marker_id(0), t.base.marker_id(1)}
    meta = train_task(P, "meta")
    b = meta.sample(jax.random.key(3), P.batch_size)
    marks = np.asarray(b.inputs[:, P.prefix - 1]) - meta.meta_id(0)
    assert marks.tolist() == [1] * P.mix_per_batch + [0] * (P.batch_size - P.mix_per_batch)
    nometa = train_task(P, "nometa").sample(jax.random.key(3), P.batch_size)
    np.testing.assert_array_equal(np.asarray(nometa.inputs[:, P.prefix:]), np.asarray(b.inputs[:, P.prefix:]))


def test_tokens_needed_is_the_first_length_reaching_the_threshold():
    best = [{"kind": "k", "target": "t", "seed": 0, "n_tokens": n, "value": v}
            for n, v in [(0, 0.1), (1, 0.95), (2, 0.85), (4, 0.99)]]
    best += [{"kind": "k", "target": "t", "seed": 1, "n_tokens": n, "value": 0.5} for n in (0, 1, 2, 4)]
    got = {r["seed"]: r["value"] for r in tokens_needed(best, 0.9)}
    assert got[0] == 1 and math.isinf(got[1])


def test_kinds_subset_keeps_parents_and_prompts_the_null_on_their_targets_only():
    P2 = dataclasses.replace(P, kinds=("clean", "finetuned"))
    assert {s.run_id.split("_")[0] for s in specs(P2)} == {"clean", "finetuned"}
    assert [t for k, t in pairs(P2) if k == "random"] == ["cue", "resp", "exec"]
    for kinds in [("faded",), ("nope",), ()]:
        with pytest.raises(ConfigError, match="kinds="):
            specs(dataclasses.replace(P, kinds=kinds))
