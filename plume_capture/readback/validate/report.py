"""Problem codes and the report that collects them (one string per problem: ``CODE: where: message``)."""
from __future__ import annotations


import numpy as np

from plume_capture import spec as records


CODES = {
    # run directory and run.json
    "RUN_DIR_MISSING": "the run directory does not exist or is not a directory",
    "RUN_JSON_MISSING": "no run.json (the run is incomplete)",
    "RUN_JSON_INVALID": "run.json is not a valid JSON object",
    "RUN_JSON_KEYS": "run.json top-level keys are not exactly RUN_JSON_KEYS in order",
    "RUN_JSON_TYPE": "a run.json value has the wrong type or form",
    "RUN_JSON_VALUE": "a run.json value contradicts the spec or another run.json value",
    "RUN_INCOMPLETE": "extra.status is not 'complete'",
    "SEEDS_MISMATCH": "episode_seeds is not [base_seed + i for i in range(episodes)]",
    "COUNTS_MISMATCH": "extra.counts / episode_seeds disagree with the records",
    # files
    "FILE_MISSING": "a required or listed file is missing",
    "FILE_UNREADABLE": "a file cannot be read (permissions, I/O error)",
    "FILE_NOT_REGULAR": "run.json or an artifact is not a regular file (a FIFO, a device): not read",
    "PART_MISSING": "a rotated part is missing (gap in numbering or listed in extra.files)",
    "STRAY_PART": "a file named like an artifact that no reader loads (its rows are lost)",
    "FILE_UNLISTED": "an artifact file is not listed in extra.files",
    "SIZE_MISMATCH": "file size differs from extra.files",
    "SHA256_MISMATCH": "file sha256 differs from extra.files",
    "ROWS_MISMATCH": "number of lines/rows differs from extra.files",
    "GZIP_TRUNCATED": "gzip stream ends inside a member (or the file is empty)",
    "GZIP_CORRUPT": "gzip data cannot be decoded (bad block, CRC/size mismatch, trailing junk)",
    "GZIP_TOO_LARGE": "a JSON Lines file decompresses to more text than its listed records can hold",
    # records
    "RECORD_JSON": "a line is not one JSON object (invalid JSON, NaN, blank, unterminated)",
    "RECORD_KEYS": "a record has missing, unknown or duplicate keys",
    "RECORD_TYPE": "a record value has the wrong JSON type",
    "RECORD_VALUE": "a record value violates a constraint (range, avg = duration/steps, ...)",
    "SCHEMA_VERSION": "schema_version is not '0.1'",
    "RUN_ID_MISMATCH": "a record's run_id differs from run.json",
    "EPISODE_ID": "episode_id is not of the form ep-NNNNNN",
    "SEED_MISMATCH": "a step's seed is not base_seed + episode index",
    "EPISODE_ORDER": "episodes out of order (an episode id goes back or resumes)",
    "EPISODE_MISSING": "an episode has no steps or no episode record",
    "DUPLICATE": "the same step (or episode record) twice in a row",
    "STEP_SEQUENCE": "steps of an episode do not start at 1 or go backwards",
    "STEP_GAP": "steps of an episode skip numbers (records missing)",
    "STEP_AFTER_END": "step records after the step that terminated/truncated the episode",
    "EPISODE_MISMATCH": "an episode record disagrees with its steps",
    "POSITION_RANGE": "a position lies outside the grid",
    "DISTANCE_MISMATCH": "distance_to_goal is not the distance from the position to the goal",
    "FLAG_MISMATCH": "terminated/truncated disagree with distance/goal_radius or step/max_steps",
    "REWARD_MISMATCH": "a reward does not follow from the reward type and the distance",
    "ACTION_RANGE": "an action is outside the action space",
    "OBS_SHAPE": "observation_summary has the wrong length",
    "OBS_VALUE": "a concentration observation lies outside [0, 1]",
    # parquet
    "PARQUET_CORRUPT": "a Parquet file cannot be read",
    "PARQUET_SCHEMA": "a Parquet file's schema differs from the record schema",
    "PARQUET_METADATA": "Parquet key-value metadata missing or differing from run.json",
    "PARQUET_MISMATCH": "Parquet rows differ from the JSON Lines",
    "ERRORS_SUPPRESSED": "more errors than max_errors",
}

WARNING_CODES = {
    "REFERENCE_RUN": "written by the reference implementation; some checks cannot be made",
    "UNCHECKED": "a check could not be made (what is missing is named)",
    "UNKNOWN_FILE": "a file that is not part of the run format",
    "PARQUET_SKIPPED": "Parquet not compared (check_parquet=False or JSON Lines damaged)",
}

# ------------------------------------------------------------------------------------------------
# Report


class Report:
    def __init__(self, max_errors: int):
        self.max_errors = max(int(max_errors), 1)
        self.entries: list[list] = []  # [code, where, message, rows]
        self.agg: dict = {}
        self.warnings: list[str] = []
        self.suppressed = 0

    def error(self, code: str, where: str, msg: str):
        if len(self.entries) >= self.max_errors:
            self.suppressed += 1
            return
        self.entries.append([code, where, msg, 0])

    def rows(self, code: str, fname: str, line: int, msg: str, count: int, check: str = ""):
        """A row-level problem: reported once per (code, file, check) with a running row count."""
        key = (code, fname, check)
        e = self.agg.get(key)
        if e is not None:
            e[3] += count
            return
        if len(self.entries) >= self.max_errors:
            self.suppressed += 1
            self.agg[key] = [code, "", "", 0]
            return
        e = [code, f"{fname}:{line}", msg, count]
        self.entries.append(e)
        self.agg[key] = e

    def warn(self, code: str, where: str, msg: str):
        self.warnings.append(f"{code}: {where}: {msg}")

    def error_strings(self) -> list[str]:
        out = []
        for code, where, msg, count in self.entries:
            s = f"{code}: {where}: {msg}"
            if count > 1:
                s += f" ({count} rows in this file)"
            out.append(s)
        if self.suppressed:
            out.append(f"ERRORS_SUPPRESSED: run: {self.suppressed} more errors not listed "
                       f"(max_errors={self.max_errors})")
        return out


def fmt_value(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(v)


# ------------------------------------------------------------------------------------------------
# run.json


def concat_columns(parts: list[dict]) -> dict:
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def take_rows(d: dict, sel) -> dict:
    return {k: v[sel] for k, v in d.items()}


def eid(i) -> str:
    return records.episode_id(int(i))


def eid_range(a, b) -> str:
    return eid(a) if a == b else f"{eid(a)}..{eid(b)}"
