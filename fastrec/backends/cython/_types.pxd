from libc.stdint cimport int32_t, int64_t

ctypedef fused floating:
    float
    double

ctypedef fused index_t:
    int32_t
    int64_t
