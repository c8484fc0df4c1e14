# -*- test-case-name: tests.unit.test_published -*-
"""
The published directory (C{-p DIR}): which files may be served, and what they
are right now.

This is the only place that turns a name from the network into a path on
disk, so every rule that keeps a request inside the directory lives here.
"""

import os
import stat
from dataclasses import dataclass
from typing import BinaryIO


class NotPublished(Exception):
    """
    The name does not lead to a published file; C{reason} says why (for the
    log, never for the client).
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(name, reason)
        self.name = name
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.name!r}: {self.reason}"


@dataclass(frozen=True)
class PublishedFile:
    """
    A regular file inside the published directory, as it was when looked up.

    C{version} changes whenever the file is replaced or modified, so blocks
    and HTTP caches of two versions never mix.
    """

    name: str
    path: str
    size: int
    mtimeNs: int
    inode: int

    @property
    def version(self) -> str:
        """
        Size and modification time: mirrors that copy files with their
        times (rsync -a) publish the same versions as the origin.
        """
        return f"{self.size:x}-{self.mtimeNs:x}"

    @property
    def mtime(self) -> float:
        return self.mtimeNs / 1e9

    def open(self) -> BinaryIO:
        """
        Open the file for reading, failing if it is no longer the same file.
        """
        f = open(self.path, "rb")
        try:
            st = os.fstat(f.fileno())
            if (st.st_ino, st.st_size, st.st_mtime_ns) != (
                self.inode,
                self.size,
                self.mtimeNs,
            ):
                raise NotPublished(self.name, "changed while being opened")
        except BaseException:
            f.close()
            raise
        return f


_FORBIDDEN_IN_SEGMENT = ("/", "\\", "\x00")


class PublicDirectory:
    """
    Resolves URL path segments to L{PublishedFile}s inside C{root}.

    Refused: empty, C{.} and C{..} segments, segments holding a slash, a
    backslash or NUL (what percent-decoding can smuggle in), hidden names
    (starting with a dot), anything whose real path leaves the directory
    through a symlink, and anything that is not a regular file.
    """

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)

    def lookup(self, segments: list[bytes]) -> PublishedFile:
        """
        Find the published file named by already percent-decoded URL segments.

        @raise NotPublished: if the name must not or cannot be served.
        """
        name = "/".join(os.fsdecode(s) for s in segments)
        if not segments:
            raise NotPublished(name, "empty path")
        for raw in segments:
            try:
                segment = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise NotPublished(name, "path is not UTF-8") from None
            if segment in ("", ".", ".."):
                raise NotPublished(name, "empty or relative segment")
            if any(c in segment for c in _FORBIDDEN_IN_SEGMENT):
                raise NotPublished(name, "separator or NUL inside a segment")
            if segment.startswith("."):
                raise NotPublished(name, "hidden name")
        name = "/".join(s.decode("utf-8") for s in segments)
        real = os.path.realpath(os.path.join(self.root, *name.split("/")))
        if os.path.commonpath([self.root, real]) != self.root or real == self.root:
            raise NotPublished(name, "leaves the published directory")
        relative = os.path.relpath(real, self.root)
        if any(part.startswith(".") for part in relative.split(os.sep)):
            raise NotPublished(name, "resolves to a hidden name")
        try:
            st = os.stat(real)
        except OSError as e:
            raise NotPublished(name, e.strerror or "cannot stat") from None
        if not stat.S_ISREG(st.st_mode):
            raise NotPublished(name, "not a regular file")
        if not os.access(real, os.R_OK):
            raise NotPublished(name, "not readable")
        return PublishedFile(name, real, st.st_size, st.st_mtime_ns, st.st_ino)
