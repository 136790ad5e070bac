# distutils: extra_compile_args = -fno-trapping-math -fno-math-errno
# (Neither changes a result: no code here tests FP exception flags or errno. They let GCC
# if-convert the float selects of gru.h (exp's clamp, target masks) and inline sqrt, so the loops
# over a batch vectorise.)
"""GRU4Rec passes on the CPU: thin wrappers around csrc/include/fastrec/gru_cpu.h, with SciPy's
BLAS handed in as function pointers (_blas_cpu.pxd), kept single-threaded while they run."""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

from fastrec.backends.cython._blas_cpu cimport Blas, scipy_blas
from fastrec.backends.cython._types cimport floating, index_t

import numpy as np

from fastrec.backends._blas import single_threaded_blas


cdef extern from "fastrec/gru_cpu.h" namespace "fastrec" nogil:
    cdef struct GruSpec:
        int embedded, loss, n_sample, bptt, method
        double bpreg, dropout_embed, dropout_hidden, lr, momentum, beta1, beta2, eps
        int64_t step0
        uint64_t seed, epoch

    void gru_stack_forward(const Blas &blas, int steps, int B, int L, int H, const float *A0,
                           const float *h0, const uint8_t *reset, const float *Wx_rest,
                           const float *Wh, const float *b, float *hs, float *gates,
                           int n_threads) except +
    void gru_stack_forward(const Blas &blas, int steps, int B, int L, int H, const double *A0,
                           const double *h0, const uint8_t *reset, const double *Wx_rest,
                           const double *Wh, const double *b, double *hs, double *gates,
                           int n_threads) except +
    void gru_stack_backward(const Blas &blas, int steps, int B, int L, int H, const float *h0,
                            const uint8_t *reset, const float *Wx_rest, const float *Wh,
                            const float *hs, const float *gates, const float *d_top, float *dA0,
                            float *dh0, float *dWx_rest, float *dWh, float *db,
                            int n_threads) except +
    void gru_stack_backward(const Blas &blas, int steps, int B, int L, int H,
                            const double *h0, const uint8_t *reset, const double *Wx_rest,
                            const double *Wh, const double *hs, const double *gates,
                            const double *d_top, double *dA0, double *dh0, double *dWx_rest,
                            double *dWh, double *db, int n_threads) except +
    double gru_output_loss(const Blas &blas, const float *hidden, int N, int H,
                                 const float *out_table, const int32_t *samples, int S, int loss,
                                 double bpreg, double grad_scale, float *d_hidden, float *d_rows,
                                 int n_threads) except +
    double gru4rec_epoch(const Blas &blas, const int32_t *inputs, const int32_t *targets,
                               const uint8_t *reset, int64_t n_steps, int B, int L, int H,
                               float *hidden, float *emb, float *emb_s1, float *emb_s2, int64_t D, float *gru,
                               float *gru_s1, float *gru_s2, int64_t n_gru, float *out, float *out_s1,
                               float *out_s2, int64_t n_items, const double *neg_prob,
                               const int32_t *neg_alias, const GruSpec &spec, int n_threads,
                               int64_t *n_events) except +
    double gru_output_loss(const Blas &blas, const float *hidden, int N, int H,
                                 const float *out_table, const int64_t *samples, int S, int loss,
                                 double bpreg, double grad_scale, float *d_hidden, float *d_rows,
                                 int n_threads) except +
    double gru4rec_epoch(const Blas &blas, const int64_t *inputs, const int64_t *targets,
                               const uint8_t *reset, int64_t n_steps, int B, int L, int H,
                               float *hidden, float *emb, float *emb_s1, float *emb_s2, int64_t D, float *gru,
                               float *gru_s1, float *gru_s2, int64_t n_gru, float *out, float *out_s1,
                               float *out_s2, int64_t n_items, const double *neg_prob,
                               const int64_t *neg_alias, const GruSpec &spec, int n_threads,
                               int64_t *n_events) except +
    double gru_output_loss(const Blas &blas, const double *hidden, int N, int H,
                                 const double *out_table, const int32_t *samples, int S, int loss,
                                 double bpreg, double grad_scale, double *d_hidden, double *d_rows,
                                 int n_threads) except +
    double gru4rec_epoch(const Blas &blas, const int32_t *inputs, const int32_t *targets,
                               const uint8_t *reset, int64_t n_steps, int B, int L, int H,
                               double *hidden, double *emb, double *emb_s1, double *emb_s2, int64_t D, double *gru,
                               double *gru_s1, double *gru_s2, int64_t n_gru, double *out, double *out_s1,
                               double *out_s2, int64_t n_items, const double *neg_prob,
                               const int32_t *neg_alias, const GruSpec &spec, int n_threads,
                               int64_t *n_events) except +
    double gru_output_loss(const Blas &blas, const double *hidden, int N, int H,
                                 const double *out_table, const int64_t *samples, int S, int loss,
                                 double bpreg, double grad_scale, double *d_hidden, double *d_rows,
                                 int n_threads) except +
    double gru4rec_epoch(const Blas &blas, const int64_t *inputs, const int64_t *targets,
                               const uint8_t *reset, int64_t n_steps, int B, int L, int H,
                               double *hidden, double *emb, double *emb_s1, double *emb_s2, int64_t D, double *gru,
                               double *gru_s1, double *gru_s2, int64_t n_gru, double *out, double *out_s1,
                               double *out_s2, int64_t n_items, const double *neg_prob,
                               const int64_t *neg_alias, const GruSpec &spec, int n_threads,
                               int64_t *n_events) except +


