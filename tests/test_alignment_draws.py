"""A mock without satellites (a small suite box at a high M1): the satellite alignment of
training/forward_model does nothing on the empty table instead of halotools' error normalising
an empty array of vectors; non-empty tables get halotools' own draws."""
import numpy as np
import pytest

pytest.importorskip("halotools")


def test_satellite_alignment_skips_an_empty_table():
    from astropy.table import Table
    from halotools.empirical_models import RadialSatelliteAlignment

    from iaemu_likelihood.training.forward_model import satellite_alignment, seeded_alignment_draws

    columns = ("x", "y", "z", "halo_x", "halo_y", "halo_z", "halo_rvir", "galaxy_axisA_x", "galaxy_axisA_y",
               "galaxy_axisA_z")
    plain, skipping = RadialSatelliteAlignment(satellite_alignment_strength=0.5), satellite_alignment(0.5)
    for component in (plain, skipping):
        component._Lbox = np.array([100.0, 100.0, 100.0])  # what inherit_halocat_properties sets
    empty = Table({c: np.zeros(0) for c in columns})
    with pytest.raises(ValueError, match="cannot reshape array of size 0"):
        plain.assign_satellite_orientation(table=empty)
    assert len(skipping.assign_satellite_orientation(table=empty)) == 0
    table = Table({c: np.array([1.0, 2.0]) for c in columns})
    table["halo_x"] = [0.0, 0.0]
    with seeded_alignment_draws(3):
        expected = plain.assign_satellite_orientation(table=table.copy())
    with seeded_alignment_draws(3):
        got = skipping.assign_satellite_orientation(table=table.copy())
    for key in ("galaxy_axisA_x", "galaxy_axisA_y", "galaxy_axisA_z"):
        np.testing.assert_array_equal(got[key], expected[key])
