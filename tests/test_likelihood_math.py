"""Gaussian log-likelihood with parameter-dependent covariance, and scale-cut selections."""
import math

import numpy as np
import pytest

from iaemu_likelihood.conventions import N_BINS, r_centres
from iaemu_likelihood.conventions import STATISTICS
from iaemu_likelihood.data import Measurement
from iaemu_likelihood.likelihood_math import (LN_2PI, POOR_FIT_PVALUE, FitMonitor, gaussian_loglike,
                                              gaussian_terms, match_bins, normalise_r_limits,
                                              normalise_statistics)

RTOL = 1e-10


def _spd(rng, n):
    a = rng.normal(size=(n, n))
    return a @ a.T + n * np.eye(n)


@pytest.mark.parametrize("n", [1, 5, 60])
def test_terms_match_explicit_inverse_and_slogdet(n):
    rng = np.random.default_rng(n)
    cov = _spd(rng, n)
    d, m = rng.normal(size=n), rng.normal(size=n)
    t = gaussian_terms(d, m, cov)
    r = d - m
    chi2 = r @ np.linalg.solve(cov, r)
    sign, logdet = np.linalg.slogdet(cov)
    assert sign > 0
    assert t.n == n
    assert t.chi2 == pytest.approx(chi2, rel=RTOL)
    assert t.logdet == pytest.approx(logdet, rel=RTOL, abs=RTOL)
    expected = -0.5 * (chi2 + logdet + n * math.log(2 * math.pi))
    assert gaussian_loglike(d, m, cov) == pytest.approx(expected, rel=RTOL)
    assert gaussian_loglike(d, m, cov, include_constant=False) == pytest.approx(
        expected + 0.5 * n * LN_2PI, rel=RTOL)


def test_matches_scipy_multivariate_normal():
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(3)
    cov = _spd(rng, 8)
    d, m = rng.normal(size=8), rng.normal(size=8)
    assert gaussian_loglike(d, m, cov) == pytest.approx(multivariate_normal(m, cov).logpdf(d), rel=RTOL)


def test_log_determinant_pins_a_parameter_dependent_covariance():
    # d_i ~ N(0, s^2): the maximum-likelihood s^2 is mean(d^2) only because of ln det C; without
    # it the likelihood keeps growing with s (the trap of dropping the log-determinant)
    rng = np.random.default_rng(0)
    d = rng.normal(0.0, 2.0, size=40)
    grid = np.linspace(0.5, 20.0, 3000)
    full = [gaussian_loglike(d, np.zeros_like(d), s2 * np.eye(d.size)) for s2 in grid]
    chi2_only = [-0.5 * gaussian_terms(d, np.zeros_like(d), s2 * np.eye(d.size)).chi2 for s2 in grid]
    assert grid[int(np.argmax(full))] == pytest.approx(np.mean(d ** 2), abs=grid[1] - grid[0])
    assert int(np.argmax(chi2_only)) == len(grid) - 1


