"""Runs a notebook in a real browser and screenshots it: JupyterLab under headless Chromium,
driven over the Chrome DevTools Protocol (a websocket, ``websocket-client``), nothing else.

``run_and_screenshot(notebook, out_png)`` starts ``jupyter lab`` on a free local port with a
random token (its config, settings and runtime files in a temporary folder: the user's own stay
untouched) and ``chromium --headless``; opens the notebook, runs every cell with JupyterLab's own
``notebook:run-all-cells`` command (``--LabApp.expose_app_in_browser`` gives the page
``window.jupyterapp``), waits until ``selector`` is drawn ``min_count`` times and the kernel is
idle, fails on any error output, and writes a PNG of the cell that drew it. Used by
tests/test_explorer_browser.py (the latent explorer drawn by ipywidgets' JavaScript) and by
``scripts/explorer_screenshot.py`` (img/explorer.png for the README).

Chromium comes from the system (Debian: ``apt-get install chromium``); ``find_chromium`` says
whether there is one. Nothing runs, and nothing is imported, when this module is imported.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from . import rundir

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# JupyterLab settings for a clean screenshot: no news or update toasts over the notebook.
LAB_SETTINGS = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings":
                {"fetchNews": "false", "checkForUpdates": False}}  # fmt: skip
# The JavaScript the page answers: is the notebook open (and the active tab) with an idle kernel,
# how many `selector` elements are drawn, which error outputs there are.
_STATE_JS = """(() => {
  const app = window.jupyterapp;
  const w = app && [...app.shell.widgets('main')].find(w => w.content && w.sessionContext);
  const kernel = w && w.sessionContext.session && w.sessionContext.session.kernel;
  if (w && app.shell.currentWidget !== w) app.shell.activateById(w.id);  // a headless window
  const errors = [...document.querySelectorAll(                          // never takes focus
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
      .map(e => e.innerText).filter(t => /Error|Traceback/.test(t));
  return JSON.stringify({ready: !!(kernel && app.shell.currentWidget === w),
                         status: kernel ? kernel.status : null,
                         count: document.querySelectorAll(SELECTOR).length, errors});
})()"""
# The bounding box of the notebook cell that holds the first `selector` element (page pixels).
_CLIP_JS = """(() => {
  const el = document.querySelector(SELECTOR), cell = el && el.closest('.jp-Cell');
  (cell || el).scrollIntoView({block: 'start'});
  const r = (cell || el).getBoundingClientRect();
  return JSON.stringify({x: r.x, y: r.y, width: r.width, height: r.height});
})()"""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable on PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, check, timeout: float, every: float = 0.5):
    """Polls ``check()`` until it returns something truthy; TimeoutError naming ``what``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _process(cmd, log: Path, env=None):
    """A subprocess in its own session (its children too: the kernel), ended on exit."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip
    try:
        yield proc
    finally:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)  # the group this function started, nothing else
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)


class _DevTools:
    """The Chrome DevTools Protocol over one page's websocket: ``call(method, **params)``."""

    def __init__(self, ws_url: str):
        import websocket  # websocket-client

        self.ws, self.next_id = websocket.create_connection(ws_url, timeout=60), 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:  # events arrive in between; the answer carries our id
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"DevTools {method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return r.get("result", {}).get("value")


def _lab_env(tmp: Path) -> dict:
    """Environment with JupyterLab's config, settings, workspaces and runtime files under
    ``tmp`` (``LAB_SETTINGS`` written there)."""
    env = dict(os.environ)
    for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                     ("JUPYTER_DATA_DIR", "data"),
                     ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                     ("JUPYTERLAB_WORKSPACES_DIR", "workspaces")):  # fmt: skip
        (tmp / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(tmp / sub)
    for name, value in LAB_SETTINGS.items():
        path = tmp / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    return env


def run_and_screenshot(notebook, out_png, selector: str = ".widget-slider", min_count: int = 1,
                       timeout: float = 300, size=(1300, 1800), chromium=None) -> dict:  # fmt: skip
    """Opens ``notebook`` in JupyterLab under headless Chromium, runs all its cells, waits for
    ``min_count`` elements matching the CSS ``selector`` and an idle kernel, and writes a PNG of
    the cell that holds the first one to ``out_png`` (temporary name, then rename).

    Returns dict(count: elements drawn, seconds, png). Raises FileNotFoundError when no browser is
    installed (``apt-get install chromium``), RuntimeError with the notebook's error output when
    a cell fails, TimeoutError (with the server's log) when nothing is drawn within ``timeout``.
    """
    notebook, out_png = Path(notebook).resolve(), Path(out_png)
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError(f"no browser among {', '.join(BROWSERS)} on PATH; on Debian: "
                                "`apt-get install -y chromium`")  # fmt: skip
    t0 = time.monotonic()
    token, port = secrets.token_hex(16), _free_port()
    with tempfile.TemporaryDirectory(prefix="sbd_browser_") as tmp:
        tmp = Path(tmp)
        lab = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
               "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={notebook.parent}", "--LabApp.expose_app_in_browser=True",
               *(["--allow-root"] if os.geteuid() == 0 else [])]  # fmt: skip
        browser = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                   "--disable-dev-shm-usage", "--disable-breakpad", "--disable-crash-reporter",
                   "--remote-debugging-port=0",
                   "--remote-allow-origins=*", f"--user-data-dir={tmp / 'chromium'}",
                   f"--window-size={size[0]},{size[1]}", "about:blank"]  # fmt: skip
        with _process(lab, tmp / "lab.log", _lab_env(tmp)) as server, \
                _process(browser, tmp / "chromium.log"):  # fmt: skip
            try:
                return _drive(tmp, server, port, token, notebook, out_png, selector, min_count,
                              t0 + timeout, t0)  # fmt: skip
            except (TimeoutError, ChildProcessError) as e:
                logs = "\n".join(f"--- {n}:\n{(tmp / n).read_text()[-3000:]}"
                                 for n in ("lab.log", "chromium.log"))  # fmt: skip
                raise TimeoutError(f"{notebook}: {e}\n{logs}") from None
            finally:
                _shutdown(server, port, token)


