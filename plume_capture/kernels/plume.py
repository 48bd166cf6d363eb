"""Concentration fields. A field is always a float32 stack of frames ``(T, H, W)`` indexed
``[frame, y, x]``; the static Gaussian plume is the one-frame case (T = 1)."""
import numpy as np

from plume_capture.kernels._jit import njit


def gaussian_field(width, height, source_x, source_y, sigma):
    """``C[y, x] = exp(-((x-xs)² + (y-ys)²) / (2σ²))`` in float32, clipped to [0, 1], as a (1, H, W) stack.

    Computed once per configuration with NumPy's float32 ``exp`` (not in Numba): the reference's
    golden values come from NumPy's vectorised float32 exp, which differs from a correctly rounded
    ``expf`` by one ulp on some cells.
    """
    x = np.arange(width, dtype=np.float32)
    y = np.arange(height, dtype=np.float32)
    dx = x[None, :] - float(source_x)
    dy = y[:, None] - float(source_y)
    denom = 2.0 * (float(sigma) ** 2)
    with np.errstate(over="ignore"):  # a narrow plume: far cells overflow to inf, exp(-inf) = 0
        field = np.exp(-(dx * dx + dy * dy) / denom).astype(np.float32)
    return np.clip(field, 0.0, 1.0).reshape(1, height, width)


@njit
def frame_index(step, n_frames, clamp):
    """Frame observed after step ``step`` (0 = reset): ``step mod T`` (wrap) or ``min(step, T-1)`` (clamp)."""
    if n_frames == 1:
        return 0
    if clamp:
        return step if step < n_frames else n_frames - 1
    return step % n_frames


@njit
def sample(field, frame, x, y, width, height):
    """Concentration at cell (x, y), 0.0 outside the grid, clipped to [0, 1]."""
    if x < 0 or y < 0 or x >= width or y >= height:
        return np.float32(0.0)
    v = field[frame, y, x]
    return min(max(v, np.float32(0.0)), np.float32(1.0))
