// The O(nnz) data path on the CPU: dense id ranges, the user-major pattern (seen items, duplicate
// check) and the SGD block layout, as counting sorts. Every routine is a stable sort or a pure
// map, so its result is fixed by its inputs alone: the same at any thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace fastrec {

// Contiguous chunk t of [0, n) for n_chunks workers (static, so a chunk's histogram and its
// scatter see the same entries).
inline void chunk_range(int64_t n, int64_t n_chunks, int64_t t, int64_t &begin, int64_t &end) {
    begin = n * t / n_chunks;
    end = n * (t + 1) / n_chunks;
}

// Dense indices of small non-negative integer ids without sorting: ``present`` (zeroed,
// length max_id + 1) marks the ids that occur, its prefix count is each id's rank, and
// index[j] = rank[raw[j]]. Writes the sorted distinct ids to ``ids`` (room for max_id + 1) and
// returns their number. ``rank`` has length max_id + 1.
template <class R, class I>
int64_t dense_ranks(const R *raw, int64_t n, int64_t max_id, uint8_t *present, I *rank,
                    int64_t *ids, I *index, int n_threads) {
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t j = 0; j < n; ++j) {
        // Many threads may store the same 1; relaxed atomics keep that well defined.
        __atomic_store_n(&present[raw[j]], uint8_t(1), __ATOMIC_RELAXED);
    }
    int64_t n_ids = 0;
    for (int64_t v = 0; v <= max_id; ++v) {
        rank[v] = static_cast<I>(n_ids);
        if (present[v]) ids[n_ids++] = v;
    }
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t j = 0; j < n; ++j) index[j] = rank[raw[j]];
    return n_ids;
}

// User-major pattern of (users, items): ``indptr`` (int64[n_users + 1]) and ``indices`` (each
// row's items in increasing order, I[nnz]). ``order`` (P[nnz]) receives the input positions in
// the same order; with ``with_order`` false it is only scratch for the row sort. Returns the
// number of rows holding a repeated item (0: no duplicate pairs).
template <class I, class P>
int64_t user_pattern(const I *users, const I *items, int64_t nnz, int64_t n_users,
                     int64_t *indptr, I *indices, P *order, int with_order, int n_threads) {
    std::fill(indptr, indptr + n_users + 1, int64_t(0));
    for (int64_t j = 0; j < nnz; ++j) ++indptr[users[j] + 1];
    for (int64_t u = 0; u < n_users; ++u) indptr[u + 1] += indptr[u];
    {
        std::vector<int64_t> cursor(indptr, indptr + n_users);
        for (int64_t j = 0; j < nnz; ++j) order[cursor[users[j]]++] = static_cast<P>(j);
    }
    int64_t repeated = 0;
#pragma omp parallel for schedule(dynamic, 256) reduction(+ : repeated) num_threads(n_threads)
    for (int64_t u = 0; u < n_users; ++u) {
        const int64_t b = indptr[u], e = indptr[u + 1];
        if (with_order) {
            // (item, position) order: a pair's occurrences end up adjacent, first one first.
            std::sort(order + b, order + e, [items](P x, P y) {
                return items[x] < items[y] || (items[x] == items[y] && x < y);
            });
            for (int64_t p = b; p < e; ++p) indices[p] = items[order[p]];
        } else {
            for (int64_t p = b; p < e; ++p) indices[p] = items[order[p]];
            std::sort(indices + b, indices + e);
        }
        for (int64_t p = b + 1; p < e; ++p) {
            if (indices[p] == indices[p - 1]) {
                ++repeated;
                break;
            }
        }
    }
    return repeated;
}

// The SGD block layout (see fastrec/_algorithms/sgd_schedule.py): rating j moves to working
// rows u = user_rows[users[j]], i = item_rows[items[j]], block (u*G / n_users, i*G / n_items);
// blocks are stored in row-major grid order, a block's ratings sorted by (u, keys[j], j), and
// the block's two halves are interleaved rating by rating. All products stay below 2^63 for
// G <= 2^20 and up to 2^42 users or items; no key packs several fields.
//
// Pass 1 deals the ratings into the G row blocks (a stable counting sort, parallel over
// contiguous chunks with one histogram each); pass 2 handles each row block on its own thread:
// a counting sort by user, a stable one by column block, then each (block, user) run by key.
template <class I, class T, class P>
void block_layout(const I *users, const I *items, const T *ratings, int64_t nnz,
                  const int64_t *user_rows, const int64_t *item_rows, int64_t n_users,
                  int64_t n_items, int64_t grid, const uint32_t *keys, I *out_users,
                  I *out_items, T *out_ratings, int64_t *block_ptr, P *perm, int n_threads) {
    const int64_t g = grid;
    auto row_block = [&](int64_t j) { return user_rows[users[j]] * g / n_users; };
    auto first_user = [&](int64_t r) { return (r * n_users + g - 1) / g; };
    const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(n_threads, nnz / 65536 + 1));
    std::vector<int64_t> hist(static_cast<size_t>(chunks * g), 0);
