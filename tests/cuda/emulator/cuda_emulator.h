// A small CUDA-semantics emulator for testing unchanged .cu files on a CPU with g++.
//
//   g++ -std=c++17 -DFASTREC_CUDA_EMULATION -include cuda_emulator.h -x c++ kernels.cu ...
//
// Blocks run one after another; the threads of a block are ucontext fibers that switch only at
// barriers and in __nanosleep. __syncthreads and the warp intrinsics (__shfl_*_sync, __syncwarp,
// __ballot_sync, ...) are checked barriers: every thread of the block (or every lane of the mask)
// must arrive at the same call site with the same mask, otherwise the launch fails with a message
// naming the sites; a thread that exits while named by a waiting barrier is an error too.
// __nanosleep lets a spin-waiting thread give way (a million of them with no other progress is
// reported as a livelock). __shared__ variables live in one linker section that is refilled with
// random bytes before each block, as is the dynamic shared buffer (the build helper rewrites
// `extern __shared__`). Threads, and blocks, run in forward, reverse or random order to expose
// missing barriers. Build with -fsanitize=address,undefined to check every access.
//
// Not emulated: blocks running at the same time (inter-block races; a kernel whose blocks wait
// for each other must also make progress with one block), timing, the memory model (fences,
// volatile, L1 coherence: every store is visible at once), FMA contraction and flush-to-zero,
// inline asm, textures, cooperative groups, half types, printf from many threads interleaving.
#pragma once

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define CUEMU_ASAN 1
#else
#define CUEMU_ASAN 0
#endif

// ---- execution-space qualifiers and built-in types ---------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static __attribute__((section("cuemu_shared")))
#define __constant__ static

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
      : x(vx), y(vy), z(vz) {}
};

constexpr int warpSize = 32;

namespace cuemu {

inline uint3 g_thread_idx{0, 0, 0};
inline uint3 g_block_idx{0, 0, 0};
inline dim3 g_block_dim;
inline dim3 g_grid_dim;
inline unsigned char *g_dynamic_shared = nullptr;

inline unsigned char *dynamic_shared() { return g_dynamic_shared; }

}  // namespace cuemu

#define threadIdx (static_cast<const uint3 &>(::cuemu::g_thread_idx))
#define blockIdx (static_cast<const uint3 &>(::cuemu::g_block_idx))
#define blockDim (static_cast<const dim3 &>(::cuemu::g_block_dim))
#define gridDim (static_cast<const dim3 &>(::cuemu::g_grid_dim))

