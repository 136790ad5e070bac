"""Cython + OpenMP kernels (compiled at install); the per-element math is in csrc/include."""

from fastrec.backends._contract import export_kernels
from fastrec.backends._cpu_layout import row_width
from fastrec.backends.cython._info import build_info

__all__ = ["probe", "row_width", *export_kernels(globals(), __name__, prefix="_")]


def probe():
    info = build_info()
    return f"g++ {info['compiler']}", {
        "openmp": "on" if info["openmp"] else "off (serial build)",
        "threads": info["max_threads"],
        "isa": info["isa"],
    }
