"""Reference optimiser steps: textbook formulas on whole arrays (torch.optim conventions).

Sparse steps sum duplicate rows with ``np.add.at`` and update each distinct row once.
"""

from __future__ import annotations

import numpy as np


def _adam_scalars(lr, beta1, beta2, step):
    return lr / (1.0 - beta1**step), 1.0 / np.sqrt(1.0 - beta2**step)


def adam_step(params, grads, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8, n_threads=1):
    """See ``fastrec.backends._contract.ADAM_STEP_DOC``."""
    dtype = params.dtype.type
    step_size, inv_sqrt_bc2 = _adam_scalars(lr, beta1, beta2, step)
    m[...] = dtype(beta1) * m + dtype(1 - beta1) * grads
    v[...] = dtype(beta2) * v + dtype(1 - beta2) * grads * grads
    params -= dtype(step_size) * m / (np.sqrt(v) * dtype(inv_sqrt_bc2) + dtype(eps))


def _summed_rows(rows, row_grads):
    unique, inverse = np.unique(rows, return_inverse=True)
    summed = np.zeros((unique.shape[0], row_grads.shape[1]), row_grads.dtype)
    np.add.at(summed, inverse.ravel(), row_grads)
    return unique, summed


def sparse_adam_step(table, rows, row_grads, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
                     n_threads=1):
    """See ``fastrec.backends._contract.SPARSE_ADAM_STEP_DOC``."""
    unique, g = _summed_rows(rows, row_grads)
    w, mr, vr = table[unique], m[unique], v[unique]
    adam_step(w.ravel(), g.ravel(), mr.ravel(), vr.ravel(), step, lr, beta1, beta2, eps)
    table[unique], m[unique], v[unique] = w, mr, vr


def sparse_adagrad_step(table, rows, row_grads, acc, lr, eps=1e-10, n_threads=1):
    """See ``fastrec.backends._contract.SPARSE_ADAGRAD_STEP_DOC``."""
    dtype = table.dtype.type
    unique, g = _summed_rows(rows, row_grads)
    acc[unique] += g * g
    table[unique] -= dtype(lr) * g / (np.sqrt(acc[unique]) + dtype(eps))
