"""CUDA NMF multiplicative updates and losses: a warp per row, no atomics.

The kernels (``csrc/cuda/nmf.cu``) give each row of the factor being updated to one warp: the
warp first runs the sampled dense-dense product over the row's stored entries (the dot product
w_r . h_i in the CPU kernels' 16-lane order, turned into the KL ratio x / wh or kept as the
observed-mode dot, plus the bias residual), then its lanes own the row's factors and apply the
fused multiplicative step of ``fastrec/nmf.h``, summing over the row's entries in stored order.
The dense products go through cuBLAS (``xp.matmul``): the Gram matrix H H^T and the Frobenius
denominator W (H H^T), and the Gram matrices of the full-mode loss; column sums and the final
loss sum are CuPy reductions. CuPy keeps float32 GEMMs in FP32 unless ``CUPY_TF32=1`` is set,
which would trade the Gram products' accuracy for tensor-core speed.

Determinism: fixed summation orders everywhere, one writer per output, no atomics, so the same
inputs give the same outputs bit for bit on a device, at any launch configuration. Against the
CPU backends: compiled with ``--fmad=false``, the per-row sums round as the Cython generic path
does (observed mode and full KL agree bit for bit when the column sums and Gram products do);
they differ where cuBLAS and CuPy's reductions sum in another order (the Frobenius denominator,
the KL column sums, the loss totals), where -ftz=true flushes float32 denormals (CuPy's default;
multiplicative updates drive entries towards zero), and in the last bits of the device ``log``
used by the KL loss.
"""

from __future__ import annotations

import numpy as np

from fastrec.backends._contract import ContractError, check_nmf
from fastrec.backends.cuda._checks import host_values

WARPS_PER_CTA = 8
WARP_SIZE = 32
KERNELS = ("nmf_full_rows", "nmf_observed_rows", "nmf_loss_rows")


