"""One writer per run directory: an exclusive ``flock`` on ``<staging>/lock`` held by the capture
or the resume for its whole life. A second process gets one line naming the holder and touches
nothing; the kernel releases the lock when the holder dies, however it dies."""
from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

from plume_capture.errors import ConfigError

LOCK = "lock"


class RunLock:
    def __init__(self, staging: Path):
        self.path = Path(staging) / LOCK
        try:  # never through a symlink: the lock file is truncated
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError as exc:
            if exc.errno == errno.ENOENT:  # e.g. a resume racing the commit that renamed it away
                raise ConfigError(f"cannot lock {self.path}: {staging} is gone (finished or moved)") from None
            if exc.errno not in (errno.ELOOP, errno.EISDIR):
                raise
            what = "a symbolic link" if exc.errno == errno.ELOOP else "a directory"
            raise ConfigError(f"cannot lock {self.path}: it is {what}, not a lock file") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ConfigError(f"cannot lock {self.path}: it is not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(f"{staging} is being written by another process (pid {holder}); "
                              "wait for it to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
