# -*- test-case-name: tests.unit.test_cache,tests.integration.test_cache -*-
"""
The node's cache of fetched, verified blocks.

Each file version lives in C{ROOT/sha256(url)/sha256(version)/} (hex; never
the URL itself, which may hold anything), made when its first block is
stored (until then its digests are kept in memory), holding:

  - C{meta.json}: url, version, size, blockSize, digestName; written when
    the directory is made, before any other file (in place, not synced: a
    player waits for it), so a directory without a valid one is debris and
    is removed;
  - C{data}: a sparse file, block C{i} at C{i * blockSize}, as long as its
    last block written (never allocated ahead: an origin may announce 16 TiB);
  - C{digests}: the origin's digests as fixed-size records at
    C{i * recordSize} (a L{DigestRecords}: digest + keyed 8-byte check);
  - C{journal}: append-only 16-byte records
    C{u32 index | u8 held (1) or forgotten (0) | 3 zero bytes | 8-byte keyed
    check}; the last record of a block says whether it is held. A torn
    trailing record is cut off when the journal is loaded; a record that
    fails its check is ignored.

A block is written to C{data} first and journaled afterwards, so a crash
mid-write leaves it unjournaled. There is no fsync per block: after a power
loss the journal may name a block whose bytes never reached the disk, which
is why the first read of a block after the cache is opened verifies it
against its digest and forgets it on a mismatch. Blocks this process wrote
(verified before they were written) or has verified since are trusted
until the file's state is dropped: the page cache does not change behind a
running process, and hashing every read would halve warm streaming speed.

Memory follows what is fetched, not what the origin announces: held and
verified blocks are kept as runs, and digests in pages of L{DIGEST_PAGE},
at most L{DIGEST_MEMORY} bytes of them per file version, the rest on disk.

When the disk refuses a write (ENOSPC, EDQUOT, EIO, EROFS: any C{OSError}),
the cache logs one line, tries no write for L{STORE_RETRY} seconds (writes
raise at once meanwhile), and tries again with the next one; digests it
could not write are kept in memory and written with the next block stored.
"""

import errno
import hashlib
import json
import os
import shutil
import struct
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable

from twisted.logger import Logger
from zope.interface import implementer

from p2pd.core.meta import BlockRuns, FileMeta
from p2pd.store.digests import DigestRecords
from p2pd.store.fileio import TEMP_SUFFIX, appendAll, readAll, writeAll
from p2pd.store.interfaces import IBlockCache

_JOURNAL = struct.Struct("!IB3x")
_CHECK = 8
_JOURNAL_RECORD = _JOURNAL.size + _CHECK
_FORMAT = 1
# Journal records read at once when a cached file is opened.
_JOURNAL_CHUNK = 4096
# What a cached file's state knows of each block's digest.
_DIGEST_UNREAD, _DIGEST_KNOWN, _DIGEST_ABSENT = 0, 1, 2

DIGEST_PAGE = 1024
DIGEST_MEMORY = 1024 * 1024
STORE_RETRY = 30.0


def _hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _identity(meta: FileMeta) -> bytes:
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


def _replaceFile(path: str, content: bytes) -> None:
    """
    Make C{path} hold C{content}, all or nothing, on disk before this
    returns.
    """
    directory, name = os.path.split(path)
    fd, temp = tempfile.mkstemp(prefix=name + ".", suffix=TEMP_SUFFIX, dir=directory)
    try:
        try:
            writeAll(fd, content, 0)
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


def _readMeta(directory: str) -> FileMeta | None:
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


class _DigestPage:
    """
    The digests of L{DIGEST_PAGE} consecutive blocks, as far as known.

    @ivar dirty: whether some known digests here are not on disk yet.
    """

    __slots__ = ("digests", "states", "dirty")

    def __init__(self, digestSize: int) -> None:
        self.digests = bytearray(DIGEST_PAGE * digestSize)
        self.states = bytearray(DIGEST_PAGE)
        self.dirty = False

    def known(self) -> list[tuple[int, int]]:
        """
        The runs of known digests, as C{(first slot, count)}.
        """
        result: list[tuple[int, int]] = []
        position = 0
        states = self.states
        while (start := states.find(_DIGEST_KNOWN, position)) >= 0:
            end = start + 1
            while end < len(states) and states[end] == _DIGEST_KNOWN:
                end += 1
            result.append((start, end - start))
            position = end
        return result


