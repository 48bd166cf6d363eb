"""Record schemas of the schema-0.1 run format (docs/spec.md §9.3, §9.4).

The Arrow schemas below are the column layout of every step/episode record batch the engine
produces and of the Parquet files; they match the reference tool's Parquet files exactly.
"""
from __future__ import annotations

import functools
import math

SCHEMA_VERSION = "0.1"


@functools.cache
def _arrow_schemas() -> dict:
    """The Arrow layouts, built on first use (pyarrow stays out of light imports such as the
    config check)."""
    import pyarrow as pa

    POSITION = pa.struct([("x", pa.int64()), ("y", pa.int64())])

    STEP_SCHEMA = pa.schema(
        [
            ("action", pa.int64()),
            ("agent_position", POSITION),
            ("distance_to_goal", pa.float64()),
            ("episode_id", pa.string()),
            ("observation_summary", pa.list_(pa.field("element", pa.float64()))),
            ("reward", pa.float64()),
            ("run_id", pa.string()),
            ("schema_version", pa.string()),
            ("seed", pa.int64()),
            ("step", pa.int64()),
            ("terminated", pa.bool_()),
            ("truncated", pa.bool_()),
            ("ts", pa.float64()),
        ]
    )

    EPISODE_SCHEMA = pa.schema(
        [
            ("avg_step_time_ms", pa.float64()),
            ("duration_ms", pa.float64()),
            ("episode_id", pa.string()),
            ("final_distance_to_goal", pa.float64()),
            ("final_position", POSITION),
            ("run_id", pa.string()),
            ("schema_version", pa.string()),
            ("terminated", pa.bool_()),
            ("total_reward", pa.float64()),
            ("total_steps", pa.int64()),
            ("truncated", pa.bool_()),
        ]
    )
    return {"POSITION": POSITION, "STEP_SCHEMA": STEP_SCHEMA, "EPISODE_SCHEMA": EPISODE_SCHEMA}


def __getattr__(name):
    # Only the three layouts: the import system probes other names (``__path__``) on every import.
    if name in ("POSITION", "STEP_SCHEMA", "EPISODE_SCHEMA"):
        return _arrow_schemas()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Fields whose values are wall-clock or run-specific; everything else is covered by the
# determinism contract (docs/spec.md §8).
STEP_WALLCLOCK_FIELDS = ("ts", "run_id")
EPISODE_WALLCLOCK_FIELDS = ("duration_ms", "avg_step_time_ms", "run_id")

RUN_JSON_KEYS = (
    "run_id",
    "experiment",
    "start_time",
    "env_config",
    "base_seed",
    "episode_seeds",
    "package_version",
    "config_hash",
    "git_sha",
    "system",
    "extra",
    "schema_version",
)

#: the provenance manifest plume-nav-publish writes beside a published run's run.json
MANIFEST_NAME = "manifest.json"

STEPS_BASENAME = "steps"
EPISODES_BASENAME = "episodes"


def episode_id(index: int) -> str:
    """Episode id of 0-based episode `index` (docs/spec.md §8)."""
    return f"ep-{index + 1:06d}"


#: JSON Lines parts of one artifact at most: their four-digit numbers sort in data order
MAX_PARTS = 10_000


def part_name(base: str, part: int) -> str:
    """File name of rotated part `part` (0 = the base file) of `base` ('steps' or 'episodes')."""
    return f"{base}.jsonl.gz" if part == 0 else f"{base}.part{part:04d}.jsonl.gz"

# docs/spec.md §3.2: episode seeds are integers in [0, SEED_MAX].
SEED_MAX = 2**32 - 1

