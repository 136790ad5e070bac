"""Backend-agnostic NMF drivers: CSR layouts of X and X^T, initialisation, and the alternating
multiplicative-update epoch (W then H) with scikit-learn's every-10-iterations stopping test,
run by the shared fit loop.

Factors are held row-major as ``W`` [n_rows, k] and ``Ht`` = H^T [n_cols, k], so one kernel
updates either: ``update(X, W, Ht)`` for W and ``update(X^T, Ht, W)`` for H.

The loops work on numpy arrays (CPU backends) or CuPy arrays (the CUDA backend, where X, the
factors and the biases stay on the device for the whole fit and only the objective values come
back to the host); the extra arithmetic here goes through the arrays' own module. The CSR pair
and NNDSVD take a scipy or a cupyx.scipy.sparse X and work where it is.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from fastrec._algorithms.fit_loop import Trainer
from fastrec._array import (
    aligned_zeros,
    array_module,
    is_device_array,
    sparse_module,
    to_device,
    to_host,
)
from fastrec.backends import Backend
from fastrec.backends._blas import single_threaded_blas
from fastrec.backends._contract import check_nmf

log = logging.getLogger("fastrec")

BETA_LOSSES = {"frobenius": 2, "kullback-leibler": 1}


def beta_from_loss(beta_loss) -> int:
    """2 for Frobenius, 1 for Kullback-Leibler (names or the beta values, as scikit-learn)."""
    if isinstance(beta_loss, str) and beta_loss in BETA_LOSSES:
        return BETA_LOSSES[beta_loss]
    if not isinstance(beta_loss, (str, bool)) and beta_loss in (1, 2):
        return int(beta_loss)
    raise ValueError(f"beta_loss must be one of {tuple(BETA_LOSSES)} (or 2, 1), got "
                     f"{beta_loss!r}; other beta divergences are not supported")


@dataclass(frozen=True)
class CSRPair:
    """X as CSR over its rows and over its columns (the CSR of X^T), built once per fit."""

    indptr: np.ndarray  # I[n_rows + 1]
    indices: np.ndarray  # I[nnz]
    data: np.ndarray  # T[nnz]
    t_indptr: np.ndarray  # I[n_cols + 1]
    t_indices: np.ndarray  # I[nnz]
    t_data: np.ndarray  # T[nnz]
    shape: tuple[int, int]

    @classmethod
    def build(cls, x: sp.csr_matrix, dtype, n_threads: int = 1) -> CSRPair:
        """The pair of a scipy.sparse matrix (numpy arrays; X^T by the compiled transpose on
        ``n_threads`` threads when the Cython extensions are built) or of a cupyx.scipy.sparse
        one (CuPy arrays, X^T transposed on the device)."""
        x = sparse_module(x).csr_matrix(x, dtype=dtype)
        x.sum_duplicates()
        x.sort_indices()
        n_rows, n_cols = x.shape
        index = np.int32 if max(x.nnz, n_rows, n_cols) < np.iinfo(np.int32).max else np.int64
        c = array_module(x.data).ascontiguousarray
        rows = (c(x.indptr, index), c(x.indices, index), c(x.data, dtype))
        compiled = _compiled_sparse() if array_module(x.data) is np else None
        if compiled is not None:
            cols = compiled.csr_transpose(*rows, n_cols, n_threads)
        else:
            xt = x.T.tocsr()
            xt.sort_indices()
            cols = (c(xt.indptr, index), c(xt.indices, index), c(xt.data, dtype))
        return cls(*rows, *cols, (n_rows, n_cols))

    def map_arrays(self, move) -> CSRPair:
        """The same pair with every array replaced by ``move(array)`` (e.g. copied to the
        device once per fit)."""
        return CSRPair(*(move(a) for a in (self.indptr, self.indices, self.data, self.t_indptr,
                                           self.t_indices, self.t_data)), self.shape)

    @property
    def rows(self):
        return self.indptr, self.indices, self.data

    @property
    def cols(self):
        return self.t_indptr, self.t_indices, self.t_data

    def row_counts(self):
        """float64[n_rows] stored entries per row, where the arrays live."""
        return array_module(self.indptr).diff(self.indptr).astype(np.float64)

    def col_counts(self):
        """float64[n_cols] stored entries per column, where the arrays live."""
        return array_module(self.t_indptr).diff(self.t_indptr).astype(np.float64)


# -- rank padding (to the width a backend asks for: Backend.row_width("nmf", k, dtype)) ------
def pad_columns(a, k_pad: int):
    """C-contiguous copy of a [n, k] with zero columns appended up to k_pad (on a's device; on
    the host 64-byte aligned, so the kernels' vector rows never straddle cache lines: ~20%
    faster gathers at k=32)."""
    xp = array_module(a)
    out = (aligned_zeros if xp is np else xp.zeros)((a.shape[0], k_pad), dtype=a.dtype)
    out[:, :a.shape[1]] = a
    return out


def effective_threads(n_threads: int, nnz: int, k: int) -> int:
    """Threads worth starting: one per ~2M multiply-adds of a half-iteration, at most
    ``n_threads``. Tiny problems stay serial, where OpenMP barriers would cost more than the
    work; results are the same at any thread count, so this only affects speed."""
    return max(1, min(n_threads, (nnz * k) // 2_000_000))


# -- initialisation -------------------------------------------------------------------------
def random_init(mean: float, shape_w, shape_h, rng, dtype):
    """Non-negative random factors scaled so that W H has the data's mean: sqrt(mean / k) |N|."""
    k = shape_w[1]
    scale = math.sqrt(max(mean, 0.0) / k)
    w = np.abs(rng.standard_normal(shape_w)) * scale
    h = np.abs(rng.standard_normal(shape_h)) * scale
    return w.astype(dtype), h.astype(dtype)


