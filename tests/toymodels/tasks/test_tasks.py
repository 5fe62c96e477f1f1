"""Every registered task: the Batch contract, answer validity, static configs, registry errors, metrics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toymodels.config import ConfigError
from toymodels.tasks import TASKS, Batch, make_task, metrics
from toymodels.tasks.myopia import wu_targets_numpy

# Small configs keep compiles and numpy decoding fast; a task not listed runs with its defaults.
SMALL = {
    "copy": dict(length=5, n_symbols=7),
    "reverse": dict(length=5, n_symbols=7),
    "sort": dict(length=6, n_symbols=4),
    "modular_addition": dict(p=13),
    "parity": dict(length=6),
    "markov": dict(vocab_size=8, length=12),
    "wu_regression": dict(length=12, n_terms=3, p=0.5),
    "multiplication": dict(digits=2, fillers=2),
    "pair_count": dict(length=6, n_symbols=3),
    "text": dict(length=16, max_chars=50_000),
    "language": dict(case="C", index=0, target=2, n_languages=5),  # digits -> reversed digits
    "rasp_io": dict(program="sort", length=4, n_eval=16),
    "decompile": dict(n_programs=40, n_eval=8, max_weight_tokens=64, max_program_tokens=48),
    "adjacent_pair": dict(length=8, n_symbols=6),
    "pool": dict(base=make_task("parity", length=6), n=5, seed=3),
    "prefix": dict(base=make_task("parity", length=6), n=2),
}
B = 64


@pytest.fixture(scope="module", autouse=True)
def text_cache(tmp_path_factory):
    """The text corpus is built into a temporary cache, not the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOYMODELS_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def full_seq(batch: Batch) -> np.ndarray:
    """The (B, T + 1) sequence the batch was cut from."""
    return np.concatenate([np.asarray(batch.inputs), np.asarray(batch.targets)[:, -1:]], axis=1)


def as_words(task, x_BU) -> np.ndarray:
    return np.asarray(task.vocab.tokens)[x_BU]


def as_ints(words) -> np.ndarray:
    return np.vectorize(int)(words)


def check_digits(answer_fn):
    def check(task, x_BU):
        w = as_words(task, x_BU)
        L = task.length
        assert (w[:, L] == "SEP").all()
        digits, answer = as_ints(w[:, :L]), as_ints(w[:, L + 1:])
        np.testing.assert_array_equal(answer, answer_fn(digits))
    return check


def check_modular_addition(task, x_BU):
    w = as_words(task, x_BU)
    assert (w[:, 1] == "+").all() and (w[:, 3] == "=").all()
    a, b, c = as_ints(w[:, 0]), as_ints(w[:, 2]), as_ints(w[:, 4])
    np.testing.assert_array_equal(c, (a + b) % task.p)


def check_parity(task, x_BU):
    w = as_words(task, x_BU)
    assert (w[:, -2] == "SEP").all()
    np.testing.assert_array_equal(as_ints(w[:, -1]), as_ints(w[:, :-2]).sum(1) % 2)


def check_markov(task, x_BU):
    # Every observed transition must have non-negligible probability under the table.
    probs = task.transition_probs[x_BU[:, :-1], x_BU[:, 1:]]
    assert probs.min() > 1e-9


def check_language(task, x_BU):
    # "<B0> a1 a2 + b1 b2 = c1 c2 <toB2> a2 a1 + b2 b1 = c2 c1": one true sum, both sides.
    w, E = as_words(task, x_BU), task.expr_len
    assert (w[:, 0] == "<B0>").all() and (w[:, E + 1] == "<toB2>").all()
    src = as_ints(w[:, [1, 2, 4, 5, 7, 8]])
    np.testing.assert_array_equal(src, as_ints(w[:, [E + 3, E + 2, E + 6, E + 5, E + 9, E + 8]]))
    a, b, c = (10 * src[:, k] + src[:, k + 1] for k in (0, 2, 4))
    np.testing.assert_array_equal(a + b, c)


def check_wu_regression(task, batch):
    x, z = np.asarray(batch.inputs[..., 0]), np.asarray(batch.inputs[..., 1])
    assert set(np.unique(z)) <= {0.0, 1.0}
    np.testing.assert_allclose(batch.targets[..., 0], wu_targets_numpy(x, z, task.n_terms, task.freq),
                               atol=1e-5)


