import math

import numpy as np
import pytest

from toymodels.analysis.decay import (
    area_savings,
    backward_transfer,
    fit_decay,
    fit_exponential,
    fit_power_law,
    forgetting_first_last,
    forgetting_peak,
    half_life_crossing,
    power_law_exponent,
    savings,
    steps_to_criterion,
    weight_decay_half_life,
)

# Steps after the drop as a training log would record them: t = 0 then log-spaced to 1e4.
T = np.concatenate([[0.0], np.unique(np.round(np.logspace(0, 4, 60)))])
NOISE = 0.005


def _exp_curve(rising, seed):
    r = 0.3 + (0.95 - 0.3) * np.exp(-T / 200.0)
    r = 2.0 - r if rising else r  # a loss that climbs from 1.05 to 1.7
    return r + np.random.default_rng(seed).normal(0, NOISE, T.shape)


def _pow_curve(rising, seed):
    r = 0.3 + (0.95 - 0.3) * (1.0 + T / 50.0) ** -0.7
    r = 2.0 - r if rising else r
    return r + np.random.default_rng(seed).normal(0, NOISE, T.shape)


@pytest.mark.parametrize("rising", [False, True])
def test_exponential_recovered_and_preferred(rising):
    c = fit_decay(T, _exp_curve(rising, seed=1))
    e = c.exponential
    assert e.converged and abs(e.params["tau"] / 200 - 1) < 0.05
    assert abs(e.half_life / (200 * math.log(2)) - 1) < 0.05
    r0, floor = (1.05, 1.7) if rising else (0.95, 0.3)
    assert abs(e.r0 - r0) < 0.02 and abs(e.floor - floor) < 0.02
    assert c.preferred == "exponential" and c.best is e and c.delta_aic > 10
    assert np.allclose(e.predict([0.0]), e.r0)


@pytest.mark.parametrize("rising", [False, True])
def test_power_law_recovered_and_preferred(rising):
    c = fit_decay(T, _pow_curve(rising, seed=2))
    p = c.power_law
    assert p.converged
    assert abs(p.params["t0"] / 50 - 1) < 0.1 and abs(p.params["beta"] / 0.7 - 1) < 0.1
    assert abs(p.half_life / (50 * (2 ** (1 / 0.7) - 1)) - 1) < 0.05
    assert c.preferred == "power_law" and c.delta_aic > 50


def test_fit_info_criteria_and_sigma():
    r = _exp_curve(False, seed=3)
    e = fit_exponential(T, r)
    n = len(T)
    assert e.n == n and math.isclose(e.aic, n * math.log(e.sse / n) + 6)
    assert math.isclose(e.bic, n * math.log(e.sse / n) + 3 * math.log(n))
    # A uniform sigma rescales SSE by 1/sigma^2 but must not move the fit.
    w = fit_exponential(T, r, sigma=np.full(n, NOISE))
    assert math.isclose(w.params["tau"], e.params["tau"], rel_tol=1e-4)
    assert math.isclose(w.sse, e.sse / NOISE**2, rel_tol=1e-3)
    assert fit_power_law(T, r, sigma=NOISE).converged


