"""Durable artifact files: a hashing, counting, append-only file (O_DIRECT where allowed) and the
rotating JSON Lines part writer (docs/spec.md §9.1) with its checkpoints (what resume truncates back to)."""
from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from plume_capture.io.jsonl_encode import EMPTY_GZIP_MEMBER, EncodedJsonl
from plume_capture.spec import part_name

@dataclass
class FileInfo:
    """One written artifact: file name (in its directory), size in bytes, records, sha256 hex."""

    name: str
    bytes: int
    rows: int
    sha256: str


_IO_BLOCK = 4096  # O_DIRECT alignment of buffer, offsets and lengths (covers 512 B and 4 KiB disks)
_IO_BUFFER = 1 << 20


class HashingFile:
    """Binary file, created exclusively, that hashes and counts what is appended.

    Bytes go through an aligned buffer to the disk with ``O_DIRECT`` where the filesystem allows
    it, bypassing the page cache: a run writes GBs that nobody reads back soon, and on the 2-vCPU
    VM filling the cache with them cost two Ray actors 5% more CPU per step (neutral in-process).
    Where it is refused (tmpfs before Linux 6.6, some FUSE mounts; at open or at the first write)
    the same code writes through the page cache.
    ``flush()`` puts every appended byte in the file (the partial last block padded, then the file
    truncated to its true size), so journaled sizes hold whenever the process dies.
    """

    def __init__(self, path: Path, *, _resume_size: int | None = None, _sha=None):
        import mmap

        self.path = Path(path)
        flags = os.O_WRONLY if _resume_size is not None else os.O_WRONLY | os.O_CREAT | os.O_EXCL
        self.direct = hasattr(os, "O_DIRECT")
        try:
            self._fd = os.open(self.path, flags | (os.O_DIRECT if self.direct else 0), 0o644)
        except OSError as exc:
            if not self.direct or exc.errno != errno.EINVAL:
                raise
            self.direct = False  # the filesystem does not do O_DIRECT
            self._fd = os.open(self.path, flags, 0o644)
        self._buf = mmap.mmap(-1, _IO_BUFFER)  # page-aligned
        self._mv = memoryview(self._buf)
        self._base = 0  # file offset of the buffer's first byte (block-aligned)
        self._fill = 0
        self._sha = _sha if _sha is not None else hashlib.sha256()
        self.size = 0
        self.closed = False
        if _resume_size:  # continue after the last whole block: its tail goes back in the buffer
            self.size = _resume_size
            self._base = _resume_size - _resume_size % _IO_BLOCK
            self._fill = _resume_size - self._base
            with open(self.path, "rb") as f:
                f.seek(self._base)
                f.readinto(self._mv[:self._fill])

    @classmethod
    def reopen(cls, path: Path, size: int, sha) -> HashingFile:
        """Append to an existing file of ``size`` bytes whose hash so far is ``sha``."""
        return cls(path, _resume_size=size, _sha=sha)

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        n, i = len(data), 0
        while i < n:
            k = min(_IO_BUFFER - self._fill, n - i)
            dst = self._mv[self._fill:self._fill + k]
            dst[:] = data[i:i + k]
            self._sha.update(dst)  # while the bytes are in cache
            self._fill += k
            i += k
            if self._fill == _IO_BUFFER:
                self._pwrite(_IO_BUFFER)
                self._base += _IO_BUFFER
                self._fill = 0
        self.size += n
        return n

    def _pwrite(self, length: int) -> None:
        view = self._mv[:length]
        while view:
            try:
                done = os.pwrite(self._fd, view, self._base + (length - len(view)))
            except OSError as exc:
                if not self.direct or exc.errno != errno.EINVAL:
                    raise
                # O_DIRECT opened but refused (or a short write left the offset unaligned):
                # write through the page cache from here on
                self._buffered()
                continue
            view = view[done:]

    def _buffered(self) -> None:
        fd = os.open(self.path, os.O_WRONLY)
        os.close(self._fd)
        self._fd, self.direct = fd, False

    def tell(self) -> int:
        return self.size

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fd

    def flush(self) -> None:
        """Every byte appended so far is in the file (not necessarily on the disk: ``sync``)."""
        if not self._fill:
            return
        if not self.direct:
            self._pwrite(self._fill)
            self._base += self._fill
            self._fill = 0
            return
        whole = self._fill - self._fill % _IO_BLOCK
        if whole:
            self._pwrite(whole)
            rest = self._fill - whole
            self._mv[:rest] = self._mv[whole:self._fill]
            self._base += whole
            self._fill = rest
        if self._fill:  # the partial block, padded; it is written again once it fills up
            self._pwrite(_IO_BLOCK)
            os.ftruncate(self._fd, self._base + self._fill)

    def sync(self) -> None:
        self.flush()
        os.fsync(self._fd)

    def close(self, sync: bool = True) -> None:
        """Close the file, by default on disk first: ``run.json`` (written after every artifact is
        closed) must never describe data that a power loss could still take."""
        if not self.closed:
            self.closed = True
            try:
                self.sync() if sync else self.flush()
            finally:
                os.close(self._fd)
                try:
                    self._mv.release()
                    self._buf.close()
                except BufferError:  # a failed write's traceback still holds a view: freed with it
                    pass

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def write_new(path: Path, buffers) -> tuple[int, str]:
    """Write ``buffers`` to a new file at ``path`` (O_DIRECT where allowed), fsynced;
    -> (bytes, sha256 hex)."""
    f = HashingFile(path)
    try:
        for b in buffers:
            f.write(b)
    finally:
        f.close()
    return f.size, f.hexdigest()


