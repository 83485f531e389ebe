"""The emulator: parameters -> emulated statistics with uncertainties.

:class:`IAEmulator` loads a verified weights folder (see ``trained_weights/README.md``) and
predicts, for each point, the mean over mock realizations of each statistic of its layout (for
every shipped version: xi, omega, eta in 20 log bins of comoving separation, from 7 HOD +
alignment parameters), the variance of one mock realization around that mean (aleatoric) and, on
request, the spread of the ensemble (epistemic). Architectures with a numpy forward pass ("mlp",
"factorised") run without torch (~tens of microseconds per point); others ("paper") run in torch.

The pieces live in their own modules: the data layout (:mod:`.layout`), the architectures
(:mod:`.architectures`), input validation (:mod:`.support`), limits and options
(:mod:`.emulator_options`), the computation of a prediction (:mod:`.inference`: numpy mirror or
torch back end (:mod:`.torch_backend`), then the reduction over members, :mod:`.ensemble_stats`,
with the output transforms of :mod:`.transforms`), the covariance terms (:mod:`.covariance`) and
the prediction object (:mod:`.prediction`).
"""
from __future__ import annotations

import logging
from functools import cached_property

import numpy as np

from .architectures import get_architecture
from .covariance import emulator_covariance
from .emulator_options import (BATCH_PRECISIONS, CHUNK_POINTS, DEFAULT_MC_SAMPLES, MAX_BATCH_BYTES,
                               MAX_MC_SAMPLES, NUMPY_BLOCK, check_flag, check_n_samples,
                               check_run_options, predict_bytes_per_point)
from .errors import ConfigError
from .hod import DERIVED_PARAMS, DerivedHOD
from .inference import EnsembleInference, epistemic_calibration
from .layout import COVARIANCE_TERMS, layout_of
from .prediction import EmulatorPrediction, check_outputs, require_finite
from .support import InputDomain, check_batch_memory
from .torch_backend import TorchMembers, torch_forward
from .transforms import OutputTransform
from .weights import caveats_of, resolve_weights_dir, warn_caveats
from .weights_io import load_weights_folder, read_mass_function_table

__all__ = ["IAEmulator", "EmulatorPrediction", "COVARIANCE_TERMS", "DEFAULT_MC_SAMPLES", "MAX_MC_SAMPLES",
           "BATCH_PRECISIONS", "NUMPY_BLOCK", "MAX_BATCH_BYTES", "CHUNK_POINTS", "DERIVED_PARAMS"]

log = logging.getLogger(__name__)


