"""
The layering rules of docs/architecture.rst, checked on the real modules.
"""

import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

import lmevoip

SANS_IO = [
    "lmevoip.sip.message",
    "lmevoip.sip.headers",
    "lmevoip.sip.uri",
    "lmevoip.sip.sdp",
    "lmevoip.sip.auth",
    "lmevoip.rtp.packet",
    "lmevoip.rtp.rtcp",
    "lmevoip.rtp.g711",
    "lmevoip.rtp.cn",
    "lmevoip.rtp.codecs",
]


class LayeringTests(SynchronousTestCase):
    def test_wireFormatsImportNoTwisted(self) -> None:
        """
        Importing each sans-IO wire-format module, in a fresh interpreter,
        loads no Twisted module (not even through the package's exports).
        """
        for module in SANS_IO:
            code = (f"import sys, {module}; "
                    "print(sorted(m for m in sys.modules if m.split('.')[0] == 'twisted'))")
            result = subprocess.run([sys.executable, "-c", code],
                                    capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertEqual(result.stdout.strip(), "[]", module)

    def test_publicExports(self) -> None:
        """
        The facade names are importable from the package.
        """
        from lmevoip.engine import VoipMediaEngine
        from lmevoip.returns import TelephonyReturnValue

        self.assertIs(lmevoip.VoipMediaEngine, VoipMediaEngine)
        self.assertIs(lmevoip.TelephonyReturnValue, TelephonyReturnValue)
        self.assertRaises(AttributeError, getattr, lmevoip, "NoSuchThing")

    def test_lowerLayersDoNotImportUpper(self) -> None:
        """
        lmevoip.sip and lmevoip.rtp never import the keep-alive services,
        the engine or the tap (checked on the source text of each module).
        """
        import pathlib

        root = pathlib.Path(lmevoip.__file__).parent
        upper = ("lmevoip.keepalive", "lmevoip.engine", "lmevoip.tap",
                 "lmevoip.events", "lmevoip.returns", "lmevoip.control", "lmevoip.web")
        offenders = []
        for package in ("sip", "rtp"):
            for path in sorted((root / package).glob("*.py")):
                text = path.read_text()
                offenders += [f"{path.name}: {name}" for name in upper
                              if f"import {name}" in text or f"from {name}" in text]
        self.assertEqual(offenders, [])
