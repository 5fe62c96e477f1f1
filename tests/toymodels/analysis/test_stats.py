import math

import numpy as np
import pytest
from scipy import stats

from toymodels.analysis.stats import (
    aggregate,
    bootstrap_ci,
    bounded_ci,
    bounds_by,
    mean_ci,
    pearson_ci,
    rebound,
    sd_from_t_interval,
    seed_means,
    survival,
)


def test_mean_ci_is_the_t_interval():
    x = np.array([[1.0, 10.0], [2.0, 12.0], [4.0, 11.0]])
    mean, lo, hi = mean_ci(x, axis=0)
    half = stats.t.ppf(0.975, 2) * x.std(0, ddof=1) / np.sqrt(3)
    np.testing.assert_allclose(mean, [7 / 3, 11.0])
    np.testing.assert_allclose(hi - mean, half)
    np.testing.assert_allclose(mean - lo, half)
    m1, lo1, hi1 = mean_ci(x[:1], axis=0)
    np.testing.assert_array_equal(lo1, hi1)


def test_pearson_ci_is_scipys_fisher_interval_and_stays_in_bounds():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = 0.6 * x + rng.normal(size=40)
    r, lo, hi = pearson_ci(x, y)
    want = stats.pearsonr(x, y)
    ci = want.confidence_interval(0.95)
    assert (r, lo, hi) == pytest.approx((want.statistic, ci.low, ci.high), rel=1e-9)
    r, lo, hi = pearson_ci(np.arange(5.0), np.arange(5.0) * 2)   # perfect: the interval is [1, 1]
    assert -1 <= lo <= r <= hi <= 1 and r == pytest.approx(1.0)
    with pytest.raises(ValueError, match=">= 4 pairs"):
        pearson_ci([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])


def test_bootstrap_ci_brackets_the_mean():
    x = np.random.default_rng(0).normal(5.0, 1.0, 200)
    m, lo, hi = bootstrap_ci(x)
    assert lo < m < hi and hi - lo < 0.5


def test_bounded_interval_of_an_accuracy_stays_in_0_1():
    accs = [1.0, 1.0, 0.4]   # a 3-seed t-interval of these passes 1
    m, sd = np.mean(accs), np.std(accs, ddof=1)
    _, _, t_hi = mean_ci(accs)
    lo, hi = bounded_ci(m, sd, 3, (0.0, 1.0))
    assert t_hi > 1 and 0 <= lo < m < hi < 1


def test_bounded_interval_of_a_loss_is_the_t_interval_cut_at_0():
    losses = [0.01, 0.05, 0.2]
    _, t_lo, t_hi = mean_ci(losses)
    lo, hi = bounded_ci(np.mean(losses), np.std(losses, ddof=1), 3, (0.0, math.inf))
    assert t_lo < 0 and (lo, hi) == (0.0, pytest.approx(t_hi))


def test_values_past_a_bound_by_float_error_are_clipped():
    (r,) = aggregate([{"k": 0, "value": v} for v in (1.0 + 1e-15, 1.0 - 1e-15, 1.0)], ("k",), bounds=(0.0, 1.0))
    assert r["lo"] <= r["mean"] <= r["hi"] <= 1.0 and r["hi"] - r["lo"] < 1e-12


def test_bounded_interval_of_an_r2_stays_below_1():
    r2 = [0.99, 0.999, 0.9]
    _, t_lo, t_hi = mean_ci(r2)
    lo, hi = bounded_ci(np.mean(r2), np.std(r2, ddof=1), 3, (-math.inf, 1.0))
    assert t_hi > 1 and (lo, hi) == (pytest.approx(t_lo), 1.0)


def test_bounded_interval_matches_the_t_interval_far_from_the_bounds():
    x = np.random.default_rng(1).normal(0.5, 0.01, 50)
    _, t_lo, t_hi = mean_ci(x)
    lo, hi = bounded_ci(x.mean(), x.std(ddof=1), 50, (0.0, 1.0))
    assert abs(lo - t_lo) < 1e-4 and abs(hi - t_hi) < 1e-4


def test_all_seeds_on_a_bound_give_a_point_interval():
    assert bounded_ci(1.0, 0.0, 3, (0.0, 1.0)) == (1.0, 1.0)
    assert bounded_ci(0.0, 0.0, 5, (0.0, math.inf)) == (0.0, 0.0)


