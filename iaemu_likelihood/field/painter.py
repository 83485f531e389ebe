"""Paint HOD galaxies onto a dark-matter density mesh with a trained painter network.

The input is the dark-matter density of a periodic box on a cubic mesh whose voxels have the
size the painter was trained on (``voxel_size`` h^-1 Mpc, see the weights' ``painter.json``), as
mass per voxel in any unit: it is divided by its mean, so ``rho / rho_mean`` (CIC, like the
training meshes). A painter with ``input_factor`` f > 1 reads the density on a mesh f times finer
than its galaxy mesh (``density_n_mesh`` in ``painter.json``) and paints galaxies on the coarser
one. No halo catalog is needed. The output is a galaxy count per voxel (a seeded
realization, or the expected count) and, on request, galaxy positions drawn uniformly inside
their voxels (comoving h^-1 Mpc).
"""
from __future__ import annotations

import logging
import math

import numpy as np

from ..errors import IAEmuError, InputShapeError, OutOfRangeError
from .network import (build_network, dispersion_for_pairs, expected_pairs, logit_offset_for_total,
                      network_outputs, normalise_density, normalise_hod, periodic_space_to_depth)
from .sampling import DEFAULT_OCCUPANCY, OCCUPANCY, mean_counts, sample_counts
from .weights import load_painter_folder

__all__ = ["GalaxyPainter", "paint", "MeshShapeError", "InvalidDensityError", "MODES", "SYMMETRIES",
           "apply_symmetry", "undo_symmetry"]

logger = logging.getLogger(__name__)

MODES = ("sample", "mean")
#: Galaxy voxels per side up to which a box is painted whole when ``tile`` is None.
WHOLE_BOX_MAX = 160
#: Tile side (galaxy voxels) for larger boxes when ``tile`` is None (~3 GB at input_factor 4).
AUTO_TILE = 128
#: Memory for the assembled raw outputs of the HOD points painted together in tiled mode, bytes.
TILED_OUTPUT_BYTES = 2 << 30
#: Relative tolerance on the voxel size implied by ``box_size``.
VOXEL_RTOL = 1e-3
#: Cube symmetries (axis permutation, flipped axes) that ``symmetries=k`` averages over: the first k.
#: Identity first, then the inversion; the painters were trained on all 48 permutations/flips.
SYMMETRIES = (((0, 1, 2), ()), ((0, 1, 2), (0, 1, 2)), ((1, 2, 0), (1,)), ((2, 0, 1), (0, 2)),
              ((1, 0, 2), (0,)), ((0, 2, 1), (2,)), ((2, 1, 0), (1, 2)), ((1, 2, 0), (0, 2)))


def apply_symmetry(mesh, symmetry):
    """``mesh`` (last three axes) in the frame of a cube symmetry ``(permutation, flipped axes)``: a view."""
    perm, flips = symmetry
    lead = tuple(range(mesh.ndim - 3))
    out = np.transpose(mesh, lead + tuple(len(lead) + a for a in perm))
    return np.flip(out, tuple(len(lead) + a for a in flips)) if flips else out


def undo_symmetry(mesh, symmetry):
    """The inverse of :func:`apply_symmetry` (a view)."""
    perm, flips = symmetry
    lead = tuple(range(mesh.ndim - 3))
    out = np.flip(mesh, tuple(len(lead) + a for a in flips)) if flips else mesh
    return np.transpose(out, lead + tuple(len(lead) + int(a) for a in np.argsort(perm)))


def _is_integer(value) -> bool:
    """A Python or numpy integer, not a bool (``True`` is not a tile size, a seed or a count)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


class MeshShapeError(InputShapeError):
    """A density mesh that is not cubic, not 3-D, or whose voxels differ from the painter's."""


class InvalidDensityError(IAEmuError, ValueError):
    """A density mesh with NaN, inf or negative values, or a non-positive mean."""