def _shutdown(server, port: int, token: str) -> None:
    """Asks the server to stop (it shuts its kernels down: they run in sessions of their own,
    out of reach of the process-group kill that follows) and waits for it a while."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/shutdown?token={token}", method="POST"
    )
    with contextlib.suppress(OSError):
        urllib.request.urlopen(request, timeout=5).close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(30)


def _drive(tmp, server, port, token, notebook, out_png, selector, min_count, deadline,
           t0) -> dict:  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    left = lambda: max(1.0, deadline - time.monotonic())  # noqa: E731

    def lab_up():
        if server.poll() is not None:
            raise ChildProcessError(f"jupyter lab exited with code {server.returncode}")
        return _get(f"{base}/api/status?token={token}")

    _wait("jupyter lab to answer", lab_up, left())
    active = tmp / "chromium" / "DevToolsActivePort"
    cdp_port = _wait("chromium's DevTools port", lambda: active.exists() and
                     active.read_text().split("\n")[0], left())  # fmt: skip
    pages = _wait("a chromium page", lambda: [p for p in _get(f"http://127.0.0.1:{cdp_port}/json/list")
                  or [] if p.get("type") == "page"], left())  # fmt: skip
    tools = _DevTools(pages[0]["webSocketDebuggerUrl"])
    tools.call("Page.enable")
    # A headless window never has the focus, and JupyterLab's current notebook (which
    # run-all-cells acts on) follows the focus: emulate it.
    tools.call("Emulation.setFocusEmulationEnabled", enabled=True)
    tools.call("Page.navigate", url=f"{base}/lab/tree/{notebook.name}?token={token}&reset")
    sel = json.dumps(selector)
    state = lambda: json.loads(tools.js(_STATE_JS.replace("SELECTOR", sel)) or "{}")  # noqa: E731
    _wait("the notebook to open with an idle kernel",
          lambda: state().get("ready") and state().get("status") == "idle", left())  # fmt: skip
    tools.js("jupyterapp.commands.execute('application:toggle-left-area');"
             "jupyterapp.commands.execute('notebook:run-all-cells')")  # fmt: skip

    def drawn():
        s = state()
        if s.get("errors"):
            raise RuntimeError(
                f"{notebook}: a cell failed in the browser:\n" + "\n".join(s["errors"])
            )
        return s if s.get("count", 0) >= min_count and s.get("status") == "idle" else None

    s = _wait(f"{min_count} × {selector} drawn", drawn, left())
    time.sleep(1.0)  # the images' PNGs are decoded a frame after the DOM holds them
    clip = json.loads(tools.js(_CLIP_JS.replace("SELECTOR", sel)))
    shot = tools.call("Page.captureScreenshot", format="png",
                      clip=dict(clip, scale=1), captureBeyondViewport=True)  # fmt: skip
    rundir.write_bytes(out_png, base64.b64decode(shot["data"]))
    return dict(count=s["count"], seconds=time.monotonic() - t0, png=out_png)
