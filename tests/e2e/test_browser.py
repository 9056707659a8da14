"""The HTML report in a real browser: headless Chromium driven over the DevTools protocol, network blocked.

Chromium is Debian's ``chromium`` (``scripts/sysdeps.sh`` installs it); the protocol runs over a pipe
(``--remote-debugging-pipe``: commands on fd 3, replies on fd 4), so no extra Python package is needed. Every
request the page makes is recorded; requests that leave the file are refused and fail the test.

Screenshots go to a temporary folder; ``XAI_AUDIT_SCREENSHOTS=docs`` writes them into ``docs/`` for the README,
and ``XAI_AUDIT_SCREENSHOT_HTML=path/report.html`` shoots that report instead of the hand-built one.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from audit import report
from audit.compliance import assess, builtin_frameworks
from tests.report.test_report import make_result

TIMEOUT_S = 60


def _chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class Browser:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, exe: str, profile: Path):
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()

        def wire() -> None:  # in the child: commands on fd 3, replies on fd 4
            a = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(res_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [exe, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}", "about:blank"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, pass_fds=(3, 4), preexec_fn=wire)
        os.close(cmd_r)
        os.close(res_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._cmd_w)
        os.close(self._res_r)

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._res_r], [], [], left)[0]:
                raise TimeoutError("no reply from chromium")
            chunk = os.read(self._res_r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the debugging pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._event(reply)

    def _event(self, ev: dict[str, Any]) -> None:
        self.events.append(ev)
        if ev.get("method") == "Fetch.requestPaused":  # every request pauses here: local ones go on
            p = ev["params"]
            url = p["request"]["url"]
            cmd = "Fetch.continueRequest" if url.startswith(("file:", "data:")) else "Fetch.failRequest"
            extra = {} if cmd == "Fetch.continueRequest" else {"errorReason": "BlockedByClient"}
            self._id += 1
            os.write(self._cmd_w, json.dumps({"id": self._id, "method": cmd, "sessionId": ev["sessionId"],
                                              "params": {"requestId": p["requestId"], **extra}}).encode() + b"\0")

    def wait_for(self, method: str) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT_S
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        while True:
            ev = self._read(deadline)
            self._event(ev)
            if ev.get("method") == method:
                return ev


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Any:
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium found (chromium, chromium-browser, google-chrome or $CHROMIUM); "
                    "`make sysdeps` installs Debian's chromium")
    b = Browser(exe, tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    own = os.environ.get("XAI_AUDIT_SCREENSHOT_HTML")
    if own:
        return Path(own).resolve()
    result = make_result()
    fws = [builtin_frameworks()[n] for n in ("gdpr", "eu_ai_act")]
    from dataclasses import replace

    result = replace(result, compliance=assess(result.checks, fws))
    path = tmp_path_factory.mktemp("browser") / "report.html"
    path.write_text(report.render_html(result), encoding="utf-8")
    return path


JS_CHECKS = """(() => {
  const vis = (el) => !!el && el.getBoundingClientRect().height > 0 && getComputedStyle(el).display !== 'none';
  const matrix = document.querySelectorAll('#compliance table.matrix-table tbody tr');
  const signoff = document.querySelector('#signoff .signoff-form');
  const links = [...document.querySelectorAll('#compliance a[href^="#check-"]')];
  return {
    matrixRows: matrix.length,
    matrixVisible: vis(document.querySelector('#compliance table.matrix-table')),
    statuses: [...new Set([...document.querySelectorAll('#compliance .ob-badge')].map(e => e.className))],
    signoffVisible: vis(signoff),
    decisions: signoff ? signoff.querySelectorAll('.sf-option').length : 0,
    brokenLinks: links.filter(a => !document.getElementById(a.getAttribute('href').slice(1))).length,
    evidenceLinks: links.length,
    scripts: document.scripts.length,
    images: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length,
  };
})()"""


def test_report_in_headless_chromium(browser: Browser, report_file: Path, tmp_path: Path) -> None:
    root = browser.send("Target.createTarget", url="about:blank")
    session = browser.send("Target.attachToTarget", targetId=root["targetId"], flatten=True)["sessionId"]
    for domain in ("Runtime.enable", "Log.enable", "Network.enable", "Page.enable"):
        browser.send(domain, session)
    browser.send("Fetch.enable", session, patterns=[{"urlPattern": "*"}])
    browser.send("Emulation.setDeviceMetricsOverride", session, width=1200, height=900, deviceScaleFactor=1,
                 mobile=False)
    browser.events.clear()
    browser.send("Page.navigate", session, url=report_file.as_uri())
    browser.wait_for("Page.loadEventFired")

    state = browser.send("Runtime.evaluate", session, expression=JS_CHECKS, returnByValue=True)["result"]["value"]
    assert state["matrixVisible"] and state["matrixRows"] >= 20
    assert "ob-badge ob-not_met" in state["statuses"] and "ob-badge ob-human" in state["statuses"]
    assert state["evidenceLinks"] > 0 and state["brokenLinks"] == 0
    assert state["signoffVisible"] and state["decisions"] == 3
    assert state["scripts"] == 0 and state["images"] == 0

    errors = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == []
    requests = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    assert requests and requests[0] == report_file.as_uri()
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert [u for u in requests if u.startswith("file:") and u != report_file.as_uri()] == []

    out = Path(os.environ.get("XAI_AUDIT_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    shots = {"report-cover.png": "#top", "report-compliance.png": "#compliance",
             "report-signoff.png": "#signoff"}
    for name, selector in shots.items():
        browser.send("Runtime.evaluate", session,
                     expression=f"document.querySelector('{selector}').scrollIntoView(); window.scrollBy(0, -12)")
        png = base64.b64decode(browser.send("Page.captureScreenshot", session, format="png")["data"])
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
        (out / name).write_bytes(png)
