import os

import numpy as np
import pytest
from scipy import stats

from toymodels import results
from toymodels.analysis.stats import bootstrap_ci, mean_ci


def test_rows_round_trip(tmp_path):
    rows = [{"run": "a", "step": 1, "task": "copy", "metric": "loss", "value": 0.5},
            {"run": "b", "step": 2, "task": "copy", "metric": "acc", "value": 1.0}]
    results.write_rows(tmp_path / "m.csv", rows)
    assert results.read_rows(tmp_path / "m.csv") == rows


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "table.csv"
    results.atomic_write_text(path, "old\n")

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        results.atomic_write_text(path, "new\n")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_mean_ci_is_the_t_interval():
    x = np.array([[1.0, 10.0], [2.0, 12.0], [4.0, 11.0]])
    mean, lo, hi = mean_ci(x, axis=0)
    half = stats.t.ppf(0.975, 2) * x.std(0, ddof=1) / np.sqrt(3)
    np.testing.assert_allclose(mean, [7 / 3, 11.0])
    np.testing.assert_allclose(hi - mean, half)
    np.testing.assert_allclose(mean - lo, half)
    m1, lo1, hi1 = mean_ci(x[:1], axis=0)
    np.testing.assert_array_equal(lo1, hi1)


def test_bootstrap_ci_brackets_the_mean():
    x = np.random.default_rng(0).normal(5.0, 1.0, 200)
    m, lo, hi = bootstrap_ci(x)
    assert lo < m < hi and hi - lo < 0.5


def test_redrawn_figures_are_byte_identical(tmp_path, monkeypatch):
    from toymodels import plotting

    def draw(path):
        fig, axes = plotting.figure()
        axes[0, 0].plot([0, 1, 2], [1.0, 0.5, 0.25], label="loss")
        axes[0, 0].legend()
        return plotting.save(fig, path)
    first = [p.read_bytes() for p in draw(tmp_path / "a")]
    monkeypatch.setattr("time.time", lambda: 2e9)     # a later clock must not show in the files
    second = [p.read_bytes() for p in draw(tmp_path / "b")]
    assert len(first) == 2 and first == second
