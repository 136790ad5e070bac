cdef extern from "omp_shim.h" nogil:
    int FASTREC_HAVE_OPENMP
    int omp_get_max_threads()
    int omp_get_num_procs()
