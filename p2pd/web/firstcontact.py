# -*- test-case-name: tests.unit.test_firstcontact,tests.unit.test_proxy -*-
"""
First contact: a request for a file of a C{host:port} not known to be a
p2pd node or not.

The file is opened over SPP at once and, after L{FIRST_CONTACT_GRACE} or as
soon as that fails, the request is forwarded too. Whichever tells first
decides: an SPP open that succeeds serves the content (the forwarded
request is dropped, or never sent); an answer from an ordinary server is
relayed; an answer from a p2pd node waits for the SPP open, whose error, if
it fails, is the client's answer. A p2pd node nearby then starts its content
as fast as if it were known, and an ordinary site waits at most the grace.

L{FirstContact} is the race as a state machine: L{TRANSITIONS} holds every
move. It only decides; L{FirstContact.decided} fires with the outcome, for
the request to act on.
"""

import enum
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.iweb import IResponse

from p2pd.core.errors import SelfConnection
from p2pd.engine.download import Download
from p2pd.web.forward import discard, fromP2pd

# How long a first contact waits for SPP before forwarding the request too:
# a node on the same network opens a file in a few milliseconds.
FIRST_CONTACT_GRACE = 0.02


class State(enum.Enum):
    OPENING = "the SPP open alone, within the grace"
    RACING = "the SPP open and the forwarded request"
    FORWARD_ALONE = "the SPP open failed; the forwarded request goes on"
    SPP_ALONE = "the forwarded request failed; the SPP open goes on"
    P2PD_ANSWERED = "a p2pd node answered the forwarded request; the SPP open goes on"
    DECIDED = "the outcome is given"


class Event(enum.Enum):
    GRACE_OVER = "the grace is over"
    OPENED = "the SPP open succeeded"
    OPEN_FAILED = "the SPP open failed"
    THIS_NODE = "the SPP open found the URL names this very node"
    ORDINARY_ANSWER = "an ordinary server answered"
    P2PD_ERROR = "a p2pd node answered with an error"
    P2PD_ANSWER = "a p2pd node answered"
    FORWARD_FAILED = "the forwarded request failed"


class Action(enum.Enum):
    NOTHING = "wait for the next event"
    FORWARD = "send the forwarded request"
    SERVE = "decide: the SPP content (the forwarded request dropped)"
    SPP_ERROR = "decide: the SPP open's failure (the forwarded request dropped)"
    RELAY = "decide: the forwarded answer"
    FORWARD_ERROR = "decide: the forwarded request's failure"


S, E, A = State, Event, Action
# (state, event) -> (next state, action); any other event changes nothing.
TRANSITIONS: dict[tuple[State, Event], tuple[State, Action]] = {
    (S.OPENING, E.GRACE_OVER): (S.RACING, A.FORWARD),
    (S.OPENING, E.OPENED): (S.DECIDED, A.SERVE),
    (S.OPENING, E.THIS_NODE): (S.DECIDED, A.SPP_ERROR),
    (S.OPENING, E.OPEN_FAILED): (S.FORWARD_ALONE, A.FORWARD),
    (S.RACING, E.OPENED): (S.DECIDED, A.SERVE),
    (S.RACING, E.THIS_NODE): (S.DECIDED, A.SPP_ERROR),
    (S.RACING, E.OPEN_FAILED): (S.FORWARD_ALONE, A.NOTHING),
    (S.RACING, E.ORDINARY_ANSWER): (S.DECIDED, A.RELAY),
    (S.RACING, E.P2PD_ERROR): (S.DECIDED, A.RELAY),
    (S.RACING, E.P2PD_ANSWER): (S.P2PD_ANSWERED, A.NOTHING),
    (S.RACING, E.FORWARD_FAILED): (S.SPP_ALONE, A.NOTHING),
    (S.FORWARD_ALONE, E.ORDINARY_ANSWER): (S.DECIDED, A.RELAY),
    (S.FORWARD_ALONE, E.P2PD_ERROR): (S.DECIDED, A.RELAY),
    (S.FORWARD_ALONE, E.P2PD_ANSWER): (S.DECIDED, A.SPP_ERROR),
    (S.FORWARD_ALONE, E.FORWARD_FAILED): (S.DECIDED, A.FORWARD_ERROR),
    (S.SPP_ALONE, E.OPENED): (S.DECIDED, A.SERVE),
    (S.SPP_ALONE, E.THIS_NODE): (S.DECIDED, A.SPP_ERROR),
    (S.SPP_ALONE, E.OPEN_FAILED): (S.DECIDED, A.FORWARD_ERROR),
    (S.P2PD_ANSWERED, E.OPENED): (S.DECIDED, A.SERVE),
    (S.P2PD_ANSWERED, E.THIS_NODE): (S.DECIDED, A.SPP_ERROR),
    (S.P2PD_ANSWERED, E.OPEN_FAILED): (S.DECIDED, A.SPP_ERROR),
}


