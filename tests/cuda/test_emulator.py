"""The emulator itself: known answers, and the bugs it exists to catch."""

from __future__ import annotations

import numpy as np
import pytest

SELFTEST = "selftest_kernels.cu"
NAMES = ("block_sum", "rotate_shared", "rotate_shared_racy", "uninitialised_shared",
         "divergent_shuffle", "divergent_syncthreads", "warp_votes", "scale", "out_of_bounds",
         "flag_handoff", "spin_forever")
ORDERS = ("forward", "reverse", "random")


@pytest.fixture(scope="module")
def selftest(emulator):
    return emulator.EmulatedModule(emulator.HEADER.with_name(SELFTEST), (), NAMES)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("threads", [64, 256])
def test_block_sum_with_shuffles_and_shared(selftest, order, threads):
    x = np.arange(1000, dtype=np.float32)
    n_blocks = -(-x.size // threads)
    out = np.zeros(n_blocks, dtype=np.float32)
    selftest.get_function("block_sum", order=order, seed=1)(
        (n_blocks,), (threads,), (x, out, np.int32(x.size)))
    expected = np.add.reduceat(x, np.arange(0, x.size, threads))
    np.testing.assert_allclose(out, expected, rtol=1e-6)


@pytest.mark.parametrize("order", ORDERS)
def test_dynamic_shared_with_barrier(selftest, order):
    x = np.arange(64, dtype=np.int32)
    out = np.zeros_like(x)
    selftest.get_function("rotate_shared", order=order)((1,), (64,), (x, out), shared_mem=64 * 4)
    np.testing.assert_array_equal(out, np.roll(x, -1))


def test_missing_barrier_is_exposed_by_thread_order(selftest):
    x = np.arange(64, dtype=np.int32)
    outcomes = []
    for order in ORDERS:
        out = np.zeros_like(x)
        selftest.get_function("rotate_shared_racy", order=order, seed=2)((1,), (64,), (x, out))
        outcomes.append(np.array_equal(out, np.roll(x, -1)))
    assert not all(outcomes)


def test_shared_memory_is_garbage_for_every_block(selftest):
    out = np.zeros(4, dtype=np.int32)
    selftest.get_function("uninitialised_shared", seed=5)((4,), (32,), (out,))
    assert not np.array_equal(out, [1, 1, 1, 1])
    assert len(set(out.tolist())) > 1


def test_warp_votes_scan_and_segmented_broadcast(selftest):
    x = np.array([(-1) ** j * j for j in range(32)], dtype=np.int32)
    ballots = np.zeros(32, dtype=np.uint32)
    scan = np.zeros(32, dtype=np.int32)
    broadcast = np.zeros(32, dtype=np.int32)
    selftest.get_function("warp_votes", order="random")((1,), (32,), (x, ballots, scan,
                                                                       broadcast))
    expected_ballot = sum(1 << j for j in range(32) if x[j] > 0)
    assert (ballots == expected_ballot).all()
    np.testing.assert_array_equal(scan, np.cumsum(x))
    np.testing.assert_array_equal(broadcast, np.repeat([x[3], x[19]], 16))


@pytest.mark.parametrize("order", ORDERS)
def test_spin_wait_with_nanosleep_lets_the_producer_run(selftest, order):
    data = np.zeros(32, dtype=np.int32)
    flag = np.zeros(1, dtype=np.int32)
    out = np.zeros(32, dtype=np.int32)
    selftest.get_function("flag_handoff", order=order, seed=4)((1,), (64,), (data, flag, out))
    np.testing.assert_array_equal(out, np.arange(32) * 3)


def test_spinning_forever_is_reported_as_livelock(selftest, emulator):
    with pytest.raises(emulator.EmulatorError, match="livelock"):
        selftest.get_function("spin_forever")((1,), (32,), (np.zeros(1, dtype=np.int32),))


def test_divergent_shuffle_is_an_error(selftest, emulator):
    out = np.zeros(32, dtype=np.float32)
    with pytest.raises(emulator.EmulatorError, match="exited|deadlock"):
        selftest.get_function("divergent_shuffle")((1,), (32,), (out,))


def test_divergent_syncthreads_is_an_error(selftest, emulator):
    out = np.zeros(64, dtype=np.int32)
    with pytest.raises(emulator.EmulatorError, match="different __syncthreads"):
        selftest.get_function("divergent_syncthreads")((1,), (64,), (out,))


def test_argument_packing_follows_cupy_and_is_checked(selftest, emulator):
    kernel = selftest.get_function("scale")
    x = np.ones(10, dtype=np.float32)
    kernel((1,), (32,), (x, np.float32(2), np.int32(10), 0))  # Python int -> int64, like CuPy
    np.testing.assert_array_equal(x, 2)
    with pytest.raises(emulator.EmulatorError, match="argument 1 is a 8-byte scalar"):
        kernel((1,), (32,), (x, 2.0, np.int32(10), 0))
    with pytest.raises(emulator.EmulatorError, match="argument 2 is a 8-byte scalar"):
        kernel((1,), (32,), (x, np.float32(2), 10, 0))
    with pytest.raises(emulator.EmulatorError, match="argument 0 is a 4-byte scalar"):
        kernel((1,), (32,), (np.float32(1), np.float32(2), np.int32(10), 0))
    with pytest.raises(emulator.EmulatorError, match="argument 3 is a pointer"):
        kernel((1,), (32,), (x, np.float32(2), np.int32(10), x))
    with pytest.raises(emulator.EmulatorError, match="3 arguments for 4 parameters"):
        kernel((1,), (32,), (x, np.float32(2), np.int32(10)))


def test_invalid_launch_configuration(selftest, emulator):
    x = np.ones(10, dtype=np.float32)
    with pytest.raises(emulator.EmulatorError, match="invalid launch"):
        selftest.get_function("scale")((1,), (2048,), (x, np.float32(2), np.int32(10), 0))
