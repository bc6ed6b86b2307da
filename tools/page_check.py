"""Open built book pages in headless Chromium and report what a reader's browser sees.

Usage::

    python tools/page_check.py _build/html [--screenshots DIR]

For every page: console errors and uncaught exceptions, images that did not decode
(``naturalWidth == 0``), and how many code inputs are visible without a click. The pages are
served from the loopback (``127.0.0.1``) by a throwaway HTTP server; Chromium is driven through
its DevTools protocol (a websocket, via tornado, which Jupyter already installs). Requests to
other hosts (the MathJax CDN) cannot succeed on an offline machine; their network errors are
reported apart and not counted as page errors.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import http.server
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

PROBE = """(() => ({
  broken: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))
              .map(i => i.getAttribute('src')),
  images: document.images.length,
  visibleInputs: Array.from(document.querySelectorAll('div.cell_input pre'))
              .filter(e => e.checkVisibility ? e.checkVisibility() : e.offsetParent !== null)
              .length,
  inputs: document.querySelectorAll('div.cell_input pre').length,
  title: document.title,
}))()"""


def chromium_binary() -> str | None:
    """The Chromium executable, or ``None`` (install Debian's package: apt-get install chromium)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve(folder: Path):
    """Serve ``folder`` on the loopback; yields the base URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # noqa: D102
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@contextlib.contextmanager
def browser(binary: str):
    """A headless Chromium with a DevTools port; yields its websocket URL."""
    port = _free_port()
    profile = tempfile.mkdtemp(prefix="calkit-chromium-")
    proc = subprocess.Popen(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", f"--remote-debugging-port={port}",
         "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}",
         "--window-size=1400,2000", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    pages = [t for t in json.load(r) if t["type"] == "page"]
                if pages:
                    yield pages[0]["webSocketDebuggerUrl"]
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("Chromium did not open its DevTools port within 30 s")
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


async def _check_pages(ws_url: str, base: str, pages: list[str], shots: Path | None) -> dict:
    from tornado.websocket import websocket_connect

    conn = await websocket_connect(ws_url, max_message_size=64 * 2**20)
    counter = iter(range(1, 10**9))
    events: list[dict] = []

    async def call(method: str, **params):
        ident = next(counter)
        await conn.write_message(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(await conn.read_message())
            if message.get("id") == ident:
                return message.get("result", {})
            events.append(message)

    for domain in ("Page", "Runtime", "Log"):
        await call(f"{domain}.enable")
    report = {}
    for page in pages:
        events.clear()
        await call("Page.navigate", url=f"{base}/{page}")
        end = time.time() + 20
        while time.time() < end:  # wait for the load event, then let scripts settle
            if any(e.get("method") == "Page.loadEventFired" for e in events):
                break
            events.append(json.loads(await conn.read_message()))
        await asyncio.sleep(0.5)
        probe = (await call("Runtime.evaluate", expression=PROBE, returnByValue=True))
        value = probe.get("result", {}).get("value", {})
        errors, offline = [], []
        for e in events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                described = details.get("exception", {}).get("description", "")
                errors.append(f"{details.get('text', 'exception')} {described} "
                              f"({details.get('url', '')}:{details.get('lineNumber', '')})")
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                       for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                entry = params["entry"]
                url = entry.get("url", "")
                if entry.get("source") == "network" and url and not url.startswith(base):
                    offline.append(url)
                else:
                    errors.append(entry.get("text", "error"))
        if shots is not None:
            shot = await call("Page.captureScreenshot", format="png")
            target = shots / (page.replace("/", "_").replace(".html", ".png"))
            target.write_bytes(base64.b64decode(shot["data"]))
        report[page] = {**value, "errors": errors, "offline_requests": offline}
    conn.close()
    return report


def check_book(html: Path, screenshots: Path | None = None) -> dict:
    """Open every page of a built book and report what the browser sees.

    Raises:
        RuntimeError: If Chromium is not installed.
    """
    binary = chromium_binary()
    if binary is None:
        raise RuntimeError("Chromium is not installed; on Debian: apt-get install -y chromium")
    pages = sorted(str(p.relative_to(html)) for p in html.rglob("*.html")
                   if not p.name.startswith(("genindex", "search")) and "_static" not in p.parts
                   and "_sources" not in p.parts)
    if screenshots is not None:
        screenshots.mkdir(parents=True, exist_ok=True)
    with serve(html) as base, browser(binary) as ws_url:
        return asyncio.run(_check_pages(ws_url, base, pages, screenshots))


def main(argv: list[str] | None = None) -> int:
    """Print the report; exit 1 if a page has errors or undecoded images."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("--screenshots", type=Path, default=None)
    args = parser.parse_args(argv)
    report = check_book(args.html, args.screenshots)
    bad = 0
    for page, info in report.items():
        flag = "FAIL" if info["errors"] or info["broken"] else "ok"
        bad += flag == "FAIL"
        print(f"{flag:4s} {page}: {info['images']} images ({len(info['broken'])} broken), "
              f"{info['visibleInputs']}/{info['inputs']} code inputs visible, "
              f"{len(info['errors'])} console errors, {len(info['offline_requests'])} "
              "offline-only requests")
        for error in info["errors"]:
            print(f"     error: {error[:200]}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
