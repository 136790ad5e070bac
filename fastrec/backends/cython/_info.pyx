"""Build facts of the Cython backend: compiler, OpenMP on/off, threads and the ISA clone in use."""

from fastrec.backends.cython._openmp cimport FASTREC_HAVE_OPENMP, omp_get_max_threads, omp_get_num_procs

cdef extern from *:
    """
    #include "fastrec/common.h"
    static const char *fastrec_compiler = __VERSION__;
    static const char *fastrec_isa(void) {
    #if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(FASTREC_NO_CLONES)
      __builtin_cpu_init();
      if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4 (AVX-512)";
      if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3 (AVX2+FMA)";
      return "x86-64 baseline";
    #else
      return "compiler default (no runtime dispatch)";
    #endif
    }
    """
    const char *fastrec_compiler
    const char *fastrec_isa()


def build_info():
    return {
        "compiler": fastrec_compiler.decode(),
        "openmp": bool(FASTREC_HAVE_OPENMP),
        "max_threads": omp_get_max_threads(),
        "num_procs": omp_get_num_procs(),
        "isa": fastrec_isa().decode(),
    }