BAD_INPUTS = {
    "nan in data": (np.array([np.nan, 1.0]), np.zeros(2), np.eye(2)),
    "inf in model": (np.ones(2), np.array([np.inf, 0.0]), np.eye(2)),
    "nan in cov": (np.ones(2), np.zeros(2), np.array([[1.0, np.nan], [np.nan, 1.0]])),
    "negative definite": (np.ones(2), np.zeros(2), -np.eye(2)),
    "singular": (np.ones(2), np.zeros(2), np.ones((2, 2))),
    "zero": (np.ones(2), np.zeros(2), np.zeros((2, 2))),
    "shape mismatch": (np.ones(3), np.zeros(2), np.eye(2)),
    "cov shape": (np.ones(2), np.zeros(2), np.eye(3)),
    "empty": (np.ones(0), np.zeros(0), np.eye(0)),
    "2-d data": (np.ones((2, 2)), np.zeros((2, 2)), np.eye(2)),
    "overflow": (np.array([1e200, 0.0]), np.zeros(2), np.eye(2) * 1e-200),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_give_minus_inf_never_nan(case):
    d, m, c = BAD_INPUTS[case]
    value = gaussian_loglike(d, m, c)
    assert value == -math.inf
    t = gaussian_terms(d, m, c)
    assert t.chi2 == math.inf and t.logdet == math.inf


def test_only_lower_triangle_is_read():
    rng = np.random.default_rng(1)
    cov = _spd(rng, 4)
    spoiled = np.tril(cov) + np.triu(np.full((4, 4), 7.0), 1)
    d = rng.normal(size=4)
    assert gaussian_loglike(d, 0 * d, spoiled) == gaussian_loglike(d, 0 * d, cov)


def select_indices(statistics=None, r_min=None, r_max=None):
    """Emulator indices of a selection of a measurement holding every bin of every statistic
    (the likelihoods' one selection, ``Measurement.selection``; select_indices was its dead copy)."""
    full = Measurement(r=r_centres(), statistics=STATISTICS,
                       values={s: np.ones(N_BINS) for s in STATISTICS}, cov=np.eye(3 * N_BINS))
    return full.selection(statistics, r_min, r_max)[1]


def test_select_indices_default_is_everything():
    np.testing.assert_array_equal(select_indices(), np.arange(3 * N_BINS))


def test_select_indices_statistics_and_cuts():
    r = r_centres()
    idx = select_indices(["eta", "xi"], r_min=1.0, r_max=10.0)
    keep = np.flatnonzero((r >= 1.0) & (r <= 10.0))
    np.testing.assert_array_equal(idx, np.concatenate([keep, 2 * N_BINS + keep]))


def test_select_indices_per_statistic_cuts():
    r = r_centres()
    idx = select_indices(None, r_min={"xi": 2.0}, r_max={"omega": 0.5})
    xi = np.flatnonzero(r >= 2.0)
    omega = N_BINS + np.flatnonzero(r <= 0.5)
    eta = 2 * N_BINS + np.arange(N_BINS)
    np.testing.assert_array_equal(idx, np.concatenate([xi, omega, eta]))


def test_cuts_include_a_bin_centre_exactly():
    r = r_centres()
    assert select_indices("xi", r_min=r[3], r_max=r[3]).tolist() == [3]


@pytest.mark.parametrize("kwargs, message", [
    ({"statistics": ["gamma"]}, "unknown statistic"),
    ({"statistics": ["xi", "xi"]}, "more than once"),
    ({"statistics": []}, "no statistic"),
    ({"r_min": 20.0}, "leave no bin"),
    ({"r_min": 2.0, "r_max": 1.0}, "leave no bin"),
    ({"r_min": -1.0}, ">= 0"),
    ({"r_max": "far"}, "must be a number"),
    ({"r_min": {"zeta": 1.0}}, "unknown statistic"),
])
def test_select_indices_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        select_indices(**kwargs)


def test_normalise_statistics_orders_and_restricts():
    assert normalise_statistics(["eta", "xi"]) == ("xi", "eta")
    assert normalise_statistics("omega") == ("omega",)
    with pytest.raises(ValueError, match="not available"):
        normalise_statistics(["xi"], available=("omega",))


def test_normalise_r_limits():
    assert normalise_r_limits(None, ("xi",), 0.0) == {"xi": 0.0}
    assert normalise_r_limits(1, ("xi", "eta"), 0.0) == {"xi": 1.0, "eta": 1.0}
    assert normalise_r_limits({"eta": 2}, ("xi", "eta"), math.inf) == {"xi": math.inf, "eta": 2.0}


def test_match_bins_subset_and_tolerance():
    r = r_centres()
    np.testing.assert_array_equal(match_bins(r[[2, 5, 19]] * (1 + 1e-9), r), [2, 5, 19])
    with pytest.raises(ValueError, match="not emulator bin centres"):
        match_bins([1.0], r)


# ---------------------------------------------------------------------------- FitMonitor
def test_fit_monitor_good_fit_has_no_problem():
    monitor = FitMonitor()
    rng = np.random.default_rng(2)
    n = 60
    for shift in (3.0, 0.0, 1.0):  # the best point (shift 0) fits: chi2 ~ n
        data = rng.normal(size=n)
        terms = gaussian_terms(data + shift, np.zeros(n), np.eye(n))
        monitor.record(terms, terms.loglike())
    monitor.reject()
    assert monitor.n_evaluations == 4 and monitor.n_rejected == 1
    assert monitor.best.chi2 < 2 * n
    assert monitor.problems() == []
    assert monitor.summary().startswith("4 evaluations, 1 rejected")


def test_fit_monitor_reports_a_best_point_that_does_not_fit():
    monitor = FitMonitor()
    n = 60
    terms = gaussian_terms(np.full(n, 5.0), np.zeros(n), np.eye(n))  # chi2 = 1500
    monitor.record(terms, terms.loglike())
    for _ in range(3):
        monitor.record(gaussian_terms([np.nan], [0.0], [[1.0]]), -np.inf)
    [problem] = monitor.problems()
    assert problem.startswith("the best point evaluated has chi2 = 1500 for 60 data points")
    assert "If this was a minimisation, it failed (3 of 4 points were rejected" in problem
    assert monitor.best_pvalue() < POOR_FIT_PVALUE


def test_fit_monitor_reports_when_nothing_was_finite():
    monitor = FitMonitor()
    assert monitor.problems() == []  # nothing evaluated, nothing to say
    monitor.reject()
    monitor.reject()
    [problem] = monitor.problems()
    assert problem.startswith("every one of the 2 points evaluated had zero likelihood")
