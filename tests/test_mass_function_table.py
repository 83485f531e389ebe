"""The runtime interpolation of the suite's host mass function (iaemu_likelihood/mass_function_table.py):
its own thin-plate spline equals scipy's RBFInterpolator (thin_plate_spline, degree 1), a single point equals
the batch, and it is exact at the boxes."""
import numpy as np

from test_mass_function import synthetic_table
from iaemu_likelihood.mass_function_table import MassFunctionInterpolator

#: agreement with scipy's interpolant, relative to the largest |log10 n| of the table
RTOL = 1e-10


def test_thin_plate_spline_equals_scipy_and_single_points_equal_batches():
    from scipy.interpolate import RBFInterpolator

    table = synthetic_table()
    interp = MassFunctionInterpolator(table)
    boxes = np.column_stack([table["omega_m"], table["sigma8"]])
    low, span = boxes.min(axis=0), np.ptp(boxes, axis=0)
    rng = np.random.default_rng(2)
    query = np.column_stack([rng.uniform(0.24, 0.37, 30), rng.uniform(0.70, 0.95, 30)])
    for j, z in enumerate(table["z"]):
        scipy_values = RBFInterpolator((boxes - low) / span, table["log10_n_above"][:, j, :],
                                       kernel="thin_plate_spline", degree=1)((query - low) / span)
        ours = interp.log10_n_above_many(query[:, 0], query[:, 1], np.full(len(query), z))
        np.testing.assert_allclose(ours, scipy_values, rtol=0, atol=RTOL * np.max(np.abs(scipy_values)))
    np.testing.assert_allclose(interp.log10_n_above_many(table["omega_m"], table["sigma8"], np.full(25, 0.5)),
                               table["log10_n_above"][:, 1, :], rtol=0, atol=1e-9)
    z = rng.uniform(0.0, 1.0, 30)
    batch = interp.counts(query[:, 0], query[:, 1], z)
    singles = np.array([interp.counts([om], [s8], [zz])[0] for (om, s8), zz in zip(query, z)])
    np.testing.assert_allclose(singles, batch, rtol=1e-12, atol=0)
