# -*- test-case-name: tests.unit.test_firstcontact -*-
"""
Tests for L{p2pd.web.firstcontact}: the race between opening a file over
SPP and forwarding the request, with no request, node or network: the test
fires the SPP open and the forwarded answers itself, and moves the clock.
"""

from typing import cast

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from p2pd.core.errors import SelfConnection
from p2pd.web.firstcontact import (
    FIRST_CONTACT_GRACE,
    TRANSITIONS,
    Action,
    Answered,
    Event,
    FirstContact,
    ForwardFailed,
    Opened,
    OpenFailed,
    State,
)


class _Answer:
    """
    A forwarded request's answer: C{code}, from a p2pd node or not.

    @ivar stopped: whether its body was dropped (its connection stopped).
    """

    def __init__(self, code: int = 200, p2pd: bool = False) -> None:
        self.code = code
        self.headers = Headers({b"server": [b"p2pd/1.0" if p2pd else b"nginx"]})
        self.transport: StringTransport | None = None

    def deliverBody(self, protocol: object) -> None:
        self.transport = StringTransport()
        protocol.makeConnection(self.transport)  # type: ignore[attr-defined]

    @property
    def stopped(self) -> bool:
        return self.transport is not None and self.transport.producerState == "stopped"


class _Race:
    """
    A L{FirstContact} whose SPP open, forwarded requests and clock the test
    holds.

    @ivar sent: the forwarded requests, as Deferreds to fire.
    @ivar dropped: those cancelled.
    @ivar learned: what the race told of the host, in order.
    @ivar outcomes: what it decided.
    """

    DOWNLOAD = object()

    def __init__(self) -> None:
        self.clock = Clock()
        self.opening: defer.Deferred[object] = defer.Deferred()
        self.sent: list[defer.Deferred[object]] = []
        self.learned: list[bool] = []
        self.outcomes: list[object] = []
        self.answers: list[_Answer] = []
        self.sentAfterGrace = self.sentAfterFailure = False
        self.dropped: list[defer.Deferred[object]] = []
        self.race = FirstContact(
            self.clock,
            lambda: self.opening,  # type: ignore[arg-type,return-value]
            self._send,  # type: ignore[arg-type]
            self.learned.append,
        )
        self.race.decided.addCallback(self.outcomes.append)

    def _send(self) -> "defer.Deferred[object]":
        self.sentAfterGrace = self.clock.seconds() >= FIRST_CONTACT_GRACE
        self.sentAfterFailure = self.opening.called
        d: defer.Deferred[object] = defer.Deferred(lambda _: self.dropped.append(d))
        self.sent.append(d)
        return d

    def step(self, name: str) -> None:
        """
        Make C{name} happen: the grace ends, the SPP open ends one way, or
        the forwarded request does.
        """
        if name == "grace":
            self.clock.advance(FIRST_CONTACT_GRACE)
        elif name == "opened":
            self.opening.callback(self.DOWNLOAD)
        elif name == "openFailed":
            self.opening.errback(ConnectionError("closed"))
        elif name == "thisNode":
            self.opening.errback(SelfConnection())
        elif name == "forwardFailed":
            self.sent[-1].errback(ConnectionError("refused"))
        else:
            answer = {
                "ordinary": _Answer(),
                "p2pd": _Answer(p2pd=True),
                "p2pdError": _Answer(404, p2pd=True),
            }[name]
            self.answers.append(answer)
            self.sent[-1].callback(answer)


# steps, the outcome's type, forwarded requests sent, what was learned
CASES: list[tuple[list[str], type | None, int, list[bool]]] = [
    (["opened"], Opened, 0, [True]),
    (["grace"], None, 1, []),
    (["grace", "opened"], Opened, 1, [True]),
    (["thisNode"], OpenFailed, 0, []),
    (["grace", "thisNode"], OpenFailed, 1, []),
    (["openFailed"], None, 1, []),
    (["openFailed", "ordinary"], Answered, 1, [False]),
    (["openFailed", "p2pd"], OpenFailed, 1, [True]),
    (["openFailed", "p2pdError"], Answered, 1, [True]),
    (["openFailed", "forwardFailed"], ForwardFailed, 1, []),
    (["grace", "ordinary"], Answered, 1, [False]),
    (["grace", "p2pdError"], Answered, 1, [True]),
    (["grace", "p2pd"], None, 1, [True]),
    (["grace", "p2pd", "opened"], Opened, 1, [True, True]),
    (["grace", "p2pd", "openFailed"], OpenFailed, 1, [True]),
    (["grace", "p2pd", "thisNode"], OpenFailed, 1, [True]),
    (["grace", "forwardFailed"], None, 1, []),
    (["grace", "forwardFailed", "opened"], Opened, 1, [True]),
    (["grace", "forwardFailed", "openFailed"], ForwardFailed, 1, []),
    (["grace", "forwardFailed", "thisNode"], OpenFailed, 1, []),
    (["grace", "openFailed", "ordinary"], Answered, 1, [False]),
    (["grace", "ordinary", "opened"], Answered, 1, [False]),
]