DENSE_SVD_MAX = 250_000  # NNDSVD takes a dense SVD of X up to this many entries
KRYLOV_BLOCKS = 9  # blocks of k vectors: the random start and 8 expansions


def nndsvd_init(x: CSRPair, k: int, variant: str, rng, dtype, n_threads: int = 1,
                eps: float = 1e-6):
    """NNDSVD (Boutsidis & Gallopoulos 2008): the positive or negative part of each singular
    pair, whichever carries more mass; ``nndsvda`` fills the zeros with the mean of X.
    Returns W [n_rows, k] and H [k, n_cols] (numpy).

    ``x`` holds numpy or CuPy arrays. A small X (at most ``DENSE_SVD_MAX`` entries) is
    factorised by a dense SVD on the host, a larger one by :func:`truncated_svd`, whose products
    with X run where X is (only blocks of vectors cross)."""
    n_rows, n_cols = x.shape
    if n_rows * n_cols <= DENSE_SVD_MAX:
        indptr, indices, data = (to_host(a) for a in x.rows)
        dense = sp.csr_matrix((data, indices, indptr), shape=x.shape).toarray()
        u, s, vt = np.linalg.svd(dense.astype(np.float64), full_matrices=False)
        u, s, vt = u[:, :k], s[:k], vt[:k]
    else:
        u, s, vt = truncated_svd(x, k, rng, n_threads)
    with single_threaded_blas():  # the norms' dot products, summed alike at any thread count
        w, h = _nndsvd_factors(u, s, vt, eps)
    if variant == "nndsvda":
        mean = float(x.data.sum()) / (n_rows * n_cols)  # in X's dtype, as scipy's X.sum()
        w[w == 0] = mean
        h[h == 0] = mean
    return w.astype(dtype), h.astype(dtype)


