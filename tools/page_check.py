r"""Open built book pages in headless Chromium and report what a reader's browser sees.

Usage::

    python tools/page_check.py _build/html [--screenshots DIR] [--width 1280]

Every page is opened at a viewport ``--width`` pixels wide (default 1,280) and, where it loads
MathJax, read after MathJax has typeset it. For every page: console errors and uncaught
exceptions, images that did not decode (``naturalWidth == 0``), how many code inputs are
visible without a click, where MathJax was loaded from (the build's own ``_static``, never a
CDN), and visible raw TeX outside code (``\frac``, ``\mathrm``, ``$$``, ``\(``, ``\[``, ...:
math that did not render). On the results chapter (``--table-pages``), every table is measured
against the width of the page's content column (``article.bd-article``); a wider visible table
is a failure, reported with its page, its header and both widths (a table in a folded block is
counted, not measured, until it is opened), and so is a visible table whose rows pandas elided
(a ``...`` row: the reader cannot see them). ``--screenshots DIR`` saves a
full-page PNG of the intro and the results chapter (``--shoot``) there.

The pages are served from the loopback (``127.0.0.1``) by a throwaway HTTP server; Chromium is
driven through its DevTools protocol (a websocket, via tornado, which Jupyter already
installs). Requests to other hosts cannot succeed on an offline machine; their network errors
are reported apart and not counted as page errors.
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
  mathjax: Array.from(document.scripts).map(x => x.src).filter(u => /mathjax/i.test(u)),
}))()"""

WAIT_FOR_MATHJAX = """(async () => {
  if (!Array.from(document.scripts).some(x => /mathjax/i.test(x.src))) return 'no mathjax';
  const end = Date.now() + %d;
  while (Date.now() < end) {
    const mj = window.MathJax;
    if (mj && mj.startup && mj.startup.promise) { await mj.startup.promise; return 'typeset'; }
    await new Promise(r => setTimeout(r, 100));
  }
  return 'not loaded';
})()"""

RAW_TEX = r"""(() => {
  const pattern = new RegExp('\\\\(frac|mathrm|mathbf|mathcal|text|left|right|sum|begin|end)\\b'
                             + '|\\$\\$|\\\\\\(|\\\\\\)|\\\\\\[|\\\\\\]');
  const skip = 'pre, code, script, style, textarea, mjx-container, .MathJax, .highlight, nav, '
             + '.bd-sidebar-primary, .bd-sidebar-secondary, .bd-header, .bd-footer';
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent;
    const el = node.parentElement;
    if (!el || !pattern.test(text) || el.closest(skip)) continue;
    if (el.checkVisibility ? !el.checkVisibility() : el.offsetParent === null) continue;
    const at = text.search(pattern);
    found.push(text.slice(Math.max(0, at - 40), at + 60).replace(/\s+/g, ' ').trim());
  }
  return found;
})()"""

TABLE_WIDTHS = """(() => {
  const column = document.querySelector('article.bd-article') || document.querySelector('main');
  if (!column) return {column: null, tables: []};
  const style = getComputedStyle(column);
  const width = column.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const visible = e => e.checkVisibility ? e.checkVisibility() : e.offsetParent !== null;
  const all = Array.from(column.querySelectorAll('table'));
  const tables = all.filter(visible).map(t => {
    const i = all.indexOf(t);
    const heads = Array.from(t.querySelectorAll('thead th, tr:first-child th'))
                       .map(h => h.innerText.trim()).filter(Boolean);
    const section = t.closest('section');
    const heading = section && section.querySelector('h1, h2, h3');
    const elided = Array.from(t.querySelectorAll('tbody th, tbody td'))
                        .some(c => c.innerText.trim() === '...');
    return {index: i, width: Math.max(t.scrollWidth, t.getBoundingClientRect().width),
            elided: elided, header: heads.slice(0, 6).join(' | ').slice(0, 120),
            section: heading ? heading.innerText.replace(/#$/, '').trim() : ''};
  });
  return {column: width, tables: tables, folded: all.length - tables.length};
})()"""


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
def browser(binary: str, width: int = 1280):
    """A headless Chromium with a DevTools port; yields its websocket URL."""
    port = _free_port()
    profile = tempfile.mkdtemp(prefix="calkit-chromium-")
    proc = subprocess.Popen(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", f"--remote-debugging-port={port}",
         "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}",
         f"--window-size={width},2000", "about:blank"],
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