class JsonlPartWriter:
    """Appends gzip members to `<base>.jsonl.gz`, rotating into `<base>.partNNNN.jsonl.gz`.

    Rotation (docs/spec.md §9.1): before a member is appended, a new part is started if the current part
    is non-empty and would exceed `rotate_size` bytes, so a part is larger than `rotate_size` only
    when it holds a single member. With no rows at all the base file still exists and holds one
    empty gzip member (20 bytes; it decompresses to empty text, which every gzip reader accepts,
    whereas a 0-byte file is an error for zcat).
    """

    def __init__(self, directory: Path, base: str, rotate_size: int | None):
        if rotate_size is not None and (isinstance(rotate_size, bool) or rotate_size < 1):
            raise ValueError(f"rotate_size must be a positive number of bytes, got {rotate_size!r}")
        self.directory = Path(directory)
        self.base = base
        self.rotate_size = rotate_size
        self._files: list[FileInfo] = []
        self._f: HashingFile | None = None
        self._rows = 0
        self._closed = False

    def _next_part(self) -> None:
        self._finish_part()
        self._f = HashingFile(self.directory / part_name(self.base, len(self._files)))

    def _finish_part(self) -> None:
        if self._f is not None:
            self._f.close()
            self._files.append(FileInfo(self._f.path.name, self._f.size, self._rows, self._f.hexdigest()))
            self._f = None
            self._rows = 0

    def write_member(self, member: bytes, rows: int) -> None:
        """Append one complete gzip member holding `rows` records."""
        if self._closed:
            raise ValueError("writer is closed")
        if self._f is None:
            self._next_part()
        elif self.rotate_size is not None and self._f.size and self._f.size + len(member) > self.rotate_size:
            self._next_part()
        self._f.write(member)
        self._rows += rows

    def write(self, enc: EncodedJsonl) -> None:
        """Append a shard's members in order."""
        for member, rows in zip(enc.members, enc.rows):
            self.write_member(member, rows)

    def close(self) -> list[FileInfo]:
        """Finish the last part; returns one FileInfo per file, in part order."""
        if not self._closed:
            if self._f is None and not self._files:
                self.write_member(EMPTY_GZIP_MEMBER, 0)
            self._finish_part()
            self._closed = True
        return list(self._files)

    def abort(self) -> None:
        """Close open files without finishing (the caller discards the partial output)."""
        if self._f is not None:
            self._f.close(sync=False)
            self._f = None
        self._closed = True

    def checkpoint(self, sync: bool = False) -> list:
        """Flush (with ``sync``, to the disk) and return ``[[name, bytes, rows, sha256], ...]`` of
        every part so far (the sha256 of its first ``bytes`` bytes): what :meth:`restore` takes
        back. (Finished parts were fsynced when closed.)"""
        parts = [[f.name, f.bytes, f.rows, f.sha256] for f in self._files]
        if self._f is not None:
            self._f.sync() if sync else self._f.flush()
            parts.append([self._f.path.name, self._f.size, self._rows, self._f.hexdigest()])
        return parts

    def restore(self, parts: list) -> None:
        """Put this fresh writer back at a checkpoint of an earlier writer of the same directory:
        truncate each part to its recorded size, delete later parts, rehash what is kept."""
        if self._files or self._f is not None:
            raise ValueError("restore needs a fresh writer")
        keep = {name for name, *_ in parts}
        for path in self.directory.glob(f"{self.base}.*jsonl.gz"):
            if path.name not in keep:
                path.unlink()
        for i, (name, size, rows, *_) in enumerate(parts):
            path = self.directory / name
            os.truncate(path, size)
            sha = _sha256_prefix(path, size)
            if i < len(parts) - 1:
                self._files.append(FileInfo(name, size, rows, sha.hexdigest()))
            else:
                self._f, self._rows = HashingFile.reopen(path, size, sha), rows


def prefix_digests(path: Path, sizes) -> dict:
    """``{size: sha256 hex of the file's first size bytes}`` for each of ``sizes``, in one read of
    the regular file ``path`` (a symlink is not followed: OSError). Sizes past its end are left out."""
    import stat

    want = sorted(set(sizes))
    out, h, pos = {}, hashlib.sha256(), 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        for size in want:
            while pos < size:
                b = f.read(min(size - pos, 4 << 20))
                if not b:
                    return out
                h.update(b)
                pos += len(b)
            out[size] = h.hexdigest()
    return out


def gzip_member_rows(path: Path, upto: int) -> dict:
    """``{offset: lines}`` at the end of each whole gzip member within the first ``upto`` bytes of
    the regular file ``path`` (a symlink is not followed: OSError): every member is decompressed,
    so its CRC is checked; the first damage ends the map."""
    import stat
    import zlib

    ends, lines, pos = {}, 0, 0
    d = zlib.decompressobj(31)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        read = 0
        while read < upto:
            data = f.read(min(upto - read, 1 << 16))  # at most ~64 MiB of text per call, however packed
            if not data:
                break
            read += len(data)
            while data:
                try:
                    lines += d.decompress(data).count(b"\n")
                except zlib.error:
                    return ends
                if not d.eof:
                    pos += len(data)
                    break
                pos += len(data) - len(d.unused_data)
                ends[pos] = lines
                data, d = d.unused_data, zlib.decompressobj(31)
    return ends


def _sha256_prefix(path: Path, size: int):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = size
        while left:
            b = f.read(min(left, 4 << 20))
            if not b:
                raise ValueError(f"{path.name} is shorter than its checkpoint says ({size} bytes)")
            h.update(b)
            left -= len(b)
    return h


