"""Launchers of ``csrc/cuda/topn.cu``: top-n per row of a score matrix on the GPU.

:func:`launch_topn` takes the array module (CuPy, or numpy for the emulator tests) and a
``get_kernel(expression)`` so the same code runs on a device and in the CUDA emulator.
"""

from __future__ import annotations

import numpy as np

_C_FLOAT = {"float32": "float", "float64": "double"}
_C_INDEX = {"int32": "int", "int64": "long long"}

# Scratch for the per-lane heaps (32 * n entries of a score and an id per row): rows go to
# the kernel in chunks that keep it under this many bytes, whatever n.
SCRATCH_BYTES = 64 << 20


def launch_topn(xp, get_kernel, scores, n, indptr, indices, rows, *, warps_per_cta=4,
                scratch_bytes=SCRATCH_BYTES):
    """Best ``n`` per row of ``scores`` T[b, m] (device, C-contiguous; excluded entries are
    overwritten with NaN). Row r skips ``indices[indptr[u]:indptr[u + 1]]``, ``u = rows[r]``
    (``rows`` int64[b], or empty for no exclusion). Returns ``(ids int64[b, n], scores
    T[b, n])`` on the device, best first, padded with id -1 and score -inf."""
    b, m = scores.shape
    dtype = np.dtype(scores.dtype)
    out_ids = xp.empty((b, n), np.int64)
    out_scores = xp.empty((b, n), dtype)
    if b == 0:
        return out_ids, out_scores
    if rows.shape[0]:
        mark = get_kernel(f"fastrec::cuda::topn_mark_excluded<{_C_FLOAT[dtype.name]}, "
                          f"{_C_INDEX[np.dtype(indptr.dtype).name]}>")
        threads = 128
        mark((min((b + threads - 1) // threads, 4096),), (threads,),
             (scores, np.int64(b), np.int64(m), indptr, indices, rows, dtype.type(np.nan)))
    chunk = int(max(1, min(b, scratch_bytes // (32 * n * (dtype.itemsize + 8)))))
    lane_scores = xp.empty(chunk * 32 * n, dtype)
    lane_ids = xp.empty(chunk * 32 * n, np.int64)
    select = get_kernel(f"fastrec::cuda::topn_rows<{_C_FLOAT[dtype.name]}>")
    for start in range(0, b, chunk):
        count = min(chunk, b - start)
        grid = min((count + warps_per_cta - 1) // warps_per_cta, 65535)
        select((grid,), (32 * warps_per_cta,),
               (scores[start:start + count], np.int64(count), np.int64(m), np.int64(n),
                lane_scores, lane_ids, out_scores[start:start + count],
                out_ids[start:start + count], dtype.type(-np.inf)))
    return out_ids, out_scores


def topn_scores(scores, n, indptr, indices, rows, n_threads=1):
    """Device top-n of CuPy ``scores`` T[b, m] (not modified: a copy is marked when rows are
    excluded). Returns CuPy ``(ids int64[b, n], scores T[b, n])``. ``n_threads`` is ignored."""
    import cupy

    from fastrec.backends.cuda._loader import get_function

    if rows.shape[0]:
        scores = scores.copy()
    return launch_topn(cupy, lambda expression: get_function("topn", expression), scores, n,
                       indptr, indices, rows)


# Rows scored by one GEMM: bounds the device scores at this many entries.
SCORE_CHUNK = 1 << 24


def topn_factors(query, item_factors, item_bias, n, indptr, indices, rows, n_threads=1):
    """Device top-n of ``query @ item_factors.T (+ item_bias)``, CuPy arrays in and out; the
    scores are computed by cuBLAS a chunk of rows at a time."""
    import cupy

    b, m = query.shape[0], item_factors.shape[0]
    out_ids = cupy.empty((b, n), np.int64)
    out_scores = cupy.empty((b, n), item_factors.dtype)
    chunk = max(1, SCORE_CHUNK // max(m, 1))
    for start in range(0, b, chunk):
        stop = min(b, start + chunk)
        scores = query[start:stop] @ item_factors.T
        if item_bias is not None:
            scores += item_bias
        chunk_rows = rows[start:stop] if rows.shape[0] else rows
        ids, best = topn_scores(scores, n, indptr, indices, chunk_rows)
        out_ids[start:stop], out_scores[start:stop] = ids, best
    return out_ids, out_scores
