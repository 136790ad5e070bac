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
// returns their number. ``rank`` has length max_id + 1. When every id in [0, max_id] occurs the
// index is raw itself: ``index`` is then left untouched (the caller reuses raw).
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
    if (n_ids == max_id + 1) return n_ids;
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t j = 0; j < n; ++j) index[j] = rank[raw[j]];
    return n_ids;
}

// User-major pattern of (users, items): ``indptr`` (int64[n_users + 1]) and ``indices`` (each
// row's items in increasing order, I[nnz]). With ``order`` (P[nnz], else null) it also gives the
// input position of each entry, pairs sorted by (user, item, position), so a pair's occurrences
// are adjacent, first one first. Returns the number of rows holding a repeated item (0: no
// duplicate pairs). The counting sort by user runs over contiguous chunks, one histogram each,
// when the histograms stay small next to the data.
template <class I, class P>
int64_t user_pattern(const I *users, const I *items, int64_t nnz, int64_t n_users,
                     int64_t *indptr, I *indices, P *order, int n_threads) {
    const int64_t chunks =
        std::max<int64_t>(1, std::min<int64_t>(n_threads, nnz / (4 * (n_users + 1))));
    std::vector<int64_t> hist(static_cast<size_t>(chunks * n_users), 0);
#pragma omp parallel for schedule(static, 1) num_threads(n_threads)
    for (int64_t t = 0; t < chunks; ++t) {
        int64_t b, e;
        chunk_range(nnz, chunks, t, b, e);
        int64_t *h = hist.data() + t * n_users;
        for (int64_t j = b; j < e; ++j) ++h[users[j]];
    }
    indptr[0] = 0;
    for (int64_t u = 0; u < n_users; ++u) {
        int64_t total = indptr[u];
        for (int64_t t = 0; t < chunks; ++t) {
            const int64_t c = hist[t * n_users + u];
            hist[t * n_users + u] = total;
            total += c;
        }
        indptr[u + 1] = total;
    }
#pragma omp parallel for schedule(static, 1) num_threads(n_threads)
    for (int64_t t = 0; t < chunks; ++t) {
        int64_t b, e;
        chunk_range(nnz, chunks, t, b, e);
        int64_t *cursor = hist.data() + t * n_users;
        if (order) {
            for (int64_t j = b; j < e; ++j) order[cursor[users[j]]++] = static_cast<P>(j);
        } else {
            for (int64_t j = b; j < e; ++j) indices[cursor[users[j]]++] = items[j];
        }
    }
    int64_t repeated = 0;
#pragma omp parallel for schedule(dynamic, 256) reduction(+ : repeated) num_threads(n_threads)
    for (int64_t u = 0; u < n_users; ++u) {
        const int64_t b = indptr[u], e = indptr[u + 1];
        if (order) {
            std::sort(order + b, order + e, [items](P x, P y) {
                return items[x] < items[y] || (items[x] == items[y] && x < y);
            });
            for (int64_t p = b; p < e; ++p) indices[p] = items[order[p]];
        } else {
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
// Pass 1 deals the ratings, already in working rows, into the G row blocks straight into the
// output arrays: a stable counting sort over contiguous pieces of the input, one histogram each
// (layout_row_counts), then the scatter (layout_deal), the keys following into ``sorted_keys``.
// The scatter takes a run of pieces at a time with only that run's keys, so the caller can draw
// the keys run by run instead of holding all nnz of them (the result does not depend on how the
// pieces are cut or run: the sort is stable). A row block's ratings then occupy exactly the
// output range its blocks will, so pass 2 (layout_blocks) handles each row block on its own
// thread in a private buffer: a counting sort by user, a stable one by column block, each
// (block, user) run by key, then the interleaved write back to the same range.
template <class I, class T>
struct LayoutEntry {
    I user;
    I item;
    uint32_t key;
    T rating;
};

// hist (int64[n_pieces * G]) gets each piece's first output position per row block and seg
// (int64[G + 1]) the row blocks' output ranges; piece p covers input [p * piece, (p+1) * piece).
template <class I>
void layout_row_counts(const I *users, int64_t nnz, const int64_t *user_rows, int64_t n_users,
                       int64_t grid, int64_t piece, int64_t *hist, int64_t *seg,
                       int n_threads) {
    const int64_t g = grid, n_pieces = (nnz + piece - 1) / piece;
    std::fill(hist, hist + n_pieces * g, int64_t(0));
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads)
    for (int64_t t = 0; t < n_pieces; ++t) {
        const int64_t e = std::min(nnz, (t + 1) * piece);
        int64_t *h = hist + t * g;
        for (int64_t j = t * piece; j < e; ++j) ++h[user_rows[users[j]] * g / n_users];
    }
    int64_t total = 0;
    for (int64_t r = 0; r < g; ++r) {
        seg[r] = total;
        for (int64_t t = 0; t < n_pieces; ++t) {
            const int64_t c = hist[t * g + r];
            hist[t * g + r] = total;
            total += c;
        }
    }
    seg[g] = total;
}

// Scatters pieces [first, last) (keys: uint32 of input positions first * piece onwards).
template <class I, class T>
void layout_deal(const I *users, const I *items, const T *ratings, int64_t nnz,
                 const int64_t *user_rows, const int64_t *item_rows, int64_t n_users,
                 int64_t grid, int64_t piece, int64_t first, int64_t last, const uint32_t *keys,
                 int64_t *hist, I *out_users, I *out_items, T *out_ratings,
                 uint32_t *sorted_keys, int n_threads) {
    const int64_t g = grid, offset = first * piece;
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads)
    for (int64_t t = first; t < last; ++t) {
        const int64_t e = std::min(nnz, (t + 1) * piece);
        int64_t *cursor = hist + t * g;
        for (int64_t j = t * piece; j < e; ++j) {
            const int64_t u = user_rows[users[j]];
            const int64_t p = cursor[u * g / n_users]++;
            out_users[p] = static_cast<I>(u);
            out_items[p] = static_cast<I>(item_rows[items[j]]);
            out_ratings[p] = ratings[j];
            sorted_keys[p] = keys[j - offset];
        }
    }
}

template <class I, class T>
void layout_blocks(I *out_users, I *out_items, T *out_ratings, const uint32_t *sorted_keys,
                   int64_t nnz, int64_t n_users, int64_t n_items, int64_t grid,
                   const int64_t *seg, int64_t *block_ptr, int n_threads) {
    using Entry = LayoutEntry<I, T>;
    const int64_t g = grid;
    auto first_user = [&](int64_t r) { return (r * n_users + g - 1) / g; };
    block_ptr[g * g] = nnz;
#pragma omp parallel num_threads(n_threads)
    {
        std::vector<Entry> a, z;
        std::vector<int64_t> count;
        std::vector<int32_t> column;
#pragma omp for schedule(dynamic, 1)
        for (int64_t r = 0; r < g; ++r) {
            const int64_t b = seg[r], m = seg[r + 1] - seg[r];
            const int64_t u0 = first_user(r), n_r = first_user(r + 1) - u0;
            a.resize(static_cast<size_t>(m));
            z.resize(static_cast<size_t>(m));
            column.resize(static_cast<size_t>(m));
            // Stable counting sort by user into a (the entries arrive in input order).
            count.assign(static_cast<size_t>(n_r + 1), 0);
            for (int64_t p = b; p < b + m; ++p) ++count[out_users[p] - u0 + 1];
            for (int64_t u = 0; u < n_r; ++u) count[u + 1] += count[u];
            for (int64_t p = b; p < b + m; ++p) {
                a[count[out_users[p] - u0]++] =
                    Entry{out_users[p], out_items[p], sorted_keys[p], out_ratings[p]};
            }
            // Stable counting sort by column block into z.
            count.assign(static_cast<size_t>(g + 1), 0);
            for (int64_t p = 0; p < m; ++p) {
                column[p] = static_cast<int32_t>(a[p].item * g / n_items);
                ++count[column[p] + 1];
            }
            for (int64_t c = 0; c < g; ++c) {
                count[c + 1] += count[c];
                block_ptr[r * g + c] = b + count[c];
            }
            for (int64_t p = 0; p < m; ++p) z[count[column[p]]++] = a[p];
            // Order each (block, user) run by key; equal keys keep input order (stable).
            auto by_key = [](const Entry &x, const Entry &y) { return x.key < y.key; };
            for (int64_t c = 0; c < g; ++c) {
                const int64_t end = (c + 1 < g ? block_ptr[r * g + c + 1] : b + m) - b;
                for (int64_t p = block_ptr[r * g + c] - b; p < end;) {
                    int64_t q = p + 1;
                    while (q < end && z[q].user == z[p].user) ++q;
                    if (q - p > 32) {
                        std::stable_sort(z.begin() + p, z.begin() + q, by_key);
                    } else {
                        // Runs are short (a user's ratings in one block): insertion sort,
                        // which is stable and allocates nothing.
                        for (int64_t s = p + 1; s < q; ++s) {
                            const Entry x = z[s];
                            int64_t w = s;
                            for (; w > p && by_key(x, z[w - 1]); --w) z[w] = z[w - 1];
                            z[w] = x;
                        }
                    }
                    p = q;
                }
            }
            // Write the blocks, their two halves interleaved: position k of the first half
            // (length h) goes to slot 2k, position k of the second half to slot 2(k - h) + 1.
            for (int64_t c = 0; c < g; ++c) {
                const int64_t start = block_ptr[r * g + c];
                const int64_t n_block = (c + 1 < g ? block_ptr[r * g + c + 1] : b + m) - start;
                const int64_t half = (n_block + 1) / 2;
                const Entry *src = z.data() + (start - b);
                for (int64_t k = 0; k < n_block; ++k) {
                    const int64_t slot = start + (k < half ? 2 * k : 2 * (k - half) + 1);
                    out_users[slot] = src[k].user;
                    out_items[slot] = src[k].item;
                    out_ratings[slot] = src[k].rating;
                }
            }
        }
    }
}

}  // namespace fastrec
