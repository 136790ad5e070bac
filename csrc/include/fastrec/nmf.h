// Per-element math of non-negative matrix factorisation by multiplicative updates (Lee & Seung
// 2001; regularised as scikit-learn's solver="mu"; observed-entries mode after Luo et al. 2014).
//
// One multiplicative step of a factor entry v with gradient split into a positive part `den`
// and a negative part `num` (gradient = den - num, both >= 0):
//   v <- v * num / (den + l1 + l2 * v)
// Frobenius: num = (X H^T)_uf, den = (W H H^T)_uf.  Kullback-Leibler: num = sum_i h_fi x_ui /
// (WH)_ui over the stored x_ui, den = sum_i h_fi.  Observed mode restricts the sums to the
// observed entries and scales l1, l2 by the row's count of observations (Surprise's |I_u|).
// The same functions serve the Cython kernels (one thread per row) and the CUDA kernels
// (csrc/cuda/nmf.cu, a warp per row).
#pragma once

#if !defined(__CUDACC_RTC__)  // NVRTC has no C library headers; log is a builtin there
#include <math.h>
#endif

#include "fastrec/common.h"

namespace fastrec {

// Floor for denominators and for (WH) at stored entries. It is float32's machine epsilon for
// both dtypes because scikit-learn uses exactly that, so fastrec follows its iterates.
constexpr double NMF_EPSILON = 1.1920928955078125e-07;

// x / (WH)_ui for the KL numerator; a tiny or zero model value is floored to avoid inf.
template <typename T>
FASTREC_HD T nmf_kl_ratio(T x, T dot) {
  return x / (dot < T(NMF_EPSILON) ? T(NMF_EPSILON) : dot);
}

// Denominator with the L1 and L2 penalty terms (summed in scikit-learn's order).
template <typename T>
FASTREC_HD T nmf_regularised_denominator(T den, T value, T l1, T l2) {
  return (den + l1) + l2 * value;
}

// The multiplicative step. A zero denominator (an all-zero row or component) is replaced by
// the floor, so the entry becomes 0 * something instead of NaN.
// num / den overflows where den has underflowed next to a normal num: an entry dying out (tiny
// or zero, so its own penalty and products vanish) that a rating pulls back, as in observed
// mode with biases, where targets change sign. value * inf is then inf, or NaN for a zero
// entry. Only then the same quotient is taken as num / (den / value), which stays finite when
// den holds the L2 term l2 * value (den / value >= l2), and a zero entry stays zero (a fixed
// point of the step). A finite step keeps its bits. A non-finite num or den (the input's scale
// overflowing the dtype) keeps its non-finite step, so the fit loop sees the divergence.
template <typename T>
FASTREC_HD T nmf_mu_step(T value, T num, T den) {
  const T safe = den == T(0) ? T(NMF_EPSILON) : den;
  const T stepped = value * (num / safe);
  if (stepped - stepped == T(0)) return stepped;  // finite
  if (!(num - num == T(0)) || !(safe - safe == T(0))) return stepped;
  return value > T(0) ? num / (safe / value) : T(0);
}

// Observed Frobenius with biases: the target of the dot product is t = r - mu - b_u - b_i,
// which may be negative. Its positive part joins the numerator and its negative part the
// denominator, which keeps the step non-negative and still monotone (the majoriser's diagonal
// only grows). Without biases t = r >= 0 and this is the plain Lee & Seung step.
template <typename T>
FASTREC_HD T nmf_positive_part(T t) {
  return t > T(0) ? t : T(0);
}

template <typename T>
FASTREC_HD T nmf_negative_part(T t) {
  return t < T(0) ? -t : T(0);
}

// Exact minimiser of 1/2 sum_i (res_i - b)^2 + 1/2 reg_bias * count * b^2 over the bias b,
// where residual_sum = sum_i res_i over the row's `count` observations; 0 for an empty row.
template <typename T>
FASTREC_HD T nmf_bias_solve(T residual_sum, T count, T reg_bias) {
  return count > T(0) ? residual_sum / (count + count * reg_bias) : T(0);
}

// Kullback-Leibler loss of one stored entry without the model term: x log(x / wh) - x, with wh
// floored as in nmf_kl_ratio; entries with x == 0 contribute 0 here.
FASTREC_HD double nmf_kl_entry(double x, double dot) {
  if (x <= 0.0) return 0.0;
  const double wh = dot < NMF_EPSILON ? NMF_EPSILON : dot;
  return x * log(x / wh) - x;
}

}  // namespace fastrec