def _nndsvd_factors(u, s, vt, eps: float):
    """NNDSVD's W [n_rows, k] and H [k, n_cols] (float64) from the singular triplets."""
    # W is built transposed: U's columns as contiguous rows (strided columns of a tall U made
    # this several times slower; every value and norm is the same).
    ut = np.ascontiguousarray(u.T, dtype=np.float64)
    vt = np.ascontiguousarray(vt, dtype=np.float64)
    # All pairs at once, each pair's positive and negative part, whichever carries more mass;
    # the norms stay one BLAS dot per vector (np.linalg.norm), so every value is the one a loop
    # over the pairs gives.
    factors = []
    for side in (ut, vt):
        positive = np.maximum(side, 0)
        negative = np.minimum(side, 0)
        np.negative(negative, out=negative)
        norms = [np.array([np.linalg.norm(row) for row in part]) for part in (positive, negative)]
        factors.append((positive, negative, norms))
    (wt, w_neg, (wp, wn)), (h, h_neg, (hp, hn)) = factors
    take_negative = wn * hn > wp * hp  # ties: the positive part
    take_negative[0] = False
    wt[take_negative], h[take_negative] = w_neg[take_negative], h_neg[take_negative]
    na, nb = np.where(take_negative, wn, wp), np.where(take_negative, hn, hp)
    mass = na * nb
    # The leading pair is taken whole (in absolute value), scaled by sqrt(sigma_1).
    wt[0], h[0] = np.abs(ut[0]), np.abs(vt[0])
    mass[0], na[0], nb[0] = 1.0, 1.0, 1.0
    scale = np.sqrt(s * mass)
    for part, norm in ((wt, na), (h, nb)):
        part *= scale[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            part /= norm[:, None]
        part[mass <= 0] = 0.0  # neither part carries mass: the pair contributes nothing
    w = np.ascontiguousarray(wt.T)
    w[w < eps] = 0
    h[h < eps] = 0
    return w, h


def truncated_svd(x: CSRPair, k: int, rng, n_threads: int = 1):
    """The k leading singular triplets of X by a randomized block Krylov method (Musco & Musco
    2015): the Krylov space of X^T X (or X X^T, on X's shorter side) from a random block of k
    vectors, ``KRYLOV_BLOCKS`` blocks deep, orthonormalised block by block (two passes
    of classical Gram-Schmidt, then QR), and the Rayleigh-Ritz pairs of X^T X on it. X^T X on
    the basis comes from the orthogonalisation's coefficients, so each basis vector costs one
    product with X and one with X^T (one pass over X computes both). When the space would be
    the whole shorter side, the decomposition is exact (the Gram matrix of X).

    The products with X are in X's dtype (a float32 X, NMF's default, multiplies float32
    blocks: half the memory traffic and twice the vector width of float64, each product X^T X v
    accurate to float32 rounding, about 1e-7 of its norm, which is what the float32 factors
    this seeds can hold); the basis, its orthogonalisation and the Rayleigh-Ritz problem are
    float64 whatever X's dtype. (A float32 basis was tried and rejected: the leading singular
    value of a non-negative X dominates, so each block is mostly the previous ones, and float32
    Gram-Schmidt lost orthogonality entirely on a matrix with a steep spectrum.)

    The products are fastrec's compiled CSR x dense products on ``n_threads`` threads (numpy X;
    X^T (X V) in one pass over each half of X's rows, ``csr_gram_times_dense``; scipy's
    products of the same halves, bit for bit the same, without the extensions) or cupyx's
    (CuPy X); the small dense
    algebra runs on the host with single-threaded BLAS, so a seed gives the same triplets at any
    thread count. Returns U float64[n_rows, k], s float64[k] descending, Vt float64[k, n_cols].

    Why not ARPACK: the leading singular values of a noisy X lie close together (1M random
    nonzeros in 50k x 10k: sigma_2..sigma_33 within 1.2%), and ARPACK's single-vector Lanczos
    needed ~700 restarted steps (19 s of CPU) there; blocks of products run at memory speed."""
    n_rows, n_cols = x.shape
    dtype = np.dtype(x.data.dtype)
    times, t_times = _products(x, n_threads)
    short_side, n = x.rows, n_cols  # the CSR A [., n] whose A^T A acts on the basis
    if n_cols > n_rows:  # the basis lives on the shorter side: X^T's rows
        times, short_side, n = t_times, x.cols, n_rows
    compiled = None if is_device_array(x.data) else _compiled_sparse()
    gram_halves = None if compiled is not None else _gram_halves(short_side, n)

    def gram(v):
        v = np.ascontiguousarray(v, dtype)
        if compiled is not None:  # one pass over each half of X
            return compiled.csr_gram_times_dense(*short_side, v, n_threads).astype(
                np.float64, copy=False)
        return gram_halves(v).astype(np.float64, copy=False)

    with single_threaded_blas():
        if KRYLOV_BLOCKS * k >= n:
            basis = np.eye(n)
            projected = gram(basis)
        else:
            basis, projected = _krylov(gram, n, k, rng, n_threads)
        projected = 0.5 * (projected + projected.T)
        values, vectors = np.linalg.eigh(projected)
        top = np.argsort(-values, kind="stable")[:k]
        s = np.sqrt(np.maximum(values[top], 0.0))
        small = basis @ vectors[:, top]
        large = times(np.ascontiguousarray(small, dtype)).astype(np.float64, copy=False)
        large *= np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)
    if n_cols <= n_rows:
        return large, s, small.T
    return small, s, large.T


