"""Integer codes of the static choices (the numeric parameters travel as ``records.Params``); the
vocabularies themselves, the actions per type and the rewards live in ``plume_capture.spec``.

Kernels receive the static choices as Numba literals (`numba.literally`), so each combination is
compiled (and cached) as its own specialisation with the untaken branches pruned.
"""

DISCRETE, ORIENTED, RUN_TUMBLE = 0, 1, 2
ACTION_CODES = {"discrete": DISCRETE, "oriented": ORIENTED, "run_tumble": RUN_TUMBLE}

CONCENTRATION, ANTENNAE, WIND_VECTOR = 0, 1, 2
OBSERVATION_CODES = {"concentration": CONCENTRATION, "antennae": ANTENNAE, "wind_vector": WIND_VECTOR}

SPARSE, PENALIZED = 0, 1
REWARD_CODES = {"sparse": SPARSE, "step_penalty": PENALIZED}

# EXTERNAL: actions come from the caller (the gymnasium envs), not from a built-in policy.
EXTERNAL, RANDOM, SURGE_CAST, TEMPORAL_DERIVATIVE, RUN_TUMBLE_CHEMOTAXIS = 0, 1, 2, 3, 4
POLICY_CODES = {
    "random": RANDOM,
    "surge_cast": SURGE_CAST,
    "temporal_derivative": TEMPORAL_DERIVATIVE,
    "run_tumble_chemotaxis": RUN_TUMBLE_CHEMOTAXIS,
}
# Movie frame step policies.
WRAP, CLAMP = 0, 1
STEP_POLICY_CODES = {"wrap": WRAP, "clamp": CLAMP}

# Plumes: a concentration field of frames (static, movie) or the puff model (kernels.puff).
FIELD, PUFF = 0, 1
PLUME_CODES = {"static": FIELD, "movie": FIELD, "puff": PUFF}

# Purposes of the counter-based random stream (docs/spec.md §7.1).
P_POLICY, P_TUMBLE, P_WIND_A, P_WIND_B, P_EPS = 0, 1, 2, 3, 4
