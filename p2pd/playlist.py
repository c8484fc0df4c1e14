# -*- test-case-name: tests.unit.test_playlist -*-
"""
SPP playlists: the PLS file a C{--redirect} server answers with, and the
URLs it holds.

Entry 1 is the C{spp://} URL for players that speak SPP; entry 2 the HTTP
fallback for those that do not (through a local p2pd proxy it still travels
over SPP). An origin with a certificate for its name names C{spps://} and
C{https://} URLs instead. Lengths are byte sizes, as the original wrote them.
"""

from dataclasses import dataclass
from urllib.parse import quote

from p2pd.core.url import DIRECT_PREFIX

CONTENT_TYPE = b"application/x-spp-playlist"


def quotePath(name: str) -> str:
    """
    Percent-encode a published name (UTF-8) for use as a URL path.
    """
    return quote(name.encode("utf-8"), safe="/-._~!$&'()*+,;=:@")


def sppURL(authority: str, name: str, secure: bool = False) -> str:
    """
    The C{spp://} URL (C{spps://} if C{secure}) of published file C{name}
    on the node at C{authority} (C{host:port}).
    """
    scheme = "spps" if secure else "spp"
    return f"{scheme}://{authority}/{quotePath(name)}"


def directURL(authority: str, name: str, secure: bool = False) -> str:
    """
    The HTTP fallback URL (HTTPS if C{secure}): the bytes of C{name}, never
    a playlist.
    """
    scheme = "https" if secure else "http"
    return f"{scheme}://{authority}/{DIRECT_PREFIX}/{quotePath(name)}"


@dataclass(frozen=True)
class Entry:
    url: str
    title: str
    length: int


def render(entries: list[Entry]) -> bytes:
    """
    A PLS version 2 playlist holding C{entries}.
    """
    lines = ["[playlist]", f"NumberOfEntries={len(entries)}"]
    for n, entry in enumerate(entries, 1):
        title = entry.title.replace("\r", " ").replace("\n", " ")
        lines += [
            f"File{n}={entry.url}",
            f"Title{n}={title}",
            f"Length{n}={entry.length}",
        ]
    lines.append("Version=2")
    return ("\n".join(lines) + "\n").encode("utf-8")


def forFile(
    sppAuthority: str, httpAuthority: str, name: str, size: int, secure: bool = False
) -> bytes:
    """
    The playlist for published file C{name} of C{size} bytes; over TLS if
    C{secure}.
    """
    title = name.rsplit("/", 1)[-1]
    kinds = ("SPPS", "HTTPS") if secure else ("SPP", "HTTP")
    return render(
        [
            Entry(sppURL(sppAuthority, name, secure), f"{title} ({kinds[0]})", size),
            Entry(
                directURL(httpAuthority, name, secure), f"{title} ({kinds[1]})", size
            ),
        ]
    )