// ---- fibers and barriers -----------------------------------------------------------------------
namespace cuemu {

enum class Op { none, syncthreads, syncwarp, shfl_idx, shfl_up, shfl_down, shfl_xor, ballot };

inline const char *op_name(Op op) {
  switch (op) {
    case Op::none: return "none";
    case Op::syncthreads: return "__syncthreads";
    case Op::syncwarp: return "__syncwarp";
    case Op::shfl_idx: return "__shfl_sync";
    case Op::shfl_up: return "__shfl_up_sync";
    case Op::shfl_down: return "__shfl_down_sync";
    case Op::shfl_xor: return "__shfl_xor_sync";
    case Op::ballot: return "__ballot_sync";
  }
  return "?";
}

struct Fiber {
  ucontext_t context;
  unsigned char *stack = nullptr;  // usable stack (a guard page sits below it)
  uint3 index{0, 0, 0};
  int linear = 0;
  bool done = false;
  bool waiting = false;
  bool sleeping = false;  // yielded in __nanosleep: runs again after the others had a turn
  Op op = Op::none;
  const char *file = nullptr;
  int line = 0;
  unsigned mask = 0;
  uint64_t value = 0;  // the bytes this lane contributes
  int arg = 0;         // source lane / delta / lane mask
  int width = 32;
  uint64_t result = 0;
};

struct State {
  std::vector<Fiber> fibers;
  ucontext_t scheduler;
  const void *scheduler_stack_bottom = nullptr;
  size_t scheduler_stack_size = 0;
  size_t stack_size = 0;
  Fiber *current = nullptr;
  long long sleeps_without_progress = 0;  // __nanosleep calls since a barrier or an exit
  std::string error;
  void (*entry_invoke)(void *, void **) = nullptr;
  void *entry_function = nullptr;
  void **entry_args = nullptr;
};

inline State g_state;

inline void switch_context(ucontext_t *from, ucontext_t *to, const void *to_bottom,
                           size_t to_size) {
#if CUEMU_ASAN
  void *fake_stack = nullptr;
  __sanitizer_start_switch_fiber(&fake_stack, to_bottom, to_size);
  swapcontext(from, to);
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#else
  (void)to_bottom;
  (void)to_size;
  swapcontext(from, to);
#endif
}

inline void yield_to_scheduler() {
  Fiber *self = g_state.current;
  switch_context(&self->context, &g_state.scheduler, g_state.scheduler_stack_bottom,
                 g_state.scheduler_stack_size);
}

inline void fail(const std::string &message) {
  if (g_state.error.empty()) g_state.error = message;
  // Never resumed: the scheduler sees the error and abandons the launch.
  yield_to_scheduler();
}

inline std::string where(const Fiber &f) {
  char buf[512];
  int n = snprintf(buf, sizeof buf, "thread (%u,%u,%u) of block (%u,%u,%u)", f.index.x,
                   f.index.y, f.index.z, g_block_idx.x, g_block_idx.y, g_block_idx.z);
  if (f.file && n > 0 && n < (int)sizeof buf)
    snprintf(buf + n, sizeof buf - n, " at %s %s:%d", op_name(f.op), f.file, f.line);
  return buf;
}

inline int lane_of(const Fiber &f) { return f.linear % 32; }

// The same barrier: the same intrinsic at the same source line (__FILE__ may not be pooled).
inline bool same_site(const Fiber &a, const Fiber &b) {
  return a.op == b.op && a.line == b.line && a.file && b.file &&
         (a.file == b.file || std::strcmp(a.file, b.file) == 0);
}

inline void resolve_warp(Fiber *const *lanes, unsigned mask) {
  for (int lane = 0; lane < 32; ++lane) {
    if (!(mask >> lane & 1u)) continue;
    Fiber &f = *lanes[lane];
    const int base = lane & ~(f.width - 1);
    int source = lane;
    bool own = false;
    switch (f.op) {
      case Op::shfl_idx: source = base + (f.arg & (f.width - 1)); break;
      case Op::shfl_up:
        own = (lane - base) < f.arg;
        source = lane - f.arg;
        break;
      case Op::shfl_down:
        own = (lane - base) + f.arg >= f.width;
        source = lane + f.arg;
        break;
      case Op::shfl_xor:
        source = lane ^ f.arg;
        own = source >= base + f.width;
        break;
      case Op::ballot: {
        uint64_t bits = 0;
        for (int other = 0; other < 32; ++other)
          if ((mask >> other & 1u) && lanes[other]->value) bits |= 1ull << other;
        f.result = bits;
        continue;
      }
      default: continue;
    }
    if (own) source = lane;
    if (source < 0 || source > 31 || !(mask >> source & 1u)) {
      char buf[128];
      snprintf(buf, sizeof buf, ": reads lane %d, which the mask 0x%08x does not name", source,
               mask);
      fail(where(f) + buf);
    }
    f.result = lanes[source]->value;
  }
  for (int lane = 0; lane < 32; ++lane)
    if (mask >> lane & 1u) lanes[lane]->waiting = false;
}

// Called by a fiber that has arrived at a barrier; releases the barrier when it is complete.
inline void try_release(Fiber &self) {
  std::vector<Fiber> &fibers = g_state.fibers;
  if (self.op == Op::syncthreads) {
    for (Fiber &f : fibers) {
      if (f.done) fail(where(self) + " waits for a thread that has exited: thread " +
                       std::to_string(f.linear));
      // A thread held at another barrier may still be released; a real mismatch deadlocks.
      if (!f.waiting || f.op != Op::syncthreads) return;
      if (!same_site(f, self))
        fail("threads wait at different __syncthreads: " + where(self) + " and " + where(f));
    }
    for (Fiber &f : fibers) f.waiting = false;
    return;
  }
  const int lane = lane_of(self);
  if (!(self.mask >> lane & 1u)) {
    char buf[64];
    snprintf(buf, sizeof buf, ": mask 0x%08x does not name the calling lane", self.mask);
    fail(where(self) + buf);
  }
  if (self.width < 1 || self.width > 32 || (self.width & (self.width - 1)))
    fail(where(self) + ": width must be a power of two up to 32");
  const int warp_base = self.linear - lane;
  Fiber *lanes[32] = {};
  for (int l = 0; l < 32; ++l) {
    if (!(self.mask >> l & 1u)) continue;
    if (warp_base + l >= (int)fibers.size())
      fail(where(self) + ": the mask names lane " + std::to_string(l) + ", past the block's end");
    Fiber &f = fibers[warp_base + l];
    if (f.done)
      fail(where(self) + ": the mask names lane " + std::to_string(l) + ", which has exited");
    if (!f.waiting || !same_site(f, self)) return;
    if (f.mask != self.mask || f.width != self.width)
      fail("lanes of one barrier pass different masks or widths: " + where(self) + " and " +
           where(f));
    lanes[l] = &f;
  }
  resolve_warp(lanes, self.mask);
}

inline uint64_t warp_op(Op op, const char *file, int line, unsigned mask, uint64_t value,
                        int arg, int width) {
  Fiber &self = *g_state.current;
  g_state.sleeps_without_progress = 0;
  self.op = op;
  self.file = file;
  self.line = line;
  self.mask = mask;
  self.value = value;
  self.arg = arg;
  self.width = width;
  self.waiting = true;
  try_release(self);
  while (self.waiting) yield_to_scheduler();
  return self.result;
}

inline void syncthreads(const char *file, int line) {
  warp_op(Op::syncthreads, file, line, 0xffffffffu, 0, 0, 32);
}

// __syncwarp(mask = all lanes) as a call site object, so the macro needs no comma elision.
struct SyncwarpAt {
  const char *file;
  int line;
  void operator()(unsigned mask = 0xffffffffu) const {
    warp_op(Op::syncwarp, file, line, mask, 0, 0, 32);
  }
};

template <typename T>
inline T shuffle(Op op, const char *file, int line, unsigned mask, T var, int arg,
                 int width = 32) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                "shuffles move values of at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &var, sizeof(T));
  bits = warp_op(op, file, line, mask, bits, arg, width);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

inline unsigned ballot(const char *file, int line, unsigned mask, int predicate) {
  return (unsigned)warp_op(Op::ballot, file, line, mask, predicate != 0, 0, 32);
}

// The one scheduling point outside barriers: a spin-wait loop must call __nanosleep so that the
// thread it waits for gets to run (a loop without it hangs the emulator, as it can a GPU).
inline void nanosleep(unsigned) {
  Fiber &self = *g_state.current;
  self.file = nullptr;  // the last barrier's site no longer describes this thread
  if (++g_state.sleeps_without_progress > 1000000)
    fail("livelock: a million __nanosleep calls without any thread reaching a barrier or "
         "exiting; last by " + where(self));
  self.sleeping = true;
  yield_to_scheduler();
}

}  // namespace cuemu

