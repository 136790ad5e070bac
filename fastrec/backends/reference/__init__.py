"""Dense numpy reference kernels: plain, readable math; the oracle for every other backend."""

import numpy as np

from fastrec.backends.reference.sgd import sgd_epoch

__all__ = ["probe", "sgd_epoch"]


def probe():
    return f"numpy {np.__version__}", {"threads": 1}
