"""One input policy for every input kind: repeated pairs (raise / mean / last / sum), missing ids,
mixed-type ids, and ids that mean the same whatever the other ids are."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from fastrec.data import Interactions

# (user, item, value) rows; (0, 1) is rated twice, 4 at row 0 and 5 at row 2.
ROWS = [(0, 1, 4.0), (2, 1, 3.0), (0, 1, 5.0), (0, 0, 1.0)]
EXPECTED = {
    "mean": {(0, 1): 4.5, (2, 1): 3.0, (0, 0): 1.0},
    "sum": {(0, 1): 9.0, (2, 1): 3.0, (0, 0): 1.0},
    "last": {(0, 1): 5.0, (2, 1): 3.0, (0, 0): 1.0},
}


def as_kind(kind):
    users, items, values = (np.array(c) for c in zip(*ROWS, strict=True))
    if kind == "tuple":
        return users, items, values
    if kind == "frame":
        return pd.DataFrame({"user": users, "item": items, "rating": values})
    if kind == "coo":
        return sp.coo_matrix((values, (users, items)), shape=(3, 2))
    if kind == "csr":  # a CSR matrix whose row 0 stores column 1 twice (not canonical)
        order = np.lexsort((items, users))
        indptr = np.searchsorted(users[order], np.arange(4))
        return sp.csr_matrix((values[order], items[order], indptr), shape=(3, 2))
    return Interactions(users, items, values.astype(np.float32), np.arange(3), np.arange(2))


def as_dict(data: Interactions) -> dict:
    users = data.user_ids[data.users].tolist()
    items = data.item_ids[data.items].tolist()
    return dict(zip(zip(users, items, strict=True), data.values.tolist(), strict=True))


KINDS = ["tuple", "frame", "coo", "csr", "interactions"]


@pytest.mark.parametrize("kind", KINDS)
def test_repeated_pairs_raise_by_default(kind):
    with pytest.raises(ValueError, match=r"duplicate \(user, item\) pair \(0, 1\)") as err:
        Interactions.from_any(as_kind(kind))
    if kind != "csr":  # input rows are entries, in input order
        assert "at entry 2 (first at entry 0)" in str(err.value)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("policy", ["mean", "sum", "last"])
def test_repeated_pairs_merged_the_same_way_for_every_kind(kind, policy):
    data = Interactions.from_any(as_kind(kind), duplicates=policy)
    assert as_dict(data) == EXPECTED[policy]
    assert data.nnz == 3
    # The kept pattern is the seen-items CSR of the merged pairs.
    seen = data.seen_csr()
    assert seen.has_canonical_format and seen.shape == data.shape
    pairs = set(zip(*seen.nonzero(), strict=True))
    assert pairs == set(zip(data.users.tolist(), data.items.tolist(), strict=True))


def test_merged_entries_keep_input_order_and_timestamps():
    users, items = [5, 7, 5, 9, 7], ["a", "b", "a", "a", "b"]
    data = Interactions.from_ids(users, items, [1, 2, 3, 4, 5], timestamps=[10, 20, 30, 40, 50],
                                 duplicates="sum")
    assert data.user_ids[data.users].tolist() == [5, 7, 9]
    assert data.values.tolist() == [4.0, 7.0, 4.0]
    assert data.timestamps.tolist() == [10, 20, 40]
    last = Interactions.from_ids(users, items, [1, 2, 3, 4, 5], timestamps=[10, 20, 30, 40, 50],
                                 duplicates="last")
    assert last.user_ids[last.users].tolist() == [5, 9, 7]
    assert last.timestamps.tolist() == [30, 40, 50]


def test_a_merged_pair_carries_no_rounding_from_other_pairs():
    # A huge rating on an earlier pair must not leak rounding into a later pair's sum.
    users, items = [0, 0, 1, 1], [0, 0, 0, 0]
    values = np.array([1e17, 1e17, 0.1, 0.2])
    data = Interactions.from_ids(users, items, values, duplicates="mean", dtype=np.float64)
    assert data.values.tolist() == [1e17, (0.1 + 0.2) / 2]


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="duplicates must be one of"):
        Interactions.from_any(as_kind("tuple"), duplicates="first")


@pytest.mark.parametrize("bad", [None, np.nan])
def test_missing_user_id_in_a_frame_names_the_row(bad):
    frame = pd.DataFrame({"user": ["u1", "u2", bad, "u3"], "item": [1, 2, 3, 4],
                          "rating": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(ValueError, match=r"user ids: missing id .* at row 2"):
        Interactions.from_any(frame)


def test_missing_item_id_in_a_float_column_names_the_row():
    frame = pd.DataFrame({"user": [1, 2, 3], "item": [1.0, np.nan, 3.0]})
    with pytest.raises(ValueError, match=r"item ids: missing id nan at row 1"):
        Interactions.from_any(frame)


def test_missing_id_in_a_tuple_names_the_row():
    users = np.array(["a", "b", None], dtype=object)
    with pytest.raises(ValueError, match=r"user ids: missing id None at row 2"):
        Interactions.from_any((users, [1, 2, 3], [1.0, 1.0, 1.0]))


@pytest.mark.parametrize("kind", ["tuple", "frame"])
def test_mixed_type_ids_are_refused(kind):
    users = np.array([1, 2, "1"], dtype=object)
    data = (users, [1, 2, 3], [1.0, 2.0, 3.0])
    if kind == "frame":
        data = pd.DataFrame({"user": users, "item": data[1], "rating": data[2]})
    with pytest.raises(ValueError, match=r"user ids mix types: 1 \(number\) at row 0 and '1' "
                                         r"\(str\) at row 2"):
        Interactions.from_any(data)


def test_object_ids_of_one_type_map_like_plain_arrays():
    as_objects = Interactions.from_any((np.array(["b", "a", "c"], dtype=object), [3, 1, 2]))
    as_strings = Interactions.from_any((np.array(["b", "a", "c"]), [3, 1, 2]))
    np.testing.assert_array_equal(as_objects.users, as_strings.users)
    np.testing.assert_array_equal(as_objects.user_ids, as_strings.user_ids)
    numbers = Interactions.from_any((np.array([7, 3.0, 5], dtype=object), [3, 1, 2]))
    assert numbers.user_ids.tolist() == [3, 5, 7] and numbers.user_ids.dtype.kind == "i"


@pytest.mark.parametrize("first_id", [0, 1])
def test_ids_mean_the_same_whatever_their_values(first_id):
    """An id map that happens to be 0..n-1 used to refuse string ids that other maps cast."""
    data = Interactions.from_any((np.arange(first_id, first_id + 3), [0, 1, 2]))
    assert data.user_index(["1"], missing="-1").tolist() == [-1]
    assert data.user_index([1.0, 2], missing="-1").tolist() == [1 - first_id, 2 - first_id]
    with pytest.raises(ValueError, match="unknown or out-of-range user ids"):
        data.user_index(["1"])


@pytest.mark.parametrize("ids", [np.array([10**12, 5, 10**12]), np.array([3.5, -1.0, 3.5]),
                                 np.array(["x", "y", "x"])])
def test_sparse_ids_hash_to_sorted_maps(ids):
    data = Interactions.from_any((ids, [0, 1, 2]))
    expected_ids, expected_index = np.unique(ids, return_inverse=True)
    np.testing.assert_array_equal(data.user_ids, expected_ids)
    np.testing.assert_array_equal(data.users, expected_index)
