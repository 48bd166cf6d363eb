"""Helpers shared by the writer and engine tests: act as a filesystem that refuses O_DIRECT."""


def supports_o_direct(directory) -> bool:
    import errno
    import os

    probe = directory / ".o_direct_probe"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644))
        return True
    except OSError as exc:
        assert exc.errno == errno.EINVAL
        return False
    finally:
        probe.unlink(missing_ok=True)


def refuse_o_direct(monkeypatch, at: str) -> None:
    """Act as a filesystem that refuses O_DIRECT when opening (tmpfs before Linux 6.6, some FUSE
    mounts) or only when writing."""
    import errno
    import fcntl
    import os

    if at == "open":
        real_open = os.open

        def refusing_open(path, flags, *args, **kwargs):
            if flags & os.O_DIRECT:
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing_open)
    else:
        real_pwrite = os.pwrite

        def refusing_pwrite(fd, data, offset):
            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_pwrite(fd, data, offset)

        monkeypatch.setattr(os, "pwrite", refusing_pwrite)
