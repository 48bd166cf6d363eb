"""Record schemas of the schema-0.1 run format (docs/spec.md §9.3, §9.4).

The Arrow schemas below are the column layout of every step/episode record batch the engine
produces and of the Parquet files; they match the reference tool's Parquet files exactly.
"""
from __future__ import annotations

import functools

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
