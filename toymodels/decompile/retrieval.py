"""The retrieval baseline of a decompiler: answer with the training program whose weights
look most like the test net's.

    decoded = nearest_programs(task, "eval")     # one token list per held-out program
    ranked = ranked_programs(task, "eval", k=8)  # the 8 nearest, nearest first
    [score(d, e["tokens"]) for d, e in zip(decoded, task.programs("eval"))]

A net's weight features (``weight_features``) are summary statistics of its weight tokens
(``weights.weight_tokens``): how many tokens it has, and each input dimension's mean,
standard deviation and largest magnitude over the tokens. Features are standardised over
the training programs and the nearest training program (Euclidean) is returned, ties to
the earlier program. On its own training split it returns each program's own tokens
unless two programs have identical features. Any decompiler that reads weights should
beat it on a split where no function is on both sides (``split_by="function"``).
"""

from __future__ import annotations

import numpy as np


def weight_features(x_NI: np.ndarray) -> np.ndarray:
    """(1 + 3 I,) features of one net's weight tokens (N, I): N, then per input dimension the
    mean, standard deviation and max |value| over the N tokens."""
    x_NI = np.asarray(x_NI, np.float64)
    if x_NI.ndim != 2 or x_NI.shape[0] < 1:
        raise ValueError(f"weight tokens of shape {x_NI.shape}: expected (tokens >= 1, features)")
    return np.concatenate([[x_NI.shape[0]], x_NI.mean(0), x_NI.std(0), np.abs(x_NI).max(0)])


def split_features(task, split: str) -> np.ndarray:
    """(P, 1 + 3 I) weight features of every program of a ``decompile`` task's split."""
    s = task.split(split)
    return np.stack([weight_features(s.x_MI[a:a + n]) for a, n in zip(s.start_P, s.count_P)])


def ranked_programs(task, split: str = "eval", k: int = 1, train_split: str = "train") -> list[list[list[str]]]:
    """For every program of ``split``, the tokens of the ``k`` ``train_split`` programs with the
    nearest standardised weight features, nearest first (ties to the earlier program)."""
    if k < 1:
        raise ValueError(f"k={k}: need at least one retrieved program")
    F_train, F = split_features(task, train_split), split_features(task, split)
    mu, sd = F_train.mean(0), F_train.std(0)
    sd[sd == 0] = 1.0
    Z_train, Z = (F_train - mu) / sd, (F - mu) / sd
    d2 = (Z ** 2).sum(1)[:, None] - 2 * Z @ Z_train.T + (Z_train ** 2).sum(1)[None]
    train = task.programs(train_split)
    order = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return [[list(train[j]["tokens"]) for j in row] for row in order]


def nearest_programs(task, split: str = "eval", train_split: str = "train") -> list[list[str]]:
    """For every program of ``split``, the tokens of the ``train_split`` program with the
    nearest standardised weight features."""
    return [r[0] for r in ranked_programs(task, split, 1, train_split)]
