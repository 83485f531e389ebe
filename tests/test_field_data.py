"""Painter data pipeline on a tiny synthetic box: CIC and count meshes, density and galaxy files."""
import json

import numpy as np
import pytest

from iaemu_likelihood.training.field_mesh import count_mesh, density_mesh, voxel_index

BOX, N = 32.0, 16


def test_cic_of_lattice_is_uniform_and_of_a_voxel_centre_is_one_voxel():
    pytest.importorskip("pysco")
    g = (np.arange(2 * N) + 0.25) * (BOX / (2 * N))
    lattice = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    np.testing.assert_allclose(density_mesh(lattice, BOX, N), 1.0, rtol=1e-5)
    centre = np.array([[2.5, 3.5, 4.5]]) * (BOX / N)
    rho = density_mesh(centre, BOX, N)
    assert rho[2, 3, 4] == pytest.approx(N ** 3) and np.count_nonzero(rho) == 1
    # half-way between two voxel centres along x: half the mass in each (periodic at the edge too)
    edge = np.array([[0.0, 3.5, 4.5]]) * (BOX / N)
    rho = density_mesh(edge, BOX, N)
    assert rho[0, 3, 4] == pytest.approx(N ** 3 / 2) and rho[N - 1, 3, 4] == pytest.approx(N ** 3 / 2)


def test_count_mesh_and_voxel_index():
    pos = np.array([[0.1, 0.1, 0.1], [0.2, 0.3, 0.1], [BOX - 1e-9, 0.0, 2.1], [-0.5, 0.0, 0.0]])
    counts = count_mesh(pos, BOX, N)
    assert counts[0, 0, 0] == 2 and counts[N - 1, 0, 1] == 1 and counts[N - 1, 0, 0] == 1
    assert counts.sum() == 4
    assert voxel_index(pos, BOX, N)[0] == 0
    with pytest.raises(ValueError, match="shape"):
        count_mesh(np.zeros((3, 2)), BOX, N)
    with pytest.raises(ValueError, match="NaN"):
        count_mesh(np.full((1, 3), np.nan), BOX, N)


