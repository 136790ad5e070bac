"""The CUDA backend sizes the SGD grid to the device (no device needed: the rules are pure
functions of the SM count) and the registry's backends offer the grid side to the estimator."""

from __future__ import annotations

import numpy as np
import pytest

from fastrec._algorithms.sgd_schedule import choose_n_blocks
from fastrec.backends import Backend
from fastrec.backends.cuda import sgd as cuda_sgd
from tests.cuda.helpers import EMULATED_SMS, make_sgd_problem, patch_cupy

# Device profiles: V100 / RTX-class (80 SMs), A100 (108), H100 SXM (132).
PROFILES = {80: 320, 108: 432, 132: 528}


@pytest.mark.parametrize(("n_sms", "expected"), PROFILES.items())
def test_grid_side_gives_every_sm_warps(n_sms, expected):
    g = cuda_sgd.grid_side_for_sms(n_sms, 10**6, 10**5)
    assert g == expected
    assert g >= 256 and g // n_sms == cuda_sgd.BLOCK_WARPS_PER_SM


def test_grid_side_is_capped_by_the_matrix():
    assert cuda_sgd.grid_side_for_sms(132, 100, 5000) == 100
    assert cuda_sgd.grid_side_for_sms(132, 1, 1) == 1


@pytest.mark.parametrize(("n_warps", "n_sms", "expected"),
                         [(16, 132, 1), (200, 80, 2), (528, 132, 4), (10**4, 132, 8),
                          (16, None, cuda_sgd.WARPS_PER_CTA)])
def test_few_warps_spread_over_the_sms(n_warps, n_sms, expected):
    assert cuda_sgd.warps_per_cta_for(n_warps, n_sms) == expected


def test_launcher_launches_one_warp_ctas_for_a_small_grid_on_a_big_device():
    data, factors, scalars = make_sgd_problem(n_blocks=4)
    launches = []

    def get_kernel(name):
        return lambda grid, block, args: launches.append((name, grid, block))

    for order in ("dataflow", "strata"):
        cuda_sgd.launch_sgd_epoch(np, get_kernel, *data.values(), *factors,
                                  np.zeros(data["schedule"].size), *scalars, True, order=order,
                                  n_sms=132)
    assert ("sgd_dataflow", (4,), (32,)) in launches
    assert ("sgd_stratum", (4,), (32,)) in launches


def test_backends_offer_their_grid_side():
    cpu = Backend("cython", True)
    assert cpu.default_n_blocks(10**6, 10**5) == choose_n_blocks(10**6, 10**5) == 16
    assert cpu.default_n_blocks(5, 100) == choose_n_blocks(5, 100)
    device = Backend("cuda", True, n_blocks_rule=lambda n_users, n_items: 7)
    assert device.default_n_blocks(10**6, 10**5) == 7


def test_cuda_backend_reads_the_device_sm_count(monkeypatch):
    patch_cupy(monkeypatch, lambda source, expression: None)
    monkeypatch.setattr(cuda_sgd, "_sm_count", cuda_sgd._sm_count.__wrapped__)
    from fastrec.backends.cuda import default_n_blocks

    assert default_n_blocks(10**6, 10**5) == cuda_sgd.grid_side_for_sms(EMULATED_SMS, 10**6,
                                                                          10**5)