#define __syncthreads() ::cuemu::syncthreads(__FILE__, __LINE__)
#define __syncwarp(...) ::cuemu::SyncwarpAt{__FILE__, __LINE__}(__VA_ARGS__)
#define __shfl_sync(mask, var, ...) \
  ::cuemu::shuffle(::cuemu::Op::shfl_idx, __FILE__, __LINE__, mask, var, __VA_ARGS__)
#define __shfl_up_sync(mask, var, ...) \
  ::cuemu::shuffle(::cuemu::Op::shfl_up, __FILE__, __LINE__, mask, var, __VA_ARGS__)
#define __shfl_down_sync(mask, var, ...) \
  ::cuemu::shuffle(::cuemu::Op::shfl_down, __FILE__, __LINE__, mask, var, __VA_ARGS__)
#define __shfl_xor_sync(mask, var, ...) \
  ::cuemu::shuffle(::cuemu::Op::shfl_xor, __FILE__, __LINE__, mask, var, __VA_ARGS__)
#define __nanosleep(ns) ::cuemu::nanosleep(ns)
#define __ballot_sync(mask, pred) ::cuemu::ballot(__FILE__, __LINE__, mask, pred)
#define __any_sync(mask, pred) (::cuemu::ballot(__FILE__, __LINE__, mask, pred) != 0u)
#define __all_sync(mask, pred) \
  (::cuemu::ballot(__FILE__, __LINE__, mask, pred) == (unsigned)(mask))