@dataclass(frozen=True)
class Opened:
    """
    The outcome: serve C{download}'s content.
    """

    download: Download


@dataclass(frozen=True)
class OpenFailed:
    """
    The outcome: answer with why the SPP open failed.
    """

    reason: Failure


@dataclass(frozen=True)
class Answered:
    """
    The outcome: relay C{response}.
    """

    response: IResponse


@dataclass(frozen=True)
class ForwardFailed:
    """
    The outcome: answer with why the forwarded request failed.
    """

    reason: Failure


Outcome = Opened | OpenFailed | Answered | ForwardFailed


class FirstContact:
    """
    One first contact's race, started at once.

    @ivar decided: fires with the L{Outcome}.
    """

    def __init__(
        self,
        clock: IReactorTime,
        openSPP: Callable[[], "defer.Deferred[Download]"],
        forward: Callable[[], "defer.Deferred[IResponse]"],
        learn: Callable[[bool], None],
    ) -> None:
        """
        @param openSPP: opens the file over SPP.
        @param forward: sends the forwarded request.
        @param learn: told whether the host is a p2pd node, once known.
        """
        self.state = State.OPENING
        self.decided: defer.Deferred[Outcome] = defer.Deferred()
        self._forward = forward
        self._learn = learn
        self._forwarded: defer.Deferred[IResponse] | None = None
        self._download: Download | None = None
        self._response: IResponse | None = None
        self._openFailure: Failure | None = None
        self._forwardFailure: Failure | None = None
        self._grace = clock.callLater(FIRST_CONTACT_GRACE, self._handle, E.GRACE_OVER)
        openSPP().addCallbacks(self._opened, self._openFailed)

    def _opened(self, download: Download) -> None:
        self._download = download
        self._handle(E.OPENED)

    def _openFailed(self, reason: Failure) -> None:
        self._openFailure = reason
        self._handle(E.THIS_NODE if reason.check(SelfConnection) else E.OPEN_FAILED)

    def _answered(self, response: IResponse) -> None:
        p2pd = fromP2pd(response)
        if self.state is not State.DECIDED:
            self._response = response
            self._learn(p2pd)
        if not p2pd:
            event = E.ORDINARY_ANSWER
        elif response.code >= 400:
            event = E.P2PD_ERROR
        else:
            event = E.P2PD_ANSWER
        if self._handle(event) is not A.RELAY:
            discard(response)

    def _forwardFailed(self, reason: Failure) -> None:
        self._forwardFailure = reason
        self._handle(E.FORWARD_FAILED)

    def _handle(self, event: Event) -> Action:
        """
        Move on C{event} as L{TRANSITIONS} says, and act.
        """
        state, action = TRANSITIONS.get((self.state, event), (self.state, A.NOTHING))
        self.state = state
        if state is not State.OPENING and self._grace.active():
            self._grace.cancel()
        if action is A.FORWARD:
            self._forwarded = self._forward()
            self._forwarded.addCallbacks(self._answered, self._forwardFailed)
        elif action is A.SERVE:
            assert self._download is not None
            self._learn(True)
            self._drop()
            self.decided.callback(Opened(self._download))
        elif action is A.SPP_ERROR:
            assert self._openFailure is not None
            self._drop()
            self.decided.callback(OpenFailed(self._openFailure))
        elif action is A.RELAY:
            assert self._response is not None
            self.decided.callback(Answered(self._response))
        elif action is A.FORWARD_ERROR:
            assert self._forwardFailure is not None
            self.decided.callback(ForwardFailed(self._forwardFailure))
        return action

    def _drop(self) -> None:
        """
        Drop the forwarded request, if one was sent.
        """
        if self._forwarded is not None:
            self._forwarded.cancel()
