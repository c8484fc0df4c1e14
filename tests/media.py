# -*- test-case-name: tests.integration.test_http -*-
"""
Test media for the integration tests, made once per test run.

L{getMedia} fills a temporary directory (removed when the run ends) with
short videos made by ffmpeg from its lavfi test sources, so nothing is
downloaded, and a file of random bytes:

    small.ts    MPEG-TS, H.264 + AAC, about 2 MB
    small.mpg   MPEG-PS (MPEG-1 video + MP2 audio)
    small.mp4   MP4 without faststart: its index is at the end, so a player
                reads the tail first
    random.bin  8 MiB of random bytes, for byte-exact downloads

The videos are 16 seconds of 320x240 at 25 frames per second, with a
keyframe every 2 seconds; making all three takes about a second.
"""

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SkipTest

from tests import clients

DURATION = 16  # seconds
BLOB_SIZE = 8 * 1024 * 1024

_SOURCES = [
    "-f",
    "lavfi",
    "-i",
    f"testsrc=duration={DURATION}:size=320x240:rate=25",
    "-f",
    "lavfi",
    "-i",
    f"sine=frequency=440:duration={DURATION}",
]

# name: ffmpeg output options
_VIDEOS = {
    "small.ts": [
        *("-c:v", "libx264", "-preset", "veryfast", "-b:v", "1000k", "-g", "50"),
        *("-c:a", "aac", "-b:a", "64k", "-f", "mpegts"),
    ],
    "small.mpg": [
        *("-c:v", "mpeg1video", "-b:v", "800k", "-g", "50"),
        *("-c:a", "mp2", "-b:a", "128k", "-f", "mpeg"),
    ],
    "small.mp4": [
        *("-c:v", "libx264", "-preset", "veryfast", "-b:v", "600k", "-g", "50"),
        *("-c:a", "aac", "-b:a", "64k", "-f", "mp4"),
    ],
}


@dataclass(frozen=True)
class Media:
    """
    The test media of this run.

    @ivar directory: where the files are (publish it with C{-p}).
    @ivar videos: whether the videos exist (ffmpeg is installed).
    """

    directory: str
    videos: bool

    ts = "small.ts"
    ps = "small.mpg"
    mp4 = "small.mp4"
    blob = "random.bin"

    def path(self, name: str) -> str:
        """
        The local path of file C{name}.

        @raise SkipTest: if C{name} is a video and ffmpeg is not installed.
        """
        if name in _VIDEOS and not self.videos:
            raise SkipTest("ffmpeg is not installed: no test videos")
        return os.path.join(self.directory, name)

    def size(self, name: str) -> int:
        return os.path.getsize(self.path(name))

    def read(self, name: str) -> bytes:
        with open(self.path(name), "rb") as f:
            return f.read()


_made: Media | None = None


@inlineCallbacks
def getMedia(reactor: Any = None) -> Any:
    """
    The test media, made on the first call of the run.

    @return: a Deferred firing with a L{Media}.
    """
    global _made
    if _made is not None:
        return _made
    directory = tempfile.mkdtemp(prefix="p2pd-media-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    with open(os.path.join(directory, Media.blob), "wb") as f:
        f.write(os.urandom(BLOB_SIZE))
    videos = shutil.which("ffmpeg") is not None
    for name, options in _VIDEOS.items() if videos else ():
        target = os.path.join(directory, name)
        result = yield clients.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-y", *_SOURCES, *options, target],
            timeout=120,
            reactor=reactor,
        )
        clients.check(result)
    _made = Media(directory, videos)
    return _made
