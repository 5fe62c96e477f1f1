"""How fast a capability dropped from the training mix decays, how deep, and how fast it returns.

Speed: ``fit_decay`` (exponential vs power law), ``half_life_crossing``, ``weight_decay_half_life``.
Depth: ``forgetting_*``, ``backward_transfer``. Latent memory: ``savings``, ``area_savings``.
Times are steps on the logged grid, log-spaced or not (everything uses the actual t values).
Model-free times count from t[0]; the parametric fits take t = 0 as the drop."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import optimize, stats

_LN2 = math.log(2.0)
# A power law with beta -> inf and t0 = beta * tau converges to exp(-t / tau), so an unbounded
# beta lets the power law impersonate the exponential and AIC could never separate them.
BETA_MAX = 10.0


def _check_finite(**arrays):
    for name, a in arrays.items():
        bad = np.flatnonzero(~np.isfinite(a))
        if bad.size:
            raise ValueError(f"{name} has non-finite values (NaN/inf) at indices {bad[:5].tolist()}")


def _as_curve(t, r, min_points: int, what: str):
    t, r = np.asarray(t, dtype=np.float64), np.asarray(r, dtype=np.float64)
    if t.ndim != 1 or t.shape != r.shape:
        raise ValueError(f"{what}: t and r must be 1-D of equal length, got {t.shape} and {r.shape}")
    if len(t) < min_points:
        raise ValueError(f"{what} needs at least {min_points} points, got {len(t)}")
    _check_finite(t=t, r=r)
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"{what}: t must be strictly increasing")
    return t, r


def _first_reach(t, s, level: float) -> float:
    """First t at which s >= level, interpolating linearly inside the crossing segment."""
    hit = np.flatnonzero(s >= level)
    if hit.size == 0 or hit[0] == 0:
        return math.inf if hit.size == 0 else float(t[0])
    i = hit[0]
    frac = (level - s[i - 1]) / (s[i] - s[i - 1])
    return float(t[i - 1] + frac * (t[i] - t[i - 1]))


_MODELS = {"exponential": lambda t, r0, r_inf, tau: r_inf + (r0 - r_inf) * np.exp(-t / tau),
           "power_law": lambda t, r0, r_inf, t0, beta: r_inf + (r0 - r_inf) * (1.0 + t / t0) ** -beta}
_NAMES = {"exponential": ("r0", "r_inf", "tau"), "power_law": ("r0", "r_inf", "t0", "beta")}
_HALF = {"exponential": lambda p: p["tau"] * _LN2,
         # beta -> 0 (a flat curve) puts the half-life at infinity rather than overflowing
         "power_law": lambda p: p["t0"] * math.expm1(min(_LN2 / p["beta"], 700.0)) if p["beta"] > 0 else math.inf}


@dataclass(frozen=True)
class DecayFit:
    """One fit; ``params``: r0, r_inf and tau (exponential) or t0, beta (power law).

    ``sse``: residual sum of squares (of residual/sigma when sigma is given). Gaussian criteria
    AIC = n ln(SSE/n) + 2k (Akaike 1974), BIC = n ln(SSE/n) + k ln n (Schwarz 1978), k = number
    of curve parameters (3 or 4). A failed fit has converged=False and NaN everywhere."""
    kind: str
    params: dict
    half_life: float
    floor: float
    r0: float
    sse: float
    n: int
    aic: float
    bic: float
    converged: bool

    def predict(self, t) -> np.ndarray:
        return _MODELS[self.kind](np.asarray(t, dtype=np.float64), **self.params)


def _prepare(t, r, sigma):
    t, r = _as_curve(t, r, 4, "decay fit")
    if np.any(t < 0):
        raise ValueError("decay fit: t must be measured from the drop (t >= 0)")
    if sigma is not None:
        sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64), t.shape)
        if not np.all(np.isfinite(sigma) & (sigma > 0)):
            raise ValueError("sigma must be finite and positive")
    # Averaging the tail keeps one noisy last point from setting the floor guess.
    floor = float(np.mean(r[-max(1, len(r) // 10):]))
    hl = half_life_crossing(t, r, final=floor)
    pos = t[t > 0]
    scale = math.sqrt(pos[0] * pos[-1]) if pos.size else 1.0
    return t, r, sigma, floor, (hl if math.isfinite(hl) and hl > 0 else scale), scale


def _fit(kind, t, r, sigma, starts, upper_last, max_nfev) -> DecayFit:
    model, names = _MODELS[kind], _NAMES[kind]
    k = len(names)
    lower = [-np.inf, -np.inf] + [1e-12] * (k - 2)
    upper = [np.inf] * (k - 1) + [upper_last]
    w = 1.0 if sigma is None else sigma
    best = None
    for p0 in starts:
        try:
            with warnings.catch_warnings():
                # An unestimable covariance is not a failed fit, and pcov is not reported.
                warnings.simplefilter("ignore", optimize.OptimizeWarning)
                p, _ = optimize.curve_fit(model, t, r, p0=p0, sigma=sigma, bounds=(lower, upper),
                                          x_scale="jac", max_nfev=max_nfev)
        except (RuntimeError, ValueError, np.linalg.LinAlgError):
            continue
        sse = float(np.sum(((r - model(t, *p)) / w) ** 2))
        if np.all(np.isfinite(p)) and math.isfinite(sse) and (best is None or sse < best[1]):
            best = (p, sse)
    n, nan = len(t), math.nan
    if best is None:
        return DecayFit(kind, dict.fromkeys(names, nan), nan, nan, nan, nan, n, nan, nan, False)
    params = dict(zip(names, map(float, best[0])))
    # An exact fit (SSE = 0) would send log to -inf; tiny keeps the comparison finite.
    ll = n * math.log(max(best[1], np.finfo(float).tiny) / n)
    return DecayFit(kind, params, float(_HALF[kind](params)), params["r_inf"], params["r0"],
                    best[1], n, ll + 2 * k, ll + k * math.log(n), True)


def fit_exponential(t, r, sigma=None, *, max_nfev: int | None = None) -> DecayFit:
    """Fit R(t) = R_inf + (R0 - R_inf) exp(-t / tau), tau > 0; half-life = tau ln 2.

    Rising (loss) or falling (accuracy): the sign lives in R0 - R_inf. Points weigh equally
    unless ``sigma`` (per-point standard deviations) is given."""
    t, r, sigma, floor, hl, scale = _prepare(t, r, sigma)
    starts = [(r[0], floor, hl / _LN2), (r[0], floor, scale)]
    return _fit("exponential", t, r, sigma, starts, np.inf, max_nfev)


def fit_power_law(t, r, sigma=None, *, max_nfev: int | None = None,
                  beta_max: float = BETA_MAX) -> DecayFit:
    """Fit R(t) = R_inf + (R0 - R_inf) (1 + t / t0)^-beta, t0 > 0, 0 < beta <= beta_max.

    Half-life = t0 (2^(1/beta) - 1). A fit at the ``beta_max`` bound is exponential-like."""
    t, r, sigma, floor, hl, _ = _prepare(t, r, sigma)
    # beta and t0 trade off strongly; several starts sharing the data's half-life avoid the
    # flat valley that a single start can stall in.
    starts = [(r[0], floor, hl / (2.0 ** (1.0 / b) - 1.0), b) for b in (0.5, 1.0, 2.0)]
    return _fit("power_law", t, r, sigma, starts, beta_max, max_nfev)


@dataclass(frozen=True)
class DecayComparison:
    """Both fits, the kind preferred by AIC (None if both failed) and AIC(other) - AIC(preferred)."""
    exponential: DecayFit
    power_law: DecayFit
    preferred: str | None
    delta_aic: float

    @property
    def best(self) -> DecayFit | None:
        return None if self.preferred is None else getattr(self, self.preferred)


def fit_decay(t, r, sigma=None, **kw) -> DecayComparison:
    """Fit both families and prefer the lower AIC (the power law pays 2 for its extra beta).

    delta_aic > 10 is conventionally decisive (Burnham & Anderson 2002, "Model Selection and
    Multimodel Inference"), but one run's residuals are autocorrelated, so the effective n is
    below n and single-run margins are optimistic; with n near 4 the power law (k = 4) can fit
    exactly and AIC means little. A failed fit loses to a converged one with delta_aic = inf;
    if both fail, preferred is None and delta_aic NaN."""
    e, p = fit_exponential(t, r, sigma, **kw), fit_power_law(t, r, sigma, **kw)
    ok = sorted((f for f in (e, p) if f.converged), key=lambda f: f.aic)
    if not ok:
        return DecayComparison(e, p, None, math.nan)
    return DecayComparison(e, p, ok[0].kind, float(ok[1].aic - ok[0].aic) if len(ok) == 2 else math.inf)


def half_life_crossing(t, r, final: float | None = None) -> float:
    """Model-free half-life: time from t[0] until r first moves half-way from r[0] to ``final``.

    ``final`` defaults to r[-1]; pass e.g. chance level instead. Linear interpolation between
    grid points; NaN if never reached or r[0] == final. A first crossing is noise-sensitive:
    smooth noisy curves first."""
    t, r = _as_curve(t, r, 2, "half_life_crossing")
    span = (r[-1] if final is None else float(final)) - r[0]
    if span == 0 or not math.isfinite(span):
        return math.nan
    hit = _first_reach(t, (r - r[0]) / span, 0.5)
    return hit - t[0] if math.isfinite(hit) else math.nan


def weight_decay_half_life(lr: float, weight_decay: float, exact: bool = False) -> float:
    """Steps for decoupled weight decay alone to halve a weight that gets no gradient.

    AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization"; optax, torch)
    scales it by (1 - lr*wd) per step: exact half-life ln 2 / -ln(1 - lr*wd). The default
    ln 2 / (lr*wd) overstates that by a relative ~lr*wd/2, so they differ (> 0.5%) only once
    lr*wd > 0.01. Under an lr schedule the clock runs on cumulative lr. inf when wd == 0."""
    if lr <= 0 or weight_decay < 0:
        raise ValueError(f"need lr > 0 and weight_decay >= 0, got {lr}, {weight_decay}")
    if weight_decay == 0:
        return math.inf
    k = lr * weight_decay
    if k >= 1:
        raise ValueError(f"lr * weight_decay = {k} >= 1 zeroes or flips weights in one step")
    return _LN2 / -math.log1p(-k) if exact else _LN2 / k


def _acc_rows(acc, t_drop_index):
    a = np.asarray(acc, dtype=np.float64)
    if a.ndim not in (1, 2):
        raise ValueError(f"accuracy must be (n_times,) or (n_tasks, n_times), got shape {a.shape}")
    _check_finite(accuracy=a)
    rows = np.atleast_2d(a)
    idx = np.broadcast_to(np.asarray(t_drop_index), (rows.shape[0],))
    if not np.issubdtype(idx.dtype, np.integer) or np.any((idx < 0) | (idx >= rows.shape[1])):
        raise ValueError(f"t_drop_index must be integers in [0, {rows.shape[1]}), got {t_drop_index}")
    return a.ndim, rows, idx


def forgetting_peak(acc_curve, t_drop_index):
    """Best accuracy up to and including the drop minus final accuracy: the max-over-the-past
    convention of Chaudhry et al. 2018 ("Riemannian Walk for Incremental Learning", ECCV), as in
    the Mammoth library. 1-D gives a float; (n_tasks, n_times) gives one value per task, and
    t_drop_index may then be per task."""
    ndim, rows, idx = _acc_rows(acc_curve, t_drop_index)
    out = np.array([row[: i + 1].max() - row[-1] for row, i in zip(rows, idx)])
    return float(out[0]) if ndim == 1 else out


def forgetting_first_last(acc_curve, t_drop_index):
    """Accuracy at the drop minus final accuracy: the Avalanche library's forgetting convention
    (Lomonaco et al. 2021). Never exceeds :func:`forgetting_peak`; shapes as there."""
    ndim, rows, idx = _acc_rows(acc_curve, t_drop_index)
    out = rows[np.arange(len(rows)), idx] - rows[:, -1]
    return float(out[0]) if ndim == 1 else out


def backward_transfer(R) -> float:
    """BWT = mean_{j < T-1} (R[T-1, j] - R[j, j]) (Lopez-Paz & Ranzato 2017, "Gradient Episodic
    Memory for Continual Learning"); R[i, j] = accuracy on task j after phase i, T x T.
    Negative means later phases erased earlier tasks."""
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] < 2:
        raise ValueError(f"R must be a square T x T matrix with T >= 2, got shape {R.shape}")
    _check_finite(R=R)
    return float(np.mean(R[-1, :-1] - np.diag(R)[:-1]))


def steps_to_criterion(t, r, criterion: float, higher_is_better: bool = True) -> float:
    """Time from t[0] until r first meets ``criterion`` (>= if higher_is_better, else <=),
    interpolated linearly between grid points; 0 if r[0] meets it, inf if never."""
    t, r = _as_curve(t, r, 2, "steps_to_criterion")
    sign = 1.0 if higher_is_better else -1.0
    return _first_reach(t, sign * r, sign * criterion) - t[0]


def savings(t_learn, r_learn, t_relearn, r_relearn, criterion: float,
            higher_is_better: bool = True) -> float:
    """Ebbinghaus (1885) savings (T_learn - T_relearn) / T_learn, T = steps to criterion, as
    used for networks by Hinton & Plaut 1987 ("Using fast weights to deblur old memories").

    1 if relearning starts at criterion; negative if slower than learning; -inf if it never
    reaches criterion within its horizon; NaN if T_learn is 0 or inf (no baseline to save on)."""
    t_l = steps_to_criterion(t_learn, r_learn, criterion, higher_is_better)
    t_r = steps_to_criterion(t_relearn, r_relearn, criterion, higher_is_better)
    if not 0 < t_l < math.inf:
        return math.nan
    return (t_l - t_r) / t_l


def _shortfall_area(t, r, criterion, higher_is_better, horizon) -> float:
    tau = t - t[0]
    s = criterion - r if higher_is_better else r - criterion
    keep = tau < horizon
    tau, s = np.append(tau[keep], horizon), np.append(s[keep], np.interp(horizon, tau, s))
    # Adding the exact criterion crossings makes the trapezoid rule integrate the positive part
    # of the piecewise-linear curve exactly, instead of clipping at grid points.
    c = np.flatnonzero(s[:-1] * s[1:] < 0)
    tc = tau[c] + (tau[c + 1] - tau[c]) * s[c] / (s[c] - s[c + 1])
    tau, s = np.insert(tau, c + 1, tc), np.insert(s, c + 1, 0.0)
    return float(np.trapezoid(np.maximum(s, 0.0), tau))


def area_savings(t_learn, r_learn, t_relearn, r_relearn, criterion: float,
                 higher_is_better: bool = True, horizon: float | None = None) -> float:
    """1 - A_relearn / A_learn, A = integral over tau in [0, horizon] of the shortfall.

    Shortfall = max(0, criterion - r) (max(0, r - criterion) if lower is better) of r's
    piecewise-linear interpolant, tau = t - t[0]; integrated exactly by the trapezoid rule on
    the actual t values plus the criterion crossings (log grids are fine). Both curves share
    one horizon length, by default the shorter duration; pass the learn curve's final level as
    ``criterion`` to measure from it. Credits partial progress, unlike :func:`savings`: 1 = at
    target throughout, 0 = no better than first learning; NaN if the learn curve never falls
    short."""
    t_l, r_l = _as_curve(t_learn, r_learn, 2, "area_savings learn curve")
    t_r, r_r = _as_curve(t_relearn, r_relearn, 2, "area_savings relearn curve")
    shorter = min(t_l[-1] - t_l[0], t_r[-1] - t_r[0])
    h = shorter if horizon is None else float(horizon)
    if not 0 < h <= shorter:
        raise ValueError(f"horizon must be in (0, {shorter}] (both curves must cover it), got {h}")
    a_l = _shortfall_area(t_l, r_l, criterion, higher_is_better, h)
    if a_l == 0:
        return math.nan
    return 1.0 - _shortfall_area(t_r, r_r, criterion, higher_is_better, h) / a_l


class PowerLawFit(NamedTuple):
    """ln y = intercept + slope ln x, with a t-based CI on the slope."""
    slope: float
    ci_lo: float
    ci_hi: float
    intercept: float


def power_law_exponent(x, y, level: float = 0.95) -> PowerLawFit:
    """OLS of ln y on ln x (y ~ exp(intercept) x^slope), Student-t CI on the slope (n-2 dof).

    Points with x <= 0 or y <= 0 have no logarithm and are dropped; fewer than 3 left (the
    minimum for a residual variance) or non-finite values raise ValueError."""
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have equal length, got {x.shape} and {y.shape}")
    _check_finite(x=x, y=y)
    ok = (x > 0) & (y > 0)
    n = int(ok.sum())
    if n < 3:
        raise ValueError(f"power_law_exponent needs at least 3 positive (x, y) points, got {n}")
    lx, ly = np.log(x[ok]), np.log(y[ok])
    dx, sxx = lx - lx.mean(), float(np.sum((lx - lx.mean()) ** 2))
    if sxx == 0:
        raise ValueError("power_law_exponent: all x are equal, slope undefined")
    b = float(dx @ (ly - ly.mean())) / sxx
    a = float(ly.mean() - b * lx.mean())
    res = ly - a - b * lx
    half = stats.t.ppf(0.5 + level / 2, n - 2) * math.sqrt(float(res @ res) / (n - 2) / sxx)
    return PowerLawFit(b, b - half, b + half, a)
