"""
Tests for L{lmevoip.tap} and the twistd plugin.
"""

import subprocess
import sys

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from lmevoip import tap


class PluginTests(SynchronousTestCase):
    def test_pluginRegistered(self) -> None:
        """
        The C{lmevoip} drop-in is found by Twisted's plugin system and points
        at L{lmevoip.tap}.
        """
        makers = {m.tapname: m for m in getPlugins(IServiceMaker)}
        self.assertIn("lmevoip", makers)
        self.assertEqual(makers["lmevoip"].module, "lmevoip.tap")

    def test_twistdHelp(self) -> None:
        """
        C{twistd lmevoip --help} runs from the installed package and lists
        the options.
        """
        result = subprocess.run(
            [sys.executable, "-m", "twisted", "lmevoip", "--help"],
            capture_output=True, text=True, timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("--listen", result.stdout)


class OptionsTests(SynchronousTestCase):
    def test_listenDefault(self) -> None:
        options = tap.Options()
        options.parseOptions([])
        self.assertEqual(options["listen"], ("127.0.0.1", 5060))

    def test_listenIPv6(self) -> None:
        options = tap.Options()
        options.parseOptions(["--listen", "[::1]:5070"])
        self.assertEqual(options["listen"], ("::1", 5070))

    def test_listenBadPort(self) -> None:
        options = tap.Options()
        error = self.assertRaises(usage.UsageError, options.parseOptions, ["--listen", "127.0.0.1:99999"])
        self.assertIn("out of range", str(error))
