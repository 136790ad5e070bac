# distutils: extra_compile_args = -fno-math-errno
# (errno of sqrt/exp/log is never read here; GCC's errno guard would keep the optimiser loops
# scalar)
"""NCF passes (forward, backward, whole training epoch) over csrc/include/fastrec/ncf_cpu.h.

GEMMs go through SciPy's BLAS handed in as function pointers (_blas_cpu.pxd), kept
single-threaded while they run (the threads here are OpenMP's).
"""

from libc.stdint cimport int64_t, uint64_t

from fastrec.backends.cython._blas_cpu cimport Blas, scipy_blas
from fastrec.backends.cython._types cimport floating, index_t

from fastrec.backends._blas import single_threaded_blas
from fastrec.backends._contract import ncf_epoch_columns, ncf_n_rating


cdef extern from "fastrec/ncf_cpu.h" namespace "fastrec" nogil:
    void ncf_forward_batch[T, I](const Blas &blas, const I *users, const I *items, int64_t batch,
                                 const T *user_emb, const T *item_emb, const T *dense,
                                 const int64_t *layers, int64_t n_widths, int64_t n_gmf,
                                 int64_t stride, T *cache, T *logits, int n_threads)
    double ncf_backward_batch[T, I](const Blas &blas, const I *users, const I *items,
                                    const T *targets, int64_t batch, const T *user_emb,
                                    const T *item_emb, const T *dense, const int64_t *layers,
                                    int64_t n_widths, int64_t n_gmf, int64_t stride,
                                    const T *cache, const T *logits, int loss_kind,
                                    const T *ratings, const T *rating_weights,
                                    double rating_mean, double rating_reg, int64_t n_rating,
                                    T *dense_grad,
                                    T *user_grads, T *item_grads, int n_threads)
    double ncf_train_epoch_cpu[T, I](
        const Blas &blas, const I *pos_users, const I *pos_items, const T *pos_targets,
        const int64_t *seen_indptr, const I *seen_indices, const int64_t *order,
        int64_t n_samples, int64_t n_negatives, uint64_t seed, int64_t epoch, T *user_emb,
        int64_t n_users, T *item_emb, int64_t n_items, T *dense, const int64_t *layers,
        int64_t n_widths, int64_t n_gmf, int64_t stride, int loss_kind, const T *pos_ratings,
        double rating_weight, double rating_mean, double rating_reg, int64_t n_rating,
        int64_t n_nonnegative, int optimizer, double lr, double beta1, double beta2, double eps,
        int64_t step, T *dense_s1, T *dense_s2, T *user_s1, T *user_s2, T *item_s1, T *item_s2,
        int64_t batch_size, int n_threads)