class _Disk:
    """
    Whether the cache's disk takes writes. Once one is refused, none is
    tried for L{STORE_RETRY} seconds; the log gets one line when that
    starts and one when a block is stored again.
    """

    _log = Logger()

    def __init__(self, root: str, now: Callable[[], float]) -> None:
        self.root = root
        self._now = now
        self._failure: OSError | None = None
        self._retryAt = 0.0

    def check(self) -> None:
        """
        @raise OSError: the last refusal, while no write is to be tried.
        """
        if self._failure is not None and self._now() < self._retryAt:
            raise OSError(self._failure.errno, self._failure.strerror)

    @property
    def ready(self) -> bool:
        return self._failure is None or self._now() >= self._retryAt

    def refused(self, error: OSError) -> None:
        if self._failure is None:
            self._log.warn(
                "cannot store in the cache {root}: {why}; streaming from memory,"
                " trying again every {retry:.0f} s",
                root=self.root,
                why=error.strerror or str(error),
                retry=STORE_RETRY,
            )
        self._failure = error
        self._retryAt = self._now() + STORE_RETRY

    def stored(self) -> None:
        if self._failure is not None:
            self._failure = None
            self._log.info("storing in the cache {root} again", root=self.root)


def _makeDirectory(directory: str, meta: FileMeta) -> None:
    """
    Make C{directory} an empty cached file for C{meta}, replacing any debris
    there.
    """
    try:
        os.mkdir(os.path.dirname(directory), 0o700)
    except FileExistsError:
        _removeDirectory(directory)
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
        appendAll(fd, _identity(meta))
    finally:
        os.close(fd)


def _removeDirectory(directory: str) -> None:
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