def check_multiplication(task, x_BU):
    w, k, F = as_words(task, x_BU), task.digits, task.fillers
    assert (w[:, k] == "*").all() and (w[:, 2 * k + 1] == "=").all()
    assert (w[:, 2 * k + 2:2 * k + 2 + F] == ".").all()
    number = lambda cols: (as_ints(cols) * task.base ** np.arange(cols.shape[1])).sum(1)
    a, b, c = number(w[:, :k]), number(w[:, k + 1:2 * k + 1]), number(w[:, -2 * k:])
    np.testing.assert_array_equal(a * b, c)


def check_pair_count(task, x_BU):
    w, L = as_words(task, x_BU), task.length
    assert (w[:, L] == "=").all()
    sym = as_ints(w[:, :L])
    want = (sym[:, 1:] == sym[:, :-1]).sum(1)
    np.testing.assert_array_equal(w[:, -1], np.char.add("c", want.astype(str)))


def check_text(task, x_BU):
    train = task.corpus("train").tobytes()
    assert all(train.find(row.astype(np.uint8).tobytes()) >= 0 for row in x_BU)


def check_adjacent_pair(task, x_BU):
    x_BL, answer = x_BU[:, :task.length], x_BU[:, -1]
    assert (x_BU[:, task.length] == task.n_symbols).all()
    for row, a in zip(x_BL, answer):
        assert sorted(np.bincount(row, minlength=task.n_symbols)[np.unique(row)]) == [2] * (task.n_pairs + 1)
        same = np.flatnonzero(row[1:] == row[:-1])
        assert len(same) == 1 and row[same[0]] == a


def check_rasp_io(task, batch):
    # Not next-token: the Batch itself, with targets = the program's output at each position.
    from toymodels.rasp import evaluate
    from toymodels.tasks.rasp_io import resolve_program
    program = resolve_program(task.program)[0]
    for x_T, y_T in zip(np.asarray(batch.inputs), np.asarray(batch.targets)):
        assert x_T[0] == 0  # BOS
        want = evaluate(program, [task.input_values[i - 1] for i in x_T[1:]])
        assert [task.output_vocab[j] for j in y_T[1:]] == want


def check_decompile(task, batch):
    # Every row's targets parse to a program of the split whose compiled weights are the row's.
    from toymodels.compiler import compile_program
    from toymodels.decompile import parse_program, weight_tokens
    from toymodels.decompile.evaluate import strip
    W = task.max_weight_tokens
    train = {tuple(e["tokens"]) for e in task.programs("train")}
    for x_TI, y_T in zip(np.asarray(batch.inputs), np.asarray(batch.targets)):
        toks = strip(task.vocab.decode(y_T[W:]))
        assert tuple(toks) in train
        x_NI = weight_tokens(compile_program(parse_program(toks), ("a", "b", "c"), 5), task.layout)
        np.testing.assert_array_equal(x_TI[:len(x_NI)], x_NI)
        assert not x_TI[len(x_NI):W].any()
        assert task.vocab.decode(x_TI[W + 1:, :task.vocab.size].argmax(-1))[:len(toks)] == toks


def check_pool(task, x_BU):
    # Training rows are valid base sequences, all from the task's fixed pool of n.
    check_parity(task.base, x_BU)
    pool = {tuple(row) for row in full_seq(task.examples()).tolist()}
    assert len(pool) <= task.n and {tuple(row) for row in x_BU.tolist()} <= pool


def check_prefix(task, x_BU):
    # PAD slots, then valid base sequences.
    assert (x_BU[:, :task.n] == task.pad_id).all()
    check_parity(task.base, x_BU[:, task.n:])


# name -> (scored positions: a count at the end, or the (T,) mask; validity check on
# decoded full sequences, or on the Batch for vector tasks)
SPECS = {
    "copy": (lambda t: t.length, check_digits(lambda d: d)),
    "reverse": (lambda t: t.length, check_digits(lambda d: d[:, ::-1])),
    "sort": (lambda t: t.length, check_digits(lambda d: np.sort(d, axis=1))),
    "modular_addition": (lambda t: 1, check_modular_addition),
    "parity": (lambda t: 1, check_parity),
    "markov": (lambda t: t.length, check_markov),
    "wu_regression": (lambda t: np.ones(t.length), check_wu_regression),
    "multiplication": (lambda t: 2 * t.digits, check_multiplication),
    "pair_count": (lambda t: 1, check_pair_count),
    "text": (lambda t: t.length, check_text),
    "language": (lambda t: 3 * t.width + 2, check_language),  # the whole target sentence
    "rasp_io": (lambda t: t.length, check_rasp_io),  # every position after BOS
    "decompile": (lambda t: t.max_program_tokens + 1, check_decompile),  # <sep> to the end
    "adjacent_pair": (lambda t: 1, check_adjacent_pair),
    "pool": (lambda t: 1, check_pool),  # SMALL's pool is over parity
    "prefix": (lambda t: 1, check_prefix),  # SMALL's prefix is over parity
    "backdoor": (lambda t: t.length, check_digits(lambda d: np.sort(d, axis=1))),  # clean sort
}
NAMES = sorted(TASKS)


