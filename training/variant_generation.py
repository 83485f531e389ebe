"""Mocks of the alignment variants (:mod:`.alignment_variants`) and the measurement files made of them.

Generation reuses ``iaemu generate``'s machinery (:mod:`.generate`, :mod:`.generation_parts`):
the mocks of one variant at one parameter point are ``n_parts`` design points with identical
parameters, each a part file of ``per_part`` realizations (seeds
:func:`.generation_parts.realization_seed` of the config seed, the part index and the
realization index), written atomically and bound to the config **and the variant** (its name and
parameters enter the binding), so a resumed run redoes exactly the parts that are missing, damaged
or made by another variant. When every part is done they are assembled into a dataset file
(:func:`.generate.assemble`).

A measurement (:func:`write_measurement`) takes realization 0 of part 0 as the data vector and
the sample covariance of all the other realizations, times the Hartlap et al. (2007) factor
(:func:`hartlap_factor`), as its covariance, in the format of :mod:`iaemu_likelihood.data`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..conventions import PARAM_NAMES, STATISTICS
from .generation_config import GenerationConfig

__all__ = ["VariantGenerationConfig", "variant_config", "generate_variant", "hartlap_factor",
           "measurement_from_dataset", "write_measurement"]

logger = logging.getLogger(__name__)


def hartlap_factor(n_realizations: int, n_values: int) -> float:
    """``(n - 1) / (n - p - 2)``: multiply a sample covariance of ``n`` realizations of ``p``
    values by it so that its inverse is unbiased (Hartlap et al. 2007).

    Raises
    ------
    ValueError
        If ``n_realizations <= n_values + 2`` (the inverse does not exist or is not unbiased).
    """
    if n_realizations <= n_values + 2:
        raise ValueError(f"{n_realizations} realizations cannot estimate a {n_values}x{n_values} "
                         "covariance with an invertible result; use more than n_values + 2")
    return (n_realizations - 1) / (n_realizations - n_values - 2)


class VariantGenerationConfig(GenerationConfig):
    """A :class:`.generation_config.GenerationConfig` whose parts are bound to an alignment variant.

    Parameters
    ----------
    raw, base_dir, source
        As for :class:`GenerationConfig`.
    variant : dict
        ``{"variant": name, "params": {...}}`` (:meth:`VariantMockSimulator.describe`).
    """

    def __init__(self, raw: dict, base_dir, source: str, variant: dict):
        super().__init__(raw, base_dir, source)
        self.variant = dict(variant)

    def binding(self) -> dict:
        """The generation binding plus the variant, so parts of another variant are redone."""
        return {**super().binding(), "alignment_model": self.variant}


def variant_config(variant: dict, theta: dict, catalog_spec: dict, output, seed: int, n_parts: int,
                   per_part: int, base_dir=".", max_retries: int = 5,
                   rbins=None) -> VariantGenerationConfig:
    """The generation config of one variant's mocks at one parameter point.

    Parameters
    ----------
    variant : dict
        ``{"variant": name, "params": {...}}``.
    theta : dict
        The seven emulator parameters of every realization.
    catalog_spec : dict
        ``catalog`` block (see :func:`.catalogs.check_catalog_spec`).
    output : path-like
        Dataset the parts are assembled into (parts in ``<output>.parts``).
    seed : int
        Base seed of every realization (the same in every variant: same galaxy positions).
    n_parts, per_part : int
        Part files and realizations per part (>= 2).
    base_dir : path-like
        Folder relative paths are resolved against.
    max_retries : int
        Redraws of a realization with a non-finite statistic.
    rbins : array_like, optional
        Bin edges, comoving h^-1 Mpc (default the emulator's); must be the simulator's.
    """
    raw = {"name": f"out_of_model_{variant['variant']}", "seed": int(seed),
           "points": [[float(theta[n]) for n in PARAM_NAMES]] * int(n_parts),
           "n_realizations": int(per_part), "max_retries": int(max_retries), "output": str(output),
           "catalog": dict(catalog_spec)}
    if rbins is not None:
        raw["rbins"] = [float(x) for x in np.asarray(rbins, dtype=float)]
    return VariantGenerationConfig(raw, base_dir, f"out-of-model mocks {variant['variant']}", variant)


def _finished(config: VariantGenerationConfig) -> bool:
    """Whether ``config.output`` is this config's assembled dataset (another one is an error)."""
    if not config.output.is_file():
        return False
    from .dataset_io import load_dataset
    from .generate import GenerationError

    found = load_dataset(config.output).provenance.get("generation_binding")
    if found != config.binding():
        raise GenerationError(f"{config.output} exists but was made by another configuration or "
                              "variant; move it away")
    return True


def generate_variant(config: VariantGenerationConfig, simulator, max_parts: int | None = None,
                     progress: bool = True) -> Path | None:
    """Make (or resume) the mocks of ``config`` with ``simulator``; assemble when all are done.

    Parameters
    ----------
    config : VariantGenerationConfig
    simulator : VariantMockSimulator
        Must be the variant the config is bound to.
    max_parts : int, optional
        Stop after this many new parts (run again to resume).
    progress : bool
        tqdm progress bar.

    Returns
    -------
    Path or None
        The assembled dataset, or None while parts are left.
    """
    from tqdm import tqdm

    from .generate import assemble, run_point
    from .generation_parts import remove_stale_temporaries, scan_parts, write_part

    if simulator.describe() != config.variant:
        raise ValueError(f"simulator {simulator.describe()} is not the variant {config.variant} the "
                         "config is bound to")
    if simulator.rbins.shape != config.rbins.shape or not np.allclose(simulator.rbins, config.rbins,
                                                                         rtol=1e-12, atol=0.0):
        raise ValueError(f"simulator bins {simulator.rbins.tolist()} differ from the config's "
                         f"{config.rbins.tolist()} (comoving h^-1 Mpc)")
    if _finished(config):
        return config.output
    remove_stale_temporaries(config)
    todo = scan_parts(config)[1]
    if max_parts is not None:
        todo = todo[:max_parts]
    for i in tqdm(todo, desc=config.name, unit="part", disable=not progress):
        write_part(config, i, run_point(simulator, config, i))
    parts, missing = scan_parts(config)
    if missing:
        logger.info("%s: %d parts left; run again to resume", config.name, len(missing))
        return None
    return assemble(config, parts)


def measurement_from_dataset(dataset) -> tuple[np.ndarray, np.ndarray, dict]:
    """Data vector, covariance and summary of a variant's assembled mocks.

    Parameters
    ----------
    dataset : IADataset
        Realizations (n_parts, per_part, n_bins) of one parameter point.

    Returns
    -------
    data : ndarray, shape (3 n_bins,)
        Realization 0 of part 0, [xi, omega, eta].
    cov : ndarray, shape (3 n_bins, 3 n_bins)
        Sample covariance of every other successful realization times :func:`hartlap_factor`.
    summary : dict
        ``n_covariance``, ``hartlap_factor``, ``realization_mean`` (list), ``data_seed``,
        ``n_gal_data``, ``n_sat_data``, ``n_gal_mean``, ``failed_realizations``.

    Raises
    ------
    ValueError
        The data realization failed, or too few realizations for the covariance.
    """
    vectors = np.concatenate([getattr(dataset, s) for s in STATISTICS], axis=-1)
    vectors = vectors.reshape(-1, vectors.shape[-1])
    n_gal, n_sat = dataset.n_gal.ravel(), dataset.n_sat.ravel()
    ok = np.all(np.isfinite(vectors), axis=1)
    if not ok[0]:
        raise ValueError("the data realization (part 0, realization 0) has non-finite statistics")
    rest = vectors[1:][ok[1:]]
    factor = hartlap_factor(len(rest), vectors.shape[1])
    cov = np.cov(rest, rowvar=False, ddof=1) * factor
    summary = {"n_covariance": int(len(rest)), "hartlap_factor": factor,
               "realization_mean": rest.mean(axis=0).tolist(),
               "data_seed": int(dataset.seeds.ravel()[0]), "n_gal_data": int(n_gal[0]),
               "n_sat_data": int(n_sat[0]), "n_gal_mean": float(n_gal[1:][ok[1:]].mean()),
               "failed_realizations": int(np.sum(~ok))}
    return vectors[0], 0.5 * (cov + cov.T), summary


def write_measurement(path, dataset, metadata: dict) -> Path:
    """Write the measurement of a variant's mocks (:func:`measurement_from_dataset`) atomically.

    Parameters
    ----------
    path : path-like
        ``.npz`` destination, read by :func:`iaemu_likelihood.data.load_measurement`.
    dataset : IADataset
    metadata : dict
        JSON-ready provenance (variant, truth, catalog...); the summary is added to it.

    Returns
    -------
    Path
    """
    from ..conventions import r_centres
    from ..data import save_measurement

    data, cov, summary = measurement_from_dataset(dataset)
    r = r_centres(dataset.r_edges)
    n = r.size
    values = {s: data[k * n:(k + 1) * n] for k, s in enumerate(STATISTICS)}
    return save_measurement(path, r, values, cov, {**metadata, **summary})
