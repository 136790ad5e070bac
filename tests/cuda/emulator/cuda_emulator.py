"""Build an unchanged ``.cu`` file with g++ and the CUDA-semantics emulator, launch its kernels.

``EmulatedModule`` mirrors the part of ``cupy.RawModule`` the launchers use: the same NVRTC
options (``-I``/``-D`` are passed to g++; the rest are NVRTC-only), the same ``name_expressions``,
``get_function(name)`` returning a kernel called as ``kernel(grid, block, args, shared_mem=0)``
with CuPy's argument packing: numpy arrays become pointers (the emulator runs on host memory),
numpy scalars pass their own bytes, Python ``int``/``float``/``bool`` pass as int64/float64/bool.
A size or pointer/scalar mismatch with the kernel's parameter is an error (CuPy would silently
misread it).

Builds are cached under ``$FASTREC_EMULATOR_CACHE`` (default: a per-user directory in the temp
dir), keyed by a hash of the emulator header, the source, every header under the ``-I``
directories, the options, the name expressions, the sanitizer switch and the g++ version.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

HEADER = Path(__file__).resolve().with_name("cuda_emulator.h")
ORDERS = {"forward": 0, "reverse": 1, "random": 2}
_EXTERN_SHARED = re.compile(
    r"extern\s+__shared__\s+((?:__align__\s*\(\s*\d+\s*\)\s*)?)([\w:<>\s]+?)\s*(\w+)\s*\[\s*\]\s*;")


class EmulatorError(RuntimeError):
    """A kernel broke CUDA semantics in the emulator (barrier mismatch, bad arguments, ...)."""


def cache_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"fastrec-cuda-emulator-{os.getuid()}"
    path = Path(os.environ.get("FASTREC_EMULATOR_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def rewrite_dynamic_shared(source: str) -> str:
    """``extern __shared__ T name[];`` -> a pointer to the emulator's per-launch buffer, which is
    refilled with random bytes for every block (static ``__shared__`` needs no rewrite)."""
    return _EXTERN_SHARED.sub(
        lambda m: f"{m.group(2).strip()} *const {m.group(3)} = "
                  f"reinterpret_cast<{m.group(2).strip()} *>(::cuemu::dynamic_shared());",
        source)


def _gxx_version() -> str:
    return subprocess.run(["g++", "--version"], capture_output=True, text=True,
                          check=True).stdout.splitlines()[0]


def build(source_path, options=(), name_expressions=(), *, asan=False) -> Path:
    """Compile ``source_path`` with its kernels ``name_expressions`` into a shared library."""
    source_path = Path(source_path).resolve()
    includes = [o[2:] for o in options if o.startswith("-I")]
    defines = [o for o in options if o.startswith("-D")]
    source = source_path.read_text()
    digest = hashlib.sha256()
    for part in (HEADER.read_bytes(), source.encode(), repr(tuple(options)).encode(),
                 "\0".join(name_expressions).encode(), str(asan).encode(),
                 _gxx_version().encode()):
        digest.update(part + b"\0")
    for inc in includes:
        for header in sorted(Path(inc).rglob("*.h")):
            digest.update(str(header).encode() + b"\0" + header.read_bytes() + b"\0")
    key = digest.hexdigest()[:20]
    out_dir = cache_dir() / key
    library = out_dir / ("kernels_asan.so" if asan else "kernels.so")
    if library.exists():
        return library
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}"  # concurrent builds of one key write their own files, then rename
    rewritten = rewrite_dynamic_shared(source)
    if rewritten != source:
        included = out_dir / f"{source_path.stem}.{tag}{source_path.suffix}"
        included.write_text(f'#line 1 "{source_path}"\n{rewritten}')
    else:
        included = source_path
    wrapper = out_dir / f"wrapper.{tag}.cpp"
    lines = [f'#include "{included}"']
    lines += [f"CUEMU_REGISTER({expr});" for expr in name_expressions]
    lines.append("CUEMU_EXPORTS")
    wrapper.write_text("\n".join(lines) + "\n")
    sanitizer = (["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                  "-fno-omit-frame-pointer"] if asan else [])
    partial = library.with_suffix(f".{tag}.tmp")
    command = ["g++", "-std=c++17", "-O1", "-g", "-fPIC", "-shared", "-Wall",
               "-Wno-unused-function", "-fvisibility=hidden", "-fno-gnu-unique",
               "-DFASTREC_CUDA_EMULATION", "-include", str(HEADER),
               *sanitizer, *(f"-I{inc}" for inc in includes), *defines, "-x", "c++",
               str(wrapper), "-o", str(partial)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise EmulatorError(f"g++ failed:\n{' '.join(command)}\n{result.stderr}")
    os.replace(partial, library)
    return library


class EmulatedKernel:
    def __init__(self, module: EmulatedModule, index: int, name: str, order: str, seed: int):
        if order not in ORDERS:
            raise ValueError(f"order must be one of {sorted(ORDERS)}, got {order!r}")
        self.module, self.index, self.name = module, index, name
        self.order, self.seed = order, seed
        lib = module.lib
        n = lib.cuemu_kernel_n_params(index)
        self.param_sizes = [lib.cuemu_kernel_param_size(index, p) for p in range(n)]
        self.param_is_pointer = [bool(lib.cuemu_kernel_param_is_pointer(index, p))
                                 for p in range(n)]

    def _pack(self, args):
        if len(args) != len(self.param_sizes):
            raise EmulatorError(f"{self.name}: {len(args)} arguments for "
                                f"{len(self.param_sizes)} parameters")
        buffers = []
        for position, (arg, size, is_pointer) in enumerate(
                zip(args, self.param_sizes, self.param_is_pointer, strict=True)):
            if isinstance(arg, np.ndarray):
                raw, pointer = int(arg.ctypes.data).to_bytes(8, "little"), True
            elif isinstance(arg, np.generic):
                raw, pointer = arg.tobytes(), False
            elif isinstance(arg, bool):
                raw, pointer = np.bool_(arg).tobytes(), False
            elif isinstance(arg, int):
                raw, pointer = np.int64(arg).tobytes(), False
            elif isinstance(arg, float):
                raw, pointer = np.float64(arg).tobytes(), False
            else:
                raise EmulatorError(f"{self.name}: argument {position} has unsupported type "
                                    f"{type(arg).__name__}")
            if pointer != is_pointer or len(raw) != size:
                given = "a pointer" if pointer else f"a {len(raw)}-byte scalar"
                wanted = "a pointer" if is_pointer else f"a {size}-byte scalar"
                raise EmulatorError(f"{self.name}: argument {position} is {given} "
                                    f"({type(arg).__name__}), the parameter is {wanted}")
            buffers.append(ctypes.create_string_buffer(raw, len(raw)))
        return buffers

    def __call__(self, grid, block, args, shared_mem=0):
        buffers = self._pack(tuple(args))
        pointers = (ctypes.c_void_p * max(len(buffers), 1))(
            *[ctypes.addressof(b) for b in buffers])
        dims = []
        for dim in (grid, block):
            dim = tuple(dim) if isinstance(dim, tuple | list) else (dim,)
            dims.append((ctypes.c_uint * 3)(*(int(d) for d in dim), *(1,) * (3 - len(dim))))
        status = self.module.lib.cuemu_launch(self.index, dims[0], dims[1], int(shared_mem),
                                              pointers, ORDERS[self.order], self.seed)
        if status != 0:
            raise EmulatorError(f"{self.name}: {self.module.lib.cuemu_error().decode()}")


class EmulatedModule:
    """``cupy.RawModule(code=..., options=..., name_expressions=...)`` for the emulator."""

    def __init__(self, source_path, options=(), name_expressions=(), *, asan=False):
        self.name_expressions = tuple(name_expressions)
        self.path = build(source_path, options, self.name_expressions, asan=asan)
        lib = ctypes.CDLL(str(self.path))
        lib.cuemu_kernel_param_size.restype = ctypes.c_size_t
        lib.cuemu_error.restype = ctypes.c_char_p
        lib.cuemu_launch.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                     ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int,
                                     ctypes.c_ulonglong]
        self.lib = lib

    def get_function(self, name, order="forward", seed=0) -> EmulatedKernel:
        return EmulatedKernel(self, self.name_expressions.index(name), name, order, seed)
