"""Render a benchmark report in headless Chromium at desktop and phone widths and fail on layout defects.

    python scripts/check_report.py results/latest/report.html [--out DIR] [--widths 1280,390]

For each width the page is loaded from disk (no network) through the Chrome DevTools protocol, with phone
emulation (touch, viewport meta honoured) below 600 px. It fails (exit 1) when
  - the page scrolls horizontally (content wider than the screen outside its own scroll boxes);
  - text is clipped: an element hides overflowing text (overflow hidden/clip, or an ellipsis), or text sticks
    out past the right edge of the screen;
  - the layout viewport is wider than the screen (no <meta name=viewport>: a phone shows the page zoomed out);
  - the console reports an error or a script throws;
  - a table's main column (the first result column, marked data-main: Table 1's first IoU, the counters' first
    shard) is not fully inside the first view of its scroll box and the screen: a reader would not know to scroll;
  - a table wider than its scroll box does not say so (its "table continues" line is hidden);
and prints each defect with a CSS path to the element. Screenshots (the first screen and the whole page)
are saved as DIR/report-<width>px[-full].png; the load time is printed.

Needs Debian's chromium (`apt-get install -y chromium`) and the PyPI package websocket-client. Chromium runs
with a fresh profile in a temporary folder, without sandbox, GPU, sync, component updates or background
networking.
"""
from __future__ import annotations

import argparse
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PHONE_MAX = 600
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", "--mute-audio"]

# Runs in the page: returns the layout defects as JSON.
CHECK_JS = r"""
(() => {
  const vw = window.innerWidth, doc = document.scrollingElement || document.documentElement;
  const path = el => { const p = []; for (let e = el; e && e.nodeType === 1 && p.length < 5; e = e.parentElement) {
      let s = e.tagName.toLowerCase(); if (e.id) s += '#' + e.id; else if (e.classList.length) s += '.' + [...e.classList].join('.');
      p.unshift(s); } return p.join(' > '); };
  const scrollsX = e => { const o = getComputedStyle(e).overflowX; return (o === 'auto' || o === 'scroll') && e !== document.body && e !== document.documentElement; };
  const inScrollBox = el => { for (let e = el.parentElement; e; e = e.parentElement) if (scrollsX(e)) return true; return false; };
  const ownText = e => [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  const out = {viewport: vw, screen: screen.width, scrollWidth: doc.scrollWidth, overflow: [], clipped: [], offscreen: [],
               viewportMeta: !!document.querySelector('meta[name=viewport]'), images: document.images.length,
               load_ms: performance.getEntriesByType('navigation').map(n => n.loadEventEnd - n.startTime)[0]};
  for (const e of document.body.querySelectorAll('*')) {
    const cs = getComputedStyle(e);
    if (cs.display === 'none' || cs.visibility === 'hidden') continue;
    if (e.closest('details:not([open])') && e.tagName !== 'SUMMARY' && !e.closest('summary')) continue;
    const r = e.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    const scroll = inScrollBox(e);
    if (!scroll && r.right > vw + 1) out.overflow.push({el: path(e), right: Math.round(r.right)});
    const hides = ['hidden', 'clip'].includes(cs.overflowX) || cs.textOverflow === 'ellipsis';
    if (hides && e.scrollWidth > e.clientWidth + 1 && (ownText(e) || e.innerText.trim()))
      out.clipped.push({el: path(e), text: e.innerText.trim().slice(0, 60), scrollWidth: e.scrollWidth, clientWidth: e.clientWidth});
    if (ownText(e) && !scroll && r.right > vw + 1)
      out.offscreen.push({el: path(e), text: e.innerText.trim().slice(0, 60), right: Math.round(r.right)});
  }
  out.hidden_main = []; out.silent_scroll = [];
  const title = box => { for (let e = box; e; e = e.previousElementSibling) if (/^H[1-4]$/.test(e.tagName)) return e.innerText.trim().slice(0, 50);
      return path(box); };
  for (const tbl of document.querySelectorAll('table')) {
    const ths = [...tbl.querySelectorAll('thead th')];
    // the main column: marked data-main, else (reports made before the marker) the first IoU column
    const th = tbl.querySelector('th[data-main]') || ths.find(t => /IoU/.test(t.innerText));
    if (!th) continue;
    const box = th.closest('.scroll'), r = th.getBoundingClientRect();
    const right = Math.min(vw, box ? box.getBoundingClientRect().right : vw);
    if (r.right > right + 1) out.hidden_main.push({el: box ? title(box) : path(th), text: th.innerText.trim().slice(0, 40),
        right: Math.round(r.right), visible_to: Math.round(right)});
  }
  for (const box of document.querySelectorAll('.scroll')) {
    if (box.scrollWidth <= box.clientWidth + 1) continue;
    const hint = box.previousElementSibling;
    if (!hint || !hint.classList.contains('more') || getComputedStyle(hint).display === 'none')
      out.silent_scroll.push({el: title(box), scrollWidth: box.scrollWidth, clientWidth: box.clientWidth});
  }
  out.overflow = out.overflow.slice(0, 20);
  return JSON.stringify(out);
})()
"""


class DevTools:
    """A minimal Chrome DevTools protocol client over one page's websocket."""

    def __init__(self, ws_url: str):
        import websocket  # websocket-client

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        my = self.next_id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 60.0) -> dict:
        end = time.monotonic() + timeout
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        while time.monotonic() < end:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == method:
                return msg
            self.events.append(msg)
        raise TimeoutError(f"no {method} within {timeout:.0f} s")

    def close(self):
        self.ws.close()


