"""What the distributed estimators share: the local estimator's parameters, and the checks of
the parameters a cluster fit adds or refuses."""

from __future__ import annotations

import inspect

import numpy as np

from fastrec.exceptions import NotFittedError
from fastrec.models._base import check_positive, store_params


class ClusterEstimator:
    """Takes the parameters of ``local`` (same names, order, meanings and defaults; derived from
    its signature, so they cannot drift apart) plus a keyword-only ``client``."""

    local: type

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        local = inspect.signature(cls.local.__init__)
        client = inspect.Parameter("client", inspect.Parameter.KEYWORD_ONLY, default=None)
        signature = local.replace(parameters=[*local.parameters.values(), client])

        def __init__(self, *args, **kwargs):
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            store_params(self, bound.arguments)

        __init__.__signature__ = signature
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        cls.__init__ = __init__
        cls._param_names = tuple(name for name in signature.parameters if name != "self")

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._param_names}

    def _local_params(self) -> dict:
        params = self.get_params()
        params.pop("client")
        return params

    def _to_local(self, fitted, include_seen: bool, **overrides):
        """An ordinary fitted ``local`` estimator: this model's parameters (with ``overrides``),
        the ``fitted`` attributes copied, and the training pattern gathered from the cluster as
        ``seen_`` with ``include_seen`` (None without)."""
        if not hasattr(self, "n_users_"):
            raise NotFittedError(
                f"this fastrec.dask.{type(self).__name__} is not fitted yet: call fit first")
        model = self.local(**{**self._local_params(), **overrides})
        for name in fitted:
            value = getattr(self, name)
            setattr(model, name, value.copy() if isinstance(value, (np.ndarray, list)) else value)
        model.seen_ = self._seen_pattern() if include_seen else None
        return model

    def _check_cluster_params(self, stopping_hint: str) -> None:
        """The parameters a distributed fit adds to (or refuses from) the local estimator's."""
        if self.n_threads is not None:
            check_positive("n_threads", self.n_threads, integer=True)
        if self.early_stopping:
            raise ValueError(
                f"early_stopping=True is not available in fastrec.dask.{type(self).__name__}: "
                "it stops on a held-out split (validation_data, or validation_fraction of the "
                "ratings), and the distributed fit neither takes validation_data nor holds "
                f"ratings out; {stopping_hint} (validation_fraction and n_iter_no_change are "
                "accepted, as fastrec's parameters, and unused)")
        if self.backend == "cuda":
            raise ValueError("fastrec.dask runs the CPU kernels on the workers: backend must be "
                             "'auto', 'cython', 'numba' or 'numpy'")