@pytest.fixture(scope="module", params=NAMES)
def sampled(request):
    """(task, jitted sampler, one batch): compiled once per task for all contract tests."""
    task = make_task(request.param, **SMALL.get(request.param, {}))
    sample = jax.jit(lambda key: task.sample(key, B))
    return task, sample, sample(jax.random.key(0))


def test_every_task_has_a_spec():
    assert set(TASKS) == set(SPECS), "add the new task to SPECS (answer length + validity check)"


def test_shapes_dtypes_and_shift(sampled):
    task, _, batch = sampled
    T = task.seq_len
    assert batch.mask.shape == (B, T) and batch.mask.dtype == jnp.float32
    if task.input_kind == "vectors" and task.loss == "xent":  # vectors in, class ids out
        assert batch.inputs.shape == (B, T, task.d_input) and batch.inputs.dtype == jnp.float32
        assert batch.targets.shape == (B, T) and batch.targets.dtype == jnp.int32
        return
    if task.input_kind == "vectors":  # no next-token shift: targets are separate outputs
        assert batch.inputs.shape == (B, T, task.d_input)
        assert batch.targets.shape == (B, T, task.d_output)
        assert batch.inputs.dtype == batch.targets.dtype == jnp.float32
        return
    assert batch.inputs.shape == batch.targets.shape == (B, T)
    assert batch.inputs.dtype == batch.targets.dtype == jnp.int32
    if getattr(task, "next_token", True):  # rasp_io targets are per-position outputs
        np.testing.assert_array_equal(batch.targets[:, :-1], batch.inputs[:, 1:])


def test_vmap_over_keys_matches_single_samples(sampled):
    task, sample, batch = sampled
    keys = jax.random.split(jax.random.key(1), 3)
    stacked = jax.jit(jax.vmap(lambda k: task.sample(k, B)))(keys)
    assert stacked.inputs.shape == (3, B, task.seq_len) + batch.inputs.shape[2:]
    for i in range(3):
        for got, want in zip(stacked, sample(keys[i])):
            np.testing.assert_array_equal(got[i], want)


