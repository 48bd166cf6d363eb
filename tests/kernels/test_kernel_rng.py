"""The counter-based random stream (docs/spec.md §7.1): the kernels compute exactly the function documented
in ``rng.py`` (executed here from the docstring itself) and the reference model's Python-int version."""
import math
import re

import numba
import numpy as np
import pytest

import reference_model as ref
from plume_capture.kernels import rng

# Seeds at the ends of the range, steps 0 (reset) to large, all purposes.
SEEDS = [0, 1, 2, 123, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1, 3735928559]
STEPS = [0, 1, 2, 3, 255, 256, 1000, 65537, 10**6, 2**40]
PURPOSES = range(5)


def documented():
    """The functions of the ``::`` block in rng.py's docstring, executed."""
    block = rng.__doc__.split("::", 1)[1].split("\n\n")[1]
    ns = {"math": math}
    exec(re.sub(r"^    ", "", block, flags=re.M), ns)
    return ns


# The kernels keep the key in uint64 inside compiled code; so do these wrappers.
@numba.njit
def kernel_uniform(seed, step, purpose):
    return rng.uniform(rng.episode_key(seed), step, purpose)


@numba.njit
def kernel_normal_pair(seed, step):
    return rng.normal_pair(rng.episode_key(seed), step)


@numba.njit
def kernel_randint(seed, step, purpose, n):
    return rng.randint(rng.episode_key(seed), step, purpose, n)


@pytest.mark.nojit
def test_docstring_reference_and_kernel_agree():
    doc = documented()
    for seed in SEEDS:
        for step in STEPS:
            for p in PURPOSES:
                u = doc["uniform"](seed, step, p)
                assert ref.uniform(seed, step, p) == u
                assert kernel_uniform(seed, step, p) == u, (seed, step, p)
                assert 0.0 <= u < 1.0
            assert tuple(map(float, kernel_normal_pair(seed, step))) == doc["normal_pair"](seed, step) \
                == ref.normal_pair(seed, step)
            for n in (1, 2, 3, 4, 7):
                a = int(kernel_randint(seed, step, 0, n))
                assert a == ref.randint(seed, step, 0, n) == int(doc["uniform"](seed, step, 0) * n)
                assert 0 <= a < n


@pytest.mark.nojit
def test_golden_values():
    # Computed once from the docstring's formula; other tools can check themselves against these.
    assert ref.uniform(0, 0, 0) == 0.28176129772258496
    assert ref.uniform(0, 1, 0) == 0.585996776452919
    assert ref.uniform(123, 7, 1) == 0.3262642004050441
    assert ref.uniform(2**32 - 1, 1000, 4) == 0.6894632590965221
    assert kernel_uniform(123, 7, 1) == 0.3262642004050441


def test_many_random_draws_match_reference():
    g = np.random.default_rng(5)
    for seed, step, p in zip(g.integers(0, 2**32, 20_000), g.integers(0, 100_000, 20_000), g.integers(0, 5, 20_000)):
        seed, step, p = int(seed), int(step), int(p)
        assert kernel_uniform(seed, step, p) == ref.uniform(seed, step, p), (seed, step, p)


def test_stream_looks_uniform_and_independent():
    us = np.array([ref.uniform(s, k, p) for s in range(40) for k in range(250) for p in range(5)])
    assert abs(us.mean() - 0.5) < 0.01 and abs(us.var() - 1 / 12) < 0.005
    counts = np.histogram(us, bins=20, range=(0, 1))[0]
    expected = len(us) / 20
    assert ((counts - expected) ** 2 / expected).sum() < 60  # chi-square, 19 dof: p ~ 1e-6
    assert len(np.unique(us)) == len(us)  # no collisions between seeds, steps or purposes
    # neighbouring seeds/steps are uncorrelated
    grid = us.reshape(40, 250, 5)
    assert abs(np.corrcoef(grid[:-1].ravel(), grid[1:].ravel())[0, 1]) < 0.03
    assert abs(np.corrcoef(grid[:, :-1].ravel(), grid[:, 1:].ravel())[0, 1]) < 0.03
    normals = np.array([ref.normal_pair(s, k) for s in range(20) for k in range(500)])
    assert np.abs(normals.mean(axis=0)).max() < 0.03 and np.abs(normals.std(axis=0) - 1).max() < 0.03
