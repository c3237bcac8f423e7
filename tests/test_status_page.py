"""
The status page in a real headless browser (Debian's chromium driven by
chromedriver through Selenium): it loads without console errors, shows a
call placed through the API with its keep-alive flows and their
timelines, follows the events stream, and hangs up from its button; its
registrations panel follows a registration made through the API.

Selenium's calls block, so each one runs in the reactor's thread pool
while the reactor serves the page.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from unittest import SkipTest

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from lmevoip.engine import LineState
from tests.peers.ports import freeUdpPort
from tests.support import REQUIRE_PEERS, requireTool
from tests.test_control import ControlServiceCase
from tests.test_engine_registration import ScriptedRegistrar

NAT_MS = 2000


def makeDriver(profile: Path) -> Any:
    """
    A headless chromium that never downloads anything (no Selenium
    Manager: the binary and the driver are given).
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1280,1200"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)


class StatusPageTests(ControlServiceCase):
    timeout = 120

    @inlineCallbacks
    def setUp(self) -> Any:
        requireTool("chromium")
        requireTool("chromedriver")
        try:
            import selenium  # noqa: F401
        except ImportError:
            if REQUIRE_PEERS:
                raise
            raise SkipTest("selenium is not installed (pip install -e .[test])")
        yield super().setUp()
        self.assertTrue(self.engine.enableKeepAliveTransmissions(True, True, NAT_MS).succeeded)
        profile = Path(self.mktemp()).resolve()
        profile.mkdir(parents=True)
        self.addCleanup(shutil.rmtree, profile, True)
        self.driver = yield deferToThread(makeDriver, profile)
        self.addCleanup(deferToThread, self.driver.quit)

    def waitFor(self, css: str, timeout: float = 10) -> Any:
        """
        Wait (in a thread) until an element matching C{css} is on the page.
        """
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        return deferToThread(lambda: WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(
            lambda driver: driver.find_element(By.CSS_SELECTOR, css)))

    @inlineCallbacks
    def test_showsCallAndFlows(self) -> None:
        """
        The page shows the engine, then a call placed through the API within
        a few seconds: its line Connected, its SIP and RTP flows with a
        timeline, the events that came over the stream; its Hang up button
        ends the call. The browser logs no error.
        """
        from selenium.webdriver.common.by import By

        driver = self.driver
        yield deferToThread(driver.get, self.control.url)
        engineText = yield self.waitFor("#live.on")
        header = yield deferToThread(lambda: driver.find_element(By.ID, "engine").text)
        self.assertIn(f"sip:office@127.0.0.1:{self.engine.sipAddress[1]}", header)
        self.assertTrue(engineText)

        host, port = self.peer.sipAddress
        code, _, body = yield self.client.request("POST", "/api/lines/0/call",
                                                  {"user": "peer", "host": host, "port": port})
        self.assertEqual(code, 200, body)
        row = yield self.waitFor('#lines tr[data-line="0"][data-state="Connected"]', timeout=5)
        rowText = yield deferToThread(lambda: row.text)
        self.assertIn(f"sip:peer@127.0.0.1:{port}", rowText)
        self.assertIn("PCMU", rowText)
        yield self.waitFor('.flow[data-flow="line0-sip"] svg.timeline', timeout=5)
        yield self.waitFor('.flow[data-flow="line0-rtp"] svg.timeline', timeout=5)
        yield self.waitFor('#events li[data-name="SipOutgoingCallConnected"]', timeout=5)

        # Let a few keep-alives go out, then look at the page.
        yield deferLater(reactor, 5, lambda: None)
        yield self.waitFor('.flow[data-flow="line0-rtp"] circle.send.rtp-keepalive', timeout=5)
        nat = yield deferToThread(lambda: driver.find_element(
            By.CSS_SELECTOR, '.flow[data-flow="line0-sip"] .nat-label').text)
        self.assertEqual(nat, "NAT session time 2 s")
        stats = yield deferToThread(lambda: driver.find_element(
            By.CSS_SELECTOR, '.flow[data-flow="line0-sip"] .stats').text)
        self.assertIn("OPTIONS keep-alive", stats)
        self.assertIn("✓ kept open", stats)
        screenshot = Path(self.mktemp() + "-status-page.png").resolve()
        saved = yield deferToThread(driver.save_screenshot, str(screenshot))
        self.assertTrue(saved and screenshot.stat().st_size > 10_000, screenshot)

        button = yield deferToThread(lambda: driver.find_element(
            By.CSS_SELECTOR, '#lines tr[data-line="0"] button'))
        yield deferToThread(button.click)
        yield self.engine.whenLineState(0, LineState.IDLE, timeout=5)
        yield self.waitFor('#lines tr[data-line="0"][data-state="Idle"]', timeout=5)
        yield self.waitFor('#events li[data-name="SipCallComplete"]', timeout=5)
        yield self.waitFor('.flow.ended[data-flow="line0-rtp"]', timeout=5)

        logs = yield deferToThread(driver.get_log, "browser")
        errors = [entry for entry in logs if entry.get("level") == "SEVERE"]
        self.assertEqual(errors, [], logs)

    @inlineCallbacks
    def test_showsRegistrations(self) -> None:
        """
        A registration made through the API (a scripted registrar on a
        loopback socket challenges alice) appears in the registrations
        panel as Registered with its registrar, granted expiry, next
        refresh and contact, and leaves it when un-registered. The browser
        logs no error.
        """
        from selenium.webdriver.common.by import By

        registrar = ScriptedRegistrar(reactor, ("127.0.0.1", freeUdpPort()), users={"alice": ("alice", "pw-1")},
                                      maxExpires=60)
        self.addCleanup(registrar.port.stopListening)
        registrarPort = registrar.port.getHost().port
        driver = self.driver
        yield deferToThread(driver.get, self.control.url)
        yield self.waitFor("#live.on")
        empty = yield deferToThread(lambda: driver.find_element(By.ID, "registrations-empty").is_displayed())
        self.assertTrue(empty)

        self.assertTrue(self.engine.setSipAuthentication("alice", "pw-1", name="alice").succeeded)
        code, _, body = yield self.client.request("POST", "/api/registrations",
                                                  {"names": ["alice"], "host": "127.0.0.1", "port": registrarPort,
                                                   "interval": 30, "expires": 3600})
        self.assertEqual(code, 200, body)
        row = yield self.waitFor('#registrations tr[data-name="alice"][data-state="Registered"]', timeout=5)
        text = yield deferToThread(lambda: row.text)
        self.assertIn(f"127.0.0.1:{registrarPort}", text)
        self.assertIn("60 s", text)  # granted (asked 3600)
        self.assertRegex(text, r"\bin (2[0-9]|30)s\b")  # the next refresh, 30 s after the REGISTER
        self.assertIn(f"sip:alice@127.0.0.1:{self.engine.sipAddress[1]}", text)
        yield self.waitFor('#events li[data-name="SipRegisterSuccess"]', timeout=5)
        empty = yield deferToThread(lambda: driver.find_element(By.ID, "registrations-empty").is_displayed())
        self.assertFalse(empty)

        code, _, body = yield self.client.request("DELETE", "/api/registrations")
        self.assertEqual(code, 200, body)
        yield self.waitFor('#events li[data-name="SipUnregisterSuccess"]', timeout=5)
        yield self.waitFor("#registrations-empty:not([hidden])", timeout=5)
        rows = yield deferToThread(lambda: driver.find_elements(By.CSS_SELECTOR, "#registrations tbody tr"))
        self.assertEqual(rows, [])

        logs = yield deferToThread(driver.get_log, "browser")
        errors = [entry for entry in logs if entry.get("level") == "SEVERE"]
        self.assertEqual(errors, [], logs)
