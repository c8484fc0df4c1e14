# -*- test-case-name: tests.unit.test_mediatypes -*-
"""
Content types for published files, chosen by file name.

Players sniff the container anyway, but browsers and some media centres trust
the header, so video containers get their registered types rather than
whatever the host's C{/etc/mime.types} happens to say.
"""

import mimetypes

_VIDEO_TYPES = {
    ".ts": "video/mp2t",
    ".m2ts": "video/mp2t",
    ".mts": "video/mp2t",
    ".mpg": "video/mpeg",
    ".mpeg": "video/mpeg",
    ".m1v": "video/mpeg",
    ".m2v": "video/mpeg",
    ".vob": "video/mpeg",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".m4a": "audio/mp4",
    ".mkv": "video/x-matroska",
    ".mka": "audio/x-matroska",
    ".webm": "video/webm",
    ".avi": "video/x-msvideo",
    ".mov": "video/quicktime",
    ".qt": "video/quicktime",
    ".ogv": "video/ogg",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".flv": "video/x-flv",
    ".wmv": "video/x-ms-wmv",
    ".asf": "video/x-ms-asf",
    ".3gp": "video/3gpp",
    ".mp3": "audio/mpeg",
    ".flac": "audio/flac",
    ".wav": "audio/wav",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".pls": "audio/x-scpls",
}

DEFAULT_TYPE = "application/octet-stream"

# Read the host's tables now: the first lookup reads them from disk, which
# would otherwise land on a player's first byte.
mimetypes.guess_type("x.bin", strict=False)


def contentType(name: str) -> str:
    """
    The content type for a file called C{name}, by its extension.
    """
    dot = name.rfind(".")
    if dot == -1:
        return DEFAULT_TYPE
    extension = name[dot:].lower()
    known = _VIDEO_TYPES.get(extension)
    if known is not None:
        return known
    guessed, _ = mimetypes.guess_type("x" + extension, strict=False)
    return guessed or DEFAULT_TYPE