def _krylov(gram, n: int, width: int, rng, n_threads: int = 1):
    """Orthonormal basis Q float64[n, L] of the block Krylov space of ``gram`` from a random
    start (L = KRYLOV_BLOCKS * width) and Q^T gram(Q) [L, L] (its upper block triangle from
    each block's Gram-Schmidt coefficients, the subdiagonal blocks from the R factors).

    Gram-Schmidt streams the whole basis four times per block, so it is split by rows: two
    fixed halves of the basis, on two threads when ``n_threads`` allows (each with
    single-threaded BLAS), their partial coefficients added in a fixed order; each new block's
    QR is split the same way (TSQR: the QR of each half, then of their two stacked R factors).
    The split depends on n only, so the basis is the same at any thread count. (A threaded BLAS
    is no substitute: OpenBLAS's 2-thread products round differently from its 1-thread ones.)"""
    size = KRYLOV_BLOCKS * width
    basis = np.empty((n, size))
    projected = np.zeros((size, size))
    basis[:, :width] = np.linalg.qr(rng.standard_normal((n, width)))[0]
    halves = (slice(0, n // 2), slice(n // 2, n))
    pool = ThreadPoolExecutor(2) if n_threads > 1 else None

    def each_half(task):
        """[task(0, first half's rows), task(1, second half's rows)]"""
        if pool is None:
            return [task(half, rows) for half, rows in enumerate(halves)]
        return list(pool.map(lambda half: _guarded(task, half, halves[half]), (0, 1)))

    scale = 0.0  # the first product's largest column norm: about sigma_1^2, X^T X's scale
    try:
        for block in range(KRYLOV_BLOCKS):
            lo, hi = block * width, (block + 1) * width
            y = gram(basis[:, lo:hi])
            if block == 0:
                scale = float(np.linalg.norm(y, axis=0).max())
            done = basis[:, :hi]
            coefficients = _classical_gram_schmidt(done, y, each_half)
            projected[:hi, lo:hi] = coefficients
            if hi == size:
                break
            _next_block(basis, projected, y, done, hi, lo, width, each_half, scale)
    finally:
        if pool is not None:
            pool.shutdown()
    return basis, projected


def _guarded(task, half: int, rows):
    """``task(half, rows)`` under :func:`single_threaded_blas` (a worker thread has its own
    BLAS settings in some libraries)."""
    with single_threaded_blas():
        return task(half, rows)


def _classical_gram_schmidt(done, y, each_half):
    """Two passes of classical Gram-Schmidt of the columns y [n, w] (updated in place) against
    the orthonormal columns ``done`` [n, m]; returns the summed coefficients [m, w].
    ``each_half(task)`` runs ``task`` on each half of the rows and lists the results."""
    total = None
    for _ in range(2):
        first, second = each_half(lambda half, rows: done[rows].T @ y[rows])
        coefficients = first + second

        def subtract(half, rows, coefficients=coefficients):
            y[rows] -= done[rows] @ coefficients

        each_half(subtract)
        total = coefficients if total is None else total + coefficients
    return total


def _next_block(basis, projected, y, done, hi: int, lo: int, width: int, each_half,
                scale: float) -> None:
    """The next block of the basis, the QR of the orthogonalised y [n, width] (by halves of
    its rows, ``each_half`` as in :func:`_classical_gram_schmidt`), and its R factor as the
    subdiagonal block of ``projected``. ``scale``: X^T X's (its columns below 1e-10 of it have
    vanished)."""
    halves = each_half(lambda half, rows: np.linalg.qr(y[rows]))
    combine, r = np.linalg.qr(np.vstack([halves[0][1], halves[1][1]]))
    block = slice(hi, hi + width)

    def place(half, rows):
        basis[rows, block] = halves[half][0] @ combine[half * width:(half + 1) * width]

    each_half(place)
    diagonal = np.abs(np.diag(r))
    # Vanished next to the block's largest column, or to X^T X's scale (a block that vanished
    # whole is rounding noise of even size)
    if diagonal.min() <= 1e-10 * max(diagonal.max(), scale, 1e-300):
        # y (nearly) vanished: X's rank is reached. QR's columns for the vanished part are
        # rounding noise, mostly inside the space already spanned, so orthogonalise them again,
        # twice (once leaves noise of the same kind); their R entries are ~0 either way. The
        # second QR may flip a column's sign (a negative diagonal in its R), which R's row
        # would not follow: flip it back, so the kept columns stay the ones R describes.
        q = basis[:, block]
        for _ in range(2):
            q -= done @ (done.T @ q)
        q, signs = np.linalg.qr(q)
        basis[:, block] = q * np.where(np.diag(signs) < 0, -1.0, 1.0)
    projected[block, lo:hi] = r


def _products(x: CSRPair, n_threads: int):
    """(X @ v, X^T @ v) for blocks v in X's dtype, returned on the host: fastrec's compiled products
    for numpy X (scipy's without the extensions), cupyx's on the device for CuPy X (the block
    goes there and the product comes back)."""
    compiled = None if is_device_array(x.data) else _compiled_sparse()

    def product(arrays, shape):
        if compiled is not None:
            return lambda v: compiled.csr_times_dense(*arrays, np.ascontiguousarray(v),
                                                      n_threads)
        indptr, indices, data = arrays
        a = sparse_module(data).csr_matrix((data, indices, indptr), shape=shape)
        if not is_device_array(data):
            return lambda v: a @ v
        return lambda v: to_host(a @ to_device(np.ascontiguousarray(v)))

    return product(x.rows, x.shape), product(x.cols, x.shape[::-1])


def _gram_halves(arrays, n_cols: int):
    """X^T (X v) as ``csr_gram_times_dense`` computes it (the Gram products of X's two row
    halves, split at n_rows // 2, added in order), by scipy's products, or cupyx's for CuPy X
    (the block goes to the device and the product comes back); the same bits as the compiled
    one on the host. ``arrays``: X's CSR (indptr, indices, data) with ``n_cols`` columns."""
    indptr, indices, data = arrays
    module = sparse_module(data)
    n_rows = indptr.shape[0] - 1
    halves = []
    for lo, hi in ((0, n_rows // 2), (n_rows // 2, n_rows)):
        start, stop = int(indptr[lo]), int(indptr[hi])
        halves.append(module.csr_matrix((data[start:stop], indices[start:stop],
                                         indptr[lo:hi + 1] - indptr[lo]),
                                        shape=(hi - lo, n_cols)))

    def gram(v):
        if is_device_array(data):
            v = to_device(v)
        out = halves[0].T @ (halves[0] @ v)
        out += halves[1].T @ (halves[1] @ v)
        return to_host(out)

    return gram


def _compiled_sparse():
    """``fastrec.backends.cython._sparse`` when the Cython extensions are built, else None. An
    extension built from older sources (without ``csr_gram_times_dense``, as in a checkout
    whose sources moved on since its build) counts as not built: scipy's products give the
    same bits."""
    try:
        from fastrec.backends.cython import _sparse
    except ImportError:
        return None
    return _sparse if hasattr(_sparse, "csr_gram_times_dense") else None


# -- objectives -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ObservedPenalty:
    """Per-observation penalties of observed mode (row u's are scaled by its count n_u)."""

    l1_w: float
    l2_w: float
    l1_h: float
    l2_h: float
    reg_bias: float


def observed_objective(backend: Backend, x: CSRPair, w, ht, bu, bi, mu, beta, biased,
                       pen: ObservedPenalty, n_threads, counts=None, scratch=None) -> float:
    """Data term + sum_u n_u (l1 |p_u|_1 + l2/2 |p_u|^2) + the same for items
    + reg_bias/2 sum n b^2: the function the observed-mode updates never increase.
    ``counts``: ``(x.row_counts(), x.col_counts())`` and ``scratch``: float64 arrays of the
    shapes of ``w`` and ``ht``, when the caller keeps them across calls."""
    data = backend.nmf_loss_observed(*x.rows, w, ht, bu, bi, mu, beta, biased, n_threads)
    nu, ni = (x.row_counts(), x.col_counts()) if counts is None else counts
    w_scratch, h_scratch = (None, None) if scratch is None else scratch
    total = data + _factor_penalty(nu, w, pen.l1_w, pen.l2_w, w_scratch)
    total += _factor_penalty(ni, ht, pen.l1_h, pen.l2_h, h_scratch)
    if biased:
        total += 0.5 * pen.reg_bias * float(nu @ bu.astype(np.float64) ** 2
                                            + ni @ bi.astype(np.float64) ** 2)
    return total


def _factor_penalty(counts, factors, l1: float, l2: float, scratch=None) -> float:
    """counts @ (l1 |row|_1 + l2/2 |row|^2) of float64 factors [n, k_pad].

    The short row sums dominate the objective's cost (several times the loss kernel at k=5), so
    a term whose coefficient is 0 is skipped: for non-negative finite factors it adds exactly
    +0.0, so the value is bit for bit the one with both terms. ``scratch``: a float64 array of
    the factors' shape to hold their float64 copy (and squares): fresh copies of the item
    factors cost an objective check several times their arithmetic (page faults), the same
    values either way."""
    if l1 == 0 and l2 == 0:
        return 0.0
    if scratch is None:
        f64 = factors.astype(np.float64)
    else:
        f64 = scratch
        array_module(factors).copyto(f64, factors)
    per_row = l1 * f64.sum(1) if l1 != 0 else None
    if l2 != 0:
        f64 *= f64
        squares = 0.5 * l2 * f64.sum(1)
        per_row = squares if per_row is None else per_row + squares
    return float(counts @ per_row)


# -- the multiplicative-update epochs ---------------------------------------------------------
class MUTrainer(Trainer):
    """One alternating multiplicative update per epoch (W, then H unless ``update_h`` is
    False), in place, for :func:`fastrec._algorithms.fit_loop.fit_epochs`.

    Full mode measures the error sqrt(2 * divergence), observed mode the objective the updates
    never increase; both every 10 iterations for scikit-learn's stopping test (every iteration
    when ``verbose``). The arrays are checked once here, where they live (numpy or CuPy); the
    CUDA functions check dtypes, shapes and layout per call.
    """

    check_every = 10  # copying W and H every update would cost a third of one
    hint = ("the factors overflowed; add a penalty (alpha_W) or fit in float64 "
            "(dtype='float64')")

    def __init__(self, backend: Backend, x: CSRPair, w, ht, bu, bi, mu: float, beta: int,
                 mode: str, biased: bool, pen: ObservedPenalty, tol: float, update_h: bool,
                 n_threads: int, verbose: bool, name: str, validation=None):
        check_nmf(*x.rows, w, ht, bu, bi, beta_loss=beta)
        self.backend, self.x, self.w, self.ht, self.bu, self.bi = backend, x, w, ht, bu, bi
        self.mu, self.beta, self.mode, self.biased, self.pen = mu, beta, mode, biased, pen
        self.tol, self.update_h, self.verbose, self.name = tol, update_h, verbose, name
        self.validation_pairs = validation
        self.n_threads = effective_threads(n_threads, x.data.shape[0], w.shape[1])
        self.counts = (x.row_counts(), x.col_counts()) if mode == "observed" else None
        xp = array_module(w)
        self.scratch = ((xp.empty(w.shape, np.float64), xp.empty(ht.shape, np.float64))
                        if mode == "observed" else None)
        self.loss_label = "error" if mode == "full" else "objective"
        self.at_init = self.previous = self.loss()

    def state(self) -> dict:
        return {"W": self.w, "H": self.ht, "user_bias": self.bu, "item_bias": self.bi}

    def loss(self) -> float:
        if self.mode == "full":
            divergence = self.backend.nmf_loss_full(*self.x.rows, self.w, self.ht, self.beta,
                                                    self.n_threads)
            return math.sqrt(max(2.0 * divergence, 0.0))
        return observed_objective(self.backend, self.x, self.w, self.ht, self.bu, self.bi,
                                  self.mu, self.beta, self.biased, self.pen, self.n_threads,
                                  self.counts, self.scratch)

    def run_epoch(self, epoch: int) -> float | None:
        b, x, p = self.backend, self.x, self.pen
        if self.mode == "full":
            b.nmf_update_full(*x.rows, self.w, self.ht, self.beta, p.l1_w, p.l2_w,
                              self.n_threads)
            if self.update_h:
                b.nmf_update_full(*x.cols, self.ht, self.w, self.beta, p.l1_h, p.l2_h,
                                  self.n_threads)
        else:
            b.nmf_update_observed(*x.rows, self.w, self.ht, self.bu, self.bi, self.mu, self.beta,
                                  p.l1_w, p.l2_w, p.reg_bias, self.biased, self.n_threads)
            if self.update_h:
                b.nmf_update_observed(*x.cols, self.ht, self.w, self.bi, self.bu, self.mu,
                                      self.beta, p.l1_h, p.l2_h, p.reg_bias, self.biased,
                                      self.n_threads)
        if self.verbose or self._testing(epoch):
            return self.loss()
        return None

    def _testing(self, epoch: int) -> bool:
        return self.tol > 0 and (epoch + 1) % 10 == 0

    def converged(self, epoch: int, loss: float | None) -> bool:
        """scikit-learn's test every 10 iterations: the relative drop since the last test,
        against the initial value, is below ``tol``."""
        if loss is None or not self._testing(epoch):
            return False
        if self.at_init > 0 and (self.previous - loss) / self.at_init < self.tol:
            return True
        self.previous = loss
        return False

    def validation(self) -> tuple[float, str, bool] | None:
        if self.validation_pairs is None:
            return None
        users, items, values = self.validation_pairs
        xp = array_module(self.w)
        pred = xp.einsum("nk,nk->n", self.w[xp.asarray(users)], self.ht[xp.asarray(items)])
        if self.biased:
            pred = pred + self.mu + self.bu[users] + self.bi[items]
        error = to_host(pred).astype(np.float64) - values
        return float(np.sqrt(np.mean(error ** 2))), "RMSE", True

    def input_scale(self) -> float:
        data = self.x.data
        return float(array_module(data).abs(data).max()) if data.size else 0.0
