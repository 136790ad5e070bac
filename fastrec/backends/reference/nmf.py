"""Reference NMF multiplicative updates: the textbook dense-matrix formulas (Lee & Seung 2001),
with a 0/1 mask for the observed-entries mode.

The sparse input is densified on purpose: these functions check the kernels with a different
formulation (whole-matrix products instead of per-row sums), so they are for small problems only.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# float32's machine epsilon for both dtypes, as scikit-learn (see csrc/include/fastrec/nmf.h).
NMF_EPSILON = float(np.finfo(np.float32).eps)


def _dense(indptr, indices, data, shape) -> tuple[np.ndarray, np.ndarray]:
    """The CSR matrix as a dense array and its 0/1 mask of stored entries."""
    x = sp.csr_matrix((data, indices, indptr), shape=shape)
    mask = sp.csr_matrix((np.ones_like(data), indices, indptr), shape=shape)
    return x.toarray(), mask.toarray()


def _step(factors, numerator, denominator, l1, l2):
    denominator = denominator + l1 + l2 * factors
    denominator[denominator == 0] = NMF_EPSILON
    with np.errstate(over="ignore", invalid="ignore"):
        stepped = factors * (numerator / denominator)
    # Where numerator / denominator overflows (an underflowed denominator): the same quotient
    # as numerator / (denominator / factors), and zero entries stay zero. A non-finite
    # numerator or denominator (the input's scale overflowing) keeps its non-finite step.
    bad = ~np.isfinite(stepped) & np.isfinite(numerator) & np.isfinite(denominator)
    if bad.any():
        f = factors[bad]
        with np.errstate(divide="ignore", invalid="ignore"):
            again = numerator[bad] / (denominator[bad] / f)
        stepped[bad] = np.where(f > 0, again, 0)
    factors[...] = stepped


def nmf_update_full(indptr, indices, data, factors, other, beta_loss, l1_reg, l2_reg,
                    n_threads=1) -> None:
    """See ``fastrec.backends._contract.NMF_UPDATE_FULL_DOC``."""
    t = factors.dtype.type
    x, _ = _dense(indptr, indices, data, (factors.shape[0], other.shape[0]))
    w, h = factors, other.T  # X ~ W H with H = other^T
    if beta_loss == 2:
        numerator = x @ h.T
        denominator = w @ (h @ h.T)
    else:
        wh = w @ h
        wh[wh < NMF_EPSILON] = NMF_EPSILON
        numerator = (x / wh) @ h.T
        denominator = np.broadcast_to(h.sum(axis=1), w.shape)
    _step(factors, numerator, denominator, t(l1_reg), t(l2_reg))


def nmf_update_observed(indptr, indices, data, factors, other, bias, other_bias, global_mean,
                        beta_loss, l1_reg, l2_reg, reg_bias, biased, n_threads=1) -> None:
    """See ``fastrec.backends._contract.NMF_UPDATE_OBSERVED_DOC``."""
    t = factors.dtype.type
    x, mask = _dense(indptr, indices, data, (factors.shape[0], other.shape[0]))
    count = mask.sum(axis=1)[:, None]
    wh = factors @ other.T
    if beta_loss == 2:
        if biased:
            residual = mask * (x - t(global_mean) - other_bias[None, :] - wh)
            safe = np.where(count > 0, count, 1)
            bias[:] = np.where(count[:, 0] > 0,
                               residual.sum(axis=1) / (safe[:, 0] + safe[:, 0] * t(reg_bias)), 0)
            target = mask * (x - t(global_mean) - bias[:, None] - other_bias[None, :])
        else:
            target = x
        numerator = np.maximum(target, 0) @ other
        denominator = (mask * wh) @ other + np.maximum(-target, 0) @ other
    else:
        wh[wh < NMF_EPSILON] = NMF_EPSILON
        numerator = (mask * x / wh) @ other
        denominator = mask @ other
    _step(factors, numerator, denominator, count * t(l1_reg), count * t(l2_reg))


def nmf_loss_full(indptr, indices, data, factors, other, beta_loss, n_threads=1) -> float:
    """See ``fastrec.backends._contract.NMF_LOSS_FULL_DOC``."""
    x, _ = _dense(indptr, indices, data, (factors.shape[0], other.shape[0]))
    x, wh = x.astype(np.float64), factors.astype(np.float64) @ other.astype(np.float64).T
    if beta_loss == 2:
        return float(0.5 * np.sum((x - wh) ** 2))
    positive = x > 0
    floored = np.maximum(wh[positive], NMF_EPSILON)
    return float(np.sum(x[positive] * np.log(x[positive] / floored)) - x.sum() + wh.sum())


def nmf_loss_observed(indptr, indices, data, factors, other, bias, other_bias, global_mean,
                      beta_loss, biased, n_threads=1) -> float:
    """See ``fastrec.backends._contract.NMF_LOSS_OBSERVED_DOC``."""
    x, mask = _dense(indptr, indices, data, (factors.shape[0], other.shape[0]))
    x, mask = x.astype(np.float64), mask.astype(bool)
    wh = factors.astype(np.float64) @ other.astype(np.float64).T
    if beta_loss == 2:
        pred = wh + (global_mean + bias[:, None].astype(np.float64)
                     + other_bias[None, :].astype(np.float64) if biased else 0.0)
        return float(0.5 * np.sum((x - pred)[mask] ** 2))
    positive = mask & (x > 0)
    floored = np.maximum(wh[positive], NMF_EPSILON)
    return float(np.sum(x[positive] * np.log(x[positive] / floored)) - x[mask].sum()
                 + wh[mask].sum())
