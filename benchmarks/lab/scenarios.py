"""
The lab's scenarios: named presets of who arrives when, on which links, and
what they play.
"""

import dataclasses
import random

M = 10**6


@dataclasses.dataclass
class Scenario:
    """
    One preset. Rates are bits/s; C{ups} is cycled over the viewers.

    @ivar leaveAfter: viewers with an odd number (the 1st, 3rd, ...) stop
        playing after this many seconds and leave (their node stops); None:
        everyone plays C{play} seconds and stays until the run ends.
    @ivar seekEvery: viewers play segments this long, the first from the
        start of the file and every next one from a random point; None: no
        seeks.
    @ivar cache: one site cache node (C{-n} for the lab's network) serves
        every second viewer, which uses it as its proxy and has no node of
        its own.
    """

    name: str
    summary: str
    viewers: int = 8
    stagger: float = 4.0
    play: float = 60.0
    originUp: int = 12 * M
    originDown: int = 100 * M
    ups: tuple = (6 * M,)
    down: int = 40 * M
    leaveAfter: float | None = None
    seekEvery: float | None = None
    cache: bool = False
    cacheUp: int = 40 * M
    cacheDown: int = 100 * M
    seed: int = 13
    # The target on the origin's copies of the bytes played.
    copiesTarget: float = 1.3

    def up(self, viewer):
        return self.ups[viewer % len(self.ups)]

    def behindCache(self, viewer):
        return self.cache and viewer % 2 == 1

    def leaves(self, viewer):
        return self.leaveAfter is not None and viewer % 2 == 0

    def segments(self, viewer, fileSeconds):
        """
        (media second to start at, seconds to play) for each segment.
        """
        if self.leaves(viewer):
            return [(0.0, min(self.play, self.leaveAfter))]
        if self.seekEvery is None:
            return [(0.0, self.play)]
        rng = random.Random(self.seed * 1000 + viewer)
        parts = [(0.0, self.seekEvery)]
        left = self.play - self.seekEvery
        while left > 0:
            length = min(self.seekEvery, left)
            parts.append((rng.uniform(0, fileSeconds - length), length))
            left -= length
        return parts

    def capacity(self, bitrate):
        """
        The swarm's upload (origin, caches, viewers) over the demand of all
        viewers playing at once.
        """
        total = self.originUp + sum(
            self.up(v) for v in range(self.viewers) if not self.behindCache(v)
        )
        if self.cache:
            total += self.cacheUp
        return total / (self.viewers * bitrate)


PRESETS = {
    s.name: s
    for s in [
        Scenario(
            "staggered",
            "8 viewers 4 s apart, origin 12 Mbit/s up, viewers 6 up / 40 down, "
            "60 s played",
        ),
        Scenario(
            "flash",
            "a flash crowd: 8 viewers at once, links as in staggered",
            stagger=0.0,
            copiesTarget=2.0,
        ),
        Scenario(
            "mixed",
            "heterogeneous uplinks: viewers at 1, 20, 6, 1, 20, 6, ... Mbit/s up",
            ups=(1 * M, 20 * M, 6 * M),
        ),
        Scenario(
            "thin-origin",
            "the origin's uplink below twice the bitrate: 5 Mbit/s",
            originUp=5 * M,
        ),
        Scenario(
            "seekers",
            "every viewer plays 15 s from the start, then 15 s from 3 random points",
            seekEvery=15.0,
        ),
        Scenario(
            "leavers",
            "every other viewer leaves after 20 s of playback (its node stops)",
            leaveAfter=20.0,
        ),
        Scenario(
            "cache",
            "a site cache node (-n, 40 Mbit/s up) is the proxy of every second "
            "viewer, which has no node of its own",
            cache=True,
        ),
        Scenario(
            "crowd20",
            "20 viewers 2 s apart, links as in staggered",
            viewers=20,
            stagger=2.0,
        ),
    ]
}


def quick(scenario):
    """
    A smoke-test size of C{scenario}: 4 viewers, 20 s played.
    """
    return dataclasses.replace(
        scenario,
        viewers=min(scenario.viewers, 4),
        play=min(scenario.play, 20.0),
        leaveAfter=None if scenario.leaveAfter is None else 10.0,
        seekEvery=None if scenario.seekEvery is None else 5.0,
    )