class GalaxyPainter:
    """A loaded painter: network, HOD prior and mesh of its training data.

    Build it with :meth:`load`.

    Parameters
    ----------
    metadata : dict
        Parsed ``painter.json``.
    state : dict
        Network state dict (name -> ndarray).
    device : str
        Torch device ("cpu", "cuda", "cuda:1", ...).
    """

    def __init__(self, metadata: dict, state: dict, device: str = "cpu", folder=None):
        import torch

        from ..config_checks import check_torch_device

        self.metadata = metadata
        self.folder = folder
        self.device = check_torch_device(device)
        self.hod_names = tuple(metadata["hod_names"])
        self.bounds = {k: tuple(v) for k, v in metadata["bounds"].items()}
        self.support = metadata.get("support")
        mesh = metadata["mesh"]
        self.n_mesh, self.box_size = int(mesh["n_mesh"]), float(mesh["box_size"])
        self.voxel_size = float(mesh["voxel_size"])
        self.pos_weight = float(metadata["pos_weight"])
        self._input = metadata["input"]
        config = metadata["architecture_config"]
        self.pad = int(config["context"])
        self._multiple = int(np.prod(config["strides"]))
        #: density cells per galaxy voxel along each axis
        self.input_factor = int(config.get("input_factor", 1))
        #: density mesh of the training box
        self.density_n_mesh = self.n_mesh * self.input_factor
        self.net = build_network(config)
        self.net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
        self.net.to(self.device).eval()
        if self.device == "cpu":  # channels-last 3-D convolutions are ~15% faster on CPUs (same values)
            self.net.to(memory_format=torch.channels_last_3d)

    @classmethod
    def load(cls, version=None, device: str = "cpu") -> GalaxyPainter:
        """Verify (SHA-256) and load a painter folder or shipped version (default ``iaemu-painter-v6``)."""
        meta, state, folder = load_painter_folder(version)
        return cls(meta, state, device=device, folder=folder)

    def __repr__(self):
        return (f"GalaxyPainter({self.metadata.get('version')!r}, mesh {self.n_mesh}^3 "
                f"(density {self.density_n_mesh}^3), "
                f"voxel {self.voxel_size:g} h^-1 Mpc, device {self.device!r})")

    # ------------------------------------------------------------------ input checks
    def validate_hod(self, hod) -> np.ndarray:
        """HOD parameters as an array (5,) in ``hod_names`` order, checked against the prior.

        ``hod`` is a mapping with exactly the names in ``hod_names`` or a sequence in that order.
        Raises :class:`OutOfRangeError` naming the parameter, value and allowed range.
        """
        if isinstance(hod, dict):
            unknown = sorted(set(hod) - set(self.hod_names))
            missing = [n for n in self.hod_names if n not in hod]
            if unknown or missing:
                raise InputShapeError(f"hod_params must name exactly {list(self.hod_names)}; "
                                      f"unknown: {unknown}, missing: {missing}")
            values = np.array([float(hod[n]) for n in self.hod_names])
        else:
            values = np.asarray(hod, dtype=np.float64)
            if values.shape != (len(self.hod_names),):
                raise InputShapeError(f"hod_params has shape {values.shape}; expected "
                                      f"({len(self.hod_names)},) in the order {list(self.hod_names)}")
        for name, value in zip(self.hod_names, values.tolist()):
            low, high = self.bounds[name]
            if not low <= value <= high:  # False for NaN
                raise OutOfRangeError(f"HOD parameter {name!r} = {value!r} is outside the painter's "
                                      f"training range [{low:g}, {high:g}]")
        self._check_band(values)
        return values

    def _check_band(self, values: np.ndarray) -> None:
        """Dependent parameters lie in a band around a line in the pivot (``support``, linear_band)."""
        if not self.support:
            return
        x = float(values[self.hod_names.index(self.support["pivot"])])
        for name, band in self.support["bands"].items():
            low = band["low_intercept"] + band["slope"] * x
            if band.get("floor") is not None:
                low = max(low, band["floor"])
            high = band["high_intercept"] + band["slope"] * x
            value = float(values[self.hod_names.index(name)])
            if not low <= value <= high:
                raise OutOfRangeError(
                    f"HOD parameter {name!r} = {value!r} is outside the painter's training support at "
                    f"{self.support['pivot']} = {x:g}: allowed [{low:g}, {high:g}]")

    def validate_density(self, density, box_size: float | None = None) -> np.ndarray:
        """The density as float32 ``rho / rho_mean``, after shape and value checks.

        Parameters
        ----------
        density : array_like, shape (f n, f n, f n)
            Mass per density cell (any unit), periodic box; ``f = input_factor``, and the galaxies
            are painted on the ``n^3`` mesh.
        box_size : float, optional
            Box side in h^-1 Mpc; then any ``n`` with ``box_size / n`` equal to the painter's voxel
            size is accepted. Without it the mesh must equal the training box's.
        """
        return self._relative_density(self._checked_mesh(density, box_size))

    def _relative_density(self, rho, mean: float | None = None) -> np.ndarray:
        """A checked mesh (or a view of it) as a new C-ordered float32 array ``rho / rho_mean``;
        ``mean``: the mesh's mean when already checked (:meth:`_density_mean`), else the value checks run."""
        mean = self._density_mean(rho) if mean is None else mean
        return np.ascontiguousarray(rho, dtype=np.float32) / np.float32(mean)

    def _checked_mesh(self, density, box_size: float | None):
        """``density`` as an array (a memory map stays one) after the shape, voxel-size and dtype checks."""
        rho = density if isinstance(density, np.ndarray) else np.asarray(density)
        f, want = self.input_factor, self.density_n_mesh
        if rho.ndim != 3 or len(set(rho.shape)) != 1:
            raise MeshShapeError(f"density has shape {rho.shape}; expected a cubic 3-D mesh "
                                 f"({want}, {want}, {want})")
        n_density = rho.shape[0]
        if n_density % f:
            raise MeshShapeError(f"density mesh is {n_density}^3; this painter needs a multiple of {f} cells "
                                 f"per side ({f}^3 density cells per galaxy voxel)")
        n = n_density // f
        if box_size is None:
            if n != self.n_mesh:
                raise MeshShapeError(f"density mesh is {n_density}^3; this painter needs {want}^3 for a "
                                     f"{self.box_size:g} h^-1 Mpc box, or pass box_size for another box "
                                     f"with {self.voxel_size / f:g} h^-1 Mpc density voxels")
        elif not abs(box_size / n / self.voxel_size - 1) <= VOXEL_RTOL:
            raise MeshShapeError(f"density mesh voxel size box_size / n = {box_size:g} / {n_density} = "
                                 f"{box_size / n_density:g} h^-1 Mpc; this painter was trained on "
                                 f"{self.voxel_size / f:g} h^-1 Mpc density voxels")
        if rho.dtype.kind not in "iuf":  # complex would lose its imaginary part, bool become 0/1
            raise InvalidDensityError(f"density has dtype {rho.dtype}; expected real numbers "
                                      "(integer or floating point)")
        return rho

    @staticmethod
    def _density_mean(rho) -> float:
        """Mean of the mesh after the value checks, read in slabs (a memory-mapped mesh is never
        loaded whole; no mesh-sized temporaries)."""
        low, high, total = np.inf, -np.inf, 0.0
        step = max(1, (1 << 24) // max(1, rho.shape[1] * rho.shape[2]))  # ~16M cells per slab
        for i in range(0, rho.shape[0], step):
            slab = np.asarray(rho[i:i + step], dtype=np.float32)
            low, high = min(low, slab.min()), max(high, slab.max())  # NaN and inf show in these
            total += float(slab.sum(dtype=np.float64))
        if not (np.isfinite(low) and np.isfinite(high)):
            bad = sum(int((~np.isfinite(np.asarray(rho[i:i + step], np.float32))).sum())
                      for i in range(0, rho.shape[0], step))
            raise InvalidDensityError(f"density has {bad} NaN or inf voxels")
        if low < 0:
            raise InvalidDensityError(f"density has negative voxels (min {float(low)!r}); expected "
                                      "mass per voxel, not an overdensity")
        mean = total / rho.size
        if not mean > 0:
            raise InvalidDensityError(f"density has mean {mean!r}; expected a positive mean")
        return mean

    # ------------------------------------------------------------------ prediction
    def predict(self, density, hod_params, box_size: float | None = None, tile: int | None = None,
                symmetries: int = 1) -> dict:
        """Per-voxel distribution: ``p`` (probability of >= 1 galaxy), ``mu``, ``r`` (float32 meshes);
        ``tile`` and ``symmetries``: see :meth:`predictions`."""
        return next(self.predictions(density, [hod_params], box_size, tile, symmetries))

    def predictions(self, density, hod_points, box_size: float | None = None, tile: int | None = None,
                    symmetries: int = 1):
        """:meth:`predict` for several HOD points on one density, one dict per point (a generator).

        Every point is checked before any work is done. A painter whose network has an
        HOD-independent encoder (``kind`` ``"encoder_head"``) encodes the density once for all
        points, so each further point costs only the per-voxel head.

        ``tile``: galaxy voxels per side of the cubes the box is painted in, each with the
        painter's periodic context around it, so memory stays that of a ``tile^3`` box whatever the
        box (a memory-mapped density, ``np.load(..., mmap_mode="r")``, is read tile by tile). None:
        the whole box at once up to :data:`WHOLE_BOX_MAX` voxels per side, tiles of
        :data:`AUTO_TILE` above. Tiles see ``context`` voxels around them, as in training, where the
        whole box sees all of it: the fields differ slightly near tile faces.

        ``symmetries``: the network's raw outputs averaged over the first ``symmetries`` cube
        symmetries of :data:`SYMMETRIES` (test-time augmentation: the density is rotated/flipped,
        painted, and the outputs turned back), 1 to 8. The painters were trained on all of them,
        so each is an equally valid prediction; the average has less of the network's own noise
        (v4 on its training box's bench points: AP +0.005 for 2, +0.009 for 8) for ``symmetries``
        times the encoding cost.
        """
        side, hods, params, outputs = self._raw_outputs(density, hod_points, box_size, tile, symmetries)
        for hod, par, out in zip(hods, params, outputs):
            yield self._distribution(out, hod, par, side)

    def raw_outputs(self, density, hod_points, box_size: float | None = None, tile: int | None = None,
                    symmetries: int = 1):
        """The network's raw outputs (1, 3, n, n, n) (torch, on the painter's device) for several HOD
        points on one density, before calibration (a generator; arguments as :meth:`predictions`):
        channel 0 is the classifier's logit (shifted by ``log(pos_weight)``), channels 1 and 2 the
        count distribution's pre-activations (:func:`~iaemu_likelihood.field.network.network_outputs`).
        Averaged over ``symmetries`` cube symmetries they are what a symmetry-averaged painting is
        drawn from, and a distillation target in training (``iaemu field-train`` ``teacher``)."""
        yield from self._raw_outputs(density, hod_points, box_size, tile, symmetries)[3]

    def _raw_outputs(self, density, hod_points, box_size, tile, symmetries):
        """(box side, checked HOD points, their normalised parameters, generator of their raw outputs);
        every argument is checked here, before any work."""
        hods = [self.validate_hod(h) for h in hod_points]
        f = self.input_factor
        rho = self._checked_mesh(density, box_size)
        n = rho.shape[0] // f  # galaxy mesh
        if tile is not None and (not _is_integer(tile) or tile < 1):
            raise ValueError(f"tile={tile!r}: must be a positive integer (galaxy voxels per side) or None")
        if not _is_integer(symmetries) or not 1 <= symmetries <= len(SYMMETRIES):
            raise ValueError(f"symmetries={symmetries!r}: must be an integer from 1 to {len(SYMMETRIES)}")
        tile = (None if n <= WHOLE_BOX_MAX else AUTO_TILE) if tile is None else min(int(tile), n)
        side = n * self.voxel_size if box_size is None else float(box_size)
        params = [self._normalised_hod(h) for h in hods]
        return side, hods, params, self._averaged_outputs(rho, n, params, tile, symmetries)

    def _averaged_outputs(self, rho, n: int, params, tile: int | None, symmetries: int):
        """Raw outputs (1, 3, n, n, n) (torch, on the device) of each normalised HOD point, averaged over
        the first ``symmetries`` cube symmetries, whole-box or tiled (a generator)."""
        tiled = tile is not None and tile < n
        if not tiled and symmetries == 1:  # streamed: one point's outputs at a time
            yield from self._whole_box_outputs(self._relative_density(rho), params)
            return
        import torch

        mean = np.float32(self._density_mean(rho))
        # the raw outputs of the points painted together (all symmetries, tiles) are held on the mesh
        per_group = max(1, int(TILED_OUTPUT_BYTES // (3 * 4 * n ** 3)))
        for g in range(0, len(params), per_group):
            group = list(range(g, min(g + per_group, len(params))))
            group_params = [params[i] for i in group]
            total = dict.fromkeys(group)
            for symmetry in SYMMETRIES[:symmetries]:
                view = apply_symmetry(rho, symmetry)
                if tiled:
                    outs = self._tiled_outputs(view, mean, group_params, tile)
                else:
                    rel = self._relative_density(view, mean)
                    outs = (o.float().cpu().numpy() for o in self._whole_box_outputs(rel, group_params))
                for i, out in zip(group, outs):
                    out = undo_symmetry(out, symmetry)
                    total[i] = out if total[i] is None else total[i] + out
            for i in group:
                out = np.ascontiguousarray(total.pop(i), dtype=np.float32)
                if symmetries > 1:
                    out /= np.float32(symmetries)
                yield torch.from_numpy(out).to(self.device)

    def _whole_box_outputs(self, rho, params):
        """Raw network outputs (1, 3, n, n, n) (torch, on the device) for each normalised HOD point,
        from ``rho / rho_mean`` (float32, consumed) of the whole box; the density is encoded once."""
        import torch

        f = self.input_factor
        n = rho.shape[0] // f
        # periodic context on every side (galaxy voxels), rounded up so the U-Net's strides divide the size
        total = self._multiple * math.ceil((n + 2 * self.pad) / self._multiple)
        lo = self.pad
        hi = total - n - lo
        with torch.inference_mode():
            # in place on the caller's copy (torch: threaded), then the periodic context
            x = normalise_density(torch.from_numpy(rho), self._input["shift"], self._input["scale"])
            if hasattr(self.net, "encode_cells"):  # encoder_head: context and cells per voxel in one copy
                cells = periodic_space_to_depth(x, f, lo, hi).to(self.device)
                del x, rho
                prepared = self.net.encode_cells(cells)  # the density encoded here, once
            else:
                xt = torch.nn.functional.pad(x[None, None], (lo * f, hi * f) * 3, mode="circular").to(self.device)
                del x, rho
                prepared = self.net.prepare(xt)
            for par in params:
                pt = torch.from_numpy(par)[None, None].to(self.device)
                yield self.net.targets(prepared, pt, (lo, n))[:, 0]

    def _tiled_outputs(self, rho, mean: np.float32, params, tile: int) -> list:
        """Raw network outputs (1, 3, n, n, n) (numpy) for each normalised HOD point, painted cube by
        cube from the density mesh ``rho`` (any unit, mean ``mean``; read tile by tile)."""
        import torch

        f, pad = self.input_factor, self.pad
        n = rho.shape[0] // f
        starts = range(0, n, tile)
        outs = [np.empty((1, 3, n, n, n), np.float32) for _ in params]
        pt = torch.from_numpy(np.stack(params))[None].to(self.device)
        with torch.inference_mode():
            for a in starts:
                for b in starts:
                    for c in starts:
                        sizes = tuple(min(tile, n - s0) for s0 in (a, b, c))
                        # each axis: the tile, the context before it and enough after it for the strides
                        cells = [(np.arange(-pad, self._multiple * math.ceil((t + 2 * pad) / self._multiple) - pad)
                                  + s0) % n for s0, t in zip((a, b, c), sizes)]
                        cells = [(i[:, None] * f + np.arange(f)).ravel() for i in cells]
                        x = torch.from_numpy(np.asarray(rho[np.ix_(*cells)], dtype=np.float32) / mean)
                        x = normalise_density(x, self._input["shift"], self._input["scale"])
                        out = self.net.targets(self.net.prepare(x[None, None].to(self.device)), pt,
                                               (pad, sizes))[0]
                        out = out.float().cpu().numpy()
                        for j, o in enumerate(outs):
                            o[0, :, a:a + sizes[0], b:b + sizes[1], c:c + sizes[2]] = out[j]
        return outs

    def _normalised_hod(self, hod: np.ndarray) -> np.ndarray:
        """HOD values (``hod_names`` order) mapped to [-1, 1] over the painter's bounds (the network's input)."""
        return normalise_hod(hod, *zip(*(self.bounds[k] for k in self.hod_names)))

    def _distribution(self, out, hod: np.ndarray, params: np.ndarray, side: float) -> dict:
        """Calibrated (p, mu, r) meshes from the raw network output (1, 3, n, n, n) of one HOD point."""
        offset, log_scale, log_pairs = self._calibration(params)
        p, logit, mu, r = network_outputs(out, self.pos_weight, logit_offset=offset)
        p, mu, r = p[0].cpu().numpy(), mu[0].cpu().numpy() * np.float32(np.exp(log_scale)), r[0].cpu().numpy()
        target = self.expected_galaxies(hod, side ** 3)
        if target is not None:
            logit = logit[0].cpu().numpy().astype(np.float64) - math.log(self.pos_weight) + offset
            weight = 1.0 + mu.astype(np.float64)
            b = logit_offset_for_total(logit, target, weight)
            if b is None:
                raise InvalidDensityError(f"no painting of this density holds the HOD's {target:.4g} expected "
                                          "galaxies (the network's occupation cannot be rescaled to it)")
            p = (1.0 / (1.0 + np.exp(-(logit + b)))).astype(np.float32)
        if log_pairs:  # same-voxel pairs scaled as calibrated, through the dispersion 1 / r
            t = dispersion_for_pairs(p, mu, r, np.exp(log_pairs) * expected_pairs(p, mu, r))
            r = r / np.float32(t)
        return {"p": p, "mu": mu, "r": r}

    def expected_galaxies(self, hod, volume: float) -> float | None:
        """Mean galaxy number of the HOD in ``volume`` ((h^-1 Mpc)^3) from the training boxes' halo
        mass function (``calibration.mass_function``), or None for a painter without one."""
        from ..hod import number_density

        mass_function = (self.metadata.get("calibration") or {}).get("mass_function")
        if mass_function is None:
            return None
        return float(number_density(dict(zip(self.hod_names, np.asarray(hod, float))), mass_function)) * volume

    def _calibration(self, params: np.ndarray) -> tuple[float, float, float]:
        """Post-hoc (logit offset, log mu scale, log same-voxel pair ratio), each linear in
        ``[1, normalised HOD]`` (``painter.json`` ``calibration``; zero where absent)."""
        cal = self.metadata.get("calibration") or {}
        features = np.r_[1.0, params.astype(np.float64)]
        return tuple(float(features @ np.asarray(cal[key])) if key in cal else 0.0
                     for key in ("logit_offset", "log_mu_scale", "log_pair_scale"))

    def paint(self, density, hod_params, seed: int | None = None, mode: str = "sample",
              box_size: float | None = None, positions: bool = False, occupancy: str = DEFAULT_OCCUPANCY,
              tile: int | None = None, symmetries: int = 1, alignment=None):
        """A galaxy field painted on ``density`` for the HOD ``hod_params``.

        Parameters
        ----------
        density : array_like, shape (n, n, n)
            Dark-matter mass per voxel (see :meth:`validate_density`).
        hod_params : mapping or sequence
            ``logMmin, sigma_logM, logM0, logM1, alpha`` (log10 Msun/h masses).
        seed : int, optional
            Seed of the realization (``mode="sample"``); None draws from OS entropy.
        mode : {"sample", "mean"}
            A realization (int32 counts) or the expected count per voxel (float32).
        box_size : float, optional
            Box side, h^-1 Mpc (default: the training box; see :meth:`validate_density`).
        positions : bool
            Also return galaxy positions (n_gal, 3), float64, comoving h^-1 Mpc, uniform inside
            their voxels (``mode="sample"`` only).
        occupancy : {"peak_groups", "independent"}
            How occupied voxels are drawn (``mode="sample"``): grouped around the local maxima of
            the occupation probability so that a halo's central is not drawn 0 or 2 times
            (default), or each voxel independently; both give every voxel its probability
            (:mod:`iaemu_likelihood.field.sampling`).
        tile : int, optional
            Paint in cubes of this many galaxy voxels per side (bounded memory for large boxes;
            default: whole boxes up to 160 voxels per side); see :meth:`predictions`.
        symmetries : int
            Average the network over this many cube symmetries of the density (1 to 8; each costs
            one more encoding); see :meth:`predictions`.
        alignment : mapping, optional
            ``{"mu_cen": ..., "mu_sat": ...}`` (each in [-1, 1], halotools' convention): also return
            the galaxies' major axes (n_gal, 3), unit vectors drawn around the dark matter's local
            major axis (centrals) or the direction from their host centre (satellites) as in the
            mocks (:mod:`iaemu_likelihood.field.orientation`). Implies ``positions``.

        Returns
        -------
        counts : ndarray (n, n, n), or (counts, positions) when ``positions``, or (counts, positions,
        orientations) with ``alignment``.
        """
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}; allowed: {list(MODES)}")
        if occupancy not in OCCUPANCY:
            raise ValueError(f"occupancy={occupancy!r}; allowed: {list(OCCUPANCY)}")
        strengths = None
        if alignment is not None:
            from .orientation import check_strength

            if not hasattr(alignment, "keys") or set(alignment) != {"mu_cen", "mu_sat"}:
                raise ValueError(f"alignment={alignment!r}: give a mapping with exactly mu_cen and mu_sat")
            strengths = {k: check_strength(alignment[k], k) for k in ("mu_cen", "mu_sat")}
            positions = True
        if positions and mode != "sample":
            raise ValueError(f"{'alignment' if strengths else 'positions=True'} needs mode='sample' "
                             "(a mean field has no galaxies)")
        if seed is not None and (not _is_integer(seed) or seed < 0):
            raise ValueError(f"seed={seed!r}: must be a non-negative integer or None")
        pred = self.predict(density, hod_params, box_size, tile, symmetries)
        if mode == "mean":
            return mean_counts(pred["p"], pred["mu"])
        rng = np.random.default_rng(seed)
        counts = sample_counts(pred["p"], pred["mu"], pred["r"], rng, occupancy)
        if not positions:
            return counts
        n = counts.shape[0]
        side = (self.box_size if box_size is None else float(box_size)) / n
        flat = np.repeat(np.arange(counts.size), counts.ravel())
        ijk = np.column_stack(np.unravel_index(flat, counts.shape))
        xyz = (ijk + rng.random(ijk.shape)) * side
        if strengths is None:
            return counts, xyz
        from .orientation import galaxy_orientations

        scale = float((self.metadata.get("alignment") or {}).get("central_p2_scale", 1.0))
        axes = galaxy_orientations(np.asarray(density), pred["p"], counts, xyz, box_size=n * side, rng=rng,
                                   central_p2_scale=scale, **strengths)
        return counts, xyz, axes


_CACHE: dict = {}


def paint(density, hod_params, seed: int | None = None, mode: str = "sample", weights=None,
          device: str = "cpu", box_size: float | None = None, positions: bool = False,
          occupancy: str = DEFAULT_OCCUPANCY, tile: int | None = None, symmetries: int = 1, alignment=None):
    """Paint galaxies with a (cached) :class:`GalaxyPainter`; see :meth:`GalaxyPainter.paint`.

    ``weights`` is a painter folder or shipped version (default ``iaemu-painter-v6``).
    """
    key = (str(weights), device)
    if key not in _CACHE:
        _CACHE[key] = GalaxyPainter.load(weights, device=device)
    return _CACHE[key].paint(density, hod_params, seed=seed, mode=mode, box_size=box_size,
                             positions=positions, occupancy=occupancy, tile=tile, symmetries=symmetries,
                             alignment=alignment)
