"""Headless Chromium for the tests, driven over the DevTools protocol (websocket-client).

A record's pages must open offline: no request to any other host. Chromium starts with every
host name resolving to nothing (``--host-resolver-rules``) and no proxy, and each page is
opened with the Network and Log domains on, so every request the page made (or tried to make)
and every console or policy complaint is seen, not only whether the page looked right.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websocket

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


@dataclass
class Opened:
    """What opening one page gave."""

    url: str
    title: str
    text: str
    requests: list[str] = field(default_factory=list)
    complaints: list[str] = field(default_factory=list)
    screenshot: bytes = b""
    elements: dict[str, int] = field(default_factory=dict)


class Browser:
    def __init__(self, ws_url: str) -> None:
        self._ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        mine = self._id
        self._ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == mine:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while time.monotonic() < deadline:
            message = json.loads(self._ws.recv())
            self.events.append(message)
            if message.get("method") == method:
                return message
        raise AssertionError(f"no {method} within {timeout} s")

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def open(self, url: str, selectors: tuple[str, ...] = ()) -> Opened:
        self.events.clear()
        for domain in ("Page", "Network", "Log", "Runtime"):
            self.call(f"{domain}.enable")
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")
        time.sleep(0.2)  # a request a page would make after its load event
        self.call("Runtime.evaluate", expression="1")  # drains the events sent meanwhile
        requests = [e["params"]["request"]["url"] for e in self.events
                    if e.get("method") == "Network.requestWillBeSent"]
        complaints = [f"{e['params']['entry'].get('level')}: {e['params']['entry'].get('text')}"
                      for e in self.events if e.get("method") == "Log.entryAdded"]
        complaints += [f"failed: {e['params'].get('errorText')} {e['params'].get('blockedReason') or ''}"
                       for e in self.events if e.get("method") == "Network.loadingFailed"]
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        counts = {s: int(self.evaluate(f"document.querySelectorAll({json.dumps(s)}).length"))
                  for s in selectors}
        title, text = str(self.evaluate("document.title")), str(self.evaluate("document.body.innerText"))
        return Opened(url, title, text, requests, complaints, base64.b64decode(shot["data"]), counts)

    def close(self) -> None:
        self._ws.close()


@contextmanager
def chromium(executable: str, width: int = 1280, height: int = 1600) -> Iterator[Browser]:
    """One headless Chromium with networking blocked, and a page to open files in."""
    profile = Path(tempfile.mkdtemp(prefix="psbridge-chromium-"))
    args = [executable, "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--disable-dev-shm-usage", f"--window-size={width},{height}",
            # No host resolves, and no proxy would carry a request anywhere.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--no-proxy-server",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
            f"--user-data-dir={profile}", "about:blank"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    browser = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{executable} did not start (exit {proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.loads(r.read())
        page = next(t for t in targets if t.get("type") == "page")
        browser = Browser(page["webSocketDebuggerUrl"])
        yield browser
    finally:
        if browser is not None:
            browser.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)