class TableTests(SynchronousTestCase):
    """
    Every way a first contact can go, step by step.
    """

    def test_cases(self) -> None:
        """
        Each sequence of steps gives its outcome, forwards as often as
        said, and learns what it says.
        """
        for steps, outcome, forwards, learned in CASES:
            race = _Race()
            for step in steps:
                race.step(step)
            kinds = [type(o) for o in race.outcomes]
            self.assertEqual(kinds, [outcome] if outcome else [], steps)
            self.assertEqual(len(race.sent), forwards, steps)
            self.assertEqual(race.learned, learned, steps)

    def test_graceWaits(self) -> None:
        """
        Nothing is forwarded before the grace is over.
        """
        race = _Race()
        race.clock.advance(FIRST_CONTACT_GRACE * 0.9)
        self.assertEqual(race.sent, [])
        race.clock.advance(FIRST_CONTACT_GRACE * 0.1)
        self.assertEqual(len(race.sent), 1)

    def test_openedDropsForwarded(self) -> None:
        """
        An SPP open that succeeds drops the forwarded request.
        """
        race = _Race()
        race.step("grace")
        race.step("opened")
        self.assertEqual(race.dropped, race.sent)

    def test_openedBeforeGrace(self) -> None:
        """
        An SPP open within the grace stops its timer: nothing is ever
        forwarded.
        """
        race = _Race()
        race.step("opened")
        self.assertEqual(race.clock.getDelayedCalls(), [])

    def test_bodies(self) -> None:
        """
        A relayed answer's body is left to the relay; a p2pd node's
        playlist answer is dropped.
        """
        race = _Race()
        race.step("grace")
        race.step("p2pd")
        race.step("opened")
        self.assertTrue(race.answers[0].stopped)
        race = _Race()
        race.step("grace")
        race.step("ordinary")
        self.assertIsNone(race.answers[0].transport)

    def test_outcomeValues(self) -> None:
        """
        The outcome carries the download, answer or failure it stands for.
        """
        race = _Race()
        race.step("opened")
        self.assertEqual(race.outcomes, [Opened(_Race.DOWNLOAD)])  # type: ignore[arg-type]
        race = _Race()
        race.step("grace")
        race.step("ordinary")
        self.assertEqual(race.outcomes, [Answered(race.answers[0])])  # type: ignore[arg-type]
        race = _Race()
        race.step("thisNode")
        (outcome,) = race.outcomes
        assert isinstance(outcome, OpenFailed)
        self.assertTrue(outcome.reason.check(SelfConnection))

    def test_decidedIsFinal(self) -> None:
        """
        No move leaves L{State.DECIDED}, and every move into it decides.
        """
        for (state, event), (next, action) in TRANSITIONS.items():
            self.assertIsNot(state, State.DECIDED, (state, event))
            deciding = action not in (Action.NOTHING, Action.FORWARD)
            self.assertEqual(next is State.DECIDED, deciding, (state, event))

    def test_everyStateLeft(self) -> None:
        """
        Every state but L{State.DECIDED} can be left, and the grace ends
        only L{State.OPENING}.
        """
        left = {state for state, _ in TRANSITIONS}
        self.assertEqual(left, set(State) - {State.DECIDED})
        graced = {state for state, event in TRANSITIONS if event is Event.GRACE_OVER}
        self.assertEqual(graced, {State.OPENING})


class PropertyTests(SynchronousTestCase):
    """
    Whatever order the SPP open, the grace and the forwarded answer come
    in, the race decides once, and sensibly.
    """

    @given(
        st.sampled_from(["opened", "openFailed", "thisNode"]),
        st.sampled_from(["ordinary", "p2pd", "p2pdError", "forwardFailed"]),
        st.permutations(["spp", "grace", "answer"]),
    )
    def test_oneOutcome(self, spp: str, answer: str, order: list[str]) -> None:
        """
        Exactly one outcome; at most one forwarded request, sent only after
        the grace or an SPP failure; a p2pd node's playlist is never
        relayed, and every answer not relayed is dropped; SPP content that
        opens, or a URL found to name this node, before any answer decides.
        """
        race = _Race()
        names = {"spp": spp, "grace": "grace", "answer": answer}
        done: list[str] = []
        # An answer needs a forwarded request in flight: one sent after its
        # turn is answered last.
        for step in order + ["answer"]:
            if step == "answer" and (
                "answer" in done or not race.sent or race.sent[-1].called
            ):
                continue
            race.step(names[step])
            done.append(step)
        self.assertEqual(len(race.outcomes), 1)
        self.assertLessEqual(len(race.sent), 1)
        if race.sent:
            self.assertTrue(race.sentAfterGrace or race.sentAfterFailure)
        (outcome,) = race.outcomes
        for each in race.answers:
            relayed = isinstance(outcome, Answered) and outcome.response is cast(
                IResponse, each
            )
            self.assertNotEqual(each.stopped, relayed)
        if isinstance(outcome, Answered):
            self.assertIn(answer, ("ordinary", "p2pdError"))
        sppFirst = "answer" not in done or done.index("spp") < done.index("answer")
        if spp == "opened" and sppFirst:
            self.assertIsInstance(outcome, Opened)
        if spp == "thisNode" and sppFirst:
            self.assertIsInstance(outcome, OpenFailed)


class FailureTypeTests(SynchronousTestCase):
    """
    The failures an outcome carries are those that happened.
    """

    def test_forwardFailure(self) -> None:
        """
        L{ForwardFailed} carries the forwarded request's failure.
        """
        race = _Race()
        race.step("openFailed")
        race.sent[0].errback(Failure(ConnectionRefusedError()))
        (outcome,) = race.outcomes
        assert isinstance(outcome, ForwardFailed)
        self.assertTrue(outcome.reason.check(ConnectionRefusedError))
