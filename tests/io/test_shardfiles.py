"""io.shardfiles: a shard's parts follow the rotation rule of the one-file writer; pieces written by a
worker and pieces carried to the driver hold the same bytes."""
from __future__ import annotations

import numpy as np
import pytest

from plume_capture.io.files import JsonlPartWriter
from plume_capture.io.shardfiles import Piece, split_parts, write_pieces


@pytest.mark.parametrize("seed", range(20))
def test_split_parts_is_the_writers_rotation(tmp_path, seed):
    rng = np.random.default_rng(seed)
    sizes = [int(s) for s in rng.integers(1, 5000, size=int(rng.integers(1, 40)))]
    rotate = None if seed == 0 else int(rng.integers(1, 20000))
    w = JsonlPartWriter(tmp_path, "steps", rotate)
    for n in sizes:
        w.write_member(b"x" * n, 1)
    got = [[sizes[i] for i in part] for part in split_parts(sizes, rotate)]
    assert [sum(p) for p in got] == [f.bytes for f in w.close()]
    assert all(rotate is None or len(p) == 1 or sum(p) <= rotate for p in got)


def test_written_pieces_hold_the_carried_bytes(tmp_path):
    import hashlib
    import pickle

    (tmp_path / ".shards").mkdir()
    data = [b"abc" * 1000, bytes(range(256)) * 50]
    pieces = [Piece("steps", 7, data), Piece("steps.parquet", 7, [b"PAR1"])]
    carried = pickle.loads(pickle.dumps(pieces, protocol=5))
    written = write_pieces(str(tmp_path), 3, pieces)
    for c, w in zip(carried, written):
        blob = b"".join(bytes(b) for b in c.data)
        assert (tmp_path / w.tmp).read_bytes() == blob
        assert w.bytes == len(blob) and w.sha256 == hashlib.sha256(blob).hexdigest() and w.rows == c.rows
    again = write_pieces(str(tmp_path), 3, pieces)  # a retried shard: other names, nothing overwritten
    assert {w.tmp for w in again}.isdisjoint(w.tmp for w in written)
