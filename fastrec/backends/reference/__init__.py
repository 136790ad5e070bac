"""Dense numpy reference kernels: plain, readable math; the oracle for every other backend."""

import numpy as np

from fastrec.backends._contract import export_kernels

__all__ = ["probe", *export_kernels(globals(), __name__)]


def probe():
    return f"numpy {np.__version__}", {"threads": 1}
