# -*- test-case-name: tests.unit.test_cachecommand -*-
"""
How C{p2pd cache} changes a cache: by itself, holding the cache's lock,
when no node runs on it; otherwise by asking the node that holds the lock,
over its control listener (L{p2pd.web.control}), so that the node never
serves or announces what is gone. Never both.
"""

import http.client
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol
from urllib.parse import urlencode

from p2pd.core.net import parseHostPort
from p2pd.store.cache import BlockCache
from p2pd.store.cachelock import CacheBusy, CacheLock, Holder, holder
from p2pd.web.access import isLocalHost
from p2pd.web.control import MAX_RECHECK, PREFIX, TOKEN_HEADER, formatBlocks

# Seconds to wait for the node's answer: a purge removes many files.
CONTROL_TIMEOUT = 300.0
# The most bytes of an answer read (a recheck's names at most 256 blocks).
MAX_ANSWER = 64 * 1024


class CannotChange(Exception):
    """
    The cache cannot be changed now: its lock is held by a process that
    takes no commands, or the node holding it cannot be asked.
    """


class Changes(Protocol):
    """
    The changes C{p2pd cache} makes to a cache.
    """

    def remove(self, url: str) -> bool:
        """
        Remove every version of C{url}; whether there was one.
        """

    def purge(self) -> int:
        """
        Remove everything; how many URLs (or pieces of debris).
        """

    def recheck(self, url: str, version: str, blocks: Sequence[int]) -> list[int]:
        """
        Check C{blocks} of a version again; those dropped as bad.
        """


class LocalChanges:
    """
    Changes made by this process, which holds the cache's lock.
    """

    def __init__(self, root: str) -> None:
        self.cache = BlockCache(root)

    def remove(self, url: str) -> bool:
        return self.cache.remove(url)

    def purge(self) -> int:
        return self.cache.purge()

    def recheck(self, url: str, version: str, blocks: Sequence[int]) -> list[int]:
        return self.cache.recheck(url, version, blocks)


class NodeChanges:
    """
    Changes asked of the node that holds the cache's lock, at its control
    address with its token.
    """

    def __init__(self, found: Holder, timeout: float = CONTROL_TIMEOUT) -> None:
        """
        @raise CannotChange: the holder names no loopback C{HOST:PORT}.
        """
        self.holder = found
        try:
            self.host, self.port = parseHostPort(found.control or "")
        except ValueError:
            self.host = ""
        if not isLocalHost(self.host):
            raise CannotChange(
                f"the lock of the node (pid {found.pid}) names no loopback "
                f"control address: {found.control!r}"
            )
        self.timeout = timeout

    def _post(self, command: str, **query: str) -> dict[str, Any]:
        """
        Send one command; the node's answer.

        @raise CannotChange: the node cannot be reached, or its answer is
            not one.
        """
        path = f"/{PREFIX.decode()}/{command}"
        if query:
            path += "?" + urlencode(query)
        connection = http.client.HTTPConnection(
            self.host, self.port, timeout=self.timeout
        )
        try:
            connection.request(
                "POST", path, headers={TOKEN_HEADER.decode(): self.holder.token or ""}
            )
            response = connection.getresponse()
            status, body = response.status, response.read(MAX_ANSWER)
        except (OSError, http.client.HTTPException) as e:
            raise CannotChange(
                f"cannot reach the node (pid {self.holder.pid}) running on the "
                f"cache at {self.holder.control}: {e}"
            ) from None
        finally:
            connection.close()
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if status not in (200, 404) or not isinstance(answer, dict):
            why = answer.get("error") if isinstance(answer, dict) else None
            raise CannotChange(
                f"the node (pid {self.holder.pid}) refused: {why or status}"
            )
        return answer

    def remove(self, url: str) -> bool:
        return bool(self._post("rm", url=url).get("removed"))

    def purge(self) -> int:
        return int(self._post("purge").get("removed", 0))

    def recheck(self, url: str, version: str, blocks: Sequence[int]) -> list[int]:
        dropped: list[int] = []
        for start in range(0, len(blocks), MAX_RECHECK):
            part = formatBlocks(blocks[start : start + MAX_RECHECK])
            answer = self._post("recheck", url=url, version=version, blocks=part)
            dropped += [int(i) for i in answer.get("dropped", [])]
        return dropped


@contextmanager
def changes(directory: str) -> Iterator[Changes]:
    """
    The way to change the cache in C{directory} now: under its lock, taken
    for the C{with} block, or through the node that holds it.

    @raise CannotChange: neither is possible.
    """
    try:
        found = holder(directory)
    except OSError as e:
        raise CannotChange(
            f"cannot read the lock of {directory}: {e.strerror or e}"
        ) from None
    lock = None
    if found is None:
        try:
            lock = CacheLock.take(directory)
        except CacheBusy as e:
            found = e.holder  # a node started meanwhile
        except OSError as e:
            raise CannotChange(f"cannot lock {directory}: {e.strerror or e}") from None
    if lock is not None:
        try:
            yield LocalChanges(os.path.join(directory, "blocks"))
        finally:
            lock.release()
        return
    assert found is not None
    if found.control is None or found.token is None:
        raise CannotChange(
            f"{directory} is in use by pid {found.pid or 'unknown'}, which takes "
            "no cache commands (a p2pd fetch, another p2pd cache, or a node "
            "starting); try again when it is done"
        )
    yield NodeChanges(found)
