"""JSON for the plain values a run keeps on disk (no pickle: reading a file never runs code, and
the file does not depend on the layout of the code's classes): ``None``, booleans, numbers,
strings, lists and string-keyed dicts as themselves, plus numpy arrays and scalars and tuples,
each as a one-key tagged dict, so that ``loads(dumps(value))`` gives back equal values of the
same types.

An array is ``{"__ndarray__": {"dtype": "<f4", "shape": [...], "data": [flat values]}}``: its
values as Python numbers (a float32 is exactly a float64, and JSON writes a float64 with the
digits that read back to it), so the round trip is exact, NaN and infinities included. A
tuple is ``{"__tuple__": [...]}``; a one-key dict whose key is one of these tags is wrapped
as ``{"__dict__": {...}}``, so no data can pass for a tag.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

ARRAY, TUPLE, DICT = "__ndarray__", "__tuple__", "__dict__"
_TAGS = (ARRAY, TUPLE, DICT)
_KINDS = "biufU"  # bool, signed and unsigned integers, floats, text: what a list holds exactly


def to_plain(value: Any) -> Any:
    """``value`` as JSON-ready lists, dicts and scalars (module docstring); TypeError names a
    value of any other type."""
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        if array.dtype.kind not in _KINDS:
            raise TypeError(f"cannot keep an array of dtype {array.dtype} as JSON")
        shape = list(array.shape) if isinstance(value, np.ndarray) else None  # None: a numpy scalar
        return {ARRAY: {"dtype": array.dtype.str, "shape": shape, "data": array.ravel().tolist()}}
    if isinstance(value, tuple):
        return {TUPLE: [to_plain(v) for v in value]}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError(f"cannot keep a dict with non-string keys as JSON: {list(value)[:3]!r}")
        plain = {key: to_plain(v) for key, v in value.items()}
        return {DICT: plain} if len(plain) == 1 and next(iter(plain)) in _TAGS else plain
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot keep a {type(value).__name__} as JSON")


def from_plain(value: Any) -> Any:
    """The value ``to_plain`` was given; ValueError (or TypeError) on a tag that does not decode."""
    if isinstance(value, list):
        return [from_plain(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and next(iter(value)) in _TAGS:
        ((tag, inner),) = value.items()
        if tag == ARRAY:
            return _array(inner)
        if tag == TUPLE and isinstance(inner, list):
            return tuple(from_plain(v) for v in inner)
        if tag == DICT and isinstance(inner, dict):
            return {key: from_plain(v) for key, v in inner.items()}
        raise ValueError(f"bad {tag} entry")
    return {key: from_plain(v) for key, v in value.items()}


def _array(fields: Any) -> np.ndarray | np.generic:
    if not isinstance(fields, dict) or set(fields) != {"dtype", "shape", "data"} or not isinstance(fields["data"], list):
        raise ValueError(f"bad {ARRAY} entry: needs dtype, shape and a data list")
    dtype = np.dtype(fields["dtype"])
    if dtype.kind not in _KINDS:
        raise ValueError(f"bad {ARRAY} entry: dtype {dtype} is not kept as JSON")
    flat = np.asarray(fields["data"], dtype=dtype)
    if flat.ndim != 1:
        raise ValueError(f"bad {ARRAY} entry: data is not a flat list")
    if fields["shape"] is None:
        return flat.reshape(())[()]
    return flat.reshape(fields["shape"])


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON (``to_plain``)."""
    return json.dumps(to_plain(value), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def loads(data: bytes) -> Any:
    """The value ``dumps`` wrote; ValueError on bytes that are not such JSON (truncated, edited)."""
    return from_plain(json.loads(data.decode("utf-8")))
