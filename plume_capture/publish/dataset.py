"""The DVC-tracked dataset tree: ``<repo>/<dest>/<experiment>/<run_id>/`` (the run's files plus
``manifest.json``), one ``<run_id>.dvc`` per run, and ``<dest>/DATASET_INDEX.json``.

Invariants: a run directory appears in the tree only by a rename of a fully written, fsynced and
hash-checked copy; the index lists exactly the runs whose manifest is in the tree (all changes to
tree, index, DVC and git happen under one flock per repository); a name once published is never
overwritten.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from plume_capture.capture.runmeta import provenance
from plume_capture.publish.manifest import (MANIFEST_NAME, build_manifest,
                                            validation_summary)
from plume_capture.readback.validate import validate_run_artifacts
from plume_capture.errors import BadInput

INDEX_NAME = "DATASET_INDEX.json"
INDEX_VERSION = 1
DEFAULT_DEST = "data/captures"
_BLOCK = 8 << 20
_INDEX_KEYS = ("experiment", "run_id", "config_hash", "episodes", "steps", "bytes", "created",
               "published", "git_sha", "git_dirty", "path", "manifest_sha256")


class PublishError(BadInput):
    """Bad input: the run, the repository or the options; nothing was published."""


@dataclass(frozen=True)
class PublishResult:
    """``status`` is ``published`` or ``unchanged`` (the same run was already there)."""
    status: str
    path: Path
    manifest: dict
    pushed: bool = False


def run_cmd(args, cwd, what: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run git/dvc; a failure raises RuntimeError with the tool's last stderr line."""
    p = subprocess.run(args, cwd=cwd, capture_output=True, text=True, input=stdin)
    if p.returncode != 0:
        msg = (p.stderr.strip() or p.stdout.strip()).splitlines()
        raise RuntimeError(f"{what} failed: {msg[-1] if msg else f'exit {p.returncode}'}")
    return p


def dvc_cmd(*args) -> list[str]:
    """``dvc`` of this interpreter's environment (not whatever ``dvc`` is on PATH)."""
    return [sys.executable, "-m", "dvc", *args]


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(_BLOCK):
            h.update(b)
    return h.hexdigest()


def copy_hashing(src: Path, dst: Path) -> tuple[int, str]:
    """Copy ``src`` to a new ``dst`` in one read pass, hashing the bytes written; fsynced."""
    h, n = hashlib.sha256(), 0
    buf = bytearray(_BLOCK)
    view = memoryview(buf)
    with open(src, "rb", buffering=0) as fi, open(dst, "xb", buffering=0) as fo:
        while k := fi.readinto(buf):
            h.update(view[:k])
            fo.write(view[:k])
            n += k
        os.fsync(fo.fileno())
    return n, h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, doc) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, allow_nan=False, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------
# The repository


@dataclass(frozen=True)
class DatasetRepo:
    """A git + DVC repository and the dataset tree ``root`` (= ``top / dest``) inside it."""
    top: Path
    root: Path

    @property
    def index_path(self) -> Path:
        return self.root / INDEX_NAME

    @property
    def lock_path(self) -> Path:
        return self.top / ".dvc" / "tmp" / "plume-publish.lock"  # .dvc/tmp is ignored by DVC's git

    def rel(self, p: Path) -> str:
        return p.relative_to(self.top).as_posix()


def open_repo(repo, dest: str = DEFAULT_DEST) -> DatasetRepo:
    """Check that ``repo`` is a git work tree with ``dvc init`` done and ``dest`` lies inside it."""
    top = Path(repo).resolve()
    if not top.is_dir():
        raise PublishError(f"not a directory: {repo}")
    if not (top / ".dvc").is_dir():
        raise PublishError(f"not a DVC repository (no .dvc/; run `dvc init`): {top}")
    if not (top / ".git").exists():
        raise PublishError(f"not a git repository (DVC needs git for versions): {top}")
    if Path(dest).is_absolute():
        raise PublishError(f"--dest must be relative to the repository: {dest}")
    root = (top / dest).resolve()
    if root == top or top not in root.parents or ".dvc" in root.relative_to(top).parts \
            or ".git" in root.relative_to(top).parts:
        raise PublishError(f"--dest must be a directory inside the repository: {dest}")
    return DatasetRepo(top, root)


