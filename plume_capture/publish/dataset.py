"""The DVC-tracked dataset tree: ``<repo>/<dest>/<experiment>/<run_id>/`` (the run's files plus
``manifest.json``), one ``<run_id>.dvc`` per run, and ``<dest>/DATASET_INDEX.json``.

Invariants: a run directory appears in the tree only by a rename of a fully written, fsynced and
hash-checked copy, after a journal naming it (``.dvc/tmp/plume-publish-pending-*.json``) is on
disk; a run counts as published only once git knows its ``.dvc`` file; a publish stopped between
its rename and its commit is finished (or, when its files no longer match its manifest, rolled
back) by the next publish into that tree; the index lists exactly the runs whose manifest is in the
tree (all changes to tree, index, DVC and git happen under one flock per repository); a name once
published is never overwritten.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from plume_capture.capture.lock import LOCK
from plume_capture.capture.runmeta import provenance
from plume_capture.capture.sink import JOURNAL
from plume_capture.capture.sink import MANIFEST as CAPTURE_MANIFEST
from plume_capture.publish.manifest import build_manifest, validation_summary
from plume_capture.readback.validate import validate_run_artifacts
from plume_capture.spec import MANIFEST_NAME
from plume_capture import interrupts
from plume_capture.errors import BadInput, OperationalError

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


class ToolError(OperationalError):
    """git or DVC failed (a hook, a remote, the disk): exit 3, naming the tool and its last line."""


def run_cmd(args, cwd, what: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run git/dvc (an argument list, no shell) in a session of its own, so a Ctrl-C at the
    terminal reaches only us and we decide what the tool may finish; a failure raises
    :class:`ToolError` with the tool's last stderr line."""
    p = subprocess.run(args, cwd=cwd, capture_output=True, text=True, input=stdin,
                       start_new_session=True)
    if p.returncode != 0:
        raise ToolError(f"{what} failed: {_tool_says(p.stderr or p.stdout) or f'exit {p.returncode}'}")
    return p