// ---- atomics, fences, loads, math --------------------------------------------------------------
// Fibers switch only at barriers, so a read-modify-write is never interleaved.
template <typename T>
inline T atomicAdd(T *address, T value) {
  const T old = *address;
  *address = old + value;
  return old;
}
template <typename T>
inline T atomicSub(T *address, T value) {
  const T old = *address;
  *address = old - value;
  return old;
}
template <typename T>
inline T atomicMax(T *address, T value) {
  const T old = *address;
  *address = old < value ? value : old;
  return old;
}
template <typename T>
inline T atomicMin(T *address, T value) {
  const T old = *address;
  *address = value < old ? value : old;
  return old;
}
template <typename T>
inline T atomicExch(T *address, T value) {
  const T old = *address;
  *address = value;
  return old;
}
template <typename T>
inline T atomicCAS(T *address, T compare, T value) {
  const T old = *address;
  if (old == compare) *address = value;
  return old;
}
inline void __threadfence() {}
inline void __threadfence_block() {}
template <typename T>
inline T __ldg(const T *p) {
  return *p;
}
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
using std::exp;
using std::fabs;
using std::fma;
using std::log;
using std::sqrt;
using std::tanh;

// ---- launching -----------------------------------------------------------------------------------
extern "C" unsigned char __start_cuemu_shared[] __attribute__((weak));
extern "C" unsigned char __stop_cuemu_shared[] __attribute__((weak));

namespace cuemu {

// Refill shared memory with random bytes (uninstrumented: the section holds ASan's redzones).
__attribute__((no_sanitize_address)) inline void scribble(unsigned char *begin, size_t size,
                                                          std::mt19937_64 &rng) {
  for (size_t b = 0; b < size; ++b) begin[b] = (unsigned char)rng();
}

inline void fiber_main() {
#if CUEMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &g_state.scheduler_stack_bottom,
                                  &g_state.scheduler_stack_size);
#endif
  g_state.entry_invoke(g_state.entry_function, g_state.entry_args);
  Fiber &self = *g_state.current;
  self.done = true;
  g_state.sleeps_without_progress = 0;
  // A lane that exits while others wait for it at a barrier is an error.
  for (Fiber &f : g_state.fibers)
    if (f.waiting) {
      if (f.op == Op::syncthreads)
        fail(where(f) + " waits for thread " + std::to_string(self.linear) + ", which exited");
      const int base = f.linear - lane_of(f);
      if (self.linear >= base && self.linear < base + 32 && (f.mask >> lane_of(self) & 1u))
        fail(where(f) + " names lane " + std::to_string(lane_of(self)) + ", which exited");
    }
  yield_to_scheduler();
}

enum Order { forward = 0, reverse = 1, random = 2 };

struct Kernel {
  const char *name;
  void *function;
  void (*invoke)(void *, void **);
  std::vector<size_t> param_sizes;
  std::vector<int> param_is_pointer;
};

inline std::vector<Kernel> &registry() {
  static std::vector<Kernel> kernels;
  return kernels;
}

template <typename... A, size_t... Is>
void invoke_with(void (*f)(A...), void **args, std::index_sequence<Is...>) {
  f(*static_cast<std::remove_cv_t<A> *>(args[Is])...);
}

template <typename... A>
struct Registrar {
  Registrar(const char *name, void (*f)(A...)) {
    registry().push_back(Kernel{name, reinterpret_cast<void *>(f),
                                [](void *fn, void **args) {
                                  invoke_with(reinterpret_cast<void (*)(A...)>(fn), args,
                                              std::index_sequence_for<A...>{});
                                },
                                {sizeof(A)...},
                                {(int)std::is_pointer<A>::value...}});
  }
};

