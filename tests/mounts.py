"""Small real file systems for tests: a tmpfs of a given size that can be filled or made read-only.

Mounting needs root (CAP_SYS_ADMIN); where it is not permitted the test is skipped and says why.
Every mount is undone in the fixture's teardown.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_tmpfs(mountpoint: Path, size: str = "1m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``mountpoint`` for the duration of the block."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield mountpoint
    finally:
        done = subprocess.run(["umount", str(mountpoint)], capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            # Something still has a file open there: detach now, the kernel frees it when closed.
            subprocess.run(["umount", "--lazy", str(mountpoint)], capture_output=True, timeout=30, check=False)


def fill(folder: Path) -> Path:
    """Write ``folder/filler`` until the file system is full; returns the filler's path."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as handle:
        while True:
            try:
                handle.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    # Nothing, not even one byte, fits any more.
    probe = folder / "probe"
    with pytest.raises(OSError) as raised:
        with probe.open("wb", buffering=0) as handle:
            handle.write(b"x")
    assert raised.value.errno == errno.ENOSPC
    probe.unlink(missing_ok=True)
    return filler


def remount_read_only(mountpoint: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mountpoint)], check=True, timeout=30)
    assert not os.access(mountpoint, os.W_OK) or _cannot_write(mountpoint)


def _cannot_write(folder: Path) -> bool:
    try:
        (folder / ".ro-probe").write_text("x")
    except OSError as exc:
        return exc.errno == errno.EROFS
    return False
