"""Minari datasets (HDF5 backend), written chunk by chunk through Minari's storage API.

One episode group per captured episode: ``observations`` (T+1; the first is the reset observation
recomputed from the episode seed), ``actions``, ``rewards``, ``terminations``, ``truncations`` and
the episode ``seed``. The metadata carries the env spec of ``PlumeNav-v0`` with the run's kwargs
(so ``recover_environment()`` rebuilds the env that ran), the spaces, code_permalink, and the
run's ``config_hash`` and ``run_id``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np

from plume_capture.errors import OperationalError
from plume_capture.export.reader import ExportError, iter_chunks, open_run, validated
from plume_capture.export.staging import check_free, provenance, staged_dir

CODE_PERMALINK = "https://pypi.org/project/plume-capture/"


def dataset_id_for(meta: dict) -> str:
    """Minari id ``plume-capture_<experiment>_<run_id>-v0`` (characters Minari rejects -> '_')."""
    meta = meta if isinstance(meta, dict) else {}  # a damaged run.json: open_run reports it
    name = re.sub(r"[^\w.-]", "_", f"{meta.get('experiment')}_{meta.get('run_id')}")
    return f"plume-capture_{name}-v0"


def _check_room(where: str, final: str, src, env) -> None:
    """OperationalError unless the file system holds the HDF5 file this export writes (with a 1.5x
    margin). HDF5 that meets a full disk mid-write can crash the process (seen: SIGSEGV) instead of
    raising, so this is checked before it writes."""
    counts = (src.meta.get("extra") or {}).get("counts") or {}
    steps, episodes = int(counts.get("steps") or 0), int(counts.get("episodes") or 0)
    obs = int(np.prod(env.observation_space.shape or (1,)))
    need = int(1.5 * (steps * (4 * obs + 8 + 8 + 2) + episodes * (4 * obs + 256))) + (1 << 20)
    st = os.statvfs(where)
    have = st.f_bavail * st.f_frsize
    if have < need:
        raise OperationalError(f"cannot write {final}: no space left on device (the Minari dataset needs "
                               f"about {need:,} bytes, {have:,} are free)")


def export_minari(run_dir, out=None, *, dataset_id: str | None = None, full_validation: bool = False) -> str:
    """Export ``run_dir`` as a Minari dataset under the datasets root ``out`` (default
    ``<run_dir>.minari``); returns the dataset's directory ``<out>/<dataset_id>``. Load it
    with ``MINARI_DATASETS_PATH=<out>`` and ``minari.load_dataset(dataset_id)``."""
    import gymnasium
    from minari.data_collector.episode_buffer import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage
    from minari import __version__ as minari_version

    import plume_capture.envs  # noqa: F401  (registers PlumeNav-v0)

    from plume_capture.io.jsonl_decode import strict_loads
    from plume_capture.io.rundir import open_regular

    root = os.fspath(out) if out is not None else os.fspath(run_dir).rstrip(os.sep) + ".minari"
    if dataset_id is None:
        try:
            with open_regular(os.path.join(run_dir, "run.json")) as f:
                dataset_id = dataset_id_for(strict_loads(f.read()))
        except (OSError, ValueError):
            dataset_id = dataset_id_for({})  # open_run reports the problem
    final = check_free(os.path.join(root, dataset_id), run_dir)
    src = open_run(run_dir, full_validation=full_validation)
    env_spec = dataclasses.replace(gymnasium.spec("PlumeNav-v0"), kwargs=dict(src.env_kwargs))
    env = gymnasium.make(env_spec, disable_env_checker=True)
    prov = provenance(src)
    with staged_dir(final) as tmp, validated(src):
        _check_room(tmp, final, src, env)
        storage = MinariStorage.new(os.path.join(tmp, "data"), env.observation_space,
                                    env.action_space, env_spec, data_format="hdf5")
        storage.update_metadata({
            "dataset_id": dataset_id, "minari_version": minari_version,
            "code_permalink": CODE_PERMALINK, "author": {"plume-capture"},
            "algorithm_name": str((prov.get("policy") or {}).get("name", "unknown")),
            "description": f"PlumeNav-v0 trajectories of run {prov['run_id']} "
                          f"(config_hash {prov['config_hash']}); provenance: "
                          + json.dumps(prov, default=str),
            "requirements": [f"plume-capture=={prov['package_version']}"]
            if prov.get("package_version") else [],
        })
        for c in iter_chunks(src):
            ends = np.r_[c.starts[1:], c.n]
            buffers = []
            for i, (a, b) in enumerate(zip(c.starts, ends)):
                buffers.append(EpisodeBuffer(
                    id=int(c.episode[a]), seed=int(c.seeds[i]),
                    observations=np.concatenate([c.reset_obs[i:i + 1], c.obs[a:b]]),
                    actions=c.action[a:b], rewards=c.reward[a:b],
                    terminations=c.terminated[a:b], truncations=c.truncated[a:b]))
            storage.update_episodes(buffers)
        counts = src.confirm()
        if (storage.total_episodes, storage.total_steps) != (counts["episodes"], counts["steps"]):
            raise ExportError(f"{src.run_dir}: wrote {storage.total_episodes} episodes / "
                              f"{storage.total_steps} steps, the run has {counts['episodes']} / "
                              f"{counts['steps']}")
    return final
