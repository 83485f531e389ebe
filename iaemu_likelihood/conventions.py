"""Physics conventions shared by every part of iaemu.

Separations are comoving h^-1 Mpc; halo masses are log10(M / (Msun/h)).
"""
import numpy as np

__all__ = ["PARAM_NAMES", "STATISTICS", "R_EDGES", "N_BINS", "r_centres", "PARAM_LATEX",
           "ZHENG07_TABLE"]

#: Emulator inputs, in the order every array uses.
PARAM_NAMES = ("mu_cen", "mu_sat", "logMmin", "sigma_logM", "logM0", "logM1", "alpha")

#: LaTeX labels for plots and sampler output.
PARAM_LATEX = {
    "mu_cen": r"\mu_{\rm cen}",
    "mu_sat": r"\mu_{\rm sat}",
    "logMmin": r"\log M_{\rm min}",
    "sigma_logM": r"\sigma_{\log M}",
    "logM0": r"\log M_0",
    "logM1": r"\log M_1",
    "alpha": r"\alpha",
}

#: Emulated statistics, in the order of concatenated 60-element vectors.
STATISTICS = ("xi", "omega", "eta")

#: Radial bin edges in comoving h^-1 Mpc (20 log bins from 0.1 to 10**1.2 = 15.85).
R_EDGES = np.logspace(-1.0, 1.2, 21)
R_EDGES.setflags(write=False)

N_BINS = R_EDGES.size - 1


def r_centres(edges=R_EDGES):
    """Geometric bin centres in h^-1 Mpc (the convention of the reference IAEmu code)."""
    edges = np.asarray(edges, dtype=float)
    return np.sqrt(edges[1:] * edges[:-1])


#: Zheng et al. (2007, ApJ 667, 760) SDSS luminosity-threshold HOD fits, as tabulated in halotools
#: (``Zheng07Cens``/``Zheng07Sats`` published parameters): threshold Mr -> (logMmin, sigma_logM,
#: logM0, logM1, alpha). Masses in log10(Msun/h).
ZHENG07_TABLE = {
    -18.0: (11.35, 0.25, 11.20, 12.40, 0.83),
    -18.5: (11.46, 0.24, 10.59, 12.68, 0.97),
    -19.0: (11.60, 0.26, 11.49, 12.83, 1.02),
    -19.5: (11.75, 0.28, 11.69, 13.01, 1.06),
    -20.0: (12.02, 0.26, 11.38, 13.31, 1.06),
    -20.5: (12.30, 0.21, 11.84, 13.58, 1.12),
    -21.0: (12.79, 0.39, 11.92, 13.94, 1.15),
    -21.5: (13.38, 0.51, 13.94, 13.91, 1.04),
    -22.0: (14.22, 0.77, 14.00, 14.69, 0.87),
}
