"""The contract validators take device arrays (the emulator's CuPy stand-ins) and reject bad
input there with the numpy messages, and the CUDA contract functions reject it through the same
validators before touching the device."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fastrec.backends import _contract
from fastrec.backends._contract import ContractError
from tests.cuda.helpers import DeviceArray, FakeCupy, make_sgd_problem
from tests.cuda.ncf_helpers import random_batch
from tests.cuda.nmf_helpers import make_nmf_problem


@pytest.fixture(autouse=True)
def fake_cupy(monkeypatch):
    """``import cupy`` gives the host stand-in: the validators' reductions on device arrays
    run in its module and return device arrays."""
    monkeypatch.setitem(sys.modules, "cupy", FakeCupy())


def _device(args: dict) -> dict:
    return {k: np.array(v).view(DeviceArray) if isinstance(v, np.ndarray) else v
            for k, v in args.items()}


def _message(check, args: dict) -> str:
    with pytest.raises(ContractError) as info:
        check(**args)
    return str(info.value)


def _sgd_args():
    data, factors, _ = make_sgd_problem(nnz=60, k=4)
    return {**data, **dict(zip(("user_factors", "item_factors", "user_bias", "item_bias"),
                               factors, strict=True))}


def _nmf_args():
    (indptr, indices, data), factors, other, bias, other_bias = make_nmf_problem(k=3)
    return {"indptr": indptr, "indices": indices, "data": data, "factors": factors,
            "other": other, "bias": bias, "other_bias": other_bias}


def _ncf_args():
    users, items, _, user_emb, item_emb, _, _ = random_batch(np.float64, np.int32, 4, [8, 6, 3])
    return {"users": users, "items": items, "user_emb": user_emb, "item_emb": item_emb}


def _sparse_args():
    table = np.zeros((10, 3))
    return {"table": table, "rows": np.array([1, 4, 4], np.int64),
            "row_grads": np.ones((3, 3)), "m": np.zeros_like(table), "v": np.zeros_like(table)}


def _sparse_check(table, rows, row_grads, m, v, values=True):
    _contract.check_sparse_step(table, rows, row_grads, m, v, values=values)


def _set(name, value_of):
    return lambda a: {**a, name: value_of(a)}


def _poke(name, position, value):
    def change(a):
        changed = a[name].copy()
        changed[position] = value
        return {**a, name: changed}

    return change


CASES = {
    "sgd": (_contract.check_sgd_epoch, _sgd_args, [
        _set("ratings", lambda a: a["ratings"].astype(np.float32)),
        _set("items", lambda a: a["items"].astype(np.int64)),
        _set("item_factors", lambda a: a["item_factors"][:, :3].copy()),
        _set("user_factors", lambda a: np.asfortranarray(a["user_factors"])),
        _set("block_ptr", lambda a: a["block_ptr"][:-2]),
        _poke("users", 3, 10**6),
        _poke("items", 0, -1),
        _poke("block_ptr", 2, 10**6),
        _set("schedule", lambda a: a["schedule"] + 1000),
        _set("schedule", lambda a: np.repeat(a["schedule"][:, :1], 2, axis=1)),
    ]),
    "nmf": (_contract.check_nmf, _nmf_args, [
        _set("data", lambda a: a["data"].astype(np.float32)),
        _set("indices", lambda a: a["indices"].astype(np.int64)),
        _set("other", lambda a: a["other"][:, :2].copy()),
        _set("indptr", lambda a: a["indptr"][:-1]),
        _set("bias", lambda a: a["bias"][:-1]),
        _poke("indices", 0, 10**6),
        _poke("indptr", 1, 10**6),
    ]),
    "ncf": (_contract.check_ncf_batch, _ncf_args, [
        _set("items", lambda a: a["items"].astype(np.int64)),
        _set("users", lambda a: a["users"].astype(np.float64)),
        _poke("users", 0, 10**6),
        _poke("items", 5, -3),
    ]),
    "sparse_step": (_sparse_check, _sparse_args, [
        _set("rows", lambda a: a["rows"].astype(np.float64)),
        _set("row_grads", lambda a: a["row_grads"][:, :2].copy()),
        _set("v", lambda a: a["v"].astype(np.float32)),
        _poke("rows", 1, 10),
    ]),
}


@pytest.mark.parametrize("family, case", [(family, j) for family, (_, _, changes)
                                          in CASES.items() for j in range(len(changes))])
def test_validators_reject_device_input_with_the_numpy_message(family, case):
    check, make_args, changes = CASES[family]
    good = make_args()
    check(**good)
    check(**_device(good))
    bad = changes[case](good)
    assert _message(check, _device(bad)) == _message(check, bad)


class _SpyCupy(FakeCupy):
    """The CuPy stand-in, noting the functions asked of it."""

    def __init__(self):
        self.asked = set()

    def __getattr__(self, name):
        self.asked.add(name)
        return super().__getattr__(name)


def test_device_values_are_read_in_the_arrays_module(monkeypatch):
    """The value checks of device arrays run in the arrays' own module (CuPy), not numpy."""
    spy = _SpyCupy()
    monkeypatch.setitem(sys.modules, "cupy", spy)
    _contract.check_sgd_epoch(**_device(_sgd_args()))
    assert {"diff", "any", "sort"} <= spy.asked
    spy.asked.clear()
    _contract.check_sgd_epoch(**_sgd_args())
    assert not spy.asked


def test_structure_only_without_values():
    """``values=False`` (what the CUDA launchers use for device arrays) skips the O(n) checks
    but keeps every header check."""
    args = _sgd_args()
    _contract.check_sgd_epoch(**_poke("users", 0, 10**6)(args), values=False)
    with pytest.raises(ContractError, match="ratings must have dtype"):
        _contract.check_sgd_epoch(**_set("ratings", lambda a: a["ratings"].astype(np.float32))(
            args), values=False)


# (case family, how many of its bad inputs, CUDA contract function, its scalar arguments)
LAUNCHES = [("sgd", 5, "sgd_epoch", (3.0, 0.01, 0.01, 0.05, 0.01, True, 1)),
            ("nmf", 5, "nmf_update_observed", (0.0, 2, 0.0, 0.0, 0.0, False, 1)),
            ("sparse_step", 3, "sparse_adam_step", (1, 0.01))]


@pytest.mark.parametrize("family,case,kernel,scalars", [
    pytest.param(family, case, kernel, scalars, id=f"{kernel}-{case}")
    for family, n_cases, kernel, scalars in LAUNCHES for case in range(n_cases)])
def test_cuda_launcher_rejects_device_input_with_the_validators_message(family, case, kernel,
                                                                       scalars):
    from fastrec.backends import cuda

    check, make_args, changes = CASES[family]
    bad = changes[case](make_args())
    expected = _message(check, bad)
    with pytest.raises(ContractError) as info:
        getattr(cuda, kernel)(*_device(bad).values(), *scalars)
    assert str(info.value) == expected
