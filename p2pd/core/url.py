# -*- test-case-name: tests.unit.test_url -*-
"""
SPP URLs: C{spp://host[:port]/path}, naming a file by its origin, and
C{spps://host[:port]/path}, the same over TLS, whose origin proves its host
name with a certificate; and where a node's HTTP side gives a published
file's bytes.
"""

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from p2pd.core.net import DEFAULT_PORT

# The HTTP path prefix giving a published file's bytes, never a playlist
# (the fallback URL). Published names never start with a dot, so this prefix
# cannot shadow one.
DIRECT_PREFIX = ".direct"

_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)$")


# The schemes of SPP URLs: plain, and over TLS.
SCHEMES = ("spp", "spps")


class BadURL(ValueError):
    """
    Not an SPP URL.
    """


@dataclass(frozen=True)
class SPPURL:
    host: str
    port: int
    path: str  # percent-encoded, starting with "/"
    secure: bool = False  # spps://: over TLS, the origin's name verified

    @property
    def scheme(self) -> str:
        return SCHEMES[self.secure]

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def segments(self) -> list[bytes]:
        """
        The path's segments, percent-decoded once.
        """
        return [unquote(s).encode("utf-8") for s in self.path[1:].split("/")]

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority}{self.path}"


def parse(url: str) -> SPPURL:
    """
    Parse and normalise an C{spp://} or C{spps://} URL (the port made
    explicit).

    @raise BadURL: if C{url} is not one.
    """
    if len(url) > 2048:
        raise BadURL("URL too long")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise BadURL(f"{url!r}: {e}") from None
    if parts.scheme not in SCHEMES:
        raise BadURL(f"{url!r} is not an spp:// or spps:// URL")
    host = parts.hostname or ""
    netloc = parts.netloc.rsplit(":", 1)[0] if port is not None else parts.netloc
    if not host or not _HOST.match(netloc) or parts.username or parts.password:
        raise BadURL(f"{url!r} has no valid host")
    if not parts.path or parts.path == "/":
        raise BadURL(f"{url!r} names no file")
    if "?" in url or "#" in url:
        # Even empty ones: a URL names a file by its path alone.
        raise BadURL(f"{url!r} has a query or fragment")
    return SPPURL(
        host.lower(),
        DEFAULT_PORT if port is None else port,
        parts.path,
        parts.scheme == "spps",
    )