# Vocabularies of the static choices (docs/spec.md §3.1, §4-§6); kernels/codes.py maps them to kernel codes.
ACTION_TYPES = ("discrete", "oriented", "run_tumble")
OBSERVATION_TYPES = ("concentration", "antennae", "wind_vector")
REWARD_TYPES = ("step_penalty", "sparse")
PLUMES = ("static", "movie", "puff")
STEP_POLICIES = ("wrap", "clamp")  # movie frame index past the last frame (docs/spec.md §2.2)
#: actions per action type (docs/spec.md §4)
N_ACTIONS = {"discrete": 4, "oriented": 3, "run_tumble": 2}
#: policy name -> action types it can drive (docs/spec.md §7.2)
POLICY_ACTIONS = {
    "random": ACTION_TYPES,
    "surge_cast": ("oriented",),
    "temporal_derivative": ("oriented",),
    "run_tumble_chemotaxis": ("run_tumble",),
}
STEP_PENALTY = -0.01  # reward of a step that does not reach the goal (step_penalty rewards, docs/spec.md §6)
GOAL_REWARD = 1.0  # reward of the step that reaches the goal


I32 = 2**31 - 1
#: integer keys -> inclusive range, from what the kernels and files can represent (docs/config.md);
#: the config check and the gymnasium env's keyword arguments both check against these (range_problem)
INT_RANGES = {
    "episodes": (1, SEED_MAX + 1),  # every episode has its own seed
    "rotate_size": (1, 2**62),
    "env.max_steps": (1, I32),
    "env.step_size": (1, I32),  # moves stay inside int64 positions before the grid clamps them
    "env.n_sensors": (1, 256),  # an observation row of a kernel call (~2^18 rows) stays <= 256 MiB
    "policy.persistence": (0, I32),
    "engine.num_actors": (1, 65536),
    "engine.shard_episodes": (1, I32),
    "engine.window": (1, 1024),
    "engine.headroom_cpus": (0, 65536),
    "engine.threads": (1, 1024),
}
GRID_MAX = I32  # W and H; the field's memory bounds W x H further (sim.params.field_problem)
#: float keys -> inclusive range: squares stay normal float64s, float32 observations stay finite
FLOAT_RANGES = {
    "env.goal_radius": (0.0, 1e150),
    "env.sigma": (1e-18, 1e18),  # 2 sigma^2 is a normal, finite float32 (the field is float32)
    "env.sensor_distance": (0.0, float(I32)),  # sensor cells stay within int64 arithmetic
    "wind.direction_deg": (-1e15, 1e15),
    "wind.speed": (-1e30, 1e30),  # speed plus noise stays a finite float32 observation
    "wind.noise_std": (0.0, 1e30),
    "policy.threshold": (-1e30, 1e30),
    "policy.eps": (0.0, 1.0),
}


def policy_fit_problem(name: str, action_type: str, *, key: str = "env.action_type") -> str | None:
    """Why policy ``name`` (a key of :data:`POLICY_ACTIONS`) cannot drive ``action_type`` actions,
    as one line (``key`` names the setting: ``action_type`` for the env's keyword), or None."""
    fits = POLICY_ACTIONS[name]
    return None if action_type in fits else f"policy.name {name!r} needs {key} {' or '.join(fits)}, got {action_type!r}"


def range_problem(key: str, value, *, nullable: bool = False) -> str | None:
    """Why ``value`` is not a valid ``key`` of :data:`INT_RANGES` or :data:`FLOAT_RANGES` (type and
    inclusive range), as one line naming the bound, or None. (Null is the caller's to allow.)"""
    tail = " or null" if nullable else ""
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if key in INT_RANGES:
        lo, hi = INT_RANGES[key]
        if not is_int or value < lo:
            return f"{key} must be an integer >= {lo}{tail}, got {shown}"
        return None if value <= hi else f"{key} must be an integer in [{lo}, {hi}]{tail}, got {shown}"
    lo, hi = FLOAT_RANGES[key]
    ok = (is_int or isinstance(value, float)) and math.isfinite(value) and lo <= value <= hi
    return None if ok else f"{key} must be a number in [{lo:g}, {hi:g}]{tail}, got {shown}"
