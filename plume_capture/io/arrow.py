"""NumPy → Arrow without ``pa.array``: ``pa.array`` probes for pandas and imports it (~0.3 s of
start-up for a small run); building arrays from buffers is also zero-copy."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

_TYPES = {np.dtype(np.int64): pa.int64(), np.dtype(np.float64): pa.float64(), np.dtype(np.int32): pa.int32()}


def column(a: np.ndarray) -> pa.Array:
    """A 1-D int64/int32/float64/bool NumPy array as an Arrow array (no nulls)."""
    a = np.ascontiguousarray(a)
    if a.dtype == np.bool_:
        bits = np.packbits(a, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(a), [None, pa.py_buffer(bits)])
    return pa.Array.from_buffers(_TYPES[a.dtype], len(a), [None, pa.py_buffer(a)])


def strings(values: list[str]) -> pa.Array:
    data = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(data) + 1, np.int32)
    np.cumsum([len(b) for b in data], out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(data),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))])


_NP = {pa.int64(): np.int64, pa.float64(): np.float64, pa.int32(): np.int32, pa.float32(): np.float32}


def to_numpy(arr) -> np.ndarray:
    """A primitive or bool Arrow array without nulls as NumPy (zero-copy for primitives)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = pa.concat_arrays(arr.chunks) if arr.num_chunks != 1 else arr.chunk(0)
    if arr.null_count:
        raise ValueError("null values are not supported here")
    if arr.type == pa.bool_():
        bits = np.frombuffer(arr.buffers()[1], np.uint8)
        return np.unpackbits(bits, bitorder="little", count=arr.offset + len(arr))[arr.offset:].astype(np.bool_)
    dt = _NP.get(arr.type)
    if dt is None:
        return arr.to_numpy(zero_copy_only=False)
    return np.frombuffer(arr.buffers()[1], dt, count=len(arr), offset=arr.offset * np.dtype(dt).itemsize)


def from_numpy(a: np.ndarray, type_: pa.DataType) -> pa.Array:
    """``a`` as an Arrow array of ``type_`` (int64/int32/float64/bool; no nulls; zero-copy except
    for bools and dtype changes)."""
    if type_ == pa.bool_():
        return column(np.asarray(a).astype(bool, copy=False))
    return column(np.ascontiguousarray(a, dtype=_NP[type_]))
