// OpenMP when the build has it, a serial no-op shim otherwise, so one source builds both ways.
#pragma once
#ifdef _OPENMP
#include <omp.h>
#define FASTREC_HAVE_OPENMP 1
#else
#define FASTREC_HAVE_OPENMP 0
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_num_procs(void) { return 1; }
#endif