#pragma omp parallel for schedule(static, 1) num_threads(n_threads)
    for (int64_t t = 0; t < chunks; ++t) {
        int64_t b, e;
        chunk_range(nnz, chunks, t, b, e);
        int64_t *h = hist.data() + t * g;
        for (int64_t j = b; j < e; ++j) ++h[row_block(j)];
    }
    std::vector<int64_t> seg(static_cast<size_t>(g + 1), 0);
    {
        int64_t total = 0;
        for (int64_t r = 0; r < g; ++r) {
            seg[r] = total;
            for (int64_t t = 0; t < chunks; ++t) {
                const int64_t c = hist[t * g + r];
                hist[t * g + r] = total;
                total += c;
            }
        }
        seg[g] = total;
    }
#pragma omp parallel for schedule(static, 1) num_threads(n_threads)
    for (int64_t t = 0; t < chunks; ++t) {
        int64_t b, e;
        chunk_range(nnz, chunks, t, b, e);
        int64_t *cursor = hist.data() + t * g;
        for (int64_t j = b; j < e; ++j) perm[cursor[row_block(j)]++] = static_cast<P>(j);
    }
    block_ptr[g * g] = nnz;
#pragma omp parallel num_threads(n_threads)
    {
        std::vector<P> tmp;
        std::vector<int64_t> count;
#pragma omp for schedule(dynamic, 1)
        for (int64_t r = 0; r < g; ++r) {
            const int64_t b = seg[r], m = seg[r + 1] - seg[r];
            const int64_t u0 = first_user(r), n_r = first_user(r + 1) - u0;
            P *segment = perm + b;
            tmp.resize(static_cast<size_t>(m));
            // Stable counting sort by user into tmp.
            count.assign(static_cast<size_t>(n_r + 1), 0);
            for (int64_t p = 0; p < m; ++p) ++count[user_rows[users[segment[p]]] - u0 + 1];
            for (int64_t u = 0; u < n_r; ++u) count[u + 1] += count[u];
            for (int64_t p = 0; p < m; ++p) {
                const P j = segment[p];
                tmp[count[user_rows[users[j]] - u0]++] = j;
            }
            // Stable counting sort by column block back into the segment.
            count.assign(static_cast<size_t>(g + 1), 0);
            for (int64_t p = 0; p < m; ++p) ++count[item_rows[items[tmp[p]]] * g / n_items + 1];
            for (int64_t c = 0; c < g; ++c) {
                count[c + 1] += count[c];
                block_ptr[r * g + c] = b + count[c];
            }
            for (int64_t p = 0; p < m; ++p) {
                const P j = tmp[p];
                segment[count[item_rows[items[j]] * g / n_items]++] = j;
            }
            // Order each (block, user) run by key; equal keys keep input order (stable).
            auto by_key = [keys](P x, P y) { return keys[x] < keys[y]; };
            for (int64_t p = 0; p < m;) {
                const int64_t u = user_rows[users[segment[p]]];
                const int64_t c = item_rows[items[segment[p]]] * g / n_items;
                int64_t q = p + 1;
                while (q < m && user_rows[users[segment[q]]] == u &&
                       item_rows[items[segment[q]]] * g / n_items == c)
                    ++q;
                if (q - p > 32) {
                    std::stable_sort(segment + p, segment + q, by_key);
                } else {
                    // Runs are short (a user's ratings in one block): insertion sort, which is
                    // stable and allocates nothing.
                    for (int64_t a = p + 1; a < q; ++a) {
                        const P x = segment[a];
                        int64_t z = a;
                        for (; z > p && by_key(x, segment[z - 1]); --z) segment[z] = segment[z - 1];
                        segment[z] = x;
                    }
                }
                p = q;
            }
            // Write the blocks, their two halves interleaved: position k of the first half
            // (length h) goes to slot 2k, position k of the second half to slot 2(k - h) + 1.
            for (int64_t c = 0; c < g; ++c) {
                const int64_t start = block_ptr[r * g + c];
                const int64_t n_block = (c + 1 < g ? block_ptr[r * g + c + 1] : b + m) - start;
                const int64_t half = (n_block + 1) / 2;
                for (int64_t k = 0; k < n_block; ++k) {
                    const P j = segment[start - b + k];
                    const int64_t slot = start + (k < half ? 2 * k : 2 * (k - half) + 1);
                    out_users[slot] = static_cast<I>(user_rows[users[j]]);
                    out_items[slot] = static_cast<I>(item_rows[items[j]]);
                    out_ratings[slot] = ratings[j];
                }
            }
        }
    }
}

}  // namespace fastrec
