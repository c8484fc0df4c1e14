# -*- test-case-name: tests.test_playlist -*-
"""
SPP playlists: the PLS file a C{--redirect} server answers with, and the
URLs it holds.

Entry 1 is the C{spp://} URL for players that speak SPP; entry 2 the HTTP
fallback for those that do not (through a local p2pd proxy it still travels
over SPP). Lengths are byte sizes, as the original wrote them.
"""

import re
from dataclasses import dataclass
from urllib.parse import quote

CONTENT_TYPE = b"application/x-spp-playlist"

# Published names never start with a dot, so this prefix cannot shadow one.
DIRECT_PREFIX = ".direct"


def quotePath(name: str) -> str:
    """
    Percent-encode a published name (UTF-8) for use as a URL path.
    """
    return quote(name.encode("utf-8"), safe="/-._~!$&'()*+,;=:@")


def sppURL(authority: str, name: str) -> str:
    """
    The C{spp://} URL of published file C{name} on the node at C{authority}
    (C{host:port}).
    """
    return f"spp://{authority}/{quotePath(name)}"


def directURL(authority: str, name: str) -> str:
    """
    The HTTP fallback URL: the bytes of C{name}, never a playlist.
    """
    return f"http://{authority}/{DIRECT_PREFIX}/{quotePath(name)}"


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


def forFile(sppAuthority: str, httpAuthority: str, name: str, size: int) -> bytes:
    """
    The playlist for published file C{name} of C{size} bytes.
    """
    title = name.rsplit("/", 1)[-1]
    return render(
        [
            Entry(sppURL(sppAuthority, name), f"{title} (SPP)", size),
            Entry(directURL(httpAuthority, name), f"{title} (HTTP)", size),
        ]
    )


class PlaylistError(ValueError):
    """
    Not a PLS playlist.
    """


_MAX_PLAYLIST = 64 * 1024
_MAX_ENTRIES = 1000
# Only these end a line: str.splitlines() would also split a title at
# U+2028, U+0085, form feeds and the like, which render() writes as they are.
_LINE_END = re.compile(r"\r\n|\r|\n")


def parse(data: bytes) -> list[Entry]:
    """
    Parse a PLS playlist, in the order of its entry numbers.

    @raise PlaylistError: if C{data} is not a PLS playlist.
    """
    if len(data) > _MAX_PLAYLIST:
        raise PlaylistError("playlist too large")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    lines = [line.strip() for line in _LINE_END.split(text) if line.strip()]
    if not lines or lines[0].lower() != "[playlist]":
        raise PlaylistError("missing [playlist] header")
    fields: dict[int, dict[str, str]] = {}
    for line in lines[1:]:
        key, sep, value = line.partition("=")
        if not sep:
            raise PlaylistError(f"malformed line {line!r}")
        key = key.strip().lower()
        for kind in ("file", "title", "length"):
            number = key[len(kind) :]
            if key.startswith(kind) and number.isascii() and number.isdigit():
                if len(number) > 9 or not 0 < int(number) <= _MAX_ENTRIES:
                    raise PlaylistError(f"entry number out of range in {line!r}")
                fields.setdefault(int(number), {})[kind] = value.strip()
                break
    entries = []
    for index in sorted(fields):
        entry = fields[index]
        if "file" not in entry:
            raise PlaylistError(f"entry {index} has no File line")
        try:
            length = int(entry.get("length", "-1"))
        except ValueError:
            raise PlaylistError(f"entry {index} has a bad Length") from None
        entries.append(Entry(entry["file"], entry.get("title", ""), length))
    if not entries:
        raise PlaylistError("no entries")
    return entries