inline int run_block(std::vector<int> &order_buf, Order order, std::mt19937_64 &rng) {
  std::vector<Fiber> &fibers = g_state.fibers;
  for (Fiber &f : fibers) {
    f.done = f.waiting = f.sleeping = false;
    f.op = Op::none;
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack;
    f.context.uc_stack.ss_size = g_state.stack_size;
    f.context.uc_link = nullptr;
    makecontext(&f.context, fiber_main, 0);
  }
  const int n = (int)fibers.size();
  int last = order == forward ? -1 : n;
  for (;;) {
    int next = -1, n_ready = 0;
    order_buf.clear();
    for (int t = 0; t < n; ++t)
      if (!fibers[t].done && !fibers[t].waiting && !fibers[t].sleeping) order_buf.push_back(t);
    if (order_buf.empty()) {  // only sleepers can run: wake them all
      for (int t = 0; t < n; ++t)
        if (fibers[t].sleeping) {
          fibers[t].sleeping = false;
          order_buf.push_back(t);
        }
    }
    n_ready = (int)order_buf.size();
    if (n_ready == 0) {
      // Everyone left waits at a barrier that cannot complete: name every distinct site.
      std::string sites;
      for (Fiber &f : fibers)
        if (!f.done) {
          const std::string site = std::string(op_name(f.op)) + " " + f.file + ":" +
                                   std::to_string(f.line);
          if (sites.find(site) == std::string::npos) {
            char mask[32];
            snprintf(mask, sizeof mask, " (mask 0x%08x)", f.mask);
            sites += "\n  " + where(f) + mask;
          }
        }
      if (sites.empty()) return 0;
      g_state.error = "barrier mismatch (deadlock); threads wait at:" + sites;
      return 1;
    }
    // Round robin from the thread that ran last (upwards or downwards), or a random pick: each
    // thread runs to its next barrier, so warps interleave at every barrier.
    if (order == forward) {
      next = order_buf.front();
      for (int t : order_buf)
        if (t > last) {
          next = t;
          break;
        }
    } else if (order == reverse) {
      next = order_buf.back();
      for (auto t = order_buf.rbegin(); t != order_buf.rend(); ++t)
        if (*t < last) {
          next = *t;
          break;
        }
    } else {
      next = order_buf[rng() % n_ready];
    }
    last = next;
    Fiber &f = fibers[next];
    g_state.current = &f;
    g_thread_idx = f.index;
    switch_context(&g_state.scheduler, &f.context, f.stack, g_state.stack_size);
    if (!g_state.error.empty()) return 1;
  }
}