def _launch_shape(n_rows: int, warps_per_cta: int, n_warps: int | None):
    """(grid, block) for ``n_rows`` rows: a warp per row (at most ``n_warps`` warps, which then
    stride over the rows)."""
    warps = max(1, min(n_warps or n_rows, n_rows))
    return (-(-warps // warps_per_cta),), (warps_per_cta * WARP_SIZE,)


def launch_nmf_update_full(xp, get_kernel, indptr, indices, data, factors, other, beta_loss,
                           l1_reg, l2_reg, *, scratch=None, warps_per_cta=WARPS_PER_CTA,
                           n_warps=None) -> None:
    """One multiplicative update of ``factors`` (in place) on every entry of X; no sync.

    ``xp`` is the array module of the arrays (CuPy on a GPU, numpy in the test emulator);
    ``get_kernel(name)`` returns ``fastrec::cuda::<name><T, I>`` for the arrays' dtypes, called
    as ``kernel(grid, block, args)``. ``scratch``: T[nnz] for the KL ratios (allocated when
    None). Arguments otherwise as ``fastrec.backends._contract.NMF_UPDATE_FULL_DOC``.
    """
    n_rows, k = factors.shape
    if n_rows == 0:
        return
    dtype = factors.dtype.type
    if beta_loss == 2:
        den = xp.matmul(factors, xp.matmul(other.T, other))  # W (H H^T), by cuBLAS
        den_stride = k
    else:
        den = xp.ascontiguousarray(other.sum(axis=0))  # H's column sums
        den_stride = 0
    if scratch is None:
        scratch = xp.empty(max(indices.shape[0], 1) if beta_loss != 2 else 1, dtype=dtype)
    grid, block = _launch_shape(n_rows, warps_per_cta, n_warps)
    get_kernel("nmf_full_rows")(
        grid, block,
        (indptr, indices, data, factors, other, xp.ascontiguousarray(den),
         np.int64(den_stride), scratch, np.int64(n_rows), np.int64(k), np.int32(beta_loss),
         dtype(l1_reg), dtype(l2_reg)))


def launch_nmf_update_observed(xp, get_kernel, indptr, indices, data, factors, other, bias,
                               other_bias, global_mean, beta_loss, l1_reg, l2_reg, reg_bias,
                               biased, *, scratch=None, warps_per_cta=WARPS_PER_CTA,
                               n_warps=None) -> None:
    """One multiplicative update of ``factors`` (and ``bias`` when ``biased``) over the stored
    entries, in place; no sync. ``scratch``: T[nnz] for the dots (allocated when None).
    Arguments as ``launch_nmf_update_full`` and ``NMF_UPDATE_OBSERVED_DOC``."""
    n_rows, k = factors.shape
    if n_rows == 0:
        return
    dtype = factors.dtype.type
    if scratch is None:
        scratch = xp.empty(max(indices.shape[0], 1), dtype=dtype)
    grid, block = _launch_shape(n_rows, warps_per_cta, n_warps)
    get_kernel("nmf_observed_rows")(
        grid, block,
        (indptr, indices, data, factors, other, bias, other_bias, scratch, np.int64(n_rows),
         np.int64(k), dtype(global_mean), np.int32(beta_loss), dtype(l1_reg), dtype(l2_reg),
         dtype(reg_bias), np.int32(bool(biased))))


def _loss_rows(xp, get_kernel, indptr, indices, data, factors, other, bias, other_bias,
               global_mean, beta_loss, observed, biased, warps_per_cta, n_warps) -> float:
    """Sum of the per-row data terms (the kernel writes one float64 per row)."""
    n_rows, k = factors.shape
    if n_rows == 0:
        return 0.0
    row_loss = xp.empty(n_rows, dtype=np.float64)
    grid, block = _launch_shape(n_rows, warps_per_cta, n_warps)
    get_kernel("nmf_loss_rows")(
        grid, block,
        (indptr, indices, data, factors, other, bias, other_bias, np.float64(global_mean),
         np.int64(n_rows), np.int64(k), np.int32(beta_loss), np.int32(bool(observed)),
         np.int32(bool(biased)), row_loss))
    return float(row_loss.sum())


def launch_nmf_loss_full(xp, get_kernel, indptr, indices, data, factors, other, beta_loss, *,
                         warps_per_cta=WARPS_PER_CTA, n_warps=None) -> float:
    """The beta divergence over every entry (synchronises: returns a Python float). The stored
    entries' terms come from the kernel; the dense terms from float64 Gram matrices (beta 2:
    ||W H||^2 = sum((W^T W) * (H H^T))) or column sums (beta 1: sum W H)."""
    total = _loss_rows(xp, get_kernel, indptr, indices, data, factors, other, factors, other,
                       0.0, beta_loss, False, False, warps_per_cta, n_warps)
    w, h = factors.astype(np.float64), other.astype(np.float64)
    if beta_loss == 2:
        dense = float(xp.sum(xp.matmul(w.T, w) * xp.matmul(h.T, h)))
        return 0.5 * (total + dense)
    return total + float(xp.dot(w.sum(axis=0), h.sum(axis=0)))


def launch_nmf_loss_observed(xp, get_kernel, indptr, indices, data, factors, other, bias,
                             other_bias, global_mean, beta_loss, biased, *,
                             warps_per_cta=WARPS_PER_CTA, n_warps=None) -> float:
    """The observed-entries data term (synchronises: returns a Python float)."""
    return _loss_rows(xp, get_kernel, indptr, indices, data, factors, other, bias, other_bias,
                      global_mean, beta_loss, True, biased, warps_per_cta, n_warps)


# -- public contract functions ------------------------------------------------------------------
def _check(indptr, indices, data, factors, other, bias=None, other_bias=None,
           beta_loss=2) -> None:
    arrays = (indptr, indices, data, factors, other, bias, other_bias)
    check_nmf(*arrays, beta_loss=beta_loss, values=host_values(*arrays))


def _device_call(launch, arrays, outputs, *args, **kwargs):
    """Copy ``arrays`` to the device (CuPy arrays pass through), run ``launch(cupy, get_kernel,
    *device_arrays, *args)``, copy the arrays at positions ``outputs`` back into the numpy
    arguments they came from, and return what ``launch`` returned."""
    import cupy

    from fastrec.backends.cuda._loader import get_function, name_expression

    factors, indptr = arrays[3], arrays[0]
    device = [cupy.asarray(a) for a in arrays]

    def get_kernel(name):
        return get_function("nmf", name_expression(name, factors.dtype, indptr.dtype))

    result = launch(cupy, get_kernel, *device, *args, **kwargs)
    for position in outputs:
        if isinstance(arrays[position], np.ndarray):
            device[position].get(out=arrays[position])
    return result


def nmf_update_full(indptr, indices, data, factors, other, beta_loss, l1_reg, l2_reg,
                    n_threads=1) -> None:
    """See ``fastrec.backends._contract.NMF_UPDATE_FULL_DOC``.

    Arrays may be CuPy arrays (``factors`` updated in place, no copies) or numpy arrays (copied
    to the device; ``factors`` is copied back). ``n_threads`` is ignored: the launch shape is
    fixed and does not change the result.
    """
    _check(indptr, indices, data, factors, other, beta_loss=beta_loss)
    _device_call(launch_nmf_update_full, (indptr, indices, data, factors, other), (3,),
                 beta_loss, l1_reg, l2_reg)


def nmf_update_observed(indptr, indices, data, factors, other, bias, other_bias, global_mean,
                        beta_loss, l1_reg, l2_reg, reg_bias, biased, n_threads=1) -> None:
    """See ``fastrec.backends._contract.NMF_UPDATE_OBSERVED_DOC``; arrays as
    :func:`nmf_update_full` (``factors`` and ``bias`` are the outputs)."""
    _check(indptr, indices, data, factors, other, bias, other_bias, beta_loss)
    if biased and beta_loss != 2:
        raise ContractError("biased needs beta_loss 2 (Frobenius)")
    _device_call(launch_nmf_update_observed,
                 (indptr, indices, data, factors, other, bias, other_bias),
                 (3, 5) if biased else (3,), global_mean, beta_loss, l1_reg, l2_reg, reg_bias,
                 biased)


def nmf_loss_full(indptr, indices, data, factors, other, beta_loss, n_threads=1) -> float:
    """See ``fastrec.backends._contract.NMF_LOSS_FULL_DOC`` (synchronises the device)."""
    _check(indptr, indices, data, factors, other, beta_loss=beta_loss)
    return _device_call(launch_nmf_loss_full, (indptr, indices, data, factors, other), (),
                        beta_loss)


def nmf_loss_observed(indptr, indices, data, factors, other, bias, other_bias, global_mean,
                      beta_loss, biased, n_threads=1) -> float:
    """See ``fastrec.backends._contract.NMF_LOSS_OBSERVED_DOC`` (synchronises the device)."""
    _check(indptr, indices, data, factors, other, bias, other_bias, beta_loss)
    return _device_call(launch_nmf_loss_observed,
                        (indptr, indices, data, factors, other, bias, other_bias), (),
                        global_mean, beta_loss, biased)
