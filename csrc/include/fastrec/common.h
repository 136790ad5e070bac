// Portability macros shared by the C++ (Cython) and CUDA builds of fastrec's kernels.
#pragma once

#if defined(__CUDACC_RTC__)
// NVRTC has no C library headers: the fixed-width integers the kernels use, as CUDA's ABI has them.
typedef int int32_t;
typedef long long int64_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
#else
#include <stdint.h>
#endif

#if defined(__CUDACC__) || defined(__CUDACC_RTC__) || defined(FASTREC_CUDA_EMULATION)
#define FASTREC_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define FASTREC_HD static inline __attribute__((always_inline))
#else
#define FASTREC_HD static inline
#endif

// Runtime ISA dispatch for the CPU hot loops: the build stays portable (no -march=native) while
// the loaded clone uses AVX-512 or AVX2+FMA where the CPU has them.
#if !defined(__CUDACC__) && !defined(__CUDACC_RTC__) && defined(__x86_64__) && \
    defined(__GNUC__) && !defined(__clang__) && defined(__linux__) && !defined(FASTREC_NO_CLONES)
#define FASTREC_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define FASTREC_HAVE_CPU_CLONES 1
#else
#define FASTREC_CPU_CLONES
#endif