class _CachedState:
    """
    One cached file version's descriptors and held blocks, shared by every
    L{CachedFile} handle on it.
    """

    _log = Logger()

    def __init__(
        self, directory: str, meta: FileMeta, disk: _Disk, new: bool = False
    ) -> None:
        self.directory = directory
        self.meta = meta
        self.disk = disk
        self.handles = 0
        identity = _identity(meta)
        self.records = DigestRecords(meta.digestSize, identity, b"p2pd-cache-dg")
        self._journalKey = hashlib.sha256(identity).digest()
        self.blocks = meta.blocks
        self.held = BlockRuns()
        # Blocks verified by this process: read back without hashing.
        self.verified = BlockRuns()
        # Digests read or written lately, by page: each is looked up for
        # every block verified and stored, and for scheduling passes. A new
        # version's are only here until its directory is made.
        self._pages: OrderedDict[int, _DigestPage] = OrderedDict()
        self._maxPages = max(2, DIGEST_MEMORY // (DIGEST_PAGE * meta.digestSize))
        self._fds: list[int] = []
        self.dataFd = self.digestsFd = self.journalFd = -1
        self._journalSize = 0
        # A new version's directory is made when its first block is stored,
        # not before: a player waits for that block.
        self.onDisk = not new
        if self.onDisk:
            self._openFiles()
        elif not self.blocks and disk.ready:
            # Nothing to wait for: cached as it is, if the disk takes it.
            try:
                self._makeOnDisk()
            except OSError as e:
                disk.refused(e)

    def _openFiles(self) -> None:
        try:
            self.dataFd = self._open("data", os.O_RDWR)
            self.digestsFd = self._open("digests", os.O_RDWR)
            self.journalFd = self._open("journal", os.O_RDWR | os.O_APPEND)
            self._loadJournal()
        except BaseException:
            self.close()
            raise

    def _makeOnDisk(self) -> None:
        """
        Make the directory of a new version and write the digests known so
        far.
        """
        _makeDirectory(self.directory, self.meta)
        self._openFiles()
        self.onDisk = True
        self._flushDigests()

    def _open(self, name: str, flags: int) -> int:
        path = os.path.join(self.directory, name)
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            if e.errno != errno.EROFS:
                raise
            # A file system remounted read-only: what is cached still plays,
            # and writes fail like those to a full disk.
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._fds.append(fd)
        return fd

    def close(self) -> None:
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)
        self._pages.clear()

    # -- journal

    def _check(self, head: bytes) -> bytes:
        return hashlib.blake2b(
            head, digest_size=_CHECK, key=self._journalKey, person=b"p2pd-cache-jn"
        ).digest()

    def journalRecord(self, index: int, held: bool) -> bytes:
        head = _JOURNAL.pack(index, 1 if held else 0)
        return head + self._check(head)

    def _journal(self, index: int, held: bool) -> None:
        """
        Append a journal record; if the disk refuses, cut off what part of
        it was written, so later records stay aligned.
        """
        try:
            appendAll(self.journalFd, self.journalRecord(index, held))
        except OSError:
            try:
                os.ftruncate(self.journalFd, self._journalSize)
            except OSError:
                pass
            raise
        self._journalSize += _JOURNAL_RECORD

    def _loadJournal(self) -> None:
        size = os.fstat(self.journalFd).st_size
        whole = size - size % _JOURNAL_RECORD
        if whole != size:
            # A torn trailing record: cut it off, or every later record
            # would be misaligned (on a read-only disk, none will come).
            try:
                os.ftruncate(self.journalFd, whole)
            except OSError:
                pass
        self._journalSize = whole
        records = 0
        held = self.held
        for offset in range(0, whole, _JOURNAL_CHUNK * _JOURNAL_RECORD):
            raw = readAll(self.journalFd, _JOURNAL_CHUNK * _JOURNAL_RECORD, offset)
            for start in range(0, len(raw) - _JOURNAL_RECORD + 1, _JOURNAL_RECORD):
                records += 1
                head = raw[start : start + _JOURNAL.size]
                check = raw[start + _JOURNAL.size : start + _JOURNAL_RECORD]
                if check != self._check(head):
                    continue
                index, flag = _JOURNAL.unpack(head)
                if index < self.blocks and flag == 1:
                    held.add(index)
                elif index < self.blocks and flag == 0:
                    held.discard(index)
        if records > 2 * held.count + 1024:
            try:
                self._compactJournal()
            except OSError:
                pass  # a longer journal, read again next time

    def _compactJournal(self) -> None:
        content = b"".join(
            self.journalRecord(index, True)
            for first, count in self.ranges()
            for index in range(first, first + count)
        )
        path = os.path.join(self.directory, "journal")
        _replaceFile(path, content)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        self._fds.remove(self.journalFd)
        os.close(self.journalFd)
        self._fds.append(fd)
        self.journalFd = fd
        self._journalSize = len(content)

    # -- digests

    def _page(self, number: int) -> _DigestPage:
        """
        Page C{number} of the digests, made if it is not in memory. Beyond
        L{DIGEST_MEMORY}, the least recently used page goes, one whose
        digests are on disk if there is one (the others are lost: an
        authority gives them again).
        """
        page = self._pages.get(number)
        if page is not None:
            self._pages.move_to_end(number)
            return page
        if len(self._pages) >= self._maxPages:
            victim = next(
                (n for n, p in self._pages.items() if not p.dirty),
                next(iter(self._pages)),
            )
            del self._pages[victim]
        page = self._pages[number] = _DigestPage(self.meta.digestSize)
        return page

    def digest(self, index: int) -> bytes | None:
        if not 0 <= index < self.blocks:
            return None
        page = self._page(index // DIGEST_PAGE)
        slot = index % DIGEST_PAGE
        state = page.states[slot]
        length = self.meta.digestSize
        if state == _DIGEST_KNOWN:
            return bytes(page.digests[slot * length : (slot + 1) * length])
        if state == _DIGEST_ABSENT or not self.onDisk:
            return None
        size = self.records.recordSize
        try:
            raw = readAll(self.digestsFd, size, index * size)
        except OSError:
            return None
        digest = self.records.unpack(index, raw, 1)[0]
        if digest is None:
            page.states[slot] = _DIGEST_ABSENT
        else:
            page.digests[slot * length : (slot + 1) * length] = digest
            page.states[slot] = _DIGEST_KNOWN
        return digest

    def setDigests(self, first: int, digests: bytes) -> None:
        length = self.meta.digestSize
        count, extra = divmod(len(digests), length)
        if extra or first < 0 or first + count > self.blocks:
            raise ValueError(f"{len(digests)} bytes of digests from block {first}")
        written = False
        if self.onDisk and self.disk.ready:
            try:
                self._writeDigests(first, digests)
                written = True
            except OSError as e:
                self.disk.refused(e)
        index = first
        while index < first + count:
            number, slot = divmod(index, DIGEST_PAGE)
            take = min(DIGEST_PAGE - slot, first + count - index)
            # Digests on disk are read back when asked for: only a page in
            # memory already is kept up to date.
            page = self._pages.get(number) if written else self._page(number)
            if page is not None:
                part = digests[
                    (index - first) * length : (index - first + take) * length
                ]
                page.digests[slot * length : (slot + take) * length] = part
                page.states[slot : slot + take] = bytes([_DIGEST_KNOWN]) * take
                page.dirty = page.dirty or not written
            index += take

    def _writeDigests(self, first: int, digests: bytes) -> None:
        size = self.records.recordSize
        writeAll(self.digestsFd, self.records.pack(first, digests), first * size)

    def _flushDigests(self) -> None:
        """
        Write the digests in memory that are not on disk yet.
        """
        length = self.meta.digestSize
        for number, page in self._pages.items():
            if not page.dirty:
                continue
            for slot, count in page.known():
                self._writeDigests(
                    number * DIGEST_PAGE + slot,
                    bytes(page.digests[slot * length : (slot + count) * length]),
                )
            page.dirty = False

    # -- blocks

    def ranges(self) -> list[tuple[int, int]]:
        return self.held.ranges()

    def write(self, index: int, data: bytes) -> None:
        if not 0 <= index < self.blocks:
            raise ValueError(f"block {index} outside a file of {self.blocks}")
        if len(data) != self.meta.blockLength(index):
            raise ValueError(f"block {index} of {len(data)} bytes")
        if index in self.held:
            return
        if self.digest(index) is None:
            raise ValueError(f"block {index} has no digest to verify it against")
        self.disk.check()
        try:
            if self.onDisk:
                self._flushDigests()
            else:
                self._makeOnDisk()
            writeAll(self.dataFd, data, self.meta.blockStart(index))
            self._journal(index, True)
        except OSError as e:
            self.disk.refused(e)
            raise
        self.disk.stored()
        self.held.add(index)
        self.verified.add(index)

    def read(self, index: int) -> bytes | None:
        if index not in self.held:
            return None
        length = self.meta.blockLength(index)
        verified = index in self.verified
        why = None
        try:
            data = readAll(self.dataFd, length, self.meta.blockStart(index))
            digest = None if verified else self.digest(index)
        except OSError as e:
            why = str(e)
        else:
            if len(data) != length:
                why = "it is cut short"
            elif verified:
                return data
            elif digest is None:
                why = "its digest is lost"
            elif self.meta.digest(data) != digest:
                why = "it does not match its digest"
            else:
                self.verified.add(index)
                return data
        self._log.warn(
            "cached block {index} of {url} forgotten: {why}",
            index=index,
            url=self.meta.url,
            why=why,
        )
        self.forget(index)
        return None

    def forget(self, index: int) -> None:
        if index not in self.held:
            return
        self.held.discard(index)
        self.verified.discard(index)
        try:
            self._journal(index, False)
        except OSError as e:
            # Still held on disk: the next load will forget it again when
            # it fails verification.
            self._log.warn(
                "cannot journal the loss of block {index} of {url}: {why}",
                index=index,
                url=self.meta.url,
                why=str(e),
            )


class CachedFile:
    """
    One version of one file in the cache: the origin's digests and the
    blocks fetched and verified so far.

    Every L{BlockCache.open} or L{BlockCache.find} returns a new handle;
    handles on the same version share their state (a block written through
    one is held for all) and each must be closed once.

    Reads and writes are synchronous: they go to the page cache.

    @ivar meta: the file version.
    """

    def __init__(self, cache: "BlockCache", state: _CachedState) -> None:
        self._cache = cache
        self._state: _CachedState | None = state
        self.meta = state.meta
        state.handles += 1

    def _live(self) -> _CachedState:
        if self._state is None:
            raise ValueError("the cached file is closed")
        return self._state

    def has(self, index: int) -> bool:
        """
        Whether block C{index} is held.
        """
        return index in self._live().held

    def held(self) -> list[tuple[int, int]]:
        """
        The blocks held, as sorted, merged C{(first, count)} ranges.
        """
        return self._live().ranges()

    @property
    def heldCount(self) -> int:
        """
        How many blocks are held.
        """
        return self._live().held.count

    @property
    def complete(self) -> bool:
        """
        Whether every block is held (an empty file always is).
        """
        state = self._live()
        return state.held.count == state.blocks

    def digest(self, index: int) -> bytes | None:
        """
        The origin's digest for block C{index}, if known.
        """
        return self._live().digest(index)

    def setDigests(self, first: int, digests: bytes) -> None:
        """
        Keep the origin's digests (concatenated) of blocks from C{first}: on
        disk, or if the disk refuses them (or the version has no directory
        yet), in memory, up to L{DIGEST_MEMORY} bytes of them.

        @raise ValueError: if they are not whole digests inside the file.
        """
        self._live().setDigests(first, digests)

    def write(self, index: int, data: bytes) -> None:
        """
        Store block C{index}, which the caller verified against
        C{digest(index)}. Writing a block already held does nothing.

        @raise ValueError: if the index or the length is wrong for the file,
            or the block's digest is not known.
        @raise OSError: if the disk refuses, or refused less than
            L{STORE_RETRY} seconds ago; the block is then not held.
        """
        self._live().write(index, data)

    def read(self, index: int) -> bytes | None:
        """
        Block C{index}, verified against its digest the first time this
        process reads it (a block it wrote is verified already); L{None} if
        it is not held. A block that fails verification (a torn write, a
        corrupt disk) is forgotten (not held any more) and L{None} is
        returned.
        """
        return self._live().read(index)

    def close(self) -> None:
        """
        Done with this handle; closing it again does nothing.
        """
        state, self._state = self._state, None
        if state is not None:
            self._cache._release(state)


@implementer(IBlockCache)
class BlockCache:
    """
    The cache of fetched, verified blocks, under C{root} (created, private
    to the user, if missing): one directory per file version, and only the
    newest opened version of each URL kept.

    @param now: the clock that times the pause after the disk refuses a
        write.
    """

    _log = Logger()

    def __init__(self, root: str, now: Callable[[], float] = time.monotonic) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self._states: dict[tuple[str, str], _CachedState] = {}
        self._disk = _Disk(self.root, now)

    def _urlDirectory(self, url: str) -> str:
        return os.path.join(self.root, _hex(url))

    def _directory(self, url: str, version: str) -> str:
        return os.path.join(self._urlDirectory(url), _hex(version))

    def open(self, meta: FileMeta) -> CachedFile:
        """
        The cached file for C{meta}, made empty if it is not cached yet (or
        was cached with other metadata). Every other cached version of
        C{meta.url} is removed.
        """
        key = (meta.url, meta.version)
        directory = self._directory(*key)
        state = self._states.get(key)
        if state is not None and state.meta != meta:
            self._retire(state)
            state = None
        othersOnDisk = True
        if state is None:
            new = _readMeta(directory) != meta
            if new:
                othersOnDisk = os.path.isdir(self._urlDirectory(meta.url))
            state = self._load(directory, meta, new)
        self._removeOthers(meta.url, directory, othersOnDisk)
        return CachedFile(self, state)

    def hasAnyVersion(self, url: str) -> bool:
        """
        Whether some version of C{url} may be cached (one C{stat}).
        """
        return os.path.isdir(self._urlDirectory(url))

    def find(self, url: str, version: str = "") -> CachedFile | None:
        """
        The cached file for C{url} at C{version} or, with C{""}, its newest
        cached version; L{None} if there is none.
        """
        if version:
            state = self._states.get((url, version))
            if state is not None:
                return CachedFile(self, state)
            directory = self._directory(url, version)
            meta = _readMeta(directory)
        else:
            directory, meta = self._newest(url)
        if meta is None or meta.url != url or (version and meta.version != version):
            return None
        state = self._states.get((url, meta.version))
        if state is None:
            try:
                state = self._load(directory, meta)
            except OSError as e:
                self._log.warn("cannot open cached {url}: {why}", url=url, why=str(e))
                return None
        return CachedFile(self, state)

    def _newest(self, url: str) -> tuple[str, FileMeta | None]:
        parent = self._urlDirectory(url)
        try:
            names = os.listdir(parent)
        except OSError:
            return "", None
        found: list[tuple[int, str, str, FileMeta]] = []
        for name in names:
            directory = os.path.join(parent, name)
            meta = _readMeta(directory)
            if meta is None or meta.url != url or _hex(meta.version) != name:
                continue
            try:
                made = os.stat(os.path.join(directory, "meta.json")).st_mtime_ns
            except OSError:
                continue
            found.append((made, name, directory, meta))
        if not found:
            return "", None
        _, _, directory, meta = max(found, key=lambda item: item[:2])
        return directory, meta

    def _load(self, directory: str, meta: FileMeta, new: bool = False) -> _CachedState:
        state = _CachedState(directory, meta, self._disk, new)
        self._states[(meta.url, meta.version)] = state
        return state

    def _removeOthers(self, url: str, keep: str, onDisk: bool) -> None:
        """
        Forget every version of C{url} but the one in C{keep}, and with
        C{onDisk}, remove their directories.
        """
        for (stateUrl, _), state in list(self._states.items()):
            if stateUrl == url and state.directory != keep:
                self._retire(state)
        if not onDisk:
            return
        parent = self._urlDirectory(url)
        try:
            names = os.listdir(parent)
        except OSError:
            return
        for name in names:
            directory = os.path.join(parent, name)
            if directory != keep:
                _removeDirectory(directory)

    def _retire(self, state: _CachedState) -> None:
        """
        Forget C{state}: its handles keep working until closed, but it is
        not handed out again.
        """
        key = (state.meta.url, state.meta.version)
        if self._states.get(key) is state:
            del self._states[key]

    def _release(self, state: _CachedState) -> None:
        state.handles -= 1
        if state.handles == 0:
            self._retire(state)
            state.close()
