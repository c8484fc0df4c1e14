"""
Tests for L{p2pd.mediatypes}: content types chosen by file name.
"""

from twisted.trial.unittest import SynchronousTestCase

from p2pd.mediatypes import _VIDEO_TYPES, DEFAULT_TYPE, contentType


class ContentTypeTests(SynchronousTestCase):
    """
    L{contentType} names the registered type of a file by its extension.
    """

    def test_videoTypes(self) -> None:
        """
        Every container the module lists gets its registered type, whatever
        the host's C{mime.types} says.
        """
        expected = {
            "movie.ts": "video/mp2t",
            "movie.m2ts": "video/mp2t",
            "movie.mts": "video/mp2t",
            "movie.mpg": "video/mpeg",
            "movie.mpeg": "video/mpeg",
            "movie.m1v": "video/mpeg",
            "movie.m2v": "video/mpeg",
            "movie.vob": "video/mpeg",
            "movie.mp4": "video/mp4",
            "movie.m4v": "video/mp4",
            "movie.m4a": "audio/mp4",
            "movie.mkv": "video/x-matroska",
            "movie.mka": "audio/x-matroska",
            "movie.webm": "video/webm",
            "movie.avi": "video/x-msvideo",
            "movie.mov": "video/quicktime",
            "movie.qt": "video/quicktime",
            "movie.ogv": "video/ogg",
            "movie.ogg": "audio/ogg",
            "movie.oga": "audio/ogg",
            "movie.opus": "audio/ogg",
            "movie.flv": "video/x-flv",
            "movie.wmv": "video/x-ms-wmv",
            "movie.asf": "video/x-ms-asf",
            "movie.3gp": "video/3gpp",
            "movie.mp3": "audio/mpeg",
            "movie.flac": "audio/flac",
            "movie.wav": "audio/wav",
            "movie.m3u8": "application/vnd.apple.mpegurl",
            "movie.mpd": "application/dash+xml",
            "movie.pls": "audio/x-scpls",
        }
        self.assertEqual(
            sorted(name[name.rfind(".") :] for name in expected), sorted(_VIDEO_TYPES)
        )
        for name, mediaType in expected.items():
            self.assertEqual(contentType(name), mediaType, name)

    def test_caseInsensitive(self) -> None:
        """
        Extensions are matched without regard to case.
        """
        self.assertEqual(contentType("MOVIE.MP4"), "video/mp4")
        self.assertEqual(contentType("Movie.Mkv"), "video/x-matroska")
        self.assertEqual(contentType("clip.Ts"), "video/mp2t")

    def test_lastExtension(self) -> None:
        """
        Only the last extension counts.
        """
        self.assertEqual(contentType("movie.mp4.mkv"), "video/x-matroska")

    def test_inSubdirectory(self) -> None:
        """
        A name with directories is typed by its last component's extension.
        """
        self.assertEqual(contentType("shows/s01.e02/episode.webm"), "video/webm")

    def test_unknownExtension(self) -> None:
        """
        An extension nobody knows gets C{application/octet-stream}.
        """
        self.assertEqual(contentType("data.p2pd-no-such-extension"), DEFAULT_TYPE)
        self.assertEqual(DEFAULT_TYPE, "application/octet-stream")

    def test_noExtension(self) -> None:
        """
        A name without a dot gets C{application/octet-stream}.
        """
        self.assertEqual(contentType("README"), DEFAULT_TYPE)
        self.assertEqual(contentType(""), DEFAULT_TYPE)

    def test_dotInDirectoryOnly(self) -> None:
        """
        A dot in a directory name is not an extension of the file.
        """
        self.assertEqual(contentType("v1.mkv/README"), DEFAULT_TYPE)

    def test_otherTypesGuessed(self) -> None:
        """
        Extensions outside the video list are typed by Python's table.
        """
        self.assertEqual(contentType("notes.txt"), "text/plain")
        self.assertEqual(contentType("NOTES.TXT"), "text/plain")