def start_chromium(binary: str, profile: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             "--remote-allow-origins=*", "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    port_file = profile / "DevToolsActivePort"
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with code {proc.returncode}: {proc.stderr.read().decode(errors='replace')[-2000:]}")
        if port_file.is_file() and port_file.read_text().strip():
            return proc, int(port_file.read_text().split()[0])
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("chromium did not open its DevTools port within 60 s")


def new_page(port: int) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())["webSocketDebuggerUrl"]


def check_width(port: int, url: str, width: int, out_dir: Path, stem: str) -> dict:
    dt = DevTools(new_page(port))
    try:
        phone = width < PHONE_MAX
        height = 844 if phone else 900
        dt.call("Runtime.enable")
        dt.call("Log.enable")
        dt.call("Page.enable")
        dt.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=2 if phone else 1,
                mobile=phone, screenWidth=width, screenHeight=height)
        if phone:
            dt.call("Emulation.setTouchEmulationEnabled", enabled=True, maxTouchPoints=5)
        t0 = time.monotonic()
        dt.call("Page.navigate", url=url)
        dt.wait_event("Page.loadEventFired")
        wall_ms = (time.monotonic() - t0) * 1e3
        time.sleep(0.2)  # let layout settle (images decoded)
        res = json.loads(dt.call("Runtime.evaluate", expression=CHECK_JS, returnByValue=True)["result"]["value"])
        errors = []
        for ev in dt.events:
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                errors.append("exception: " + p.get("exceptionDetails", {}).get("text", ""))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append("log: " + p["entry"].get("text", ""))
        res["errors"] = errors
        res["wall_ms"] = round(wall_ms)
        shot = dt.call("Page.captureScreenshot", format="png")
        first = out_dir / f"{stem}-{width}px.png"
        first.write_bytes(base64.b64decode(shot["data"]))
        full_h = json.loads(dt.call("Runtime.evaluate", expression="JSON.stringify(document.documentElement.scrollHeight)",
                                    returnByValue=True)["result"]["value"])
        shot = dt.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                       clip={"x": 0, "y": 0, "width": width, "height": min(int(full_h), 30000), "scale": 1})
        full = out_dir / f"{stem}-{width}px-full.png"
        full.write_bytes(base64.b64decode(shot["data"]))
        res["screenshots"] = [str(first), str(full)]
        return res
    finally:
        dt.close()


def defects(res: dict, width: int) -> list[str]:
    out = []
    if res["viewport"] > width + 1:
        out.append(f"layout viewport is {res['viewport']} px on a {width} px screen"
                   + ("" if res["viewportMeta"] else " (no <meta name=viewport>: a phone shows the page zoomed out)"))
    if res["scrollWidth"] > res["viewport"] + 1:
        out.append(f"page scrolls horizontally: {res['scrollWidth']} px wide in a {res['viewport']} px viewport; widest: "
                   + "; ".join(f"{o['el']} (right edge {o['right']})" for o in res["overflow"][:5]))
    for c in res["clipped"][:10]:
        out.append(f"clipped text in {c['el']}: {c['text']!r} ({c['scrollWidth']} px in {c['clientWidth']} px)")
    for c in res["offscreen"][:10]:
        out.append(f"text past the right edge in {c['el']}: {c['text']!r} (right edge {c['right']} px)")
    for c in res.get("hidden_main", [])[:10]:
        out.append(f"main column {c['text']!r} outside the first view: {c['el']!r} (right edge {c['right']} px, "
                   f"visible to {c['visible_to']} px)")
    for c in res.get("silent_scroll", [])[:10]:
        out.append(f"table scrolls without saying so: {c['el']!r} ({c['scrollWidth']} px in {c['clientWidth']} px)")
    out += res["errors"]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("report", type=Path, help="report.html (or a run folder holding one)")
    p.add_argument("--out", type=Path, help="folder for the screenshots (default: <report folder>/screenshots)")
    p.add_argument("--widths", default="1280,390", help="comma-separated viewport widths in CSS px (default 1280,390)")
    p.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium", help="browser binary")
    a = p.parse_args(argv)
    report = a.report / "report.html" if a.report.is_dir() else a.report
    if not report.is_file():
        print(f"error: no report at {report}", file=sys.stderr)
        return 2
    if not Path(a.chromium).exists():
        print(f"error: chromium not found at {a.chromium} (Debian: apt-get install -y chromium)", file=sys.stderr)
        return 2
    try:
        import websocket  # noqa: F401
    except ImportError:
        print("error: the PyPI package websocket-client is needed (pip install websocket-client)", file=sys.stderr)
        return 2
    try:
        widths = [int(w) for w in a.widths.split(",") if w.strip()]
    except ValueError:
        print(f"error: --widths must be integers, got {a.widths!r}", file=sys.stderr)
        return 2
    out_dir = a.out or report.resolve().parent / "screenshots"
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = False
    with tempfile.TemporaryDirectory(prefix="check-report-") as tmp:
        proc, port = start_chromium(a.chromium, Path(tmp))
        try:
            for w in widths:
                res = check_width(port, report.resolve().as_uri(), w, out_dir, report.stem)
                bad = defects(res, w)
                load = res.get("load_ms")
                print(f"{w} px: {'FAIL' if bad else 'ok'}  (page {res['scrollWidth']} px wide in a {res['viewport']} px viewport, "
                      f"{res['images']} images, load {load:.0f} ms, navigate→load {res['wall_ms']} ms)" if load is not None else
                      f"{w} px: {'FAIL' if bad else 'ok'}")
                for d in bad:
                    print(f"  - {d}")
                for s in res["screenshots"]:
                    print(f"  screenshot: {s}")
                failed |= bool(bad)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