def test_failed_fit_returns_nan_not_raise():
    e = fit_exponential(T, _exp_curve(False, seed=4), max_nfev=1)
    assert not e.converged and math.isnan(e.half_life) and all(map(math.isnan, e.params.values()))
    c = fit_decay(T, _exp_curve(False, seed=4), max_nfev=1)
    assert c.preferred is None and c.best is None and math.isnan(c.delta_aic)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="at least 4 points"):
        fit_decay([0, 1, 2], [1.0, 0.5, 0.2])
    with pytest.raises(ValueError, match="non-finite"):
        fit_exponential([0, 1, 2, 3], [1.0, np.nan, 0.3, 0.2])
    with pytest.raises(ValueError, match="t >= 0"):
        fit_power_law([-1, 1, 2, 3], [1.0, 0.6, 0.3, 0.2])
    with pytest.raises(ValueError, match="increasing"):
        fit_exponential([0, 2, 1, 3], [1.0, 0.6, 0.3, 0.2])
    with pytest.raises(ValueError, match="at least 3 positive"):
        power_law_exponent([1, 2, 0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="non-finite"):
        power_law_exponent([1, 2, 3], [1.0, np.inf, 3.0])


def test_half_life_crossing_piecewise_linear():
    t, r = [0, 10, 20, 40], [1.0, 0.8, 0.4, 0.2]
    # Half-way from 1.0 to 0.2 is 0.6, reached between (10, 0.8) and (20, 0.4):
    # 10 + 10 * (0.8 - 0.6) / (0.8 - 0.4) = 15.
    assert half_life_crossing(t, r) == pytest.approx(15.0)
    # Same curve logged at absolute steps 100..140: the half-life is elapsed time from t[0].
    assert half_life_crossing(np.add(t, 100), r) == pytest.approx(15.0)
    # Towards 0.0 the half-way level is 0.5: 10 + 10 * (0.8 - 0.5) / 0.4 = 17.5.
    assert half_life_crossing(t, r, final=0.0) == pytest.approx(17.5)
    # Towards -1.0 the level 0.0 is never reached; a flat curve has no half-life.
    assert math.isnan(half_life_crossing(t, r, final=-1.0))
    assert math.isnan(half_life_crossing(t, [0.5] * 4))


def test_weight_decay_half_life():
    assert weight_decay_half_life(1e-3, 0.1) == pytest.approx(math.log(2) / 1e-4, rel=1e-12)
    assert weight_decay_half_life(1e-3, 0.0) == math.inf
    # Exact per-step factor 0.9 halves after ln2 / -ln 0.9 = 6.579 steps, not ln2 / 0.1 = 6.93.
    assert weight_decay_half_life(1.0, 0.1, exact=True) == pytest.approx(6.5788, abs=1e-4)
    assert weight_decay_half_life(1e-3, 0.1, exact=True) == pytest.approx(6931.1, abs=0.1)
    with pytest.raises(ValueError):
        weight_decay_half_life(1.0, 1.0)


def test_forgetting_conventions():
    acc = [0.2, 0.9, 0.8, 0.85, 0.5, 0.4]
    # Drop at index 3. Peak: max(0.2, 0.9, 0.8, 0.85) - 0.4 = 0.5.
    assert forgetting_peak(acc, 3) == pytest.approx(0.5)
    # First/last: acc[3] - acc[-1] = 0.85 - 0.4 = 0.45.
    assert forgetting_first_last(acc, 3) == pytest.approx(0.45)
    # Second task keeps improving: 0.7 - 0.75 = -0.05 under both (its max up to the drop is 0.7).
    mat = [acc, [0.5, 0.6, 0.7, 0.7, 0.7, 0.75]]
    np.testing.assert_allclose(forgetting_peak(mat, 3), [0.5, -0.05])
    np.testing.assert_allclose(forgetting_first_last(mat, 3), [0.45, -0.05])
    # Per-task drop indices: task 0 dropped at 1 -> 0.9 - 0.4 = 0.5 both ways.
    np.testing.assert_allclose(forgetting_first_last(mat, [1, 3]), [0.5, -0.05])
    with pytest.raises(ValueError, match="t_drop_index"):
        forgetting_peak(acc, 6)


def test_backward_transfer():
    R = [[0.9, 0.1, 0.0],
         [0.7, 0.8, 0.2],
         [0.6, 0.5, 0.95]]
    # ((0.6 - 0.9) + (0.5 - 0.8)) / 2 = -0.3; the last task (j = T-1) is excluded.
    assert backward_transfer(R) == pytest.approx(-0.3)
    with pytest.raises(ValueError, match="square"):
        backward_transfer([[0.1, 0.2, 0.3]])


def test_steps_to_criterion_and_savings():
    t_l, r_l = [0, 100, 200, 400], [0.1, 0.5, 0.7, 0.9]
    # 0.8 is reached between (200, 0.7) and (400, 0.9): 200 + 200 * 0.1 / 0.2 = 300.
    assert steps_to_criterion(t_l, r_l, 0.8) == pytest.approx(300.0)
    t_r, r_r = [0, 50, 100, 200], [0.4, 0.6, 0.9, 0.95]
    # Between (50, 0.6) and (100, 0.9): 50 + 50 * 0.2 / 0.3 = 83.33.
    assert steps_to_criterion(t_r, r_r, 0.8) == pytest.approx(250 / 3)
    # Savings = (300 - 83.33) / 300 = 0.7222.
    assert savings(t_l, r_l, t_r, r_r, 0.8) == pytest.approx((300 - 250 / 3) / 300)
    # A loss (lower is better): 1.0 -> 0.2 passes 0.5 at 100 + 100 * 0.5 / 0.8 = 162.5.
    assert steps_to_criterion([0, 100, 200], [2.0, 1.0, 0.2], 0.5, higher_is_better=False) == \
        pytest.approx(162.5)
    assert savings(t_l, r_l, [0, 10], [0.85, 0.9], 0.8) == 1.0            # already there
    assert savings(t_l, r_l, [0, 10], [0.1, 0.2], 0.8) == -math.inf       # never relearned
    assert math.isnan(savings(t_l, [0.1] * 4, t_r, r_r, 0.8))             # never learned
    assert steps_to_criterion(t_l, r_l, 0.99) == math.inf


def test_area_savings():
    t_l, r_l = [0, 10, 20], [0.0, 0.5, 1.0]
    # Shortfall below 1.0 is [1, 0.5, 0]: trapezoids (1 + 0.5)/2 * 10 + (0.5 + 0)/2 * 10 = 10.
    # Relearn shortfall [0.5, 0, 0]: area 0.5/2 * 10 = 2.5, so 1 - 2.5/10 = 0.75.
    assert area_savings(t_l, r_l, [0, 10, 20], [0.5, 1.0, 1.0], 1.0) == pytest.approx(0.75)
    # Overshoot: shortfall [0.5, -0.5, -0.5] crosses zero at t = 5; area 0.5 * 5 / 2 = 1.25
    # (clipping at grid points instead would give 2.5), so 1 - 1.25/10 = 0.875.
    assert area_savings(t_l, r_l, [0, 10, 20], [0.5, 1.5, 1.5], 1.0) == pytest.approx(0.875)
    # Another grid (absolute steps 1000..1020): shortfall [0.5, 0, 0] at 0, 5, 20 -> 1.25.
    assert area_savings(t_l, r_l, [1000, 1005, 1020], [0.5, 1.0, 1.0], 1.0) == pytest.approx(0.875)
    # Horizon 10: learn area 7.5, relearn 2.5 -> 1 - 1/3.
    assert area_savings(t_l, r_l, [0, 10, 20], [0.5, 1.0, 1.0], 1.0, horizon=10) == \
        pytest.approx(2 / 3)
    # Lower is better (loss): mirror image of the first case, same answer.
    assert area_savings(t_l, [2.0, 1.5, 1.0], [0, 10, 20], [1.5, 1.0, 1.0], 1.0,
                        higher_is_better=False) == pytest.approx(0.75)
    assert math.isnan(area_savings(t_l, [1.0] * 3, t_l, r_l, 1.0))
    with pytest.raises(ValueError, match="horizon"):
        area_savings(t_l, r_l, [0, 5], [0.5, 1.0], 1.0, horizon=10)


def test_power_law_exponent():
    rng = np.random.default_rng(0)

    def fit(n):
        x = np.logspace(1, 4, n)
        return power_law_exponent(x, 3 * x**-0.5 * np.exp(rng.normal(0, 0.05, n)))

    few, many = fit(8), fit(200)
    for f in (few, many):
        assert f.ci_lo < -0.5 < f.ci_hi
        assert f.intercept == pytest.approx(math.log(3), abs=0.2)
    assert many.ci_hi - many.ci_lo < 0.5 * (few.ci_hi - few.ci_lo)
    # The x < 0 point is dropped; the rest lie exactly on y = 1/x, so the CI has zero width.
    b, lo, hi, a = power_law_exponent([1, 10, 100, -5], [1.0, 0.1, 0.01, 7.0])
    assert b == pytest.approx(-1.0) and lo == pytest.approx(-1.0) and hi == pytest.approx(-1.0)
    assert a == pytest.approx(0.0, abs=1e-12)


def test_power_law_half_life_of_a_vanishing_exponent_is_huge_not_an_error():
    # half-life t0 (2^(1/beta) - 1): exact on a power law, and huge (no OverflowError) as beta -> 0
    exact = fit_power_law(T, 0.3 + 0.65 * (1.0 + T / 50.0) ** -1.0)
    assert exact.half_life == pytest.approx(50.0, rel=1e-6)
    nearly_flat = fit_power_law(T, 0.5 + 1e-3 * (1.0 + T / 10.0) ** -1e-4)
    assert nearly_flat.converged and nearly_flat.params["beta"] < 0.1 and nearly_flat.half_life > 1e9