def test_no_bounds_is_the_t_interval():
    x = [1.0, 2.0, 4.0]
    _, t_lo, t_hi = mean_ci(x)
    np.testing.assert_allclose(bounded_ci(np.mean(x), np.std(x, ddof=1), 3, None), (t_lo, t_hi))


ROWS = [{"metric": "acc", "seed": s, "value": v} for s, v in enumerate([1.0, 1.0, 0.4])] + \
       [{"metric": "gap", "seed": s, "value": v} for s, v in enumerate([0.5, -0.1, 0.2])]


def test_aggregate_bounds_by_metric_and_keeps_points():
    out = {r["metric"]: r for r in aggregate(ROWS, ("metric",), bounds=bounds_by("metric"), points=True)}
    assert out["acc"]["n"] == 3 and out["acc"]["mean"] == pytest.approx(0.8)
    assert 0 <= out["acc"]["lo"] and out["acc"]["hi"] <= 1
    _, lo, hi = mean_ci([0.5, -0.1, 0.2])           # "gap" is unbounded: the t-interval
    assert (out["gap"]["lo"], out["gap"]["hi"]) == pytest.approx((lo, hi))
    assert [float(v) for v in out["acc"]["values"].split()] == [1.0, 1.0, 0.4]


def test_aggregate_points_only_for_few_seeds():
    rows = [{"k": 0, "value": float(i)} for i in range(6)]
    assert aggregate(rows, ("k",), points=True)[0]["values"] == ""


def test_aggregate_finite_leaves_out_non_finite_and_counts_runs():
    rows = [{"k": 0, "value": v} for v in (1.0, 3.0, math.inf, math.nan)]
    (r,) = aggregate(rows, ("k",), finite=True)
    assert (r["mean"], r["n"], r["n_runs"]) == (2.0, 2, 4)


def test_seed_means_averages_within_a_seed_first():
    rows = [{"m": "x", "seed": 0, "value": 1.0}, {"m": "x", "seed": 0, "value": 3.0},
            {"m": "x", "seed": 1, "value": 4.0}]
    (r,) = seed_means(rows, ("m",))
    assert (r["mean"], r["n"]) == (3.0, 2)


def test_rebound_recomputes_a_table_interval_exactly():
    vals = [0.9, 0.95, 0.99, 1.0]
    (t,) = aggregate([{"k": 0, "value": v} for v in vals], ("k",))
    (b,) = aggregate([{"k": 0, "value": v} for v in vals], ("k",), bounds=(0.0, 1.0))
    assert sd_from_t_interval(t["lo"], t["hi"], 4) == pytest.approx(np.std(vals, ddof=1))
    (r,) = rebound([t], (0.0, 1.0))
    assert (r["lo"], r["hi"]) == pytest.approx((b["lo"], b["hi"]))
    assert rebound([t], None) == [t]


def test_bounds_by_refuses_a_column_that_is_not_grouped():
    rows = [{"metric": "acc", "step": 0, "value": v} for v in (0.0, 0.1, 0.05)]
    with pytest.raises(KeyError, match=r"bounds_by\('metric'\) needs 'metric' among aggregate's keys"):
        aggregate(rows, ("step",), bounds=bounds_by("metric"))
    (row,) = aggregate(rows, ("metric", "step"), bounds=bounds_by("metric"))
    assert row["lo"] >= 0.0


def test_survival_is_kaplan_meier_and_never_counts_a_censored_run_as_an_event():
    # 5 runs: events at 10, 20, 20; censored at 15 and 30 (the window ended)
    d, o = [10, 15, 20, 20, 30], [True, False, True, True, False]
    s = survival(d, o, [0, 9, 10, 15, 19, 20, 29, 30, 100])
    # at 10: 1 of 5 at risk -> 4/5; at 20: 2 of 3 at risk (15 left censored) -> 4/5 * 1/3
    np.testing.assert_allclose(s, [1, 1, 0.8, 0.8, 0.8, 0.8 / 3, 0.8 / 3, 0.8 / 3, 0.8 / 3])
    # all censored: nobody decayed, survival stays 1 (an average of censored times would invent a half-life)
    np.testing.assert_array_equal(survival([5, 5, 5], [False] * 3, [0, 5, 50]), 1.0)
    # no censoring: the empirical survival function
    np.testing.assert_allclose(survival([1, 2, 3, 4], [True] * 4, [0, 1, 2.5, 4]), [1, 0.75, 0.5, 0])
    with pytest.raises(ValueError, match="durations"):
        survival([1, np.inf], [True, False], [0])
