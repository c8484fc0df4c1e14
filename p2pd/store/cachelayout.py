# -*- test-case-name: tests.unit.test_cache -*-
"""
Where the cache keeps a file version on disk, and how its directory is made
and removed.

Each file version lives in C{ROOT/sha256(url)/sha256(version)/} (hex; never
the URL itself, which may hold anything), made when its first block is
stored, holding:

  - C{meta.json}: url, version, size, blockSize, digestName; written when
    the directory is made, before any other file (in place, not synced: a
    player waits for it), so a directory without a valid one is debris and
    is removed;
  - C{data}: a sparse file, block C{i} at C{i * blockSize}, as long as its
    last block written (never allocated ahead: an origin may announce 16 TiB);
  - C{digests}: the origin's digests (L{p2pd.store.digestpages});
  - C{journal}: which blocks are held (L{p2pd.store.journal});
  - C{used}: an empty file whose modification time says when the version
    was last used (L{markUsed}), read without a lock by the node and by
    C{p2pd cache}.
"""

import errno
import hashlib
import json
import os
import shutil
import tempfile

from p2pd.core.meta import FileMeta
from p2pd.store import fileio

_FORMAT = 1


def directoryName(text: str) -> str:
    """
    The name of the directory holding a URL's versions, or one version.
    """
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def identity(meta: FileMeta) -> bytes:
    """
    The content of C{meta.json} for C{meta}; it also keys the checks of the
    journal and digest records, so records of another version never pass.
    """
    return json.dumps(
        {
            "format": _FORMAT,
            "url": meta.url,
            "version": meta.version,
            "size": meta.size,
            "blockSize": meta.blockSize,
            "digestName": meta.digestName,
        },
        sort_keys=True,
    ).encode("ascii")


def readMeta(directory: str) -> FileMeta | None:
    """
    The L{FileMeta} in C{directory}'s C{meta.json}, or L{None} if it is
    missing or not valid.
    """
    try:
        with open(os.path.join(directory, "meta.json"), "rb") as f:
            raw = json.loads(f.read(64 * 1024))
        if not isinstance(raw, dict) or raw.get("format") != _FORMAT:
            return None
        url, version = raw["url"], raw["version"]
        size, blockSize, digestName = raw["size"], raw["blockSize"], raw["digestName"]
        if not (isinstance(url, str) and isinstance(version, str)):
            return None
        if not (isinstance(digestName, str) and isinstance(size, int)):
            return None
        if not isinstance(blockSize, int) or blockSize <= 0 or size < 0:
            return None
        hashlib.new(digestName)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return FileMeta(url, size, blockSize, digestName, version)


def makeDirectory(directory: str, meta: FileMeta) -> None:
    """
    Make C{directory} an empty cached file for C{meta}, replacing any debris
    there.
    """
    try:
        os.mkdir(os.path.dirname(directory), 0o700)
    except FileExistsError:
        removeDirectory(directory)
    os.mkdir(directory, 0o700)
    # The other files are made when the state opens them. Written in place
    # and not synced: after a crash or a power loss, a lost or torn
    # meta.json makes the directory debris, removed on next use.
    fd = os.open(
        os.path.join(directory, "meta.json"),
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
        0o600,
    )
    try:
        fileio.appendAll(fd, identity(meta))
    finally:
        os.close(fd)


def markUsed(directory: str, when: float) -> None:
    """
    Record that the version in C{directory} was used at C{when} (seconds
    since the epoch); a disk that refuses it is ignored, as a lost stamp
    only makes the version look older.
    """
    path = os.path.join(directory, "used")
    try:
        os.close(openFile(path, os.O_WRONLY))
        os.utime(path, (when, when))
    except OSError:
        pass


def lastUsed(directory: str) -> float:
    """
    When the version in C{directory} was last used: its C{used} stamp, or
    when it was made if it has none; 0 for debris.
    """
    for name in ("used", "meta.json"):
        try:
            return os.stat(os.path.join(directory, name)).st_mtime
        except OSError:
            pass
    return 0.0


def removeDirectory(directory: str) -> None:
    """
    Remove a cached file's directory, or whatever debris has its name.
    """
    # meta.json first: a directory half removed is then debris, never a
    # cached file with some of its parts missing.
    try:
        os.unlink(os.path.join(directory, "meta.json"))
    except NotADirectoryError:
        try:
            os.unlink(directory)
        except OSError:
            pass
        return
    except OSError:
        pass
    shutil.rmtree(directory, ignore_errors=True)


def openFile(path: str, flags: int) -> int:
    """
    Open (creating it if missing) one of a cached file's files.
    """
    try:
        return os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        if e.errno != errno.EROFS:
            raise
    # A file system remounted read-only: what is cached still plays, and
    # writes fail like those to a full disk.
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def replaceFile(path: str, content: bytes) -> None:
    """
    Make C{path} hold C{content}, all or nothing, on disk before this
    returns.
    """
    directory, name = os.path.split(path)
    fd, temp = tempfile.mkstemp(
        prefix=name + ".", suffix=fileio.TEMP_SUFFIX, dir=directory
    )
    try:
        try:
            fileio.writeAll(fd, content, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    _syncDirectory(directory)


def _syncDirectory(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
