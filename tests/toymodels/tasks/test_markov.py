"""The Markov-chain task: the peers' transition table, entropy rate, empirical transitions."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from toymodels.tasks import make_task


def full_seq(batch) -> np.ndarray:
    """The (B, T + 1) sequence the batch was cut from."""
    return np.concatenate([np.asarray(batch.inputs), np.asarray(batch.targets)[:, -1:]], axis=1)


def peer_table(vocab, seed, temp):
    """Verbatim construction from peers/torch_toygpt.py MarkovTask.__init__."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((vocab, vocab)) * temp
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return probs


def test_markov_table_is_the_peers():
    for v, seed, temp in [(64, 1234, 2.0), (8, 7, 0.5)]:
        task = make_task("markov", vocab_size=v, data_seed=seed, temperature=temp)
        np.testing.assert_array_equal(task.transition_probs, peer_table(v, seed, temp))


def test_markov_entropy_rate_independent():
    task = make_task("markov", vocab_size=16, data_seed=3)
    P = task.transition_probs
    evals, evecs = np.linalg.eig(P.T)  # stationary pi: left eigenvector of eigenvalue 1
    pi = np.real(evecs[:, np.argmin(np.abs(evals - 1))])
    pi /= pi.sum()
    h = -np.sum(pi[:, None] * P * np.log(P))
    assert task.entropy_rate == pytest.approx(h, rel=1e-9)
    # The loss floors the torch peer reported (peers/results) for its two Markov configs.
    assert round(make_task("markov").entropy_rate, 4) == 2.561
    assert round(make_task("markov", vocab_size=128).entropy_rate, 4) == 3.2018


def test_markov_empirical_transitions_match_table():
    task = make_task("markov", vocab_size=8, length=64)
    x = full_seq(jax.jit(lambda k: task.sample(k, 512))(jax.random.key(5)))
    counts = np.zeros((8, 8))
    np.add.at(counts, (x[:, :-1].ravel(), x[:, 1:].ravel()), 1)
    n_i = counts.sum(1, keepdims=True)
    P = task.transition_probs
    seen = n_i[:, 0] >= 100
    assert seen.sum() >= 4
    tol = 5 * np.sqrt(P * (1 - P) / np.maximum(n_i, 1)) + 2e-3
    assert (np.abs(counts / np.maximum(n_i, 1) - P)[seen] <= tol[seen]).all()
    # First token is uniform.
    first = np.bincount(x[:, 0], minlength=8) / 512
    assert np.abs(first - 1 / 8).max() < 0.07
