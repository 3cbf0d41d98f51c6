"""The release folders and the ``current`` link on a remote host, read and switched over SFTP.

Paths are POSIX, as configured: never joined with the local config folder.
"""

from __future__ import annotations

import os
import posixpath
import stat

from ..errors import RollbackFailed
from .ssh import Connection, HostAddress
from .symlink_settings import SymlinkSettings

MISSING = "(missing)"


class RemoteLink:
    """Where the releases and the link are on every host, and the SFTP work on that link."""

    def __init__(self, settings: SymlinkSettings) -> None:
        self.settings = settings

    @property
    def releases(self) -> str:
        return posixpath.normpath(self.settings.releases_dir.as_posix())

    @property
    def link(self) -> str:
        return posixpath.normpath(self.settings.current_link.as_posix())

    def release(self, version: str) -> str:
        return posixpath.join(self.releases, version)

    def link_text(self, version: str) -> str:
        return posixpath.relpath(self.release(version), posixpath.dirname(self.link))

    def read(self, connection: Connection) -> str:
        """The link's text on the host, or "(missing)" / "(not a symlink)"."""
        sftp = connection.sftp()
        try:
            mode = sftp.lstat(self.link).st_mode or 0
        except OSError:
            return MISSING
        if not stat.S_ISLNK(mode):
            return "(not a symlink)"
        return sftp.readlink(self.link) or MISSING

    def version_of(self, host: HostAddress, text: str) -> str:
        """The release ``text`` (what ``read`` gave on ``host``) points at; RollbackFailed when none."""
        if text.startswith("("):
            raise RollbackFailed(f"{host.name}: {self.link} is {text.strip('()')}: cannot tell the live release")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(self.link), text))
        if posixpath.dirname(resolved) != self.releases:
            raise RollbackFailed(f"{host.name}: {self.link} points to {text}, not a folder of {self.releases}")
        return posixpath.basename(resolved)

    def remove_leftovers(self, connection: Connection) -> list[str]:
        """Temporary links of runs killed mid-switch. Safe: this run holds the target's lock."""
        sftp = connection.sftp()
        folder, name = posixpath.split(self.link)
        prefix = f".{name}.rollback-"
        removed = []
        for entry in sorted(sftp.listdir_attr(folder), key=lambda e: e.filename):
            rest = entry.filename[len(prefix) :] if entry.filename.startswith(prefix) else ""
            if rest.isdigit() and stat.S_ISLNK(entry.st_mode or 0):
                sftp.remove(posixpath.join(folder, entry.filename))
                removed.append(entry.filename)
        return removed

    def switch(self, connection: Connection, link_text: str) -> None:
        """``ln -sfn`` done atomically: a temporary link renamed over ``current`` (posix-rename)."""
        sftp = connection.sftp()
        folder, name = posixpath.split(self.link)
        temporary = posixpath.join(folder, f".{name}.rollback-{os.getpid()}")
        try:
            sftp.remove(temporary)
        except FileNotFoundError:
            pass
        sftp.symlink(link_text, temporary)
        sftp.posix_rename(temporary, self.link)
        after = sftp.readlink(self.link)
        if after != link_text:
            raise RollbackFailed(f"{self.link} reads {after} after the switch, not {link_text}")