def _stack_forward(floating[:, :, ::1] A0, floating[:, :, ::1] h0, const uint8_t[:, ::1] reset,
                   floating[:, :, ::1] Wx_rest, floating[:, :, ::1] Wh, floating[:, ::1] b,
                   floating[:, :, :, ::1] hs, floating[:, :, :, ::1] gates, int n_threads):
    cdef Blas blas = scipy_blas()
    cdef int steps = A0.shape[0], B = A0.shape[1], L = Wh.shape[0], H = Wh.shape[1]
    cdef floating *wx = &Wx_rest[0, 0, 0] if Wx_rest.shape[0] > 0 else NULL
    with nogil:
        gru_stack_forward(blas, steps, B, L, H, &A0[0, 0, 0], &h0[0, 0, 0], &reset[0, 0], wx,
                          &Wh[0, 0, 0], &b[0, 0], &hs[0, 0, 0, 0], &gates[0, 0, 0, 0], n_threads)


def gru_forward(X, h0, reset, Wx0, Wx_rest, Wh, b, int n_threads=1):
    """See ``fastrec.backends._contract.GRU_FORWARD_DOC``."""
    T_, B, _ = X.shape
    L, H = Wh.shape[0], Wh.shape[1]
    hs = np.empty((L, T_, B, H), X.dtype)
    gates = np.empty((L, T_, B, 3 * H), X.dtype)
    # numpy's products stay single-threaded too: an OpenBLAS worker spinning after one would
    # take a core from the kernel's threads
    with single_threaded_blas():
        A0 = np.ascontiguousarray(X @ Wx0 + b[0])
        _stack_forward(A0, h0, reset, Wx_rest, Wh, b, hs, gates, n_threads)
    return hs, gates


def _stack_backward(floating[:, :, ::1] h0, const uint8_t[:, ::1] reset,
                    floating[:, :, ::1] Wx_rest, floating[:, :, ::1] Wh,
                    floating[:, :, :, ::1] hs, floating[:, :, :, ::1] gates,
                    floating[:, :, ::1] d_top, floating[:, :, ::1] dA0, floating[:, :, ::1] dh0,
                    floating[:, :, ::1] dWx_rest, floating[:, :, ::1] dWh, floating[:, ::1] db,
                    int n_threads):
    cdef Blas blas = scipy_blas()
    cdef int steps = hs.shape[1], B = hs.shape[2], L = Wh.shape[0], H = Wh.shape[1]
    cdef floating *wx = &Wx_rest[0, 0, 0] if Wx_rest.shape[0] > 0 else NULL
    cdef floating *dwx = &dWx_rest[0, 0, 0] if dWx_rest.shape[0] > 0 else NULL
    with nogil:
        gru_stack_backward(blas, steps, B, L, H, &h0[0, 0, 0], &reset[0, 0], wx, &Wh[0, 0, 0],
                           &hs[0, 0, 0, 0], &gates[0, 0, 0, 0], &d_top[0, 0, 0], &dA0[0, 0, 0],
                           &dh0[0, 0, 0], dwx, &dWh[0, 0, 0], &db[0, 0], n_threads)