def test_deterministic_in_key(sampled):
    task, sample, batch = sampled
    again = sample(jax.random.key(0))
    other = sample(jax.random.key(2))
    for a, b in zip(batch, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(batch.inputs, other.inputs)


def test_tokens_in_vocab(sampled):
    task, _, batch = sampled
    if task.input_kind == "vectors":
        pytest.skip("vector task: no vocabulary")
    x = full_seq(batch)
    assert x.min() >= 0 and x.max() < task.vocab.size
    assert len(set(task.vocab.tokens)) == task.vocab.size


def test_mask_marks_exactly_the_answer(sampled):
    task, _, batch = sampled
    want_T = SPECS[task.name][0](task)
    if np.ndim(want_T) == 0:  # a count of answer positions at the end
        want_T = np.r_[np.zeros(task.seq_len - want_T), np.ones(want_T)]
    np.testing.assert_array_equal(batch.mask, np.broadcast_to(want_T, (B, task.seq_len)))


def test_answers_are_valid(sampled):
    task, _, batch = sampled
    next_token = task.input_kind == "tokens" and getattr(task, "next_token", True)
    SPECS[task.name][1](task, full_seq(batch) if next_token else batch)


REQUIRED = {"pool": dict(base=make_task("parity")),   # fields without a default
            "prefix": dict(base=make_task("parity"))}


def test_tasks_are_hashable_static_configs():
    for name in NAMES:
        a, b = make_task(name, **REQUIRED.get(name, {})), make_task(name, **REQUIRED.get(name, {}))
        assert a == b and hash(a) == hash(b)
    assert make_task("copy") != make_task("reverse")
    task = make_task("parity", length=4)
    sample = jax.jit(lambda t, key: t.sample(key, 2), static_argnums=0)
    assert sample(task, jax.random.key(0)).inputs.shape == (2, 5)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_split_rejected(name):
    with pytest.raises(ConfigError, match="train"):
        make_task(name, **SMALL.get(name, {})).sample(jax.random.key(0), 2, split="test")


# ---------------------------------------------------------------- config errors
def test_make_task_unknown_name_lists_tasks():
    with pytest.raises(ConfigError) as err:
        make_task("kopy")
    for name in NAMES:
        assert name in str(err.value)


def test_make_task_unknown_field_lists_fields():
    with pytest.raises(ConfigError, match="n_symbols") as err:
        make_task("copy", lenght=3)
    assert "lenght" in str(err.value) and "length" in str(err.value)


@pytest.mark.parametrize("name, fields", [
    ("copy", dict(length=-1)),
    ("copy", dict(length=2.5)),
    ("reverse", dict(n_symbols=1)),
    ("sort", dict(length=True)),
    ("modular_addition", dict(p=1)),
    ("modular_addition", dict(train_frac=0.0)),
    ("modular_addition", dict(train_frac=1.0)),
    ("modular_addition", dict(train_frac=float("nan"))),
    ("modular_addition", dict(train_frac=0.01, p=2)),   # rounds to an empty train split
    ("modular_addition", dict(data_seed=-1)),
    ("parity", dict(length=0)),
    ("markov", dict(vocab_size=0)),
    ("markov", dict(length=-3)),
    ("markov", dict(temperature=-1.0)),
    ("markov", dict(temperature=float("nan"))),
    ("markov", dict(data_seed=-1)),
    ("wu_regression", dict(p=1.5)),
    ("wu_regression", dict(p=float("nan"))),
    ("wu_regression", dict(length=0)),
    ("wu_regression", dict(n_terms=0)),
    ("wu_regression", dict(freq=0.0)),
    ("multiplication", dict(digits=5)),     # products would overflow int32
    ("multiplication", dict(digits=0)),
    ("multiplication", dict(fillers=-1)),
    ("multiplication", dict(base=1)),
    ("multiplication", dict(digits=8, base=4)),
    ("pair_count", dict(length=1)),
    ("pair_count", dict(n_symbols=1)),
    ("adjacent_pair", dict(length=7)),
    ("adjacent_pair", dict(length=4)),
    ("adjacent_pair", dict(n_symbols=3, length=8)),
    ("text", dict(length=0)),
    ("text", dict(max_chars=1000)),          # eval split shorter than one window
    ("text", dict(max_chars=2.5)),
    ("pool", dict(base=None)),
    ("pool", dict(base=make_task("pool", base=make_task("parity")))),
    ("pool", dict(n=0, base=make_task("parity"))),
    ("prefix", dict(base=None)),
    ("prefix", dict(n=0, base=make_task("parity"))),
    ("prefix", dict(meta="behaviour", base=make_task("parity"))),
    ("decompile", dict(extra_train=-1)),
])
def test_invalid_fields_raise(name, fields):
    field = next(iter(fields))
    with pytest.raises(ConfigError, match=field):
        make_task(name, **fields)


# ---------------------------------------------------------------- metrics
def test_metrics_hand_example():
    targets = jnp.array([[1, 2, 3], [0, 1, 2], [3, 3, 3]], jnp.int32)
    mask = jnp.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]], jnp.float32)  # row 2: nothing scored
    batch = Batch(targets, targets, mask)
    perfect = 100.0 * jax.nn.one_hot(targets, 4)

    m = metrics(perfect, batch, "xent")
    assert float(m["loss"]) == pytest.approx(0.0, abs=1e-6)
    assert float(m["acc"]) == 1.0 and float(m["exact"]) == 1.0

    # Wrong where mask is 0 (including the unscored row): nothing changes.
    ignored = perfect.at[0, 0].set(100.0 * jax.nn.one_hot(0, 4)).at[2].set(0.0)
    m = metrics(ignored, batch, "xent")
    assert float(m["loss"]) == pytest.approx(0.0, abs=1e-6)
    assert float(m["acc"]) == 1.0 and float(m["exact"]) == 1.0

    # One wrong answer token in row 0: 2 of 3 scored tokens right, 1 of 2 scored rows exact.
    wrong = perfect.at[0, 2].set(100.0 * jax.nn.one_hot(0, 4))
    m = metrics(wrong, batch, "xent")
    assert float(m["acc"]) == pytest.approx(2 / 3)
    assert float(m["exact"]) == pytest.approx(0.5)
    assert float(m["loss"]) == pytest.approx(100.0 / 3, rel=1e-4)

    m = metrics(jnp.zeros((3, 3, 4)), batch, "xent")  # uniform logits
    assert float(m["loss"]) == pytest.approx(np.log(4), rel=1e-6)
