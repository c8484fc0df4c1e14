"""
The file the lab's viewers play: a constant-bitrate MPEG-TS made once with
ffmpeg (a test pattern and a tone, MPEG-2 video and MP2 audio, padded to
the mux rate), or random bytes of the same size with C{--synthetic}.
Both are kept under benchmarks/work/lab/media/ and reused.
"""

import os
import shutil
import subprocess

from benchmarks.common import ROOT, log, relative

MEDIA = os.path.join(ROOT, "benchmarks", "work", "lab", "media")
NAME = "movie.ts"
BITRATE = 2_750_000  # bits/s, the mux rate
AUDIO_RATE = "128k"
VIDEO_RATE = 2_400_000


def make(seconds, synthetic=False):
    """
    The path of the lab's file of C{seconds} of media, made if missing.
    """
    kind = "random" if synthetic else "ts"
    directory = os.path.join(MEDIA, f"{kind}-{seconds}s")
    path = os.path.join(directory, NAME)
    if os.path.exists(path):
        return path
    os.makedirs(directory, exist_ok=True)
    partial = os.path.join(directory, "partial.ts")
    if synthetic:
        with open(partial, "wb") as f:
            f.write(os.urandom(seconds * BITRATE // 8))
    else:
        if shutil.which("ffmpeg") is None:
            raise SystemExit("ffmpeg is needed for the lab's video (or --synthetic)")
        log(f"making {seconds} s of MPEG-TS at {BITRATE / 1e6} Mbit/s")
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                f"testsrc=size=640x360:rate=25:duration={seconds}",
                "-f",
                "lavfi",
                "-i",
                f"sine=frequency=440:duration={seconds}",
                "-c:v",
                "mpeg2video",
                "-b:v",
                str(VIDEO_RATE),
                "-minrate",
                str(VIDEO_RATE),
                "-maxrate",
                str(VIDEO_RATE),
                "-bufsize",
                str(VIDEO_RATE // 2),
                "-c:a",
                "mp2",
                "-b:a",
                AUDIO_RATE,
                "-f",
                "mpegts",
                "-muxrate",
                str(BITRATE),
                partial,
            ],
            check=True,
        )
    os.replace(partial, path)
    log(f"wrote {relative(path)} ({os.path.getsize(path) / 1e6:.1f} MB)")
    return path


def bitrate(path, seconds):
    """
    The file's mean rate in bytes/s: what the player model plays at.
    """
    return os.path.getsize(path) / seconds