def gru_backward(X, h0, reset, Wx0, Wx_rest, Wh, b, hs, gates, d_top, int n_threads=1):
    """See ``fastrec.backends._contract.GRU_BACKWARD_DOC``."""
    dA0 = np.empty(gates.shape[1:], X.dtype)
    dh0 = np.empty_like(h0)
    dWx_rest = np.empty_like(Wx_rest)
    dWh = np.empty_like(Wh)
    db = np.empty_like(b)
    with single_threaded_blas():
        _stack_backward(h0, reset, Wx_rest, Wh, hs, gates, np.ascontiguousarray(d_top), dA0, dh0,
                        dWx_rest, dWh, db, n_threads)
        flat = dA0.reshape(-1, dA0.shape[2])
        dX = (flat @ Wx0.T).reshape(X.shape)
        dWx0 = X.reshape(-1, X.shape[2]).T @ flat
    return dX, dh0, dWx0, dWx_rest, dWh, db


def _output_loss(floating[:, ::1] hidden, floating[:, ::1] out_table, const index_t[::1] samples,
                 int loss, double bpreg, double grad_scale, floating[:, ::1] d_hidden,
                 floating[:, ::1] d_rows, int n_threads):
    cdef Blas blas = scipy_blas()
    cdef double total
    cdef int N = hidden.shape[0], H = hidden.shape[1], S = samples.shape[0]
    with nogil:
        total = gru_output_loss(blas, &hidden[0, 0], N, H, &out_table[0, 0],
                                                   &samples[0], S, loss, bpreg, grad_scale,
                                                   &d_hidden[0, 0], &d_rows[0, 0], n_threads)
    return total


def gru4rec_output_loss(hidden, out_table, samples, int loss, double bpreg, double grad_scale,
                        int n_threads=1):
    """See ``fastrec.backends._contract.GRU4REC_OUTPUT_LOSS_DOC``."""
    d_hidden = np.empty_like(hidden)
    d_rows = np.empty((samples.shape[0], out_table.shape[1]), hidden.dtype)
    with single_threaded_blas():
        total = _output_loss(hidden, out_table, samples, loss, bpreg, grad_scale, d_hidden,
                             d_rows, n_threads)
    return total, d_hidden, d_rows


def _epoch(const index_t[:, ::1] inputs, const index_t[:, ::1] targets,
           const uint8_t[:, ::1] reset, floating[:, :, ::1] hidden, floating[:, ::1] emb,
           floating[:, ::1] emb_s1, floating[:, ::1] emb_s2, floating[::1] gru_params,
           floating[::1] gru_s1, floating[::1] gru_s2, floating[:, ::1] out_table,
           floating[:, ::1] out_s1, floating[:, ::1] out_s2, const double[::1] neg_prob,
           const index_t[::1] neg_alias, spec, int n_threads):
    cdef Blas blas = scipy_blas()
    cdef GruSpec c
    cdef double total
    cdef int64_t n_events = 0
    c.embedded, c.loss, c.n_sample = spec.embedded, spec.loss, spec.n_sample
    c.bptt, c.method, c.bpreg = spec.bptt, spec.method, spec.bpreg
    c.dropout_embed, c.dropout_hidden = spec.dropout_embed, spec.dropout_hidden
    c.lr, c.momentum, c.beta1, c.beta2, c.eps = (spec.lr, spec.momentum, spec.beta1, spec.beta2,
                                                 spec.eps)
    c.step0, c.seed, c.epoch = spec.step0, spec.seed % 2**64, spec.epoch
    if inputs.shape[0] < spec.bptt:
        return 0.0, 0
    with nogil:
        total = gru4rec_epoch(
            blas, &inputs[0, 0], &targets[0, 0], &reset[0, 0], inputs.shape[0], inputs.shape[1],
            hidden.shape[0], hidden.shape[2], &hidden[0, 0, 0], &emb[0, 0], &emb_s1[0, 0],
            &emb_s2[0, 0], emb.shape[1], &gru_params[0], &gru_s1[0], &gru_s2[0],
            gru_params.shape[0], &out_table[0, 0], &out_s1[0, 0], &out_s2[0, 0],
            out_table.shape[0], &neg_prob[0], &neg_alias[0], c, n_threads, &n_events)
    return total, n_events


def gru4rec_train_epoch(inputs, targets, reset, hidden, emb, emb_s1, emb_s2, gru_params, gru_s1,
                        gru_s2, out_table, out_s1, out_s2, neg_prob, neg_alias, spec,
                        int n_threads=1):
    """See ``fastrec.backends._contract.GRU4REC_TRAIN_EPOCH_DOC``."""
    with single_threaded_blas():
        return _epoch(inputs, targets, reset, hidden, emb, emb_s1, emb_s2, gru_params, gru_s1,
                      gru_s2, out_table, out_s1, out_s2, neg_prob, neg_alias, spec, n_threads)
