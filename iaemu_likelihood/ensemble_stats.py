"""The ensemble's statistics: members' outputs -> physical mean, aleatoric and epistemic variances.

Every member predicts, per output value, a mean and a variance in transformed space (log xi,
omega, eta for the shipped weights); :func:`reduce_members` undoes the transforms
(:class:`~iaemu_likelihood.transforms.OutputTransform`) and reduces over members: the ensemble
mean of the physical means, the aleatoric variance as the mean of the physical variances, and the
epistemic variance as the population variance of the physical means across members, times the
weights' calibration factor per output.
"""
from __future__ import annotations

__all__ = ["reduce_members"]


def reduce_members(transform, y, var_y, epistemic_scale=None, single_member_epistemic=None):
    """Physical mean, aleatoric and epistemic variances of M members' outputs.

    Parameters
    ----------
    transform : OutputTransform
    y : ndarray, shape (M, n, n_out)
        Members' transformed-space means (overwritten).
    var_y : ndarray, shape (M, n, n_out), or None
        Members' transformed-space variances (overwritten); None when no aleatoric variance is
        wanted.
    epistemic_scale : ndarray, shape (n_out,), or None
        Calibration factor of the epistemic variance per output; None: no epistemic variance.
    single_member_epistemic : callable, optional
        ``f() -> (n, n_out)`` epistemic variances for a single member (M = 1), e.g. the spread
        of MC-dropout passes.

    Returns
    -------
    mean, aleatoric, epistemic : ndarray, shape (n, n_out)
        Physical units; ``aleatoric`` is None without ``var_y``, ``epistemic`` None without
        ``epistemic_scale``.
    """
    values, var = transform.to_physical(y, var_y)
    m = values.shape[0]
    alea = None
    if m == 1:
        mean = values[0]
        if var is not None:
            alea = var[0]
    else:  # sums and in-place scaling: a sampler's single point pays per numpy call
        mean = values.sum(axis=0)
        mean *= 1.0 / m
        if var is not None:
            alea = var.sum(axis=0)
            alea *= 1.0 / m
    if epistemic_scale is None:
        return mean, alea, None
    if m == 1:
        return mean, alea, single_member_epistemic()
    spread = values - mean  # population variance across members (numpy's var, fewer calls)
    spread *= spread
    epi = spread.sum(axis=0)
    epi /= m
    epi *= epistemic_scale
    return mean, alea, epi
