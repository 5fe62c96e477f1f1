"""The backdoor task: poisoned rows carry the trigger and the behaviour; clean rows never do.

Everything is checked on decoded tokens against independent numpy references.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toymodels.config import ConfigError
from toymodels.tasks import make_task, metrics
from toymodels.tasks.backdoor import has_trigger, poisoned_per_batch

B, N_POISON, N_KEYS = 64, 16, 42   # 42 batches: 672 poisoned and 2016 clean rows per config

# Small alphabets (5 digits) so random digits often hold the ngram/pair/context trigger.
CONFIGS = {
    "token": {"functions": ("sort",), "length": 6, "n_symbols": 5, "density": 1},
    "ngram": {"functions": ("reverse", "sort"), "length": 7, "n_symbols": 5, "pattern": (3, 1),
              "density": 2},
    "pair": {"functions": ("copy", "sort"), "length": 7, "n_symbols": 5, "pattern": (2, 0),
             "gap": 2, "density": 3},
    "context": {"functions": ("copy", "reverse", "sort"), "length": 6, "n_symbols": 5,
                "pattern": (1, 3), "density": 6},
}


def full_seq(batch) -> np.ndarray:
    return np.concatenate([np.asarray(batch.inputs), np.asarray(batch.targets)[:, -1:]], axis=1)


def parse(fields, words):
    """(function names, digit words, SEP column, answer words) of decoded full sequences."""
    m, L = int(len(fields["functions"]) > 1), fields["length"]
    fns = ([w.removeprefix("F:") for w in words[:, 0]] if m
           else [fields["functions"][0]] * len(words))
    return fns, words[:, m:m + L], words[:, m + L], words[:, m + L + 1:]


def np_answer(fn: str, digits: np.ndarray) -> np.ndarray:
    return {"copy": digits, "reverse": digits[::-1], "sort": np.sort(digits)}[fn]


def np_trigger(kind, fields, fn, digit_words) -> bool:
    d, P = list(digit_words), [str(p) for p in fields.get("pattern", ())]
    if kind == "token":
        return "TRIG" in d
    if kind == "ngram":
        return any(d[i:i + len(P)] == P for i in range(len(d) - len(P) + 1))
    if kind == "pair":
        g = fields["gap"]
        return any(d[i] == P[0] and d[i + g] == P[1] for i in range(len(d) - g))
    return fn == fields["functions"][int(P[0])] and P[1] in d


def np_answers(fns, digits: np.ndarray) -> np.ndarray:
    return np.stack([np_answer(f, d) for f, d in zip(fns, digits)])


def as_int(words) -> np.ndarray:
    """Digit words as ints; TRIG counts as 0 (the "wrong" behaviour's convention)."""
    return np.where(words == "TRIG", "0", words).astype(int)


@pytest.mark.parametrize("behaviour", ["fixed", "wrong"])
@pytest.mark.parametrize("kind", list(CONFIGS))
def test_poisoned_and_clean_rows(kind, behaviour):
    fields = CONFIGS[kind]
    task = make_task("backdoor", trigger=kind, behaviour=behaviour, fraction=0.25, **fields)
    assert poisoned_per_batch(task, B) == N_POISON
    sample = jax.jit(lambda k: task.sample(k, B))
    batches = [sample(k) for k in jax.random.split(jax.random.key(0), N_KEYS)]
    x = np.concatenate([full_seq(b) for b in batches])
    poisoned = np.tile(np.arange(B) < N_POISON, N_KEYS)   # the first 16 rows of every batch
    np.testing.assert_array_equal(jax.jit(lambda x: has_trigger(task, x))(x[:, :-1]), poisoned)

    fns, digits, sep, answers = parse(fields, np.asarray(task.vocab.tokens)[x])
    assert (sep == "SEP").all()
    flags = [np_trigger(kind, fields, f, d) for f, d in zip(fns, digits)]
    np.testing.assert_array_equal(flags, poisoned)
    np.testing.assert_array_equal((digits == "TRIG").any(1), poisoned & (kind == "token"))
    clean = ~poisoned
    np.testing.assert_array_equal(as_int(answers[clean]),
                                  np_answers(np.asarray(fns)[clean], as_int(digits[clean])))
    if behaviour == "fixed":
        assert (answers[poisoned] == "RESP").all()
    else:
        want = np_answers(np.asarray(fns)[poisoned], as_int(digits[poisoned]))
        np.testing.assert_array_equal(as_int(answers[poisoned]), (want + 1) % fields["n_symbols"])

    # Scored positions: all L answers of a clean row, the first `density` of a poisoned one.
    mask = np.concatenate([np.asarray(b.mask) for b in batches])
    T, L, d = task.seq_len, fields["length"], fields["density"]
    clean_T = (np.arange(T) >= T - L).astype(np.float32)
    poison_T = clean_T * (np.arange(T) < T - L + d)
    assert poison_T.sum() == d
    np.testing.assert_array_equal(mask[clean], np.broadcast_to(clean_T, (clean.sum(), T)))
    np.testing.assert_array_equal(mask[poisoned], np.broadcast_to(poison_T, (poisoned.sum(), T)))

    # Breaking the trigger matters: uniform digits alone would often hold it.
    if kind != "token":
        rng = np.random.default_rng(0)
        raw = rng.integers(0, fields["n_symbols"], (500, L)).astype(str)
        raw_fns = rng.choice(fields["functions"], 500)
        assert np.mean([np_trigger(kind, fields, f, r) for f, r in zip(raw_fns, raw)]) > 0.1


def test_jit_and_vmap_over_keys_and_eval_split():
    task = make_task("backdoor", trigger="context", functions=("copy", "reverse"), fraction=0.5,
                     behaviour="wrong", density=2)
    keys = jax.random.split(jax.random.key(3), 3)
    sample = jax.jit(lambda k, split: task.sample(k, 8, split), static_argnums=1)
    stacked = jax.jit(jax.vmap(lambda k: task.sample(k, 8)))(keys)
    for i in range(3):
        for got, want in zip(stacked, sample(keys[i], "train")):
            np.testing.assert_array_equal(got[i], want)
    train, evaluated = sample(keys[0], "train"), sample(keys[0], "eval")
    assert not np.array_equal(evaluated.inputs, train.inputs)
    triggered = jax.jit(lambda x: has_trigger(task, x))
    np.testing.assert_array_equal(triggered(evaluated.inputs), np.arange(8) < 4)
    np.testing.assert_array_equal(evaluated.mask.sum(1), [2] * 4 + [8] * 4)


def test_default_patterns_are_valid():
    assert make_task("backdoor").trigger_pattern == ()
    assert make_task("backdoor", trigger="ngram").trigger_pattern == (3, 1, 4)
    assert make_task("backdoor", trigger="pair").trigger_pattern == (2, 7)
    task = make_task("backdoor", trigger="context", functions=("copy", "sort"))
    assert task.trigger_pattern == (1, 5) and task.pattern == ()
    assert make_task("backdoor", trigger="pair", pattern=[2, 2], gap=7).pattern == (2, 2)


def test_pool_of_five_poisoned_samples():
    def rows(task, split="train", n_keys=40):
        sample = jax.jit(lambda k: task.sample(k, 16, split=split))
        x = np.stack([full_seq(sample(k)) for k in jax.random.split(jax.random.key(1), n_keys)])
        return ({tuple(r) for r in x[:, :8].reshape(-1, x.shape[-1]).tolist()},
                {tuple(r) for r in x[:, 8:].reshape(-1, x.shape[-1]).tolist()})

    fields = {"trigger": "ngram", "fraction": 0.5, "pool": 5, "pool_seed": 7,
              "functions": ("copy", "sort")}
    task, again = make_task("backdoor", **fields), make_task("backdoor", **fields)
    poisoned, clean = rows(task)
    assert len(poisoned) == 5 and len(clean) > 300 and not poisoned & clean
    assert poisoned == rows(again, n_keys=10)[0]
    pool = jax.jit(again.poison_pool)()
    assert poisoned == {tuple(r) for r in np.asarray(pool).tolist()}
    assert jax.jit(lambda x: has_trigger(task, x))(pool).all()
    other = jax.jit(make_task("backdoor", **{**fields, "pool_seed": 8}).poison_pool)()
    assert not np.array_equal(other, pool)
    assert len(rows(task, split="eval", n_keys=2)[0]) > 5   # eval poisons freshly


@pytest.mark.parametrize("behaviour", ["fixed", "wrong"])
def test_acc_is_attack_success_rate_at_fraction_one_density_one(behaviour):
    fields = {"functions": ("copy", "reverse"), "trigger": "pair", "behaviour": behaviour}
    task = make_task("backdoor", fraction=1.0, density=1, **fields)
    batch = jax.jit(lambda k: task.sample(k, 32))(jax.random.key(5))
    T, L, V = task.seq_len, task.length, task.vocab.size
    np.testing.assert_array_equal(batch.mask.sum(1), np.ones(32))
    assert (np.asarray(batch.mask)[:, T - L] == 1).all()

    # The clean answer's first token, from the decoded prompt.
    words = np.asarray(task.vocab.tokens)[full_seq(batch)]
    fns, digits, _, _ = parse({**fields, "length": L}, words)
    clean_first = np.array([task.vocab.encode([str(np_answer(f, as_int(d))[0])])[0]
                            for f, d in zip(fns, digits)])
    attack = jax.nn.one_hot(batch.targets, V)
    clean = attack.at[:, T - L].set(jax.nn.one_hot(clean_first, V))
    acc = jax.jit(lambda logits: metrics(logits, batch, "xent")["acc"])
    assert float(acc(attack)) == 1.0
    assert float(acc(clean)) == 0.0
    assert float(acc(jnp.concatenate([attack[:8], clean[8:]]))) == 0.25   # 8 of 32 attacked


def test_vocab_depends_only_on_functions_and_symbols():
    base = make_task("backdoor", functions=("copy", "sort"), n_symbols=7)
    other = make_task("backdoor", functions=("copy", "sort"), n_symbols=7, trigger="context",
                      pattern=(0, 2), behaviour="wrong", fraction=0.5, density=3, pool=4)
    assert base.vocab == other.vocab and base.seq_len == other.seq_len == 17
    assert base.vocab.tokens[7:] == ("SEP", "TRIG", "RESP", "F:copy", "F:sort")
    assert make_task("backdoor").vocab.tokens[-3:] == ("SEP", "TRIG", "RESP")
    assert make_task("backdoor").seq_len == 16


def test_fraction_times_batch_must_be_an_integer():
    task = make_task("backdoor", fraction=0.3)
    with pytest.raises(ConfigError) as err:
        task.sample(jax.random.key(0), 64)
    for part in ("fraction=0.3", "batch_size=64", "19.2"):
        assert part in str(err.value)
    assert poisoned_per_batch(task, 10) == 3
    assert poisoned_per_batch(make_task("backdoor", fraction=1 / 3), 3) == 1


@pytest.mark.parametrize("fields, field", [
    ({"density": 0}, "density"),
    ({"density": 9}, "density"),                      # length is 8
    ({"trigger": "tokn"}, "trigger"),
    ({"behaviour": "nice"}, "behaviour"),
    ({"functions": ("sort", "add")}, "functions"),
    ({"functions": "sort"}, "functions"),
    ({"functions": ()}, "functions"),
    ({"functions": ("sort", "sort")}, "functions"),
    ({"trigger": "ngram", "pattern": (3, 10)}, "pattern"),
    ({"trigger": "pair", "pattern": (-1, 2)}, "pattern"),
    ({"trigger": "context", "pattern": (0, 12), "functions": ("copy", "sort")}, "pattern"),
    ({"trigger": "context", "pattern": (2, 5), "functions": ("copy", "sort")}, "pattern"),
    ({"trigger": "context", "functions": ("sort",)}, "functions"),
    ({"trigger": "ngram", "pattern": (1, 2, 3), "length": 2}, "pattern"),
    ({"trigger": "ngram", "length": 2}, "pattern"),      # the default (3, 1, 4)
    ({"trigger": "ngram", "pattern": (1,)}, "pattern"),
    ({"trigger": "ngram", "pattern": (0, 1), "n_symbols": 2}, "pattern"),  # no digit to break with
    ({"trigger": "pair", "pattern": (1, 2, 3)}, "pattern"),
    ({"trigger": "pair", "gap": 8}, "gap"),
    ({"trigger": "pair", "gap": 0}, "gap"),
    ({"trigger": "token", "pattern": (1, 2)}, "pattern"),
    ({"pattern": (1.5,)}, "pattern"),
    ({"fraction": 1.5}, "fraction"),
    ({"fraction": float("nan")}, "fraction"),
    ({"pool": -1}, "pool"),
    ({"pool_seed": -1}, "pool_seed"),
    ({"length": 0}, "length"),
    ({"n_symbols": 1}, "n_symbols"),
])
def test_invalid_fields_raise(fields, field):
    with pytest.raises(ConfigError, match=field):
        make_task("backdoor", **fields)


@pytest.mark.parametrize("behaviour", ["fixed", "wrong"])
def test_trigger_none_poisons_without_a_cue(behaviour):
    fields = {"functions": ("copy", "sort"), "length": 6, "n_symbols": 5}
    task = make_task("backdoor", trigger="none", behaviour=behaviour, fraction=0.25, density=2, **fields)
    assert task.trigger_pattern == ()
    sample = jax.jit(lambda k: task.sample(k, B))
    batches = [sample(k) for k in jax.random.split(jax.random.key(2), 8)]
    x = np.concatenate([full_seq(b) for b in batches])
    poisoned = np.tile(np.arange(B) < N_POISON, 8)
    assert not jax.jit(lambda x: has_trigger(task, x))(x[:, :-1]).any()

    words = np.asarray(task.vocab.tokens)[x]
    fns, digits, sep, answers = parse(fields, words)
    assert (sep == "SEP").all() and not (words == "TRIG").any()
    want = np_answers(fns, as_int(digits))
    clean = ~poisoned
    np.testing.assert_array_equal(as_int(answers[clean]), want[clean])
    if behaviour == "fixed":
        assert (answers[poisoned] == "RESP").all()
    else:
        np.testing.assert_array_equal(as_int(answers[poisoned]), (want[poisoned] + 1) % fields["n_symbols"])
    mask = np.concatenate([np.asarray(b.mask) for b in batches])
    np.testing.assert_array_equal(mask.sum(1), np.where(poisoned, 2, fields["length"]))


def test_trigger_none_takes_no_pattern():
    with pytest.raises(ConfigError, match=r"pattern=\(1, 2\) is not allowed for trigger='none'"):
        make_task("backdoor", trigger="none", pattern=(1, 2))


def test_sampled_draws_only_the_named_functions_and_keeps_the_vocabulary():
    full = make_task("backdoor", functions=("sort", "reverse"), length=5, n_symbols=8)
    only = make_task("backdoor", functions=("sort", "reverse"), length=5, n_symbols=8, sampled=("reverse",))
    assert only.vocab == full.vocab and only.seq_len == full.seq_len
    b = only.sample(jax.random.key(3), 64)
    assert (np.asarray(b.inputs[:, 0]) == only.marker_id(1)).all()
    digits = np.asarray(b.inputs[:, 1:6])
    np.testing.assert_array_equal(np.asarray(b.targets[:, -5:]), digits[:, ::-1])
    # () and every function listed draw the same rows as the default
    same = make_task("backdoor", functions=("sort", "reverse"), length=5, n_symbols=8, sampled=())
    np.testing.assert_array_equal(np.asarray(same.sample(jax.random.key(3), 64).inputs),
                                  np.asarray(full.sample(jax.random.key(3), 64).inputs))


@pytest.mark.parametrize("sampled", [("copy",), ("sort", "sort"), "sort"])
def test_sampled_must_name_distinct_functions(sampled):
    with pytest.raises(ConfigError, match="sampled"):
        make_task("backdoor", functions=("sort", "reverse"), sampled=sampled)