class IAEmulator:
    """Emulator of galaxy intrinsic-alignment correlation functions.

    Build it with :meth:`load`. Parameters are :attr:`param_names`, for every shipped version
    (mu_cen, mu_sat, logMmin, sigma_logM, logM0, logM1, alpha); masses in log10(Msun/h);
    alignment strengths mu in [-1, 1].

    Parameters
    ----------
    metadata : dict
        Parsed ``metadata.json``.
    members : list of dict
        Ensemble members' state dicts (numpy arrays).
    residual_correlation : ndarray, shape (n_out, n_out)
    halo_mass_function : dict
        Binned host mass function of the training catalog (n_gal, f_sat of one-catalog weights).
    device : str
        Torch device for torch inference and :meth:`torch_forward`; numpy architectures ignore it.
    folder : path, optional
        Where the weights came from (for messages).
    batch_precision : {"float32", "float64"}
        Arithmetic of numpy batches of more than :data:`NUMPY_BLOCK` points. float32 (default)
        doubles the throughput; its results differ from float64 by ~1e-6 relative, four orders
        of magnitude below the emulator's accuracy. Single points and small batches -- what a
        sampler asks for -- are always float64. Outputs are float64 either way.
    threads : int
        Threads sharing the blocks of a large numpy batch (numpy releases the GIL; default 1, so
        that MPI ranks or a pool of workers are not oversubscribed).
    mass_function_table : MassFunctionInterpolator, optional
        Host mass function across an N-body suite (weights with cosmology or redshift inputs:
        ``halo_mass_function_table.npz``, read by :meth:`load`); n_gal and f_sat then use the
        mass function at each point's Omega_m, sigma_8 and z.

    Attributes
    ----------
    layout : Layout
        Inputs and statistics of these weights (:mod:`iaemu_likelihood.layout`).
    max_batch_bytes : int
        Memory (bytes) one call may need for its results (default :data:`MAX_BATCH_BYTES`,
        2 GiB); a larger batch raises :class:`~iaemu_likelihood.errors.BatchTooLargeError`
        naming the size it would need, before anything is allocated. Set it on the instance
        to change it.
    """

    max_batch_bytes = MAX_BATCH_BYTES

    def __init__(self, metadata, members, residual_correlation, halo_mass_function,
                 device="cpu", folder=None, batch_precision="float32", threads=1, mass_function_table=None):
        check_run_options(batch_precision, threads, device)
        self.batch_precision, self.threads = batch_precision, int(threads)
        self.metadata, self.folder, self.device = metadata, folder, device
        self.layout = layout = layout_of(metadata, str(folder or "metadata"))
        self.architecture = metadata["architecture"]
        self._arch = get_architecture(self.architecture)
        self.architecture_config = dict(metadata.get("architecture_config", {}))
        self.ensemble_size = len(members)
        self._members = members
        self._torch = TorchMembers(self._arch, self.architecture_config, layout, members, device)
        if not self._arch.runs_in_numpy:
            self._torch.check_device()  # torch runs every prediction: check before the first one
        self.n_out = layout.n_out
        corr = np.asarray(residual_correlation, dtype=np.float64)
        self.residual_correlation = 0.5 * (corr + corr.T)  # remove round-off asymmetry
        self.halo_mass_function = halo_mass_function
        self.param_names = layout.param_names
        self._domain = InputDomain(self.param_names, metadata["bounds"], metadata.get("support"))
        self.bounds = self._domain.bounds
        self._low, self._high, self._band = self._domain.low, self._domain.high, self._domain.band
        self.support = self._domain.support
        self._derived = DerivedHOD(halo_mass_function, self.param_names, CHUNK_POINTS, mass_function_table,
                                   (metadata.get("mass_function_table") or {}).get("fixed"))
        self._mass_function = self._derived.mass_function
        #: names of the derived parameters these weights can compute (empty without HOD inputs)
        self.derived_names = DERIVED_PARAMS if self._derived.available else ()
        first = next((s for s in layout.statistics if s.axis == "r"), layout.statistics[0])
        #: bin edges and centres of the first statistic on the 3-d separation axis r (for every
        #: shipped version: the bins of xi, omega and eta, comoving h^-1 Mpc); :meth:`axis` gives
        #: each statistic's own
        self.r_edges = np.asarray(first.edges)
        self.r = np.array(first.centres)
        norm = metadata["normalisation"]
        self._in_low = np.asarray(norm["input"]["low"], dtype=np.float64)
        self._in_high = np.asarray(norm["input"]["high"], dtype=np.float64)
        self._transform = OutputTransform(layout, norm["output"])
        self._out_mean, self._out_std = self._transform.mean, self._transform.std
        #: correlation (n_out, n_out) of the emulator's errors (None: independent bins) and
        #: factor on the raw epistemic variance per output (post-hoc calibration, 1 if none)
        self.epistemic_correlation, self.epistemic_scale = epistemic_calibration(
            metadata, layout, f"{folder or 'metadata'}")
        self._numpy_net = None
        if self._arch.runs_in_numpy:
            self._numpy_net = self._arch.build_numpy(members, self.architecture_config,
                                                     self._in_low, self._in_high, self._out_mean,
                                                     self._out_std, layout)
        self._inference = EnsembleInference(self._numpy_net, self._torch, self._transform,
                                            self._in_low, self._in_high, self.epistemic_scale,
                                            self.architecture)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, version=None, device="cpu", batch_precision="float32", threads=1) -> IAEmulator:
        """Load a weights version, verifying its SHA-256 checksums first.

        Parameters
        ----------
        version : str or path-like, optional
            A shipped version name, or a path to a weights folder; None selects the shipped default
            (``trained_weights/DEFAULT``).
        device : str
            Torch device for torch architectures and :meth:`torch_forward` (default "cpu").
        batch_precision : {"float32", "float64"}
            Arithmetic of large numpy batches (see the class docstring).
        threads : int
            Threads for large numpy batches (default 1).

        Raises
        ------
        WeightsNotFoundError, WeightsIntegrityError
        """
        folder = resolve_weights_dir(version)
        metadata, members, corr, mass_function = load_weights_folder(folder)
        table = read_mass_function_table(folder, metadata)
        log.info("loaded %s weights %s (%d members) from %s", metadata["architecture"],
                 metadata.get("version"), len(members), folder)
        warn_caveats(metadata)
        emulator = cls(metadata, members, corr, mass_function, device=device, folder=folder,
                       batch_precision=batch_precision, threads=threads, mass_function_table=table)
        emulator._check_finite_outputs()
        return emulator

    def axis(self, statistic: str) -> np.ndarray:
        """Bin centres of one statistic (its layout axis, e.g. r in comoving h^-1 Mpc)."""
        return np.array(self.layout.statistic(statistic).centres)

    def support_point(self) -> np.ndarray:
        """A point inside the training support, (n_inputs,): the box centre, with each banded
        parameter moved to the middle of its band."""
        return self._domain.support_point(self.folder)

    def _check_finite_outputs(self) -> None:
        """Predict at :meth:`support_point`; weights whose outputs are not finite (or whose
        variances are negative) are refused, so they never reach a sampler as NaN."""
        point = self.support_point()
        with np.errstate(over="ignore", invalid="ignore"):  # reported by check_outputs, as one error
            pred = self._predict(point, self.ensemble_size > 1, None)[0]
        check_outputs(pred, point, self.param_names, self.folder)

    def _predict_bytes_per_point(self, epistemic: bool, n_samples) -> int:
        """Bytes per point of a prediction's results (and, in torch, of the members' outputs)."""
        return predict_bytes_per_point(self.n_out, epistemic, n_samples,
                                       self.ensemble_size if self._numpy_net is None else 0)

    @property
    def point_precision(self) -> str:
        """Arithmetic of single points and small batches: "float64" (numpy architectures) or
        "float32" (torch networks)."""
        return "float64" if self._numpy_net is not None else "float32"

    @property
    def version(self):
        """Version string of the loaded weights."""
        return self.metadata.get("version")

    @property
    def caveats(self) -> list[str]:
        """Known limits of these weights, as sentences (logged once at load; ``iaemu info``)."""
        return caveats_of(self.metadata)

    def __repr__(self):
        return (f"IAEmulator(version={self.version!r}, architecture={self.architecture!r}, "
                f"ensemble_size={self.ensemble_size})")

    # ------------------------------------------------------------------ validation
    def validate(self, theta) -> np.ndarray:
        """Check parameters and return them as a float64 array, (n_inputs,) or (n, n_inputs).

        Parameters
        ----------
        theta : mapping or array_like
            A mapping with exactly the input names (scalars, or 1-d arrays of one length for a
            batch), an array (n_inputs,) or an array (n, n_inputs) in ``param_names`` order.

        Raises
        ------
        InputShapeError
            Wrong shape or type, missing or unknown names (a ``ValueError``).
        OutOfRangeError
            A value is NaN, inf or outside ``bounds`` or the support band; the message names the
            parameter, the value and the allowed range.
        """
        arr, single = self._as_array(theta)
        return arr[0] if single else arr

    def _as_array(self, theta, bytes_per_point: int = 0, what: str = ""):
        """(validated (n, n_inputs) float64 array, whether the input was a single point).

        With ``bytes_per_point``, a batch whose results would exceed :attr:`max_batch_bytes` is
        refused (as ``what``) once its shape is known, before the values are checked."""
        arr, single = self._domain.parse(theta)
        if bytes_per_point:
            check_batch_memory(len(arr), bytes_per_point, what, self.max_batch_bytes)
        self._domain.check(arr, single)
        return arr, single

    def in_support(self, theta) -> np.ndarray:
        """Whether each point lies inside the training prior (box and band); never raises for values.

        Returns a bool, or a bool array for a batch. Wrong shapes, names or types raise
        :class:`InputShapeError` as in :meth:`validate`; NaN is simply outside.
        """
        return self._domain.in_support(theta)

    # ------------------------------------------------------------------ prediction
    def predict(self, theta, epistemic: bool = False, n_samples: int | None = None,
                aleatoric: bool = True):
        """Predict the emulated statistics and their variances.

        Parameters
        ----------
        theta : mapping or array_like
            One point (mapping of scalars or array (n_inputs,)) or n points (mapping of 1-d
            arrays or array (n, n_inputs)); see :meth:`validate`.
        epistemic : bool
            Also return the epistemic variances (``xi_epi_var``, ...).
        n_samples : int, optional
            Monte Carlo dropout passes for a single-network torch model (default
            :data:`DEFAULT_MC_SAMPLES`); ignored for ensembles.
        aleatoric : bool
            Return the aleatoric variances (``xi_var``, ...; default). False leaves them out
            (``variance_vector()`` is None) and, for a numpy mirror that computes its means
            apart, skips the variance network: what a sampler pays whose likelihood uses only
            the epistemic term.

        Returns
        -------
        EmulatorPrediction
            Arrays (n_bins,) for one point, (n, n_bins) for n points, on each statistic's bins.

        Notes
        -----
        Ensemble mean of the members' physical means; aleatoric: mean of their physical variances;
        epistemic: population variance of the physical means across members (one torch network:
        across seeded MC-dropout passes), times :attr:`epistemic_scale` (the calibration in
        ``metadata["epistemic"]["scale"]``, 1 when absent). Transforms: :mod:`.transforms`.

        Raises
        ------
        InputShapeError, OutOfRangeError, BatchTooLargeError, ConfigError
            Bad inputs or options (see :meth:`validate`).
        WeightsIntegrityError
            The weights predict a non-finite value at one of the points (load checks only one
            point): never returned as NaN or inf.
        """
        pred, arr = self._predict(theta, epistemic, n_samples, aleatoric)
        require_finite(pred, arr, self.param_names, self.folder)
        return pred

    def _predict(self, theta, epistemic, n_samples, aleatoric=True):
        """:meth:`predict` without the finiteness check: (prediction, the (n, n_inputs) points)."""
        if epistemic is not True and epistemic is not False:
            epistemic = check_flag(epistemic, "epistemic")
        if aleatoric is not True and aleatoric is not False:
            aleatoric = check_flag(aleatoric, "aleatoric")
        if n_samples is not None:
            n_samples = check_n_samples(n_samples)
        # lean path for the common sampler call: one float64 (n_inputs,) array inside the box and
        # band of a numpy network (torch passes go through the batch-memory check, MC dropout
        # included; a point outside gets its error message from the full check)
        if (type(theta) is np.ndarray and theta.shape == self._domain.shape1
                and theta.dtype == np.float64 and self._numpy_net is not None
                and self._domain.contains_point(theta.tolist())):
            arr, single = theta[None, :], True
        else:
            arr, single = self._as_array(theta, self._predict_bytes_per_point(epistemic, n_samples),
                                         "predict")
        mean, alea, epi = self._inference.run(arr, epistemic, n_samples, aleatoric,
                                              self.batch_precision, self.threads)
        if single:
            mean, alea, epi = mean[0], None if alea is None else alea[0], None if epi is None else epi[0]
        return EmulatorPrediction(mean, alea, epi, self.layout), arr

    def torch_forward(self, theta):
        """Differentiable forward pass in torch (float64), for gradient-based samplers and MAP.

        Parameters
        ----------
        theta : torch.Tensor, shape (n, n_inputs) or (n_inputs,)
            Physical parameters in ``param_names`` order; gradients flow back to it. Values are
            checked against :attr:`bounds` (``OutOfRangeError``).

        Returns
        -------
        dict of torch.Tensor
            Per statistic ``<name>`` (physical ensemble means) and ``<name>_var`` (aleatoric
            variances), each (n, n_bins) (or (n_bins,) for a single input); with more than one
            member also ``<name>_epi_var`` (variance across members, times
            :attr:`epistemic_scale`). Dropout is off.
        """
        return torch_forward(self, theta)

    # ------------------------------------------------------------------ covariance, derived
    def covariance(self, theta, terms=COVARIANCE_TERMS, n_samples: int | None = None,
                   prediction: EmulatorPrediction | None = None):
        """Emulator covariance of the output vector (``[xi, omega, eta]``, 60 values) at a point.

        Parameters
        ----------
        theta : mapping or array_like
            One point (-> (n_out, n_out)) or n points (-> (n, n_out, n_out)).
        terms : sequence of {"aleatoric", "epistemic"}
            Which terms to add: ``"aleatoric"`` (``D R D``, the covariance of ONE mock
            realization around the mean, to be rescaled by the user to their survey volume) and
            ``"epistemic"`` (``E C E``, the emulator's own uncertainty of the mean, with the
            correlation of its errors across bins); definitions in :mod:`iaemu_likelihood.covariance`.
        n_samples : int, optional
            MC-dropout passes for a single torch network.
        prediction : EmulatorPrediction, optional
            The result of ``predict(theta, epistemic=...)`` at the same point, to avoid a second
            forward pass (it must hold epistemic variances when "epistemic" is requested).

        Returns
        -------
        ndarray
            Symmetric positive (semi-)definite matrix, (n_out, n_out) or (n, n_out, n_out),
            physical units.
        """
        return emulator_covariance(self, theta, terms, n_samples, prediction)

    def derived(self, theta) -> dict:
        """Galaxy number density and satellite fraction of an HOD point (:class:`~iaemu_likelihood.
        hod.DerivedHOD`: the Zheng07 occupations summed over the training catalog's halo mass
        function shipped with the weights, or, for weights with cosmology and redshift inputs, over
        the suite's mass function interpolated to the point's Omega_m, sigma_8 and z).

        Parameters
        ----------
        theta : mapping or array_like
            One point or n points (validated like :meth:`predict`).

        Returns
        -------
        dict
            ``"n_gal"``: mean number density in (h^-1 Mpc)^-3; ``"f_sat"``: satellite fraction.
            Floats for one point, arrays (n,) for n points.

        Raises
        ------
        ConfigError
            The weights' inputs lack one of the five Zheng07 parameters, or they take cosmology
            or redshift inputs and carry no mass-function table.
        """
        self._require_derived("derived parameters")
        arr, single = self._as_array(theta)
        return self._derived(arr, single)

    def host_mass_function(self, theta) -> dict:
        """Binned host-halo mass function that :meth:`derived` sums the occupations over, at one
        point (it depends on the point only for weights with cosmology and redshift inputs).

        Returns
        -------
        dict
            ``counts`` (halos per bin in ``volume``), ``mean_log10_mass`` (log10 Msun/h) and
            ``volume`` ((h^-1 Mpc)^3), non-empty bins only.

        Raises
        ------
        ConfigError
            As :meth:`derived`.
        """
        self._require_derived("host mass function")
        arr, _ = self._as_array(theta)
        return self._derived.point_mass_function(arr[0])

    def _require_derived(self, what: str):
        if not self.derived_names:
            raise ConfigError(f"weights {self.folder}: {self._derived.unavailable_reason}: no {what}")

    def derived_validated(self, arr, single: bool = False) -> dict:
        """:meth:`derived` of points already validated, (n, n_inputs)."""
        return self._derived(arr, single)

    @cached_property
    def reference_point(self) -> np.ndarray:
        """Centre of the training box, (n_inputs,): a safe default point for tests and examples."""
        return 0.5 * (self._low + self._high)
