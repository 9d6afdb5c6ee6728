"""training.plainjson: arrays, numpy scalars, tuples and dicts that look like tags come back
with the same values and types; bytes that are not such JSON raise ValueError."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training import plainjson


def same(a: object, b: object) -> bool:
    """Equal values of the same types (arrays: dtype, shape and bits, NaN included)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray | np.generic):
        return a.dtype == b.dtype and np.shape(a) == np.shape(b) and np.asarray(a).tobytes() == np.asarray(b).tobytes()
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


def test_values_come_back_with_their_types_and_bits() -> None:
    awkward = np.array([0.1, 1 / 3, 1e-38, 3.4e38, np.nan, -np.inf, -0.0], dtype=np.float32)
    value = {
        "trajectory": np.random.default_rng(0).random((4, 3, 2), dtype=np.float32),
        "visibility": np.array([[True, False, True]] * 4),
        "awkward": awkward,
        "empty": np.zeros((0, 4, 2), dtype=np.float64),
        "ids": np.array([-(2**63), 2**63 - 1]),
        "big": np.array([2**64 - 1], dtype=np.uint64),
        "scalar": np.float32(0.1),
        "pair": (np.ones((2, 1), dtype=np.float16), None),
        "unreadable": [("src", "a.mp4", 3, "could not decode")],
        "record": {"events": [[0.5, 1.25, "héllo"]], "answer": 2, "kind": None, "ok": True},
        "looks_like_a_tag": {"__ndarray__": [1, 2]},
        "nested": {"__tuple__": {"__dict__": 1}},
    }
    back = plainjson.loads(plainjson.dumps(value))
    assert same(back, value), back
    assert not same(back["scalar"], np.float64(0.1))  # the helper tells types and bits apart


@pytest.mark.parametrize("bad", [
    b'{"a": [1, 2',  # truncated
    b'\xff\xfe',  # not UTF-8
    b'{"__ndarray__": {"dtype": "<f4", "shape": [3], "data": [1, 2]}}',  # too few values
    b'{"__ndarray__": {"dtype": "|O", "shape": [1], "data": [1]}}',  # objects are not kept
    b'{"__ndarray__": {"dtype": "<f4", "shape": [2]}}',  # no data
    b'{"__ndarray__": {"dtype": "<f4", "shape": [1, 2], "data": [[1, 2]]}}',  # data not flat
    b'{"__tuple__": 3}',
])
def test_bytes_that_are_not_such_json_raise_value_error(bad: bytes) -> None:
    with pytest.raises(ValueError):
        plainjson.loads(bad)


def test_other_types_are_refused_when_written() -> None:
    for value in ({1: "a"}, {1, 2}, object(), np.array([object()])):
        with pytest.raises(TypeError):
            plainjson.dumps(value)


def test_arrays_are_plain_lists_in_the_file() -> None:
    written = json.loads(plainjson.dumps(np.array([[0.5, 0.25]], dtype=np.float32)))
    assert written == {"__ndarray__": {"dtype": "<f4", "shape": [1, 2], "data": [0.5, 0.25]}}
