"""Read Cobaya chains into GetDist without running anything the chain folder contains.

GetDist's own ``loadMCSamples`` is unsafe on a chain folder received from someone else: it
unpickles a ``.py_mcsamples`` cache (beside the chain or in its user cache folder) and it
parses ``PREFIX.updated.yaml`` with PyYAML's full ``Loader``, whose
``!!python/object/apply`` tag calls any Python function. This module reads the same files
itself, the text chains with numpy and the yaml with ``yaml.SafeLoader`` (any tag beyond
plain data is refused with a named error), and builds :class:`getdist.MCSamples` from arrays,
so GetDist never opens a file.

Files read, as Cobaya writes them
---------------------------------
``PREFIX.1.txt``, ``PREFIX.2.txt``, ... (or ``PREFIX.txt``)
    Header ``#  weight  minuslogpost  name1 name2 ...``, then one sample per row.
``PREFIX.updated.yaml`` (else ``PREFIX.input.yaml``), optional
    Parameter LaTeX labels (``latex``), prior ranges (``prior: {min, max}``) and which
    parameters are derived.
"""
from __future__ import annotations

import logging
import math
import re
import warnings
from pathlib import Path

import numpy as np
import yaml

from .errors import IAEmuError

__all__ = ["ChainError", "chain_files", "read_chain_info", "read_chain_table", "load_cobaya_chain",
           "check_spread"]

log = logging.getLogger(__name__)

#: Columns of a Cobaya chain that are bookkeeping, not parameters.
_WEIGHT, _MINUSLOGPOST = "weight", "minuslogpost"
#: Cobaya's per-component bookkeeping columns: kept as derived quantities in the samples.
_BOOKKEEPING = re.compile(r"^(minuslogprior|chi2)(__.*)?$")
#: Longest LaTeX label typeset from a chain's yaml (a longer one is someone's attempt to stall).
_MAX_LABEL = 200


class ChainError(IAEmuError, ValueError):
    """A chain file is missing, malformed or holds something other than plain data."""


def chain_files(prefix) -> list[Path]:
    """The text files of the chain with output prefix ``prefix``.

    Parameters
    ----------
    prefix : str or path-like
        Cobaya output prefix, e.g. ``chains/ia_hod``.

    Returns
    -------
    list of pathlib.Path
        ``PREFIX.N.txt`` sorted by N, or ``[PREFIX.txt]``.

    Raises
    ------
    ChainError
        No chain file with that prefix.
    """
    prefix = Path(prefix)
    numbered = []
    for path in prefix.parent.glob(prefix.name + ".*.txt"):
        middle = path.name[len(prefix.name) + 1:-len(".txt")]
        if middle.isdigit():
            numbered.append((int(middle), path))
    if numbered:
        return [p for _, p in sorted(numbered)]
    single = prefix.parent / (prefix.name + ".txt")
    if single.is_file():
        return [single]
    raise ChainError(f"chain {str(prefix)!r}: no chain files {prefix}.N.txt or {prefix}.txt")


def read_chain_info(prefix) -> dict:
    """The ``params`` block of the chain's ``updated.yaml`` (or ``input.yaml``), read safely.

    Parameters
    ----------
    prefix : str or path-like
        Cobaya output prefix.

    Returns
    -------
    dict
        ``{name: info}`` as Cobaya writes it; empty when neither file exists.

    Raises
    ------
    ChainError
        The file is not plain YAML data (e.g. it holds a ``!!python/...`` tag).
    """
    prefix = Path(prefix)
    for suffix in (".updated.yaml", ".input.yaml"):
        path = prefix.parent / (prefix.name + suffix)
        if not path.is_file():
            continue
        try:
            with open(path, encoding="utf-8") as f:
                info = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            first = " ".join(str(exc).split())
            raise ChainError(f"{path}: not plain YAML data ({first}); iaemu constructs no "
                             "objects from chain files") from None
        params = (info or {}).get("params") if isinstance(info, dict) else None
        if params is not None and not isinstance(params, dict):
            raise ChainError(f"{path}: 'params' is a {type(params).__name__}, expected a mapping")
        return dict(params or {})
    return {}


