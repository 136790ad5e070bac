"""Find, hash and compile the CUDA sources; nothing here touches a device until ``get_module``.

The ``.cu`` files and the headers they include are read from the installed package copy
(``fastrec/_csrc``, made by setup.py's build_py) or, in a source checkout, from the repository's
``csrc/``. :func:`compile_options` is the single list of NVRTC options: the loader compiles with
it, and the compile tests compile with it (plus the flags CuPy adds at run time), so the tests
build exactly what users run.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

# Template instantiations per source file, as NVRTC name expressions (T = factor dtype,
# I = index dtype); kernels take plain pointers and scalars only.
NAME_EXPRESSIONS: dict[str, tuple[str, ...]] = {
    "sgd": (
        "fastrec::cuda::sgd_dataflow_positions",
        *(f"fastrec::cuda::{kernel}<{t}, {i}>"
          for kernel in ("sgd_dataflow", "sgd_stratum")
          for t in ("float", "double")
          for i in ("int", "long long")),
    ),
    "svdpp": tuple(f"fastrec::cuda::{kernel}<{t}, {i}>"
                   for kernel in ("svdpp_implicit_sums", "svdpp_stratum", "svdpp_implicit_update")
                   for t in ("float", "double")
                   for i in ("int", "long long")),
    "nmf": tuple(f"fastrec::cuda::{kernel}<{t}, {i}>"
                 for kernel in ("nmf_full_rows", "nmf_observed_rows", "nmf_loss_rows")
                 for t in ("float", "double")
                 for i in ("int", "long long")),
    "gru": (
        *(f"fastrec::cuda::{kernel}<{t}>"
          for kernel in ("gru_gates_rz", "gru_gates_n", "gru_grad_gates_zn", "gru_grad_gates_r",
                         "gru_saved_states", "gru_dropout", "gru4rec_loss_rows")
          for t in ("float", "double")),
        *(f"fastrec::cuda::gru4rec_embed_rows<{t}, {i}>"
          for t in ("float", "double")
          for i in ("int", "long long")),
        *(f"fastrec::cuda::gru4rec_draw_samples<{i}>" for i in ("int", "long long")),
    ),
    "optim": (
        *(f"fastrec::cuda::{kernel}<{t}>"
          for kernel in ("optim_dense_step", "optim_sparse_pieces")
          for t in ("float", "double")),
        *(f"fastrec::cuda::optim_sort_keys<{i}>" for i in ("int", "long long")),
        *(f"fastrec::cuda::optim_sparse_step<{t}, {i}>"
          for t in ("float", "double") for i in ("int", "long long")),
    ),
    "topn": (
        *(f"fastrec::cuda::topn_mark_excluded<{t}, {i}>"
          for t in ("float", "double") for i in ("int", "long long")),
        *(f"fastrec::cuda::topn_rows<{t}>" for t in ("float", "double")),
    ),
    "ncf": (
        *(f"fastrec::cuda::{kernel}<{t}, {i}>"
          for kernel in ("ncf_gather_pairs", "ncf_sample_gather", "ncf_score",
                         "ncf_project_nonnegative")
          for t in ("float", "double")
          for i in ("int", "long long")),
        *(f"fastrec::cuda::{kernel}<{t}>"
          for kernel in ("ncf_bias_relu", "ncf_output_grads", "ncf_relu_bias_grad",
                         "ncf_column_sums", "ncf_split_mlp_grads")
          for t in ("float", "double")),
    ),
}

# What CuPy itself adds when RawModule compiles with NVRTC (besides -arch and --pch).
CUPY_RUNTIME_OPTIONS = ("-ftz=true", "--device-as-default-execution-space")

# Compute capabilities every kernel is compiled for in the tests. Volta (sm_70) needs NVRTC 12
# (the cuda12 extra): CUDA 13 dropped it.
SUPPORTED_ARCHS = ("70", "75", "80", "86", "89", "90")
LAST_NVRTC_FOR_ARCH = {"70": 12}

_C_TYPES = {"float32": "float", "float64": "double", "int32": "int", "int64": "long long"}


def source_root() -> Path:
    """The directory holding ``include/`` and ``cuda/``."""
    installed = Path(__file__).resolve().parents[2] / "_csrc"
    if (installed / "cuda").is_dir():
        return installed
    checkout = Path(__file__).resolve().parents[3] / "csrc"
    if (checkout / "cuda").is_dir():
        return checkout
    raise FileNotFoundError(f"CUDA sources not found in {installed} or {checkout}")


def include_dir() -> Path:
    return source_root() / "include"


def kernel_path(name: str) -> Path:
    return source_root() / "cuda" / f"{name}.cu"


def kernel_source(name: str) -> str:
    return kernel_path(name).read_text()


@functools.cache
def source_hash() -> str:
    """SHA-256 (16 hex digits) over every .cu and header: CuPy's disk cache keys on the source
    text and options but not on headers pulled in with -I, so the options carry this hash."""
    root = source_root()
    digest = hashlib.sha256()
    for path in sorted([*root.glob("cuda/*.cu"), *root.glob("include/**/*.h")]):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def compile_options() -> tuple[str, ...]:
    """NVRTC options for every fastrec kernel (CuPy adds -arch, -ftz=true and friends).

    ``--fmad=false``: no FMA contraction, like the CPU build (ISO C++17 mode keeps g++'s
    -ffp-contract=off), so kernels that sum in the CPU's order round exactly like it.
    """
    return ("-std=c++17", "--fmad=false", f"-I{include_dir()}",
            f"-DFASTREC_SRC_HASH=0x{source_hash()}")


def name_expression(kernel: str, dtype, index_dtype) -> str:
    """``fastrec::cuda::<kernel><T, I>`` for numpy dtypes."""
    import numpy as np

    t, i = _C_TYPES[np.dtype(dtype).name], _C_TYPES[np.dtype(index_dtype).name]
    return f"fastrec::cuda::{kernel}<{t}, {i}>"


@functools.cache
def _module(name: str, device_id: int):
    import cupy

    with cupy.cuda.Device(device_id):
        module = cupy.RawModule(code=kernel_source(name), options=compile_options(),
                                name_expressions=NAME_EXPRESSIONS[name])
        module.compile()
    return module


def get_function(name: str, expression: str):
    """The compiled kernel ``expression`` of source ``name`` on the current device (compiled by
    NVRTC at first use, memoised per device and by CuPy's disk cache)."""
    import cupy

    return _module(name, cupy.cuda.Device().id).get_function(expression)
