"""The built-in policies (docs/spec.md §7.2) on scripted concentration changes, through the kernel ``act``."""
import numpy as np
import pytest

import reference_model as ref
from plume_capture.kernels import codes as C
from plume_capture.kernels.policies import act
from plume_capture.kernels.rng import episode_key

FWD, LEFT, RIGHT = 0, 1, 2
RUN, TUMBLE = 0, 1
UP, DOWN = 0.1, -0.1  # dc values


def actions(policy, dcs, n_actions=3, threshold=1e-6, persistence=1, eps=0.0, seed=7):
    """Actions for steps 1, 2, ... where ``dcs[k-1]`` is the dc seen at step k."""
    key = np.uint64(episode_key(np.int64(seed)))  # a jitted call returns a Python int
    m0 = m1 = 0
    out = []
    for k, dc in enumerate(dcs, start=1):
        a, m0, m1 = act(policy, n_actions, key, k, dc, m0, m1, threshold, persistence, eps)
        out.append(int(a))
    return out


@pytest.mark.nojit
def test_surge_cast():
    # first step forward; surge while rising; a bout of casts turns one way (left first), persisting
    # after each cast; a rise ends the bout and the next bout turns the other way
    assert actions(C.SURGE_CAST, [0, UP, UP, DOWN, DOWN, DOWN, DOWN, UP, DOWN, DOWN, DOWN, UP, DOWN]) == \
        [FWD, FWD, FWD, LEFT, FWD, LEFT, FWD, FWD, RIGHT, FWD, RIGHT, FWD, RIGHT]
    assert actions(C.SURGE_CAST, [0, DOWN, DOWN, DOWN, DOWN, DOWN, DOWN], persistence=2) == \
        [FWD, LEFT, FWD, FWD, LEFT, FWD, FWD]
    assert actions(C.SURGE_CAST, [0, DOWN, DOWN, DOWN], persistence=0) == [FWD, LEFT, LEFT, LEFT]
    # the threshold is inclusive: a rise of exactly threshold surges, a smaller one casts
    assert actions(C.SURGE_CAST, [0, 0.5, 0.25], threshold=0.5) == [FWD, FWD, LEFT]


@pytest.mark.nojit
def test_temporal_derivative():
    # first step forward; always forward right after a turn; a bout of turns goes one way (right
    # first); a rise ends the bout and the next bout turns the other way
    assert actions(C.TEMPORAL_DERIVATIVE, [DOWN, DOWN, DOWN, DOWN, UP, DOWN, 0.0, DOWN]) == \
        [FWD, RIGHT, FWD, RIGHT, FWD, RIGHT, FWD, RIGHT]
    assert actions(C.TEMPORAL_DERIVATIVE, [0, DOWN, DOWN, UP, DOWN, DOWN, DOWN]) == \
        [FWD, RIGHT, FWD, FWD, LEFT, FWD, LEFT]
    assert actions(C.TEMPORAL_DERIVATIVE, [0, 0.0, 0.0], threshold=0.0) == [FWD, FWD, FWD]
    assert actions(C.TEMPORAL_DERIVATIVE, [0, 0.0, 0.0]) == [FWD, RIGHT, FWD]


@pytest.mark.nojit
def test_run_tumble_chemotaxis():
    assert actions(C.RUN_TUMBLE_CHEMOTAXIS, [DOWN, UP, DOWN, 1e-6, 0.0], n_actions=2) == \
        [RUN, RUN, TUMBLE, RUN, TUMBLE]
    # eps = 1: every action is the uniform draw of purpose 0
    seed = 99
    got = actions(C.RUN_TUMBLE_CHEMOTAXIS, [DOWN] * 50, n_actions=2, eps=1.0, seed=seed)
    assert got == [ref.randint(seed, k, 0, 2) for k in range(1, 51)]
    # eps = 0.3: replaced exactly where the purpose-4 draw is below eps
    got = actions(C.RUN_TUMBLE_CHEMOTAXIS, [DOWN] * 200, n_actions=2, eps=0.3, seed=seed)
    expected = [ref.randint(seed, k, 0, 2) if ref.uniform(seed, k, 4) < 0.3 else (RUN if k == 1 else TUMBLE)
                for k in range(1, 201)]
    assert got == expected
    assert 0 < sum(ref.uniform(seed, k, 4) < 0.3 for k in range(1, 201)) < 200


def test_random_is_uniform_over_the_action_space():
    for n in (2, 3, 4):
        got = np.array([actions(C.RANDOM, [0.0] * 500, n_actions=n, seed=s) for s in range(20)]).ravel()
        counts = np.bincount(got, minlength=n)
        assert len(counts) == n and (abs(counts / got.size - 1 / n) < 0.02).all()
        assert actions(C.RANDOM, [0.0] * 20, n_actions=n, seed=3) == [ref.randint(3, k, 0, n) for k in range(1, 21)]