def _tool_says(text: str) -> str:
    """The line of a tool's output that says what failed: DVC's last ``ERROR:`` line (its last line
    is an advert for its support forum), else the last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    if errors:
        return errors[-1][len("ERROR:"):].strip().removeprefix("unexpected error - ")
    lines = [ln for ln in lines if not ln.startswith("Having any troubles?")]
    return lines[-1] if lines else ""


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
    """Copy the regular file ``src`` (never through a symlink) to a new ``dst`` in one read pass,
    hashing the bytes written; fsynced."""
    h, n = hashlib.sha256(), 0
    buf = bytearray(_BLOCK)
    view = memoryview(buf)
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise PublishError(f"cannot read {src.name} as a regular file: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PublishError(f"{src.name} is not a regular file")
    with open(fd, "rb", buffering=0) as fi, open(dst, "xb", buffering=0) as fo:
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
    if path.is_dir():
        raise PublishError(f"{path}: is a directory, not a file this command can write; move it away")
    path.parent.mkdir(parents=True, exist_ok=True)
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
    try:
        dest.encode("utf-8")
    except UnicodeEncodeError:
        raise PublishError(f"--dest {dest[:60]!r} is not valid UTF-8") from None
    if "\0" in dest or any(len(part.encode("utf-8")) > MAX_NAME_BYTES for part in Path(dest).parts):
        raise PublishError(f"--dest {dest[:60]!r}: a NUL byte, or a name longer than {MAX_NAME_BYTES} bytes")
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
    """The index, checked: a JSON object whose ``runs`` are objects naming their experiment and
    run_id. Anything else is :class:`PublishError` saying how to rebuild it (it is derived data)."""
    path = repo.index_path
    if not os.path.lexists(path):
        return {"index_version": INDEX_VERSION, "runs": []}

    def damaged(what: str) -> PublishError:
        return PublishError(f"{path}: {what}; rebuild it with plume-nav-publish --rebuild-index "
                            f"--repo {repo.top}")

    if path.is_dir() and not path.is_symlink():  # --rebuild-index cannot write over it
        raise PublishError(f"{path}: a directory where the index belongs; move it away, then rebuild "
                           f"the index with plume-nav-publish --rebuild-index --repo {repo.top}")
    if os.path.islink(path) or not path.is_file():
        raise damaged("not a regular file")
    try:
        doc = json.loads(path.read_bytes(), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise damaged(f"not valid JSON ({' '.join(str(exc).split())[:80]})") from None
    runs = doc.get("runs") if isinstance(doc, dict) else None
    if not isinstance(runs, list):
        raise damaged("not an object with a list of runs")
    for i, e in enumerate(runs):
        if not isinstance(e, dict) or not all(isinstance(e.get(k), str) for k in ("experiment", "run_id")):
            raise damaged(f"entry {i} does not name its experiment and run_id")
    return doc


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


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
    for run in tree_runs(repo):
        m = run / MANIFEST_NAME
        with open(m, encoding="utf-8") as f:
            entries.append(index_entry(repo, run, json.load(f), sha256_file(m)))
    return _sorted_index(entries)


def tree_runs(repo: DatasetRepo) -> list[Path]:
    """The run directories in the tree holding a manifest (not a publish's hidden staging copy)."""
    return [m.parent for m in sorted(repo.root.glob(f"[!.]*/[!.]*/{MANIFEST_NAME}"))]


def _add_to_index(repo: DatasetRepo, entries: list) -> None:
    new = {(e["experiment"], e["run_id"]) for e in entries}
    runs = [e for e in read_index(repo)["runs"] if (e["experiment"], e["run_id"]) not in new]
    write_json_atomic(repo.index_path, _sorted_index(runs + entries))


# ------------------------------------------------------------------------------------------------
# Publishing


#: what the capture keeps only while a run is being written; never part of a published run
BOOKKEEPING = (JOURNAL, CAPTURE_MANIFEST, LOCK)
#: the extra keys every run of ours carries (docs/spec.md §9.2); without them the validator could check
#: only what it checks for the reference tool's runs
_OUR_EXTRA = {"status": str, "env": dict, "counts": dict, "files": dict, "engine": dict}
_OUR_RUN_ID = re.compile(r"run-\d{8}-\d{6}-.")  # ours have a unique suffix, the reference's none
_STOP_ENV = "PLUME_NAV_PUBLISH_TEST_STOP"


def _test_stop(point: str) -> None:
    """Test hook: with ``PLUME_NAV_PUBLISH_TEST_STOP=<point>`` this process stops itself (SIGSTOP)
    at that point of the commit, so a test can signal it there. Unset in normal use."""
    if os.environ.get(_STOP_ENV) == point:
        os.kill(os.getpid(), signal.SIGSTOP)


def _read_run_json(run_dir: Path) -> tuple[dict, str]:
    """run.json parsed, and the sha256 of the bytes parsed (the copy must publish those bytes)."""
    try:
        raw = (run_dir / "run.json").read_bytes()
        meta = json.loads(raw)
    except FileNotFoundError:
        raise PublishError(f"incomplete run (no run.json): {run_dir}") from None
    except (OSError, ValueError) as e:
        raise PublishError(f"unreadable run.json in {run_dir}: {e}") from None
    if not isinstance(meta, dict):
        raise PublishError(f"run.json is not a JSON object: {run_dir}")
    for key in ("run_id", "experiment"):
        v = meta.get(key)
        if not isinstance(v, str) or not v or v in (".", "..") or "/" in v or "\\" in v \
                or "\0" in v or v.startswith(".") or v == INDEX_NAME:
            raise PublishError(f"run.json {key} {v[:60] if isinstance(v, str) else v!r} is not a usable "
                               "directory name")
        if len(v.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise PublishError(f"run.json {key} is {len(v.encode('utf-8', 'surrogatepass'))} bytes long; "
                               f"a published name may be at most {MAX_NAME_BYTES} (its staging copy and "
                               ".dvc file add to it)")
    return meta, hashlib.sha256(raw).hexdigest()


def _check_bookkeeping(src: Path, meta: dict) -> None:
    """A run whose run_id is one of ours must carry our bookkeeping in ``extra``: without it the
    validator would treat it as the reference tool's and check far less."""
    if not _OUR_RUN_ID.match(meta["run_id"]):
        return
    extra = meta.get("extra") if isinstance(meta.get("extra"), dict) else {}
    for key, kind in _OUR_EXTRA.items():
        if not isinstance(extra.get(key), kind) or not extra[key]:
            raise PublishError(f"run {src.name} was made by plume-capture (its run_id) but "
                               f"run.json has no extra.{key}; refusing to publish a run whose "
                               "bookkeeping is gone")


def _run_files(run_dir: Path) -> tuple[list[str], list[str]]:
    """-> (the run's files, paths relative to it: regular files and those of a Parquet directory;
    the capture's bookkeeping files found at the top, which are not part of the run). A symlink or
    anything else is refused."""
    names, skipped = [], []
    for e in sorted(os.scandir(run_dir), key=lambda e: e.name):
        if e.is_symlink():
            raise PublishError(f"symlink in the run directory: {e.name} (publish copies regular "
                               "files only)")
        if e.name.endswith(".parquet") and e.is_dir(follow_symlinks=False):
            for f in sorted(os.scandir(e.path), key=lambda f: f.name):
                if f.is_symlink():
                    raise PublishError(f"symlink in the run directory: {e.name}/{f.name} "
                                       "(publish copies regular files only)")
                if not f.is_file(follow_symlinks=False):
                    raise PublishError(f"unexpected entry in the run directory: {e.name}/{f.name}")
                names.append(f"{e.name}/{f.name}")
            continue
        if not e.is_file(follow_symlinks=False):
            raise PublishError(f"unexpected entry in the run directory: {e.name}")
        if e.name == MANIFEST_NAME:
            continue  # a manifest from an earlier publish is rewritten, not copied
        (skipped if e.name in BOOKKEEPING else names).append(e.name)
    return names, skipped


def _same_run(src: Path, names: list[str], manifest: dict) -> bool:
    files = manifest.get("files") or {}
    if sorted(files) != names:
        return False
    return all(os.path.getsize(src / n) == files[n]["bytes"] and sha256_file(src / n)
               == files[n]["sha256"] for n in names)


def _read_manifest(run: Path) -> dict | None:
    try:
        with open(run / MANIFEST_NAME, encoding="utf-8") as f:
            m = json.load(f)
        return m if isinstance(m, dict) else None
    except (OSError, ValueError):
        return None


def _intact(run: Path) -> dict | None:
    """The manifest of a run directory of the tree whose files all match it; None otherwise."""
    m = _read_manifest(run)
    try:
        return m if m is not None and _same_run(run, _run_files(run)[0], m) else None
    except (PublishError, OSError, KeyError, TypeError):
        return None


def _dvc_file(target: Path) -> Path:
    return target.with_name(target.name + ".dvc")


def _tracked(ds: DatasetRepo) -> set[str]:
    """Paths under the dataset tree that git's index holds (committed, or staged by --no-commit)."""
    if not ds.root.is_dir():
        return set()
    out = run_cmd(["git", "ls-files", "-z", "--", ds.rel(ds.root)], ds.top, "git ls-files").stdout
    return set(out.split("\0")) - {""}


def _existing(repo: DatasetRepo, target: Path, src: Path, names: list[str],
              tracked: set[str], recovered: bool = False) -> dict | None:
    """The published manifest when ``target`` holds this very run and git knows its ``.dvc``;
    PublishError when it holds another; None when the name is free or (before ``recovered``, the
    recovery under the lock) when its publish never reached git."""
    if not target.exists():
        return None
    manifest = _read_manifest(target)
    if manifest is None:
        raise PublishError(f"{repo.rel(target)} exists and is not a published run")
    if not _same_run(src, names, manifest):
        raise PublishError(f"a different run is already published as {repo.rel(target)}")
    if repo.rel(_dvc_file(target)) in tracked:
        return manifest
    if recovered:  # the recovery left it alone: its files do not match its manifest
        raise PublishError(f"{repo.rel(target)} is in the dataset tree, unknown to git, and its "
                           "files do not match its manifest; remove it and publish again")
    return None


def _stage_copy(src: Path, stage: Path, names: list[str], inventory: dict,
                run_json_sha: str) -> dict:
    """Copy the run into ``stage``; -> name -> {bytes, rows, sha256} of the copied bytes, which
    must match the inventory run.json declares (and the validator checked), and run.json the
    bytes that were read."""
    stage.mkdir()
    files = {}
    for n in names:
        (stage / n).parent.mkdir(exist_ok=True)
        size, sha = copy_hashing(src / n, stage / n)
        want = inventory.get(n)
        if n == "run.json":
            want = {"sha256": run_json_sha, "bytes": size, "rows": None}
        if want is not None and (want.get("sha256") != sha or want.get("bytes") != size):
            raise PublishError(f"{n} changed while publishing (sha256 differs from run.json)")
        files[n] = {"bytes": size, "rows": want.get("rows") if want else None, "sha256": sha}
    return files


#: files git keeps while an operation waits for the user; a commit of some paths is refused then
_GIT_UNDER_WAY = {"MERGE_HEAD": "a merge", "CHERRY_PICK_HEAD": "a cherry-pick", "REVERT_HEAD": "a revert",
                  "rebase-merge": "a rebase", "rebase-apply": "a rebase or git am"}


def _check_no_operation_under_way(ds: DatasetRepo) -> None:
    """Refuse, before anything is written, a repository in the middle of a merge, rebase, ...:
    git would refuse the commit at the end."""
    p = subprocess.run(["git", "rev-parse", "--absolute-git-dir"], cwd=ds.top, capture_output=True, text=True,
                       check=False)
    gitdir = Path(p.stdout.strip()) if p.returncode == 0 else ds.top / ".git"
    for name, what in _GIT_UNDER_WAY.items():
        if (gitdir / name).exists():
            raise PublishError(f"{ds.top} is in the middle of {what} ({gitdir / name} exists): finish or "
                               "abort it first, or publish with --no-commit")


def _check_not_tracked_whole(ds: DatasetRepo, target: Path) -> None:
    """A directory above the run that is one DVC output would swallow the run (DVC 3 then updates
    that output instead of writing ``<run_id>.dvc``), and DVC adds nothing behind a symbolic link:
    refuse both."""
    for d in [target.parent, *target.parent.parents]:
        if d == ds.top:
            return
        if d.is_symlink():
            raise PublishError(f"{ds.rel(d)} is a symbolic link; DVC cannot track a run behind one "
                               "(make it a directory, or publish into another --dest)")
        if d.with_name(d.name + ".dvc").exists():
            raise PublishError(f"{ds.rel(d)} is tracked by DVC as a whole ({ds.rel(d)}.dvc); "
                               "publish into another --dest")


_STAGE_TAG = ".publishing-"
#: the longest experiment or run_id published: room for ``.<name>.publishing-<host>-<pid>``
MAX_NAME_BYTES = 160
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


# ------------------------------------------------------------------------------------------------
# The pending journal: what a publish is about to put into the tree, until git has it


def _pending_path(ds: DatasetRepo) -> Path:
    tag = hashlib.sha256(ds.rel(ds.root).encode()).hexdigest()[:12]
    return ds.lock_path.with_name(f"plume-publish-pending-{tag}.json")


def _write_pending(ds: DatasetRepo, targets: list[Path], commit: bool) -> None:
    write_json_atomic(_pending_path(ds), {"dest": ds.rel(ds.root), "commit": commit,
                                          "runs": [ds.rel(t) for t in targets]})
    _fsync_dir(_pending_path(ds).parent)


def _read_pending(ds: DatasetRepo) -> dict | None:
    try:
        with open(_pending_path(ds), encoding="utf-8") as f:
            doc = json.load(f)
        return {"commit": bool(doc["commit"]), "runs": [ds.top / r for r in doc["runs"]]}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return {"commit": True, "runs": []}  # torn: the tree scan below still finds the runs


def _commit_message(targets: list[Path]) -> str:
    names = [f"{t.parent.name}/{t.name}" for t in targets]
    return f"publish {names[0]}" if len(names) == 1 else \
        f"publish {len(names)} runs\n\n" + "\n".join(names)


def _record(ds: DatasetRepo, runs: list[tuple[Path, dict]], commit: bool, lap=lambda key: None) -> bool:
    """``dvc add`` the run directories ``runs`` ((target, manifest)), index them, stage them in
    git and (``commit``) commit them; a noted signal is acted on before the commit only.
    -> whether git had anything new to record."""
    targets = [t for t, _ in runs]
    dvc_files = [_dvc_file(t) for t in targets]
    paths = [ds.rel(f) for f in [*dvc_files, *sorted({t.parent / ".gitignore" for t in targets}),
                                 ds.index_path]]
    run_cmd(dvc_cmd("add", *[ds.rel(t) for t in targets]), ds.top, "dvc add")  # --quiet hides its errors too
    missing = [ds.rel(f) for f in dvc_files if not f.exists()]
    if missing:
        raise RuntimeError(f"dvc add wrote no {missing[0]}")
    lap("dvc_add_s")
    interrupts.check("interrupted; nothing was published")
    _add_to_index(ds, [index_entry(ds, t, m, sha256_file(t / MANIFEST_NAME)) for t, m in runs])
    run_cmd(["git", "add", "--", *paths], ds.top, "git add")
    _test_stop("staged")
    interrupts.check("interrupted; nothing was published")
    staged = subprocess.run(["git", "diff", "--cached", "--quiet", "--", *paths], cwd=ds.top,
                            capture_output=True, start_new_session=True).returncode != 0
    if commit and staged:  # nothing staged: a recovery finding its commit already made
        run_cmd(["git", "commit", "--quiet", "-F", "-", "--", *paths], ds.top, "git commit",
                stdin=_commit_message(targets))
    lap("index_git_s")
    return staged


def _recover(ds: DatasetRepo, commit: bool, say) -> set[Path]:
    """Under the lock: finish the runs a stopped publish left in the tree without a commit — those
    its journal names and any run directory whose ``.dvc`` git does not know. A run whose files
    match its manifest is recorded and committed (as its journal says, else as ``commit``); a
    journal's run that does not match is removed; a run the journal does not name and that does
    not match is left alone (not known to be ours). -> the run directories finished."""
    pending = _read_pending(ds)
    listed = set(pending["runs"]) if pending else set()
    if pending:
        commit = pending["commit"]
    tracked = _tracked(ds)
    strays = {t for t in tree_runs(ds) if ds.rel(_dvc_file(t)) not in tracked}
    finish, drop = [], []
    for t in sorted(listed | strays):
        m = _intact(t) if t.is_dir() else None
        if m is not None:
            finish.append((t, m))
        elif t in listed:
            drop.append(t)
    if drop:
        for t in drop:
            shutil.rmtree(t, ignore_errors=True)
            _dvc_file(t).unlink(missing_ok=True)
            say(f"rolled back an interrupted publish: {ds.rel(t)} (its files no longer match its "
                "manifest)")
        subprocess.run(["git", "rm", "--cached", "--quiet", "--ignore-unmatch", "--",
                        *[ds.rel(_dvc_file(t)) for t in drop]], cwd=ds.top, capture_output=True,
                       start_new_session=True)
        gone = {(t.parent.name, t.name) for t in drop}
        write_json_atomic(ds.index_path, _sorted_index(
            e for e in read_index(ds)["runs"] if (e["experiment"], e["run_id"]) not in gone))
    done = set()
    if finish:
        _write_pending(ds, [t for t, _ in finish], commit)
        try:
            changed = _record(ds, finish, commit)
        except KeyboardInterrupt:
            raise KeyboardInterrupt("interrupted while finishing an interrupted publish; "
                                    "publish again to finish it") from None
        if changed:  # else its commit had been made; only the journal was left
            done = {t for t, _ in finish}
            for t in sorted(done):
                say(f"finished an interrupted publish: {ds.rel(t)}"
                    + ("" if commit else " (staged, not committed)"))
    _pending_path(ds).unlink(missing_ok=True)
    return done


# ------------------------------------------------------------------------------------------------
# Publishing


@dataclass(eq=False)
class _Plan:
    src: Path
    meta: dict
    run_json_sha: str
    names: list
    target: Path
    found: dict | None
    stage: Path | None = None
    manifest: dict | None = None


def publish_run(run_dir, repo, **kw) -> PublishResult:
    """Validate ``run_dir`` and publish it; see :func:`publish_runs`."""
    return publish_runs([run_dir], repo, **kw)[0]


def publish_runs(run_dirs, repo, *, dest: str = DEFAULT_DEST, push: bool = False,
                 remote: str | None = None, commit: bool = True, log=None,
                 timings: dict | None = None) -> list[PublishResult]:
    """Validate the runs and publish them into the dataset tree of ``repo`` (see the module doc)
    with one ``dvc add``, one index update and one git commit for all of them.

    All or nothing: PublishError for bad input (nothing published), ToolError (exit 3) when git/DVC fail
    (the tree is rolled back), KeyboardInterrupt (SIGINT; SIGTERM too when the caller maps it so)
    with a message saying what was left. ``commit``: commit the .dvc files, .gitignore and index
    to git. ``timings``, when given, receives seconds per phase.
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
    read_index(ds)  # a damaged index is refused before anything is copied (and again under the lock)
    push_remote = check_remote(ds, remote) if push else None
    if commit:
        ident = subprocess.run(["git", "var", "GIT_COMMITTER_IDENT"], cwd=ds.top,
                               capture_output=True, text=True)
        if ident.returncode != 0:
            raise PublishError("git has no committer identity here (set user.name/user.email "
                               "or use --no-commit)")
        _check_no_operation_under_way(ds)
    plans, seen = [], set()
    tracked = _tracked(ds)
    for rd in run_dirs:
        src = _source(rd, ds)
        names, skipped = _run_files(src)
        meta, run_json_sha = _read_run_json(src)
        _check_bookkeeping(src, meta)
        target = ds.root / meta["experiment"] / meta["run_id"]
        _check_not_tracked_whole(ds, target)
        if target in seen:
            raise PublishError(f"{ds.rel(target)} given twice")
        seen.add(target)
        for n in skipped:
            say(f"not published: {src.name}/{n} (capture bookkeeping, not part of the run)")
        plans.append(_Plan(src, meta, run_json_sha, names, target,
                           _existing(ds, target, src, names, tracked)))
    lap("check_s")
    todo = [p for p in plans if p.found is None]
    reports = {}
    for p in todo:
        extra = p.meta.get("extra") if isinstance(p.meta.get("extra"), dict) else {}
        if extra.get("status", "complete") != "complete":
            raise PublishError(f"run {p.src.name} status is {extra.get('status')!r}, not complete")
        res = validate_run_artifacts(p.src)
        if not res["ok"]:
            first = res["errors"][0] if res["errors"] else "invalid"
            raise PublishError(f"invalid run {p.src.name} ({len(res['errors'])} error(s)), "
                               f"first: {first}")
        reports[p.target] = res
    lap("validate_s")
    fresh, recovered, late = [], set(), None
    made: list[Path] = []  # directories this call created: removed again if they end up empty
    try:
        for p in todo:
            extra = p.meta.get("extra") if isinstance(p.meta.get("extra"), dict) else {}
            inventory = extra.get("files") if isinstance(extra.get("files"), dict) else {}
            made += [d for d in [p.target.parent, *p.target.parent.parents] if not d.exists()]
            p.target.parent.mkdir(parents=True, exist_ok=True)
            p.stage = p.target.parent / f".{p.meta['run_id']}{_STAGE_TAG}{_HOST}-{os.getpid()}"
            files = _stage_copy(p.src, p.stage, p.names, inventory, p.run_json_sha)
            p.manifest = build_manifest(p.meta, files, validation_summary(reports[p.target]),
                                        publisher={"at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                       time.gmtime()),
                                                   "source": str(p.src), "code": provenance()})
            write_json_atomic(p.stage / MANIFEST_NAME, p.manifest)
            _fsync_dir(p.stage)
        lap("copy_s")
        with repo_lock(ds):
            lap("lock_wait_s")
            read_index(ds)
            with interrupts.held():  # noted, acted on where the change can be undone
                _sweep_stale_stages(ds)
                recovered = _recover(ds, commit, say)
                tracked = _tracked(ds)
                for p in plans:  # a concurrent publish of the same run may have landed meanwhile
                    p.found = _existing(ds, p.target, p.stage or p.src, p.names, tracked,
                                        recovered=True)
                    if p.found is None:
                        if p.stage is None:
                            raise RuntimeError(f"{ds.rel(p.target)} was withdrawn while "
                                               "publishing; publish again")
                        fresh.append(p)
                if fresh:
                    _commit_to_tree(ds, fresh, commit, lap)
                late = interrupts.noted()
    finally:
        for p in todo:
            if p.stage is not None and p.stage.exists():
                shutil.rmtree(p.stage)
        for d in sorted(set(made), key=lambda d: len(d.parts), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()  # only if empty: nothing was published into it
    out = []
    for p in plans:
        if p.found is None or p.target in recovered:  # published by this call
            m = p.found if p.target in recovered else p.manifest
            c = m["counts"]
            say(f"published: {ds.rel(p.target)} ({c.get('episodes')} episodes, "
                f"{c.get('steps')} steps)")
            out.append(PublishResult("published", p.target, m, bool(push_remote)))
        else:
            say(f"unchanged: {ds.rel(p.target)} already holds this run (same sha256s); "
                "nothing to do")
            out.append(PublishResult("unchanged", p.target, p.found, bool(push_remote)))
    if late is not None:
        if push_remote:
            raise KeyboardInterrupt("interrupted after the commit: published, not pushed "
                                    "(run the same command again to push)")
        say("an interrupt came while the repository was being updated; the update was "
            "completed first")
    if push_remote:
        try:
            run_cmd(dvc_cmd("push", "-r", push_remote,
                            *[ds.rel(p.target) + ".dvc" for p in plans]), ds.top, "dvc push")
        except ToolError as exc:
            raise ToolError(f"{exc}; the run is published and committed, not pushed (fix the remote "
                            "and run the same command again to push)") from None
        except KeyboardInterrupt:
            raise KeyboardInterrupt("interrupted during dvc push: published, push incomplete "
                                    "(run the same command again to push)") from None
        lap("push_s")
    return out


def _head(ds: DatasetRepo) -> str | None:
    p = subprocess.run(["git", "rev-parse", "-q", "--verify", "HEAD"], cwd=ds.top,
                       capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else None


def _landed(ds: DatasetRepo, before: str | None, dvc_files: list[Path]) -> bool:
    """Did our commit land after all (HEAD moved and holds every one of our ``.dvc`` files)?"""
    if _head(ds) in (None, before):
        return False
    return all(subprocess.run(["git", "cat-file", "-e", f"HEAD:{ds.rel(f)}"], cwd=ds.top,
                              capture_output=True).returncode == 0 for f in dvc_files)


def _commit_to_tree(ds: DatasetRepo, plans: list, commit: bool, lap):
    """Under the lock: journal, rename into place, ``dvc add``, index, git; rolled back on failure
    or interrupt unless the commit landed."""
    dvc_files = [_dvc_file(p.target) for p in plans]
    ignores = sorted({p.target.parent / ".gitignore" for p in plans})
    saved = {f: (f.read_bytes() if f.exists() else None) for f in [*ignores, ds.index_path]}
    paths = [ds.rel(f) for f in [*dvc_files, *ignores, ds.index_path]]
    head = _head(ds)
    _write_pending(ds, [p.target for p in plans], commit)
    renamed = []
    try:
        for p in plans:
            os.rename(p.stage, p.target)
            renamed.append(p)
        for d in sorted({p.target.parent for p in plans}):
            _fsync_dir(d)
        _test_stop("renamed")
        interrupts.check("interrupted; nothing was published")
        _record(ds, [(p.target, p.manifest) for p in plans], commit, lap)
    except BaseException as exc:
        if not (commit and _landed(ds, head, dvc_files)):
            subprocess.run(["git", "reset", "--quiet", "--", *paths], cwd=ds.top,
                           capture_output=True, start_new_session=True)
            for p in renamed:
                shutil.rmtree(p.target, ignore_errors=True)
                _dvc_file(p.target).unlink(missing_ok=True)
            for path, old in saved.items():
                if old is None:
                    path.unlink(missing_ok=True)
                else:
                    path.write_bytes(old)
            _pending_path(ds).unlink(missing_ok=True)
            if isinstance(exc, ToolError):
                raise ToolError(f"{exc}; nothing was published, the repository is as it was") from None
            raise
    _pending_path(ds).unlink(missing_ok=True)