RESULTS_PAGES = ("notebooks/04_results.html", "notebooks/07_benchmark.html")
"""Pages whose tables must fit the content column (the results chapter and the benchmark)."""
SHOT_PAGES = ("book/intro.html", "notebooks/04_results.html", "notebooks/07_benchmark.html")
"""Pages saved as screenshots with ``--screenshots``: the intro, the results and the benchmark."""
MATHJAX_WAIT_MS = 15_000


async def _check_pages(ws_url: str, base: str, pages: list[str], shots: Path | None,
                       width: int = 1280, table_pages: tuple[str, ...] = RESULTS_PAGES,
                       shot_pages: tuple[str, ...] = SHOT_PAGES) -> dict:
    from tornado.websocket import websocket_connect

    conn = await websocket_connect(ws_url, max_message_size=256 * 2**20)
    counter = iter(range(1, 10**9))
    events: list[dict] = []

    async def call(method: str, **params):
        ident = next(counter)
        await conn.write_message(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(await conn.read_message())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            events.append(message)

    async def evaluate(expression: str, wait: bool = False):
        result = await call("Runtime.evaluate", expression=expression, returnByValue=True,
                            awaitPromise=wait)
        return result.get("result", {}).get("value")

    for domain in ("Page", "Runtime", "Log"):
        await call(f"{domain}.enable")
    await call("Emulation.setDeviceMetricsOverride", width=width, height=2000,
               deviceScaleFactor=1, mobile=False)
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
        mathjax_state = await evaluate(WAIT_FOR_MATHJAX % MATHJAX_WAIT_MS, wait=True)
        value = await evaluate(PROBE) or {}
        value["mathjax_state"] = mathjax_state
        value["raw_tex"] = await evaluate(RAW_TEX) or []
        text = await evaluate("document.body ? document.body.textContent : ''") or ""
        value["absolute_paths"] = machine_paths_in(text)
        value["mathjax_external"] = [u for u in value.get("mathjax", []) if not u.startswith(base)]
        value["wide_tables"], value["column_width"] = [], None
        if page in table_pages:
            widths = await evaluate(TABLE_WIDTHS) or {}
            column = widths.get("column")
            value["column_width"] = column
            value["tables"] = len(widths.get("tables", []))
            value["folded_tables"] = widths.get("folded", 0)
            if column is not None:
                value["wide_tables"] = [t for t in widths["tables"] if t["width"] > column + 1]
            value["elided_tables"] = [t for t in widths.get("tables", []) if t.get("elided")]
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
        if shots is not None and page in shot_pages:
            value["screenshot"] = str(await _screenshot(call, shots, page, width))
        report[page] = {**value, "errors": errors, "offline_requests": offline}
    conn.close()
    return report


async def _screenshot(call, shots: Path, page: str, width: int) -> Path:
    """A full-page PNG (up to 16,000 px tall) of the open page.

    The viewport is made as tall as the page for the shot (a capture beyond the viewport
    shifts the sticky layout of the theme), then set back.
    """
    metrics = await call("Page.getLayoutMetrics")
    size = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
    height = max(1, min(int(size.get("height", 2000)), 16_000))
    await call("Emulation.setDeviceMetricsOverride", width=width, height=height,
               deviceScaleFactor=1, mobile=False)
    await asyncio.sleep(0.5)
    try:
        shot = await call("Page.captureScreenshot", format="png")
    finally:
        await call("Emulation.setDeviceMetricsOverride", width=width, height=2000,
                   deviceScaleFactor=1, mobile=False)
    target = shots / page.replace("/", "_").replace(".html", ".png")
    target.write_bytes(base64.b64decode(shot["data"]))
    return target


def check_book(html: Path, screenshots: Path | None = None, width: int = 1280,
               table_pages: tuple[str, ...] = RESULTS_PAGES,
               shot_pages: tuple[str, ...] = SHOT_PAGES) -> dict:
    """Open every page of a built book and report what the browser sees.

    Args:
        html: The built book's HTML folder.
        screenshots: Where to save the PNGs of ``shot_pages`` (none if ``None``).
        width: The viewport width in CSS pixels.
        table_pages: Pages whose tables must fit the content column.
        shot_pages: Pages to save as screenshots.

    Returns:
        Per page (path relative to ``html``): ``errors``, ``broken`` images, ``inputs`` and
        ``visibleInputs``, ``offline_requests``, ``mathjax`` (script URLs),
        ``mathjax_external`` (those not served by the build), ``mathjax_state``, ``raw_tex``
        (visible snippets), ``wide_tables`` (``index``, ``header``, ``section``, ``width``),
        ``elided_tables`` (visible tables with pandas' ``...`` row) and ``column_width`` on the
        table pages, ``screenshot`` (a path) on the shot pages.

    Raises:
        RuntimeError: If Chromium is not installed.
    """
    binary = chromium_binary()
    if binary is None:
        raise RuntimeError("Chromium is not installed; on Debian: apt-get install -y chromium")
    pages = sorted(str(p.relative_to(html)).replace("\\", "/") for p in html.rglob("*.html")
                   if not p.name.startswith(("genindex", "search")) and "_static" not in p.parts
                   and "_sources" not in p.parts)
    if screenshots is not None:
        screenshots.mkdir(parents=True, exist_ok=True)
    with serve(html) as base, browser(binary, width) as ws_url:
        return asyncio.run(_check_pages(ws_url, base, pages, screenshots, width, table_pages,
                                        shot_pages))


def machine_paths() -> list[str]:
    """This machine's folders that must not appear on a public page (checkout, data, home)."""
    import os

    found = {str(Path(__file__).resolve().parents[1]), str(Path.home())}
    if os.environ.get("CALKIT_DATA"):
        found.add(str(Path(os.environ["CALKIT_DATA"]).expanduser().resolve()))
    return sorted(p for p in found if len(p) > 1)


def machine_paths_in(text: str, paths: list[str] | None = None) -> list[str]:
    """Snippets of ``text`` around every absolute path of this machine (:func:`machine_paths`).

    A path counts only as a folder (followed by ``/``), so ``/root`` does not match ``/roots``.
    """
    out = []
    for path in machine_paths() if paths is None else paths:
        start = text.find(path + "/")
        while start >= 0 and len(out) < 20:
            out.append(text[max(0, start - 30):start + len(path) + 40].replace("\n", " "))
            start = text.find(path + "/", start + 1)
    return out


def page_failures(info: dict) -> list[str]:
    """What is wrong with one page of :func:`check_book`'s report, as lines (none: fine)."""
    lines = [f"console error: {e[:200]}" for e in info["errors"]]
    lines += [f"image did not decode: {src}" for src in info["broken"]]
    lines += [f"raw TeX visible: ...{snippet}..." for snippet in info.get("raw_tex", [])]
    lines += [f"absolute path of the building machine: ...{snippet}..."
              for snippet in info.get("absolute_paths", [])]
    lines += [f"MathJax from outside the build: {url}" for url in info.get("mathjax_external", [])]
    if info.get("mathjax") and info.get("mathjax_state") != "typeset":
        lines.append(f"MathJax did not typeset ({info.get('mathjax_state')})")
    for table in info.get("wide_tables", []):
        column = info["column_width"]
        lines.append(f"table {table['index']} ({table['header'] or 'no header'}; section "
                     f"'{table['section']}') is {table['width']:.0f} px wide in a {column:.0f} px "
                     f"column ({table['width'] - column:+.0f} px)")
    for table in info.get("elided_tables", []):
        lines.append(f"table {table['index']} ({table['header'] or 'no header'}; section "
                     f"'{table['section']}') elides rows ('...'): show it whole "
                     "(pd.option_context('display.max_rows', None)) or fold it")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Print the report; exit 1 if any page fails (:func:`page_failures`)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("--screenshots", type=Path, default=None,
                        help="folder for PNGs of the intro and results pages")
    parser.add_argument("--width", type=int, default=1280, help="viewport width (default 1280)")
    parser.add_argument("--table-pages", default=",".join(RESULTS_PAGES),
                        help="comma-separated pages whose tables must fit the column")
    parser.add_argument("--shoot", default=",".join(SHOT_PAGES),
                        help="comma-separated pages saved with --screenshots")
    args = parser.parse_args(argv)
    report = check_book(args.html, args.screenshots, args.width,
                        tuple(p for p in args.table_pages.split(",") if p),
                        tuple(p for p in args.shoot.split(",") if p))
    bad = 0
    for page, info in report.items():
        failures = page_failures(info)
        flag = "FAIL" if failures else "ok"
        bad += bool(failures)
        tables = (f", {info.get('tables', 0)} visible tables (and {info.get('folded_tables', 0)} "
                  f"folded) in a {info['column_width']:.0f} px column"
                  if info.get("column_width") else "")
        print(f"{flag:4s} {page}: {info['images']} images ({len(info['broken'])} broken), "
              f"{info['visibleInputs']}/{info['inputs']} code inputs visible, "
              f"{len(info['errors'])} console errors, {len(info['offline_requests'])} "
              f"offline-only requests, MathJax {info.get('mathjax_state')}{tables}"
              + (f", screenshot {info['screenshot']}" if info.get("screenshot") else ""))
        for line in failures:
            print(f"     {line}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