def read_chain_table(path) -> tuple[list[str], np.ndarray]:
    """Column names and values of one Cobaya text chain.

    Parameters
    ----------
    path : path-like
        ``PREFIX.N.txt``.

    Returns
    -------
    names : list of str
        Column names from the ``#`` header.
    table : ndarray, shape (n_rows, n_columns)

    Raises
    ------
    ChainError
        No header, a header without ``weight`` and ``minuslogpost`` or without parameters, a
        column named twice, rows of the wrong length, non-numeric or non-finite values (NaN,
        inf), or negative weights.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        header = f.readline()
    if not header.startswith("#"):
        raise ChainError(f"{path}: first line must be a '#' header of column names, got {header[:60]!r}")
    names = header[1:].split()
    if names[:2] != [_WEIGHT, _MINUSLOGPOST]:
        raise ChainError(f"{path}: header must start with 'weight minuslogpost', got {names[:2]}")
    if len(names) == 2:
        raise ChainError(f"{path}: the header names no parameter after 'weight minuslogpost'")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ChainError(f"{path}: column(s) {twice} named more than once in the header")
    try:
        with warnings.catch_warnings():  # an empty table is reported below, by name
            warnings.simplefilter("ignore", UserWarning)
            table = np.loadtxt(path, comments="#", ndmin=2, dtype=float)
    except ValueError as exc:
        raise ChainError(f"{path}: not a numeric table ({' '.join(str(exc).split())})") from None
    if table.size == 0:
        table = np.empty((0, len(names)))
    if table.shape[1] != len(names):
        raise ChainError(f"{path}: {table.shape[1]} columns but {len(names)} names in the header")
    bad = ~np.isfinite(table)
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        value = "NaN" if np.isnan(table[row, col]) else table[row, col]
        raise ChainError(f"{path}: column {names[col]!r} holds {value} (data row {row + 1}); "
                         "allowed: finite numbers")
    if np.any(table[:, 0] < 0):
        raise ChainError(f"{path}: column 'weight' must be finite and >= 0")
    return names, table


def _label(latex, name: str, prefix) -> str:
    """The chain's LaTeX label of ``name`` if matplotlib can typeset it, else ``name`` (logged):
    a broken label would otherwise fail the whole plot when the figure is drawn."""
    if latex is None:
        return name
    if not isinstance(latex, str) or len(latex) > _MAX_LABEL:
        # never str() a non-string: yaml aliases can nest a list exponentially deep
        what = f"a {type(latex).__name__}" if not isinstance(latex, str) else f"{len(latex):,} characters"
        log.warning("%s: LaTeX label of %r is %s, not a short text; using %r", prefix, name, what, name)
        return name
    from matplotlib.mathtext import MathTextParser

    try:
        MathTextParser("path").parse(f"${latex}$")
    except ValueError:
        log.warning("%s: LaTeX label %r of %r cannot be typeset; using %r", prefix, latex, name, name)
        return name
    return str(latex)


def check_spread(values, where: str) -> None:
    """Refuse samples of a parameter that GetDist cannot draw: one value, or a spread that overflows.

    Parameters
    ----------
    values : array_like
        The parameter's samples.
    where : str
        ``"parameter 'x' of chain 'y'"``, for the message.

    Raises
    ------
    ChainError
    """
    values = np.asarray(values, dtype=float)
    if values.size < 2 or np.ptp(values) == 0:
        shown = values.flat[0] if values.size else "no samples"
        raise ChainError(f"{where} takes one value ({shown} in {values.size} samples after burn-in): "
                         "a chain that never moved it cannot be plotted; lower the burn-in or run "
                         "the chain longer")
    with np.errstate(over="ignore", invalid="ignore"):
        spread = float(np.std(values))
    if not math.isfinite(spread):
        raise ChainError(f"{where}: values up to {np.abs(values).max():.3g} are too large to plot "
                         "(their spread overflows)")


def _drop_burn_in(table: np.ndarray, burn_in: float) -> np.ndarray:
    """Rows after the burn-in: a fraction in [0, 1) of the rows, or a number of rows if >= 1."""
    n_drop = int(burn_in) if burn_in >= 1 else int(math.floor(burn_in * len(table)))  # checked integer
    return table[n_drop:]


def load_cobaya_chain(prefix, burn_in: float = 0.3):
    """A Cobaya chain (all its ``.N.txt`` files) as :class:`getdist.MCSamples`, read safely.

    Parameters
    ----------
    prefix : str or path-like
        Cobaya output prefix.
    burn_in : float
        Fraction in [0, 1) of each chain file to discard, or a number of rows if >= 1.

    Returns
    -------
    getdist.MCSamples
        Parameters with the chain's LaTeX labels and prior ranges; derived parameters and
        Cobaya's ``minuslogprior``/``chi2`` columns marked derived.

    Raises
    ------
    ChainError
        Missing or malformed files, different columns in two chain files, or no samples
        left after the burn-in.
    """
    from getdist import MCSamples, chains as getdist_chains

    if not (isinstance(burn_in, (int, float)) and not isinstance(burn_in, bool)
            and math.isfinite(burn_in) and burn_in >= 0 and (burn_in < 1 or burn_in == int(burn_in))):
        raise ChainError(f"burn-in {burn_in!r}: must be a fraction in [0, 1) or a whole number of "
                         "rows >= 1")
    files = chain_files(prefix)
    info = read_chain_info(prefix)
    names, tables = None, []
    for path in files:
        cols, table = read_chain_table(path)
        if names is not None and cols != names:
            raise ChainError(f"{path}: columns {cols} differ from {files[0]}'s {names}")
        names = cols
        tables.append(_drop_burn_in(table, burn_in))
    tables = [t for t in tables if len(t)]
    if not tables:
        raise ChainError(f"chain {str(prefix)!r} has no samples left after burn-in {burn_in}")
    with np.errstate(over="ignore"):
        total = float(sum(t[:, 0].sum() for t in tables))
    if not (math.isfinite(total) and total > 0):
        raise ChainError(f"chain {str(prefix)!r}: the weights after burn-in {burn_in} sum to {total}; "
                         "allowed: a finite sum > 0")
    param_names = names[2:]
    labels, ranges, derived = [], {}, []
    for name in param_names:
        entry = info.get(name)
        entry = entry if isinstance(entry, dict) else {}
        labels.append(_label(entry.get("latex"), name, prefix))
        prior = entry.get("prior")
        if isinstance(prior, dict) and {"min", "max"} <= set(prior):
            try:
                low, high = float(prior["min"]), float(prior["max"])
            except (TypeError, ValueError):
                raise ChainError(f"{prefix}: prior of {name!r} has non-numeric min/max "
                                 f"({type(prior['min']).__name__}, {type(prior['max']).__name__})") from None
            if not (low < high) or math.isnan(low) or math.isnan(high):
                raise ChainError(f"{prefix}: prior of {name!r} has min = {low}, max = {high}; "
                                 "allowed: min < max")
            # an unbounded side (.inf in the yaml) is no range for GetDist
            ranges[name] = [low if math.isfinite(low) else None, high if math.isfinite(high) else None]
        if _BOOKKEEPING.match(name) or entry.get("derived") or (entry and "prior" not in entry):
            derived.append(name)
    stacked = np.concatenate(tables)
    for i, name in enumerate(param_names):
        if name not in derived:  # derived quantities may be constant (GetDist then drops them)
            check_spread(stacked[:, 2 + i], f"parameter {name!r} of chain {str(prefix)!r}")
    getdist_chains.print_load_details = False  # GetDist prints "Removed no burn in" otherwise
    samples = MCSamples(
        samples=[t[:, 2:] for t in tables], weights=[t[:, 0] for t in tables],
        loglikes=[t[:, 1] for t in tables],
        names=param_names, labels=labels, ranges=ranges, name_tag=Path(prefix).name,
        settings={"ignore_rows": 0})
    for name in derived:
        info = samples.paramNames.parWithName(name)
        if info is not None:  # GetDist drops columns that never change
            info.isDerived = True
    samples.root = str(prefix)
    return samples
