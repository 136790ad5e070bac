// Runs the CPU kernels' register-resident and generic paths (SGD blocks, NMF Gram matrices,
// full and observed updates, losses) on fixed pseudo-random inputs and prints two hashes of the
// outputs' bits: the NMF Frobenius full mode's (its products are fused multiply-adds where the
// ISA has FMA), then everything else's. tests/test_isa_versions.py
// builds it once per ISA level and compares the hashes across builds.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "fastrec/nmf_cpu.h"
#include "fastrec/sgd_cpu.h"

using namespace fastrec;

static uint64_t lcg_state = 12345;
static double uniform() {  // in [0, 1)
  lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(lcg_state >> 11) / 9007199254740992.0;
}

// FNV-1a over the bytes of the outputs: [0] Frobenius full mode, [1] the rest.
static uint64_t hashes[2] = {1469598103934665603ULL, 1469598103934665603ULL};
template <typename T>
static void mix(const T *p, size_t n, int which = 1) {
  const unsigned char *b = (const unsigned char *)p;
  for (size_t i = 0; i < n * sizeof(T); ++i)
    hashes[which] = (hashes[which] ^ b[i]) * 1099511628211ULL;
}

template <typename T>
static void nmf_case(int64_t k) {
  const int64_t n = 37, m = 29;
  std::vector<int32_t> indptr(n + 1, 0), indices;
  std::vector<T> data;
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < m; ++c)
      if (r != 3 && uniform() < 0.3) {  // row 3 stays empty
        indices.push_back((int32_t)c);
        data.push_back(T(0.1 + 4.0 * uniform()));
      }
    indptr[r + 1] = (int32_t)indices.size();
  }
  std::vector<T> w(n * k), h(m * k), bias(n), other_bias(m);
  for (auto &x : w) x = T(0.05 + uniform());
  for (auto &x : h) x = T(0.05 + uniform());
  for (auto &x : other_bias) x = T(uniform() - 0.5);
  std::vector<T> gram(k * k), sums(k);
  std::vector<T> scratch(std::max<int64_t>(nmf_full_scratch(k), 2 * k + m));
  nmf_gram<T>(h.data(), 0, m, k, gram.data());
  for (int64_t j = 0; j < k; ++j)
    for (int64_t l = 0; l < j; ++l) gram[j * k + l] = gram[l * k + j];
  mix(gram.data(), gram.size(), 0);
  nmf_colsum<T>(h.data(), 0, m, k, sums.data());
  for (int beta = 2; beta >= 1; --beta) {
    std::vector<T> f = w;
    nmf_full_rows<T, int32_t>(indptr.data(), indices.data(), data.data(), f.data(), h.data(),
                              beta == 2 ? gram.data() : sums.data(), 0, n, k, beta,
                              T(0.01), T(0.02), scratch.data());
    mix(f.data(), f.size(), beta == 2 ? 0 : 1);
    for (int biased = 0; biased <= (beta == 2); ++biased) {
      std::vector<T> g = w, b = bias;
      nmf_observed_rows<T, int32_t>(indptr.data(), indices.data(), data.data(), g.data(),
                                    h.data(), b.data(), other_bias.data(), T(3), 0, n, k, beta,
                                    T(0.01), T(0.02), T(0.05), biased, scratch.data());
      mix(g.data(), g.size());
      mix(b.data(), b.size());
      for (int observed = 0; observed <= 1; ++observed) {
        const double loss = nmf_loss_rows<T, int32_t>(indptr.data(), indices.data(), data.data(),
                                                      g.data(), h.data(), b.data(),
                                                      other_bias.data(), 3.0, 0, n, k, beta,
                                                      observed, biased);
        mix(&loss, 1);
      }
    }
  }
}

template <typename T>
static void sgd_case(int64_t k) {
  const int64_t n_users = 23, n_items = 19, n = 300;
  std::vector<int32_t> users(n), items(n);
  std::vector<T> ratings(n), p(n_users * k), q(n_items * k), bu(n_users, T(0)), bi(n_items, T(0));
  for (int64_t e = 0; e < n; ++e) {
    users[e] = (int32_t)(uniform() * n_users);
    items[e] = (int32_t)(uniform() * n_items);
    ratings[e] = T(1 + 4 * uniform());
  }
  for (auto &x : p) x = T(0.1 * (uniform() - 0.5));
  for (auto &x : q) x = T(0.1 * (uniform() - 0.5));
  const double sse = sgd_block(users.data(), items.data(), ratings.data(), 0, n,
                                           p.data(), q.data(), bu.data(), bi.data(), k, T(3),
                                           T(0.01), T(0.01), T(0.02), T(0.02), 1);
  mix(&sse, 1);
  mix(p.data(), p.size());
  mix(q.data(), q.size());
  mix(bu.data(), bu.size());
  mix(bi.data(), bi.size());
}

int main() {
  for (int64_t k : {5, 16, 20, 32, 48, 64, 96, 112, 128}) {
    nmf_case<float>(k);
    nmf_case<double>(k);
    sgd_case<float>(k);
    sgd_case<double>(k);
  }
  std::printf("%016llx %016llx\n", (unsigned long long)hashes[0], (unsigned long long)hashes[1]);
  return 0;
}