cdef const int64_t *_ptr64(const int64_t[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] > 0 else NULL


cdef const floating *_optional(const floating[::1] a):
    """The rating arrays: None (an empty view) means no rating term."""
    return &a[0] if a is not None and a.shape[0] > 0 else NULL


def ncf_forward(const index_t[::1] users, const index_t[::1] items,
                const floating[:, ::1] user_emb, const floating[:, ::1] item_emb,
                const floating[::1] dense, const int64_t[::1] layers, int64_t n_gmf,
                floating[::1] cache, floating[::1] logits, int n_threads=1):
    """See ``fastrec.backends._contract.NCF_FORWARD_DOC``."""
    cdef Blas blas = scipy_blas()
    cdef int64_t batch = users.shape[0]
    if batch == 0:
        return
    with single_threaded_blas(), nogil:
        ncf_forward_batch(blas, &users[0], &items[0], batch, &user_emb[0, 0], &item_emb[0, 0],
                          &dense[0], _ptr64(layers), layers.shape[0], n_gmf, user_emb.shape[1],
                          &cache[0], &logits[0], n_threads)


def ncf_backward(const index_t[::1] users, const index_t[::1] items,
                 const floating[::1] targets, const floating[:, ::1] user_emb,
                 const floating[:, ::1] item_emb, const floating[::1] dense,
                 const int64_t[::1] layers, int64_t n_gmf, const floating[::1] cache,
                 const floating[::1] logits, int loss, floating[::1] dense_grad,
                 floating[:, ::1] user_grads, floating[:, ::1] item_grads, int n_threads=1,
                 const floating[::1] ratings=None, const floating[::1] rating_weights=None,
                 double rating_mean=0.0, double rating_reg=0.0, n_rating=None):
    """See ``fastrec.backends._contract.NCF_BACKWARD_DOC``."""
    cdef Blas blas = scipy_blas()
    cdef int64_t rating_columns = ncf_n_rating(n_rating, n_gmf) if ratings is not None else 0
    cdef int64_t batch = users.shape[0]
    cdef double total
    cdef const floating *rating_ptr = _optional(ratings)
    cdef const floating *weight_ptr = _optional(rating_weights)
    if batch == 0:
        dense_grad[:] = 0
        return 0.0
    with single_threaded_blas(), nogil:
        total = ncf_backward_batch(blas, &users[0], &items[0], &targets[0], batch,
                                   &user_emb[0, 0], &item_emb[0, 0], &dense[0], _ptr64(layers),
                                   layers.shape[0], n_gmf, user_emb.shape[1], &cache[0],
                                   &logits[0], loss, rating_ptr, weight_ptr, rating_mean,
                                   rating_reg, rating_columns, &dense_grad[0],
                                   &user_grads[0, 0], &item_grads[0, 0], n_threads)
    return total


def ncf_train_epoch(const index_t[::1] pos_users, const index_t[::1] pos_items,
                    const floating[::1] pos_targets, const int64_t[::1] seen_indptr,
                    const index_t[::1] seen_indices, const int64_t[::1] order,
                    int64_t n_negatives, uint64_t seed, int64_t epoch,
                    floating[:, ::1] user_emb, floating[:, ::1] item_emb, floating[::1] dense,
                    const int64_t[::1] layers, int64_t n_gmf, int loss, int optimizer,
                    double lr, double beta1, double beta2, double eps, int64_t step,
                    floating[::1] dense_state1, floating[::1] dense_state2,
                    floating[:, ::1] user_state1, floating[:, ::1] user_state2,
                    floating[:, ::1] item_state1, floating[:, ::1] item_state2,
                    int64_t batch_size, int n_threads=1, const floating[::1] ratings=None,
                    double rating_weight=0.0, double rating_mean=0.0, double rating_reg=0.0,
                    n_rating=None, bint nonnegative=False):
    """See ``fastrec.backends._contract.NCF_TRAIN_EPOCH_DOC``."""
    cdef Blas blas = scipy_blas()
    cdef int64_t rating_columns, nonnegative_columns
    rating_columns, nonnegative_columns = ncf_epoch_columns(n_rating, n_gmf,
                                                            ratings is not None, nonnegative)
    cdef double total
    cdef int64_t n_samples = order.shape[0]
    cdef index_t dummy_index = 0
    cdef const index_t *seen = &seen_indices[0] if seen_indices.shape[0] > 0 else &dummy_index
    cdef const floating *rating_ptr = _optional(ratings)
    if n_samples == 0:
        return 0.0
    with single_threaded_blas(), nogil:
        total = ncf_train_epoch_cpu(
            blas, &pos_users[0], &pos_items[0], &pos_targets[0], &seen_indptr[0], seen,
            &order[0], n_samples, n_negatives, seed, epoch, &user_emb[0, 0], user_emb.shape[0],
            &item_emb[0, 0], item_emb.shape[0], &dense[0], _ptr64(layers), layers.shape[0],
            n_gmf, user_emb.shape[1], loss, rating_ptr, rating_weight, rating_mean, rating_reg,
            rating_columns, nonnegative_columns, optimizer, lr, beta1, beta2, eps, step,
            &dense_state1[0], &dense_state2[0], &user_state1[0, 0], &user_state2[0, 0],
            &item_state1[0, 0], &item_state2[0, 0], batch_size, n_threads)
    return total
