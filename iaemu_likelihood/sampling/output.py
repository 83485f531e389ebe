"""Chains in Cobaya's output format, so GetDist and ``iaemu plot`` read them like ``cobaya-run``'s.

Files written at an output prefix ``PREFIX`` (each atomically, through
:func:`iaemu_likelihood._io.atomic_write_bytes`):

* ``PREFIX.1.txt``, ``PREFIX.2.txt``, ... one per chain: header
  ``# weight minuslogpost <sampled> <derived> minuslogprior minuslogprior__0 chi2 chi2__<like>``,
  one sample per row, weight 1;
* ``PREFIX.input.yaml``: the input blocks with the sampler that was run;
* ``PREFIX.updated.yaml``: the same with Cobaya's full ``params`` block (priors of the weights in
  use, LaTeX labels, derived ``n_gal`` and ``f_sat``), plain YAML data only.

* ``PREFIX.state.npz``: the sampler's saved state (:mod:`.checkpoint`), for ``--resume``.

An existing output is refused unless ``force`` (then its chain files and state are replaced), as
``cobaya-run`` without ``--force`` refuses to overwrite a finished run, or ``resume`` with a
saved state (the run continues from it and its chain files are rewritten at the end).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import yaml

from .._io import atomic_write_bytes, expand_user_path
from ..errors import IAEmuError
from .posterior import plain_data

__all__ = ["OutputExistsError", "resolve_prefix", "prepare_output", "write_chains", "chain_columns"]

log = logging.getLogger(__name__)

#: Significant digits of the chain text files.
DIGITS = 10


class OutputExistsError(IAEmuError, FileExistsError):
    """The output prefix already holds a chain and ``--force`` was not given."""


def resolve_prefix(prefix) -> Path:
    """Output prefix with ``~`` and ``$VARS`` expanded, relative to the current directory (as
    Cobaya's ``output``); a prefix ending in ``/`` is a folder, its files named by the folder."""
    text = expand_user_path(prefix)
    path = Path(text)
    if text.endswith(("/", os.sep)):
        path = path / path.name
    return path.absolute()


def _existing(prefix: Path) -> list[Path]:
    if not prefix.parent.is_dir():
        return []
    found = []
    for path in prefix.parent.glob(prefix.name + ".*"):
        middle = path.name[len(prefix.name) + 1:]
        stem = middle[:-len(".txt")] if middle.endswith(".txt") else None
        if (stem is not None and stem.isdigit()) or middle in ("input.yaml", "updated.yaml",
                                                                "state.npz"):
            found.append(path)
    return sorted(found)


def prepare_output(prefix, force: bool, resume: bool = False) -> Path:
    """Check (and with ``force`` clear) an output prefix; create its folder.

    Parameters
    ----------
    prefix : str or pathlib.Path
    force : bool
        Delete the prefix's chain files, yamls and saved sampler state.
    resume : bool
        Accept an existing output that has a saved sampler state (``PREFIX.state.npz``) to
        continue from; an output without one is refused.

    Raises
    ------
    OutputExistsError
        Chain files, yamls or a state of that prefix exist and neither ``force`` nor (with a
        saved state) ``resume`` is given.
    """
    from .checkpoint import state_path

    prefix = resolve_prefix(prefix)
    existing = _existing(prefix)
    if existing and resume and not force:
        if not state_path(prefix).exists():
            raise OutputExistsError(f"output {prefix} exists ({existing[0].name}) but has no saved "
                                    f"sampler state {state_path(prefix).name} to resume; pass "
                                    "--force to overwrite it or choose another prefix with -o")
        return prefix
    if existing and not force:
        raise OutputExistsError(f"output {prefix} already exists ({existing[0].name} and "
                                f"{len(existing) - 1} more); pass --resume to continue it, --force "
                                "to overwrite it, or choose another prefix with -o")
    for path in existing:
        path.unlink()
    prefix.parent.mkdir(parents=True, exist_ok=True)
    return prefix


def chain_columns(posterior) -> list[str]:
    """Column names of a chain file, in Cobaya's order."""
    chi2 = [f"chi2__{posterior.likelihood_name}"]
    if posterior.likelihood_type:
        chi2.append(f"chi2__{posterior.likelihood_type}")
    return (["weight", "minuslogpost", *posterior.names, *posterior.derived, "minuslogprior",
             "minuslogprior__0", "chi2", *chi2])


def _table(posterior, theta: np.ndarray, logpost=None) -> np.ndarray:
    if logpost is None:
        loglike = posterior.loglike_batch(theta)
    else:
        loglike = np.asarray(logpost, dtype=float) - posterior.log_prior_value
    if not np.all(np.isfinite(loglike)):
        raise ValueError(f"{int(np.sum(~np.isfinite(loglike)))} samples have a non-finite "
                         "log-posterior; nothing written")
    n = len(theta)
    derived = posterior.derived_values(theta)
    minuslogprior = np.full(n, -posterior.log_prior_value)
    chi2 = -2.0 * loglike
    columns = [np.ones(n), minuslogprior - loglike, *theta.T,
               *(derived[k] for k in posterior.derived), minuslogprior, minuslogprior, chi2, chi2]
    if posterior.likelihood_type:
        columns.append(chi2)
    return np.column_stack(columns)


def _yaml_bytes(info: dict) -> bytes:
    return yaml.safe_dump(info, sort_keys=False, default_flow_style=False).encode()


def write_chains(prefix: Path, posterior, chains, sampler_info: dict, logpost=None) -> list[Path]:
    """Write chains and their yamls at a prepared prefix (see :func:`prepare_output`).

    Parameters
    ----------
    prefix : pathlib.Path
    posterior : Posterior
    chains : list of ndarray, each (n, d)
        Samples of the sampled parameters.
    sampler_info : dict
        ``{sampler name: settings}`` recorded as the yamls' ``sampler`` block.
    logpost : list of ndarray, each (n,), optional
        Log-posteriors of the samples as the sampler computed them (equal to
        :meth:`Posterior.logpost_batch`); evaluated here when not given.

    Returns
    -------
    list of pathlib.Path
        The chain files.
    """
    names = chain_columns(posterior)
    widths = [max(DIGITS + 8, len(n) + 1) for n in names]
    header = "#" + "".join(n.rjust(w) for n, w in zip(names, widths))[1:] + "\n"
    info = {k: v for k, v in posterior.info.items() if k not in ("sampler", "output", "force",
                                                                  "resume")}
    info = {**info, "sampler": sampler_info, "output": str(prefix)}
    atomic_write_bytes(prefix.parent / f"{prefix.name}.input.yaml", _yaml_bytes(plain_data(info)))
    updated = {**plain_data(info), "params": posterior.updated_params}
    atomic_write_bytes(prefix.parent / f"{prefix.name}.updated.yaml", _yaml_bytes(updated))
    paths = []
    for i, theta in enumerate(chains, start=1):
        table = _table(posterior, np.asarray(theta, dtype=float),
                       None if logpost is None else logpost[i - 1])
        lines = [header] + ["".join(f"{v:{w}.{DIGITS}g}" for v, w in zip(row, widths)) + "\n"
                            for row in table]
        path = prefix.parent / f"{prefix.name}.{i}.txt"
        atomic_write_bytes(path, "".join(lines).encode())
        paths.append(path)
    log.info("wrote %d chain file(s) at %s", len(paths), prefix)
    return paths
