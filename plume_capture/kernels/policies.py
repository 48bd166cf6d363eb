"""Built-in policies (docs/spec.md §7.2). A policy sees the concentration at the agent's cell (its own
sensor, whatever the observation type) and keeps two integers of memory per env.

``dc`` is the change of that concentration over the last step (0 before the first step).

* ``random``: ``randint(n_actions)`` from the episode stream (purpose 0).
* ``surge_cast``: forward on the first step; while forward steps of the budget remain, forward;
  else forward if ``dc >= threshold``; else cast: turn and set the forward budget to
  ``persistence``. The casts of one bout (consecutive casts without a rise in between) turn the
  same way, so a bout tries every heading; bouts alternate left and right, left first.
* ``temporal_derivative``: forward on the first step and right after any turn; otherwise forward
  if ``dc >= threshold``, else turn. Turns of one bout go the same way; bouts alternate, right first.

Memory: ``m0`` = forward budget (surge_cast) or "last action was a turn" (temporal_derivative);
``m1`` = bit 0: the current turn side is the second one, bit 1: inside a bout. (Alternating every
single turn would leave an agent on a 90° grid with two headings only, unable to reach goals on
the other sides.)
* ``run_tumble_chemotaxis``: run (0) on the first step and while ``dc >= threshold``, else tumble
  (1); with probability ``eps`` (purpose 4) the action is replaced by a uniform draw (purpose 0).
"""
from plume_capture.kernels import codes as C
from plume_capture.kernels._jit import njit
from plume_capture.kernels.rng import randint, uniform


@njit
def act(policy, n_actions, key, step, dc, m0, m1, threshold, persistence, eps):
    """Action for ``step`` (1-based) and the updated memory ``(action, m0, m1)``."""
    if policy == C.RANDOM:
        return randint(key, step, C.P_POLICY, n_actions), m0, m1
    if policy == C.SURGE_CAST:
        if step == 1:
            return 0, m0, m1
        if m0 > 0:
            return 0, m0 - 1, m1
        if dc >= threshold:
            return 0, m0, ((m1 & 1) ^ 1) if m1 & 2 else m1
        return (2 if m1 & 1 else 1), persistence, m1 | 2
    if policy == C.TEMPORAL_DERIVATIVE:
        if step == 1 or m0 == 1:
            return 0, 0, m1
        if dc >= threshold:
            return 0, 0, ((m1 & 1) ^ 1) if m1 & 2 else m1
        return (1 if m1 & 1 else 2), 1, m1 | 2
    # RUN_TUMBLE_CHEMOTAXIS
    a = 0 if (step == 1 or dc >= threshold) else 1
    if eps > 0.0 and uniform(key, step, C.P_EPS) < eps:
        a = randint(key, step, C.P_POLICY, n_actions)
    return a, m0, m1
