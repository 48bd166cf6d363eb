"""Integer codes of the static choices (the numeric parameters travel as ``records.Params``).

Kernels receive the static choices as Numba literals (`numba.literally`), so each combination is
compiled (and cached) as its own specialisation with the untaken branches pruned.
"""

DISCRETE, ORIENTED, RUN_TUMBLE = 0, 1, 2
ACTION_TYPES = {"discrete": DISCRETE, "oriented": ORIENTED, "run_tumble": RUN_TUMBLE}
N_ACTIONS = {DISCRETE: 4, ORIENTED: 3, RUN_TUMBLE: 2}

CONCENTRATION, ANTENNAE, WIND_VECTOR = 0, 1, 2
OBSERVATION_TYPES = {"concentration": CONCENTRATION, "antennae": ANTENNAE, "wind_vector": WIND_VECTOR}

SPARSE, STEP_PENALTY = 0, 1
REWARD_TYPES = {"sparse": SPARSE, "step_penalty": STEP_PENALTY}

# EXTERNAL: actions come from the caller (the gymnasium envs), not from a built-in policy.
EXTERNAL, RANDOM, SURGE_CAST, TEMPORAL_DERIVATIVE, RUN_TUMBLE_CHEMOTAXIS = 0, 1, 2, 3, 4
POLICIES = {
    "random": RANDOM,
    "surge_cast": SURGE_CAST,
    "temporal_derivative": TEMPORAL_DERIVATIVE,
    "run_tumble_chemotaxis": RUN_TUMBLE_CHEMOTAXIS,
}
# Action types a policy can drive (None: any).
POLICY_ACTION_TYPES = {
    "random": None,
    "surge_cast": ("oriented",),
    "temporal_derivative": ("oriented",),
    "run_tumble_chemotaxis": ("run_tumble",),
}

# Movie frame step policies.
WRAP, CLAMP = 0, 1
STEP_POLICIES = {"wrap": WRAP, "clamp": CLAMP}

# Purposes of the counter-based random stream (SPEC §7.1).
P_POLICY, P_TUMBLE, P_WIND_A, P_WIND_B, P_EPS = 0, 1, 2, 3, 4
