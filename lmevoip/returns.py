"""
The engine's return values: L{TelephonyReturnValue}.

Every call of the engine's API (L{lmevoip.interfaces.IVoipMediaEngine})
returns one of these I{at once}, the way a commercial media-engine SDK
does: C{SipSuccess} says the request was accepted and is under way; any
other member names why it was refused, and then nothing changed. What
happens later (the far end answers, a keep-alive fails) arrives as an
event (L{lmevoip.events}), never as a return value.

The same members also travel in events as the C{result} of an outcome,
e.g. a C{SipCallFailed} event carries C{SipCallTimeOut} when an INVITE got
no final response, C{SipRemoteBusy} for a 486.

Members compare by identity (C{rv is TelephonyReturnValue.SipSuccess}) and
have a stable integer C{value} for logs and foreign-language bindings;
C{rv.succeeded} is C{True} for C{SipSuccess} only. Members are truthy like
every C{Enum} member: test C{rv.succeeded}, not C{rv}.
"""

from __future__ import annotations

import enum

__all__ = ["TelephonyReturnValue", "TelephonyError"]


class TelephonyReturnValue(enum.Enum):
    """
    What an engine call did, or the result an event reports.

    The integer values are stable (new members get new numbers).
    """

    #: The request was accepted; its outcome arrives as events.
    SipSuccess = 0
    #: The catch-all failure: the request could not be carried out for a
    #: reason no other member names (see the log and the event's details).
    SipCallFailure = 1
    #: A handle (an observer or waiter handle) that is not, or no longer,
    #: registered.
    SipInvalidHandle = 2
    #: An argument is of the wrong type or out of its documented range.
    SipBadParameter = 3
    #: The phone line number is not an integer from 0 to C{lines - 1}.
    SipBadPhoneLine = 4
    #: The engine is not running (before C{startService} or after
    #: C{stopService}).
    SipNotEnabled = 5
    #: C{goOffHook} on a line whose call is already answered.
    SipAlreadyOffHook = 6
    #: An outgoing call got no final response in time (in events), or the
    #: ringing call to answer has already been given up.
    SipCallTimeOut = 7
    #: The line already has a call: it is not free for C{makeCall}.
    SipLineBusy = 8
    #: The line has no call (or not the kind of call the operation needs:
    #: C{goOffHook} and C{abortIncomingCall} need a ringing incoming call).
    SipNoCallOnLine = 9
    #: The call is not established yet (hold and resume need a confirmed
    #: dialog).
    SipCallNotConnected = 10
    #: C{holdCall} on a call we already hold.
    SipAlreadyOnHold = 11
    #: C{resumeCall} on a call we do not hold.
    SipNotOnHold = 12
    #: Every phone line is busy (in events: an incoming call answered 486).
    SipNoFreeLine = 13
    #: The far end answered 486 Busy Here or 600 Busy Everywhere (in events).
    SipRemoteBusy = 14
    #: The far end refused the call with another 3xx-6xx status (in events).
    SipCallRejected = 15
    #: The call was cancelled before it was answered (in events).
    SipCallCancelled = 16
    #: A SIP request or keep-alive could not be sent: no socket, an address
    #: of the wrong family, a socket error (in events).
    SipTransportError = 17
    #: A host name could not be resolved.
    SipResolutionFailure = 18
    #: C{enableSipRegisterServer}'s name list is malformed: not a list of
    #: strings, a name that is not a valid SIP user part, a name given
    #: twice (a phone line's name included), or too many names.
    SipBadNameList = 19
    #: (In events) a registrar's challenge could not be answered, or it
    #: refused our credentials.
    SipAuthenticationFailure = 20
    #: (In events) a registrar refused a REGISTER with another 3xx-6xx
    #: status (403, 404, a 423 we cannot satisfy, ...).
    SipRegistrationRejected = 21

    @property
    def succeeded(self) -> bool:
        """
        Whether this is L{SipSuccess}.
        """
        return self is TelephonyReturnValue.SipSuccess

    def __str__(self) -> str:
        return self.name


class TelephonyError(Exception):
    """
    An engine operation was refused: carries the L{TelephonyReturnValue}
    to return and a message for the log.

    The engine raises it internally and turns it into its return value at
    the API boundary; its getters (C{getLineStatus}, C{getCall}) and the
    Deferreds of C{whenEvent} and C{whenLineState} raise or fail with it.

    @ivar value: The L{TelephonyReturnValue} (never C{SipSuccess}).
    """

    def __init__(self, value: TelephonyReturnValue, message: str = "") -> None:
        if value is TelephonyReturnValue.SipSuccess:
            raise ValueError("SipSuccess is not an error")
        super().__init__(f"{value.name}: {message}" if message else value.name)
        self.value = value