inline int launch(int kernel_id, const unsigned *grid, const unsigned *block, size_t shared_mem,
                  void **args, int order, unsigned long long seed) {
  g_state.error.clear();
  g_state.sleeps_without_progress = 0;
  const Kernel &kernel = registry()[kernel_id];
  const unsigned long long threads = (unsigned long long)block[0] * block[1] * block[2];
  if (threads == 0 || threads > 1024 || grid[0] * grid[1] * grid[2] == 0) {
    g_state.error = "invalid launch configuration (block must hold 1..1024 threads, grid > 0)";
    return 1;
  }
  if (shared_mem > 48 * 1024) {
    g_state.error = "dynamic shared memory above 48 KiB needs an opt-in attribute";
    return 1;
  }
  g_state.entry_invoke = kernel.invoke;
  g_state.entry_function = kernel.function;
  g_state.entry_args = args;
  g_block_dim = dim3(block[0], block[1], block[2]);
  g_grid_dim = dim3(grid[0], grid[1], grid[2]);
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  g_state.stack_size = (CUEMU_ASAN ? 512 : 64) * 1024;
  const size_t span = g_state.stack_size + page;
  unsigned char *stacks = (unsigned char *)mmap(nullptr, span * threads, PROT_READ | PROT_WRITE,
                                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (stacks == MAP_FAILED) {
    g_state.error = "cannot map fiber stacks";
    return 1;
  }
  g_state.fibers.assign(threads, Fiber{});
  for (unsigned long long t = 0; t < threads; ++t) {
    Fiber &f = g_state.fibers[t];
    mprotect(stacks + t * span, page, PROT_NONE);  // guard page: a stack overflow faults
    f.stack = stacks + t * span + page;
    f.linear = (int)t;
    f.index = uint3{(unsigned)(t % block[0]), (unsigned)(t / block[0] % block[1]),
                    (unsigned)(t / block[0] / block[1])};
  }
  std::vector<unsigned char> dynamic(shared_mem ? shared_mem : 1);
  g_dynamic_shared = shared_mem ? dynamic.data() : nullptr;
  const unsigned long long n_blocks = (unsigned long long)grid[0] * grid[1] * grid[2];
  std::vector<unsigned long long> block_order(n_blocks);
  for (unsigned long long b = 0; b < n_blocks; ++b) block_order[b] = b;
  std::mt19937_64 rng(seed);
  if (order == reverse) std::reverse(block_order.begin(), block_order.end());
  if (order == random) std::shuffle(block_order.begin(), block_order.end(), rng);
  std::vector<int> order_buf;
  int status = 0;
  for (unsigned long long b : block_order) {
    g_block_idx = uint3{(unsigned)(b % grid[0]), (unsigned)(b / grid[0] % grid[1]),
                        (unsigned)(b / grid[0] / grid[1])};
    if (__start_cuemu_shared)
      scribble(__start_cuemu_shared, (size_t)(__stop_cuemu_shared - __start_cuemu_shared), rng);
    if (shared_mem) scribble(dynamic.data(), shared_mem, rng);
    status = run_block(order_buf, (Order)order, rng);
    if (status) break;
  }
  g_state.fibers.clear();
  g_state.current = nullptr;
  g_dynamic_shared = nullptr;
  munmap(stacks, span * threads);
  return status;
}

}  // namespace cuemu

#define CUEMU_CAT2(a, b) a##b
#define CUEMU_CAT(a, b) CUEMU_CAT2(a, b)
// Register a kernel (a function or template instantiation) under its name expression.
#define CUEMU_REGISTER(...) \
  static ::cuemu::Registrar CUEMU_CAT(cuemu_registrar_, __COUNTER__)(#__VA_ARGS__, &__VA_ARGS__)

// Libraries are built with -fvisibility=hidden -fno-gnu-unique, so several emulated modules can
// be loaded into one process without sharing the emulator's state; only these are exported.
#define CUEMU_EXPORT __attribute__((visibility("default")))
#define CUEMU_EXPORTS                                                                          \
  extern "C" CUEMU_EXPORT int cuemu_n_kernels() { return (int)::cuemu::registry().size(); }    \
  extern "C" CUEMU_EXPORT const char *cuemu_kernel_name(int k) {                               \
    return ::cuemu::registry()[k].name;                                                        \
  }                                                                                            \
  extern "C" CUEMU_EXPORT int cuemu_kernel_n_params(int k) {                                   \
    return (int)::cuemu::registry()[k].param_sizes.size();                                     \
  }                                                                                            \
  extern "C" CUEMU_EXPORT size_t cuemu_kernel_param_size(int k, int p) {                       \
    return ::cuemu::registry()[k].param_sizes[p];                                              \
  }                                                                                            \
  extern "C" CUEMU_EXPORT int cuemu_kernel_param_is_pointer(int k, int p) {                    \
    return ::cuemu::registry()[k].param_is_pointer[p];                                         \
  }                                                                                            \
  extern "C" CUEMU_EXPORT int cuemu_launch(int k, const unsigned *grid, const unsigned *block, \
                                           size_t shared_mem, void **args, int order,          \
                                           unsigned long long seed) {                          \
    return ::cuemu::launch(k, grid, block, shared_mem, args, order, seed);                     \
  }                                                                                            \
  extern "C" CUEMU_EXPORT const char *cuemu_error() { return ::cuemu::g_state.error.c_str(); }
