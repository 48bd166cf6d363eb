"""The counter-based random stream of docs/spec.md §7.1.

Every draw is a pure function of ``(episode seed, step, purpose)``::

    M = 2**64 - 1
    def mix64(z):                                   # splitmix64 finaliser
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        return z ^ (z >> 31)
    def uniform(seed, step, purpose):               # float64 in [0, 1)
        key = mix64((seed + 0x9E3779B97F4A7C15) & M)
        u = mix64((key + (step * 256 + purpose) * 0x9E3779B97F4A7C15) & M)
        return (u >> 11) * 2.0**-53
    def normal_pair(seed, step):                    # two standard normals (Box–Muller)
        u1, u2 = uniform(seed, step, 2), uniform(seed, step, 3)
        r = math.sqrt(-2.0 * math.log(1.0 - u1))
        return r * math.cos(2.0 * math.pi * u2), r * math.sin(2.0 * math.pi * u2)

``step`` is the 1-based number of the step being computed (0 for draws made at reset) and
``purpose`` is one of ``codes.P_*`` (0 policy action, 1 tumble heading, 2/3 wind noise, 4 policy
epsilon). Integers in [0, n) are ``int(uniform * n)``. Wind noise adds ``noise_std *`` the first
normal to the x component and the second to the y component.

The puff plume (``kernels.puff``) draws from a stream of its own, so its puffs are the same
whatever the agent does::

    def plume_key(seed):
        return mix64(mix64((seed + 0x9E3779B97F4A7C15) & M) ^ 0xA5A5A5A5DEADBEEF)
    def plume_uniform(pkey, n, lane):               # float64 in [0, 1)
        u = mix64((pkey + (n * 2**24 + lane) * 0x9E3779B97F4A7C15) & M)
        return (u >> 11) * 2.0**-53

``n`` is the 1-based plume step (warm-up steps first, then one per environment step) and ``lane``
(< 2**24) the draw within it: 0 the births, 1 and 2 the meander normals (Box–Muller as above),
``3 + 2j`` and ``4 + 2j`` the jitter of the puff in slot ``j``.
"""
import numpy as np

from plume_capture.kernels._jit import njit

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_TWO_M53 = 2.0**-53


@njit
def mix64(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit
def episode_key(seed):
    """Per-episode key; computed once per episode."""
    return mix64(np.uint64(seed) + _GAMMA)


@njit
def uniform(key, step, purpose):
    u = mix64(key + np.uint64(step * 256 + purpose) * _GAMMA)
    return float(u >> _S11) * _TWO_M53


_S51, _S52, _S53 = np.uint64(51), np.uint64(52), np.uint64(53)
_THREE = np.uint64(3)
_M3_TIE = np.uint64((2**54 - 1) // 3)  # the one m where fl(3m·2^-53) rounds up to an integer (2.0)


@njit
def randint(key, step, purpose, n):
    """``int(uniform * n)``, computed with integers for n = 2, 3, 4 (bit-identical, faster: no
    float round trip on the hot path of random policies)."""
    m = mix64(key + np.uint64(step * 256 + purpose) * _GAMMA) >> _S11
    if n == 2:
        return np.int64(m >> _S52)
    if n == 4:
        return np.int64(m >> _S51)
    if n == 3:
        return np.int64(2) if m == _M3_TIE else np.int64((m * _THREE) >> _S53)
    a = np.int64(float(m) * _TWO_M53 * n)
    return a if a < n else np.int64(n - 1)


@njit
def normal_pair(key, step):
    """Two independent standard normals for ``step`` (Box–Muller)."""
    u1 = uniform(key, step, 2)
    u2 = uniform(key, step, 3)
    r = np.sqrt(-2.0 * np.log(1.0 - u1))
    t = 2.0 * np.pi * u2
    return r * np.cos(t), r * np.sin(t)


_PLUME_SALT = np.uint64(0xA5A5A5A5DEADBEEF)
_LANES = np.uint64(2**24)


@njit
def plume_key(key):
    """The puff plume's key from the episode key (``episode_key(seed)``)."""
    return mix64(np.uint64(key) ^ _PLUME_SALT)


@njit
def plume_uniform(pkey, n, lane):
    u = mix64(np.uint64(pkey) + (np.uint64(n) * _LANES + np.uint64(lane)) * _GAMMA)
    return float(u >> _S11) * _TWO_M53


@njit
def plume_normal_pair(pkey, n):
    """Two standard normals for plume step ``n`` (lanes 1 and 2, Box–Muller)."""
    u1 = plume_uniform(pkey, n, 1)
    u2 = plume_uniform(pkey, n, 2)
    r = np.sqrt(-2.0 * np.log(1.0 - u1))
    t = 2.0 * np.pi * u2
    return r * np.cos(t), r * np.sin(t)