def check_remote(repo: DatasetRepo, remote: str | None) -> str:
    """The remote ``dvc push`` will use: ``remote`` if configured, else the default remote."""
    names = run_cmd(dvc_cmd("remote", "list"), repo.top, "dvc remote list").stdout.split()
    configured = [names[i] for i in range(0, len(names), 2)]  # "name url" pairs
    if remote is not None:
        if remote not in configured:
            raise PublishError(f"unknown DVC remote {remote!r} (configured: "
                               f"{', '.join(configured) or 'none'})")
        return remote
    p = subprocess.run(dvc_cmd("remote", "default"), cwd=repo.top, capture_output=True, text=True)
    name = p.stdout.strip()
    if p.returncode != 0 or not name or name not in configured:
        raise PublishError("--push needs a DVC remote: give --remote NAME or set a default "
                           "(`dvc remote add -d NAME URL`)")
    return name


@contextmanager
def repo_lock(repo: DatasetRepo):
    repo.lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(repo.lock_path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------------
# The index


def read_index(repo: DatasetRepo) -> dict:
    if not repo.index_path.exists():
        return {"index_version": INDEX_VERSION, "runs": []}
    with open(repo.index_path, encoding="utf-8") as f:
        return json.load(f)


def index_entry(repo: DatasetRepo, run_path: Path, manifest: dict, manifest_sha: str) -> dict:
    counts = manifest.get("counts") or {}
    code = manifest.get("code") or {}
    return {"experiment": manifest["experiment"], "run_id": manifest["run_id"],
            "config_hash": manifest.get("config_hash"), "episodes": counts.get("episodes"),
            "steps": counts.get("steps"),
            "bytes": sum(f["bytes"] for f in manifest["files"].values()),
            "created": manifest.get("start_time"), "published": manifest["published"]["at"],
            "git_sha": code.get("git_sha"), "git_dirty": code.get("git_dirty"),
            "path": run_path.relative_to(repo.root).as_posix(), "manifest_sha256": manifest_sha}


def _sorted_index(entries) -> dict:
    runs = sorted(entries, key=lambda e: (e["experiment"], e["run_id"]))
    return {"index_version": INDEX_VERSION, "runs": runs}


def rebuild_index(repo: DatasetRepo) -> dict:
    """The index recomputed from the manifests in the tree (the index is derived data)."""
    entries = []
    for m in sorted(repo.root.glob(f"*/*/{MANIFEST_NAME}")):
        with open(m, encoding="utf-8") as f:
            entries.append(index_entry(repo, m.parent, json.load(f), sha256_file(m)))
    return _sorted_index(entries)


def _add_to_index(repo: DatasetRepo, entries: list) -> None:
    new = {(e["experiment"], e["run_id"]) for e in entries}
    runs = [e for e in read_index(repo)["runs"] if (e["experiment"], e["run_id"]) not in new]
    write_json_atomic(repo.index_path, _sorted_index(runs + entries))


# ------------------------------------------------------------------------------------------------
# Publishing


def _read_run_json(run_dir: Path) -> dict:
    try:
        with open(run_dir / "run.json", encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise PublishError(f"incomplete run (no run.json): {run_dir}") from None
    except (OSError, ValueError) as e:
        raise PublishError(f"unreadable run.json in {run_dir}: {e}") from None
    if not isinstance(meta, dict):
        raise PublishError(f"run.json is not a JSON object: {run_dir}")
    for key in ("run_id", "experiment"):
        v = meta.get(key)
        if not isinstance(v, str) or not v or v in (".", "..") or "/" in v or "\\" in v \
                or "\0" in v or v.startswith("."):
            raise PublishError(f"run.json {key} {v!r} is not a usable directory name")
    return meta


def _run_files(run_dir: Path) -> list[str]:
    """The run's files (paths relative to it): regular files, and those of a Parquet directory."""
    names = []
    for e in sorted(os.scandir(run_dir), key=lambda e: e.name):
        if e.name.endswith(".parquet") and e.is_dir(follow_symlinks=False):
            for f in sorted(os.scandir(e.path), key=lambda f: f.name):
                if f.is_symlink() or not f.is_file():
                    raise PublishError(f"unexpected entry in the run directory: {e.name}/{f.name}")
                names.append(f"{e.name}/{f.name}")
            continue
        if e.is_dir(follow_symlinks=False) or not e.is_file():
            raise PublishError(f"unexpected entry in the run directory: {e.name}")
        if e.name == MANIFEST_NAME:
            continue  # a manifest from an earlier publish is rewritten, not copied
        names.append(e.name)
    return names


def _same_run(src: Path, names: list[str], manifest: dict) -> bool:
    files = manifest.get("files") or {}
    if sorted(files) != names:
        return False
    return all(os.path.getsize(src / n) == files[n]["bytes"] and sha256_file(src / n)
               == files[n]["sha256"] for n in names)


def _prior_validation(src: Path, names: list[str]) -> dict | None:
    """The validation report of a manifest already in ``src`` (a run pulled from a dataset) when
    it says ok and every file still has the sha256 it lists; None otherwise."""
    try:
        with open(src / MANIFEST_NAME, encoding="utf-8") as f:
            manifest = json.load(f)
        report = manifest["validation"]
        if report["ok"] is True and _same_run(src, names, manifest):
            return {**report, "reused_from": "manifest.json of the source run (same sha256s)"}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _existing(repo: DatasetRepo, target: Path, src: Path, names: list[str]) -> dict | None:
    """The published manifest when ``target`` holds this very run; PublishError when it holds
    another; None when the name is free."""
    if not target.exists():
        return None
    try:
        with open(target / MANIFEST_NAME, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        raise PublishError(f"{repo.rel(target)} exists and is not a published run") from None
    if not _same_run(src, names, manifest):
        raise PublishError(f"a different run is already published as {repo.rel(target)}")
    return manifest


def _stage_copy(src: Path, stage: Path, names: list[str], inventory: dict) -> dict:
    """Copy the run into ``stage``; -> name -> {bytes, rows, sha256} of the copied bytes, which
    must match the inventory run.json declares (and the validator checked)."""
    stage.mkdir()
    files = {}
    for n in names:
        (stage / n).parent.mkdir(exist_ok=True)
        size, sha = copy_hashing(src / n, stage / n)
        want = inventory.get(n)
        if want is not None and (want.get("sha256") != sha or want.get("bytes") != size):
            raise PublishError(f"{n} changed while publishing (sha256 differs from run.json)")
        files[n] = {"bytes": size, "rows": want.get("rows") if want else None, "sha256": sha}
    return files


def _check_not_tracked_whole(ds: DatasetRepo, target: Path) -> None:
    """A directory above the run that is one DVC output would swallow the run (DVC 3 then updates
    that output instead of writing ``<run_id>.dvc``): refuse."""
    for d in [target.parent, *target.parent.parents]:
        if d == ds.top:
            return
        if d.with_name(d.name + ".dvc").exists():
            raise PublishError(f"{ds.rel(d)} is tracked by DVC as a whole ({ds.rel(d)}.dvc); "
                               "publish into another --dest")


_STAGE_TAG = ".publishing-"
_HOST = socket.gethostname().replace("-", "_")


def _sweep_stale_stages(ds: DatasetRepo) -> list[Path]:
    """Remove staging copies left by a publish of this host that was killed (its pid is gone)."""
    gone = []
    for d in ds.root.glob(f"*/.*{_STAGE_TAG}{_HOST}-*"):
        try:
            pid = int(d.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d)
        except (ValueError, PermissionError):
            pass  # not ours to judge
    return gone


def _source(run_dir, ds: DatasetRepo) -> Path:
    src = Path(run_dir)
    if not src.is_dir():
        raise PublishError(f"not a directory: {run_dir}")
    src = src.resolve()
    if src.name.endswith(".partial") or src.name.startswith("."):
        raise PublishError(f"incomplete run (staging directory): {src}")
    if ds.root == src or ds.root in src.parents:
        raise PublishError(f"the run is already inside the dataset tree: {src}")
    return src


@dataclass(eq=False)
class _Plan:
    src: Path
    meta: dict
    names: list
    target: Path
    found: dict | None
    stage: Path | None = None
    manifest: dict | None = None


def publish_run(run_dir, repo, **kw) -> PublishResult:
    """Validate ``run_dir`` and publish it; see :func:`publish_runs`."""
    return publish_runs([run_dir], repo, **kw)[0]


def publish_runs(run_dirs, repo, *, dest: str = DEFAULT_DEST, push: bool = False,
                 remote: str | None = None, commit: bool = True, revalidate: bool = False,
                 log=None, timings: dict | None = None) -> list[PublishResult]:
    """Validate the runs and publish them into the dataset tree of ``repo`` (see the module doc)
    with one ``dvc add``, one index update and one git commit for all of them.

    All or nothing: PublishError for bad input (nothing published), RuntimeError when git/DVC fail
    (the tree is rolled back). ``commit``: commit the .dvc files, .gitignore and index to git.
    A run carrying a manifest whose sha256s all still match (pulled from a dataset) is not
    validated again unless ``revalidate``. ``timings``, when given, receives seconds per phase.
    """
    say = log or (lambda msg: None)
    tm = timings if timings is not None else {}
    clock = time.perf_counter()

    def lap(key):
        nonlocal clock
        now = time.perf_counter()
        tm[key] = tm.get(key, 0.0) + now - clock
        clock = now

    ds = open_repo(repo, dest)
    push_remote = check_remote(ds, remote) if push else None
    if commit:
        ident = subprocess.run(["git", "var", "GIT_COMMITTER_IDENT"], cwd=ds.top,
                               capture_output=True, text=True)
        if ident.returncode != 0:
            raise PublishError("git has no committer identity here (set user.name/user.email "
                               "or use --no-commit)")
    plans, seen = [], set()
    for rd in run_dirs:
        src = _source(rd, ds)
        meta = _read_run_json(src)
        names = _run_files(src)
        target = ds.root / meta["experiment"] / meta["run_id"]
        _check_not_tracked_whole(ds, target)
        if target in seen:
            raise PublishError(f"{ds.rel(target)} given twice")
        seen.add(target)
        plans.append(_Plan(src, meta, names, target, _existing(ds, target, src, names)))
    lap("check_s")
    todo = [p for p in plans if p.found is None]
    reports = {}
    for p in todo:
        extra = p.meta.get("extra") if isinstance(p.meta.get("extra"), dict) else {}
        if extra.get("status", "complete") != "complete":
            raise PublishError(f"run {p.src.name} status is {extra.get('status')!r}, not complete")
        prior = None if revalidate else _prior_validation(p.src, p.names)
        if prior is not None:
            say(f"validation: {p.src.name} unchanged since validated at {prior['validated_at']}")
            reports[p.target] = prior
            continue
        res = validate_run_artifacts(p.src)
        if not res["ok"]:
            first = res["errors"][0] if res["errors"] else "invalid"
            raise PublishError(f"invalid run {p.src.name} ({len(res['errors'])} error(s)), "
                               f"first: {first}")
        reports[p.target] = res
    lap("validate_s")
    fresh = []
    try:
        for p in todo:
            extra = p.meta.get("extra") if isinstance(p.meta.get("extra"), dict) else {}
            inventory = extra.get("files") if isinstance(extra.get("files"), dict) else {}
            p.target.parent.mkdir(parents=True, exist_ok=True)
            p.stage = p.target.parent / f".{p.meta['run_id']}{_STAGE_TAG}{_HOST}-{os.getpid()}"
            files = _stage_copy(p.src, p.stage, p.names, inventory)
            rep = reports[p.target]
            p.manifest = build_manifest(p.meta, files,
                                        rep if "reused_from" in rep else validation_summary(rep),
                                        publisher={"at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                       time.gmtime()),
                                                   "source": str(p.src), "code": provenance()})
            write_json_atomic(p.stage / MANIFEST_NAME, p.manifest)
            _fsync_dir(p.stage)
        lap("copy_s")
        with repo_lock(ds):
            lap("lock_wait_s")
            _sweep_stale_stages(ds)
            for p in todo:  # a concurrent publish of the same run may have landed meanwhile
                p.found = _existing(ds, p.target, p.stage, p.names)
                if p.found is None:
                    fresh.append(p)
            if fresh:
                _commit_to_tree(ds, fresh, commit, lap)
    finally:
        for p in todo:
            if p.stage is not None and p.stage.exists():
                shutil.rmtree(p.stage)
    out = []
    for p in plans:
        if p.found is None:  # published now (else already there, maybe concurrently)
            c = p.manifest["counts"]
            say(f"published: {ds.rel(p.target)} ({c.get('episodes')} episodes, "
                f"{c.get('steps')} steps)")
            out.append(PublishResult("published", p.target, p.manifest, bool(push_remote)))
        else:
            say(f"unchanged: {ds.rel(p.target)} already holds this run (same sha256s); "
                "nothing to do")
            out.append(PublishResult("unchanged", p.target, p.found, bool(push_remote)))
    if push_remote:
        run_cmd(dvc_cmd("push", "--quiet", "-r", push_remote,
                        *[ds.rel(p.target) + ".dvc" for p in plans]), ds.top, "dvc push")
        lap("push_s")
    return out


def _commit_to_tree(ds: DatasetRepo, plans: list, commit: bool, lap):
    """Under the lock: rename into place, ``dvc add``, index, git; rolled back on failure."""
    dvc_files = [p.target.with_name(p.target.name + ".dvc") for p in plans]
    ignores = sorted({p.target.parent / ".gitignore" for p in plans})
    saved = {f: (f.read_bytes() if f.exists() else None) for f in [*ignores, ds.index_path]}
    for p in plans:
        os.rename(p.stage, p.target)
    for d in sorted({p.target.parent for p in plans}):
        _fsync_dir(d)
    paths = [ds.rel(f) for f in [*dvc_files, *ignores, ds.index_path]]
    try:
        run_cmd(dvc_cmd("add", "--quiet", *[ds.rel(p.target) for p in plans]), ds.top, "dvc add")
        missing = [ds.rel(f) for f in dvc_files if not f.exists()]
        if missing:
            raise RuntimeError(f"dvc add wrote no {missing[0]}")
        lap("dvc_add_s")
        entries = [index_entry(ds, p.target, p.manifest, sha256_file(p.target / MANIFEST_NAME))
                   for p in plans]
        _add_to_index(ds, entries)
        run_cmd(["git", "add", "--", *paths], ds.top, "git add")
        if commit:
            names = [f"{p.manifest['experiment']}/{p.manifest['run_id']}" for p in plans]
            msg = f"publish {names[0]}" if len(names) == 1 else \
                f"publish {len(names)} runs\n\n" + "\n".join(names)
            run_cmd(["git", "commit", "--quiet", "-F", "-", "--", *paths], ds.top, "git commit",
                    stdin=msg)
        lap("index_git_s")
    except BaseException:
        subprocess.run(["git", "reset", "--quiet", "--", *paths], cwd=ds.top, capture_output=True)
        for p, f in zip(plans, dvc_files):
            shutil.rmtree(p.target, ignore_errors=True)
            f.unlink(missing_ok=True)
        for path, old in saved.items():
            if old is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(old)
        raise
