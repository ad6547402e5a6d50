"""Atomic file output: write a temporary file next to the target, then rename it into place."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from npupass.errors import NpupassError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
    """Write `chunks` to `path` so that `path` is either untouched or complete, never partial.

    A symlink is followed (its target is replaced, the link stays); a device or pipe is written to
    directly, since it cannot be replaced.
    """
    path = Path(os.path.realpath(path)) if path.is_symlink() else path
    if path.exists() and not path.is_file():
        if path.is_dir():
            raise NpupassError(f"{path}: is a directory")
        try:
            with open(path, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
        except OSError as exc:
            raise NpupassError(f"{path}: cannot write: {exc.strerror or exc}") from None
        return
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise NpupassError(f"{path}: directory {directory} does not exist")
    tmp = None
    try:
        tmp = _temporary_copy(path, chunks)
        os.replace(tmp, path)
    except OSError as exc:
        raise NpupassError(f"{path}: cannot write: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _temporary_copy(path: Path, chunks: Iterable[bytes | bytearray | memoryview]) -> str:
    """Write `chunks` to a new temporary file next to `path` (mode as a new file would get); returns its name."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        os.chmod(tmp, 0o666 & ~_umask())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_all(files: dict[Path, bytes]) -> None:
    """Write several files so that a failure leaves none of them new: all go to temporary files first,
    then are renamed into place. Missing parent directories are created."""
    for path in files:
        if path.is_dir():
            raise NpupassError(f"{path}: is a directory")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NpupassError(f"{path.parent}: cannot create the directory: {exc.strerror or exc}") from None
    temporary: dict[Path, str] = {}
    try:
        for path, data in files.items():
            temporary[path] = _temporary_copy(path, [data])
        for path, tmp in temporary.items():
            os.replace(tmp, path)
    except OSError as exc:
        raise NpupassError(f"cannot write {', '.join(map(str, files))}: {exc.strerror or exc}") from None
    finally:
        for tmp in temporary.values():
            Path(tmp).unlink(missing_ok=True)
