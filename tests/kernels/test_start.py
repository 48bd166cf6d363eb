"""start_position must equal numpy's default_rng(s).integers(0, W), .integers(0, H) exactly."""
import os
import subprocess
import sys
import warnings

import numba
import numpy as np
import pytest

from plume_capture.kernels.start import _seed_sequence_u64x4, start_position

GOLDEN = {  # docs/spec.md §3.2
    (64, 64): [(54, 40), (30, 32), (53, 16), (51, 5), (46, 60)],
    (128, 128): [(108, 81), (60, 65), (107, 33), (103, 10), (92, 120)],
    (8, 8): [(6, 5), (3, 4), (6, 2), (6, 0), (5, 7)],
}

# Sizes that stress each branch: n == 1 draws nothing, powers of two, the largest size, and sizes
# whose Lemire rejection rate is high (~1/3 for 1431655766, ~1/4 for 2**30 + 1), so rejections
# interleave with the buffered upper half of the 64-bit PCG64 output.
SPECIAL_SIZES = [1, 2, 3, 5, 7, 8, 64, 100, 128, 1000, 2**16, 2**20 + 7, 2**30, 2**30 + 1,
                 1431655766, 1431655765, 2**31 - 2, 2**31 - 1]
SPECIAL_SEEDS = [0, 1, 2, 123, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1]


def numpy_start(seed, W, H):
    rng = np.random.default_rng(seed)
    x = int(rng.integers(0, W))
    y = int(rng.integers(0, H))
    return x, y


@numba.njit
def _batch(seeds, Ws, Hs):
    out = np.empty((seeds.size, 2), np.int64)
    for i in range(seeds.size):
        x, y = start_position(seeds[i], Ws[i], Hs[i])
        out[i, 0] = x
        out[i, 1] = y
    return out


def _combos(n, seed):
    """n >= 3000 (seed, W, H) triples: every special triple first, then random mixes."""
    rng = np.random.default_rng(seed)
    sp = np.array(SPECIAL_SIZES, np.int64)
    head = np.array([(s, w, h) for s in SPECIAL_SEEDS for w in sp for h in sp], np.int64)
    m = n - len(head)
    seeds = rng.integers(0, 2**32, m)
    seeds[: len(SPECIAL_SEEDS) * 50] = np.repeat(SPECIAL_SEEDS, 50)

    def sizes():
        log_uniform = np.exp(rng.uniform(0, np.log(2**31 - 1), m)).astype(np.int64)
        small = rng.integers(1, 300, m)
        special = rng.choice(sp, m)
        pick = rng.integers(0, 3, m)
        return np.clip(np.choose(pick, [log_uniform, small, special]), 1, 2**31 - 1)

    tail = np.stack([seeds, sizes(), sizes()], axis=1)
    return np.concatenate([head, tail])


@pytest.mark.nojit
def test_golden_values():
    for (W, H), expected in GOLDEN.items():
        assert [tuple(map(int, start_position(s, W, H))) for s in range(5)] == expected
    assert tuple(map(int, start_position(123, 64, 64))) == (0, 43)


def test_seed_sequence_state_matches_numpy():
    for s in SPECIAL_SEEDS + [3, 4, 99991, 3735928559]:
        expected = np.random.SeedSequence(s).generate_state(4, np.uint64)
        assert _seed_sequence_u64x4(np.uint64(s)) == tuple(int(v) for v in expected)


def test_matches_numpy_on_200k_combos():
    combos = _combos(200_000, seed=20240611)
    got = _batch(combos[:, 0], combos[:, 1], combos[:, 2])
    expected = np.array([numpy_start(int(s), int(w), int(h)) for s, w, h in combos], np.int64)
    bad = np.flatnonzero((got != expected).any(axis=1))
    assert bad.size == 0, f"{bad.size} mismatches, first: {combos[bad[:5]].tolist()}"
    assert (got >= 0).all() and (got[:, 0] < combos[:, 1]).all() and (got[:, 1] < combos[:, 2]).all()


@pytest.mark.nojit
def test_pure_python_path_matches_numpy():
    py = getattr(start_position, "py_func", start_position)  # plain function under NUMBA_DISABLE_JIT
    combos = _combos(3_000, seed=7)[::10]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow RuntimeWarning from numpy scalars
        for s, w, h in combos:
            s, w, h = int(s), int(w), int(h)
            assert tuple(map(int, py(s, w, h))) == numpy_start(s, w, h), (s, w, h)


def test_numba_disabled_matches_compiled():
    combos = _combos(3_000, seed=11)[::10]
    script = (
        "import sys, warnings; warnings.simplefilter('error')\n"
        "from plume_capture.kernels.start import start_position\n"
        "for line in sys.stdin:\n"
        "    s, w, h = map(int, line.split())\n"
        "    print(*map(int, start_position(s, w, h)))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", script],
        input="".join(f"{s} {w} {h}\n" for s, w, h in combos),
        capture_output=True, text=True, check=True, timeout=120,
        env={**os.environ, "NUMBA_DISABLE_JIT": "1"},
    )
    got = np.array([line.split() for line in res.stdout.splitlines()], np.int64)
    np.testing.assert_array_equal(got, _batch(combos[:, 0], combos[:, 1], combos[:, 2]))


@pytest.mark.parametrize("seed, W, H", [(-1, 8, 8), (2**32, 8, 8), (0, 0, 8), (0, 8, 0),
                                        (0, 2**31, 8), (0, 8, 2**31)])
def test_out_of_range_raises(seed, W, H):
    with pytest.raises(ValueError):
        start_position(seed, W, H)