def write_tiny_box(folder, seed=0, n_halos=60, n_particles=4096):
    """A box folder as `iaemu build-catalog` leaves it: PySCo-format snapshot, config, halo catalog."""
    import h5py

    from iaemu_likelihood.training.catalogs import save_halo_catalog
    from iaemu_likelihood.training.halos import virial_radius

    rng = np.random.default_rng(seed)
    snap_dir = folder / "nbody" / "output_00001"
    snap_dir.mkdir(parents=True)
    (folder / "nbody" / "simulation_config.json").write_text(json.dumps({"box_size": BOX, "seed": seed}))
    centres = rng.uniform(0, BOX, (n_halos, 3))
    # particles clustered around the halos plus a uniform background, in PySCo's box units
    pos = np.concatenate([rng.uniform(0, BOX, (n_particles // 2, 3)),
                          centres[rng.integers(n_halos, size=n_particles // 2)]
                          + rng.normal(0, 0.5, (n_particles // 2, 3))])
    with h5py.File(snap_dir / "particles_x.h5", "w") as f:
        f["position"] = np.mod(pos, BOX) / BOX
        f["velocity"] = np.zeros_like(pos)
        f.attrs["unit_l"], f.attrs["unit_t"] = 1.0, 1.0
    mass = 10 ** rng.uniform(12.0, 14.0, n_halos)
    axis = rng.normal(size=(n_halos, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    halos = {"mass": mass, "rvir": virial_radius(mass, 0.3), "centre": centres, "velocity": np.zeros((n_halos, 3)),
             "axis_a": axis, "axis_c": np.cross(axis, [0.0, 0.0, 1.0]), "b_to_a": np.full(n_halos, 0.8),
             "c_to_a": np.full(n_halos, 0.6), "n_particles": (mass / 1e10).astype(int),
             "n_shape": (mass / 1e10).astype(int)}
    save_halo_catalog(folder / "halos.npz", halos, {"box_size": BOX, "particle_mass": 1e10,
                                                    "min_particles_trusted": 20})
    return folder


@pytest.fixture(scope="module")
def tiny_box(tmp_path_factory):
    pytest.importorskip("pysco")
    pytest.importorskip("halotools")
    from iaemu_likelihood.training.field_data import build_density, build_galaxies

    folder = write_tiny_box(tmp_path_factory.mktemp("field") / "box_0")
    build_density(folder, N)
    build_galaxies(folder, "train", n_points=2, n_realizations=2, design_seed=3, seed=50)
    return folder


def test_density_file(tiny_box):
    from iaemu_likelihood.training.field_data import build_density, load_density

    rho, prov = load_density(tiny_box, N)
    assert rho.shape == (N,) * 3 and rho.dtype == np.float32
    assert rho.mean() == pytest.approx(1.0, rel=1e-5)
    assert prov["n_mesh"] == N and prov["box_size"] == BOX and len(prov["snapshot_sha256"]) == 64
    before = (tiny_box / f"density_n{N}.npz").stat().st_mtime_ns
    build_density(tiny_box, N)  # a finished file is reused, not rewritten
    assert (tiny_box / f"density_n{N}.npz").stat().st_mtime_ns == before


def test_galaxy_file_is_reproducible_and_consistent(tiny_box, tmp_path):
    import shutil

    from iaemu_likelihood.training.design import DesignRule
    from iaemu_likelihood.training.field_data import build_galaxies, load_galaxies, theta_from_hod

    gals = load_galaxies(tiny_box, "train")
    assert gals.hod.shape == (2, 5) and gals.seeds.tolist() == [[50, 51], [1050, 1051]]
    assert DesignRule().contains(np.array([theta_from_hod(h) for h in gals.hod])).all()
    for p in range(2):
        for r in range(2):
            pos = gals.positions(p, r)
            assert pos.shape[1] == 3 and np.all((pos >= 0) & (pos <= BOX))
            assert gals.counts(p, r, N).sum() == len(pos)
    assert len(gals.positions(0, 0)) > 0
    assert not np.array_equal(gals.positions(0, 0), gals.positions(0, 1))
    # the same seeds on a fresh copy of the box give the same galaxies
    copy = shutil.copytree(tiny_box, tmp_path / "copy")
    (copy / "galaxies_train.npz").unlink()
    again = load_galaxies(build_galaxies(copy, "train", 2, 2, 3, 50).parent, "train")
    np.testing.assert_array_equal(again.positions(1, 1), gals.positions(1, 1))
    assert gals.provenance["catalog_sha256"] == again.provenance["catalog_sha256"]


def test_alignment_of_paintings_against_mocks_and_its_calibration(tiny_box, tmp_path):
    """compare_with_mocks measures the mocks and the oriented paintings with the same estimator; iaemu
    field-calibrate --alignment --no-counts stores central_p2_scale = 1 / (painted / mock omega) in a
    painter folder whose checksums stay valid, and painting then reads it."""
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from iaemu_likelihood.cli import main
    from iaemu_likelihood.field import GalaxyPainter
    from iaemu_likelihood.field.testing import write_synthetic_painter
    from iaemu_likelihood.training.field_alignment import compare_with_mocks, far_ratio, fit_alignment
    from iaemu_likelihood.training.field_calibration import write_calibration
    from iaemu_likelihood.training.field_data import HOD_NAMES, load_galaxies

    folder = write_synthetic_painter(tmp_path / "painter", n_mesh=N, box_size=BOX)
    painter = GalaxyPainter.load(folder)
    hod = dict(zip(HOD_NAMES, map(float, load_galaxies(tiny_box, "train").hod[0])))
    rbins = np.geomspace(1.0, 8.0, 5)
    points = compare_with_mocks(painter, tiny_box, [hod], {"mu_cen": 1.0, "mu_sat": 0.0}, n_real=2, seed=6,
                                rbins=rbins)
    (pt,) = points
    assert pt["truth"]["omega"].shape == pt["painted"]["xi"].shape == (4,) and pt["n_gal_painted"] > 0
    far = pt["r"] >= 2
    assert np.isfinite(pt["truth"]["omega"]).all() and pt["truth"]["omega"][far].sum() > 0
    ratio = far_ratio(points, "omega", 2.0)
    assert ratio == pytest.approx(pt["painted"]["omega"][far].sum() / pt["truth"]["omega"][far].sum())
    # fit_alignment paints the same realizations (same points, strengths and seeds): 1 / that ratio
    fitted = fit_alignment(painter, tiny_box, n_points=1, n_real=2, mu_cen=1.0, seed=6, threads=1, rbins=rbins)
    assert ratio > 0 and fitted["central_p2_scale"] == pytest.approx(1 / ratio)
    with pytest.raises(ValueError, match="painted / mock omega at r >= 2.0 is -0.03.*cannot calibrate"):
        fit_alignment(painter, tiny_box, n_points=1, n_real=2, mu_cen=1.0, seed=3, threads=1, rbins=rbins)
    write_calibration(folder, fitted, key="alignment")
    calibrated = GalaxyPainter.load(folder)  # checksums refreshed
    assert calibrated.metadata["alignment"]["central_p2_scale"] == pytest.approx(1 / ratio)
    rho = np.random.default_rng(1).lognormal(0, 1, (N,) * 3)
    plain = painter.paint(rho, hod, seed=2, alignment={"mu_cen": 0.9, "mu_sat": 0.5})
    scaled = calibrated.paint(rho, hod, seed=2, alignment={"mu_cen": 0.9, "mu_sat": 0.5})
    np.testing.assert_array_equal(plain[1], scaled[1])  # the same galaxies, other central orientations
    assert not np.allclose(plain[2], scaled[2])
    # the command stores it (with the emulator's bins, which this 32 h^-1 Mpc box cannot hold: refused by name)
    assert main(["field-calibrate", str(folder), "--boxes", str(tiny_box), "--alignment", "--no-counts"]) == 1
    assert GalaxyPainter.load(folder).metadata["alignment"] == calibrated.metadata["alignment"]  # left as it was
    assert main(["field-calibrate", str(folder), "--boxes", str(tiny_box), "--no-counts"]) == 1
