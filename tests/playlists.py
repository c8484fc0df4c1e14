"""
Reading PLS playlists as players do, leniently in layout and strictly in
structure: p2pd only writes them (L{p2pd.playlist}); tests read back what
it wrote.
"""

import re

from p2pd.playlist import Entry


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
