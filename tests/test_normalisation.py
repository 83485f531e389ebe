"""Input scaling and output standardisation."""
import numpy as np
import pytest

from iaemu_likelihood.training.dataset_io import IADataset
from iaemu_likelihood.training.normalisation import InputScaler, OutputNormaliser, valid_points

TOL = 1e-10


def _dataset(n_points=30, n_real=8, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n_points, n_real, 20)
    ints = np.zeros(shape[:2], dtype=np.int64)
    return IADataset(params=rng.uniform(size=(n_points, 7)),
                     xi=np.exp(rng.normal(1.0, 0.3, size=shape)),
                     omega=rng.normal(0.2, 0.1, size=shape), eta=rng.normal(0.0, 0.05, size=shape),
                     r_edges=np.logspace(-1, 1.2, 21), n_gal=ints, n_cen=ints, n_sat=ints,
                     seeds=ints, retries=ints)


def test_input_scaler_round_trip_and_edges():
    low, high = np.arange(7.0), np.arange(7.0) + 2.0
    sc = InputScaler(low, high)
    np.testing.assert_allclose(sc.transform(low), -1.0)
    np.testing.assert_allclose(sc.transform(high), 1.0)
    theta = np.random.default_rng(0).uniform(low, high, size=(5, 7))
    np.testing.assert_allclose(sc.inverse(sc.transform(theta)), theta, atol=TOL)
    assert sc.to_dict() == {"low": low.tolist(), "high": high.tolist()}
    with pytest.raises(ValueError, match="exceed"):
        InputScaler(high, low)


def test_output_normaliser_standardises_training_targets():
    ds = _dataset()
    norm = OutputNormaliser.fit(ds)
    y, v = norm.targets(ds)
    assert y.shape == v.shape == (30, 60)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(y.std(axis=0), 1.0, atol=1e-10)
    assert np.all(v > 0)
    # round trip to physical: means and per-realization variances (delta method for log xi)
    values, variances = norm.physical(y, v)
    for stat in ("xi", "omega", "eta"):
        np.testing.assert_allclose(values[stat], ds.mean(stat), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(variances[stat], ds.std(stat) ** 2, rtol=1e-10, atol=1e-14)
    back = OutputNormaliser.from_dict(norm.to_dict())
    np.testing.assert_allclose(back.targets(ds)[0], y)


def test_fitted_on_training_points_only():
    ds = _dataset()
    a = OutputNormaliser.fit(ds.subset(np.arange(10)))
    b = OutputNormaliser.fit(ds)
    assert not np.allclose(a.mean["omega"], b.mean["omega"])


def test_valid_points_rejects_non_positive_xi_mean():
    ds = _dataset()
    xi = ds.xi.copy()
    xi[3, :, 5] = -1.0
    bad = IADataset(**{**ds.__dict__, "xi": xi})
    mask = valid_points(bad)
    assert not mask[3] and mask.sum() == 29
    with pytest.raises(ValueError, match="log"):
        OutputNormaliser.fit(bad)
