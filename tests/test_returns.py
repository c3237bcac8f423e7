"""
Tests for L{lmevoip.returns}: the engine's return values.
"""

from twisted.trial.unittest import SynchronousTestCase

from lmevoip.returns import TelephonyError, TelephonyReturnValue

R = TelephonyReturnValue


class TelephonyReturnValueTests(SynchronousTestCase):
    def test_sdkNames(self) -> None:
        """
        The members the SDK names exist, with stable integer values.
        """
        expected = {
            "SipSuccess": 0,
            "SipCallFailure": 1,
            "SipInvalidHandle": 2,
            "SipBadParameter": 3,
            "SipBadPhoneLine": 4,
            "SipNotEnabled": 5,
            "SipAlreadyOffHook": 6,
            "SipCallTimeOut": 7,
            "SipLineBusy": 8,
            "SipNoCallOnLine": 9,
        }
        for name, value in expected.items():
            self.assertEqual(R[name].value, value)

    def test_valuesUnique(self) -> None:
        """
        No two members share a value (no silent aliases).
        """
        values = [member.value for member in R]
        self.assertEqual(len(values), len(set(values)))
        self.assertEqual(len(R.__members__), len(list(R)))

    def test_succeeded(self) -> None:
        """
        Only C{SipSuccess} succeeded.
        """
        self.assertEqual([member for member in R if member.succeeded], [R.SipSuccess])

    def test_str(self) -> None:
        """
        C{str()} is the SDK name.
        """
        self.assertEqual(str(R.SipBadPhoneLine), "SipBadPhoneLine")


class TelephonyErrorTests(SynchronousTestCase):
    def test_carriesValue(self) -> None:
        """
        The error carries its return value and names it in its message.
        """
        error = TelephonyError(R.SipLineBusy, "line 0 is Connected")
        self.assertIs(error.value, R.SipLineBusy)
        self.assertEqual(str(error), "SipLineBusy: line 0 is Connected")
        self.assertEqual(str(TelephonyError(R.SipNotEnabled)), "SipNotEnabled")

    def test_successIsNoError(self) -> None:
        """
        C{SipSuccess} cannot be made an error.
        """
        self.assertRaises(ValueError, TelephonyError, R.SipSuccess)
