// The blocks of one stratified epoch in dataflow order, shared by the MF (sgd_cpu.h) and SVD++
// (svdpp_cpu.h) CPU epochs.
//
// Blocks are handed out in schedule order (a ticket counter); a block waits only for the
// previous scheduled block on its own user block and on its own item block. Every user/item
// block therefore sees its blocks in schedule order, blocks on disjoint rows and columns commute,
// and the result equals the sequential schedule bit for bit at any thread count. Unlike a
// barrier per stratum, a thread that the OS descheduled only delays the blocks that depend on
// it, which keeps two threads useful on a busy machine. Block b covers user block b / G and item
// block b % G, where G * G is the number of blocks.
#pragma once

#include <atomic>
#include <vector>

#include <sched.h>

#include "fastrec/common.h"

namespace fastrec {

class BlockDataflow {
 public:
  // schedule: the epoch's n_tickets block ids in order (-1: an empty slot); grid: G.
  BlockDataflow(const int64_t *schedule, int64_t n_tickets, int64_t grid)
      : schedule_(schedule), n_tickets_(n_tickets), after_row_(n_tickets, -1),
        after_col_(n_tickets, -1), done_(n_tickets), next_ticket_(0) {
    std::vector<int64_t> last_row(grid, -1), last_col(grid, -1);
    for (int64_t t = 0; t < n_tickets; ++t) {
      const int64_t b = schedule[t];
      if (b < 0) continue;
      after_row_[t] = last_row[b / grid];
      after_col_[t] = last_col[b % grid];
      last_row[b / grid] = last_col[b % grid] = t;
    }
    for (auto &d : done_) d.store(0, std::memory_order_relaxed);
  }

  // Called by every thread of the enclosing parallel region (or by one, serially): takes tickets
  // until none is left and calls block(t, b) for each scheduled block b once the blocks it waits
  // for are done.
  template <typename Block>
  void run(Block &&block) {
    for (;;) {
      const int64_t t = next_ticket_.fetch_add(1, std::memory_order_relaxed);
      if (t >= n_tickets_) break;
      const int64_t b = schedule_[t];
      if (b >= 0) {
        for (int spins = 0; !ready(t); ++spins) {
          if (spins > 64) sched_yield();  // let a descheduled producer run
        }
        block(t, b);
      }
      done_[t].store(1, std::memory_order_release);
    }
  }

 private:
  bool ready(int64_t t) const {
    return (after_row_[t] < 0 || done_[after_row_[t]].load(std::memory_order_acquire)) &&
           (after_col_[t] < 0 || done_[after_col_[t]].load(std::memory_order_acquire));
  }

  const int64_t *schedule_;
  int64_t n_tickets_;
  std::vector<int64_t> after_row_, after_col_;
  std::vector<std::atomic<int>> done_;
  std::atomic<int64_t> next_ticket_;
};

}  // namespace fastrec
