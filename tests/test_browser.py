"""The documentation site in a real browser: headless Chromium loads the home page, the ring tutorial and an API page
of the built site over HTTP (``file://`` would break the search's JavaScript), and every image must have loaded and
the console must show no error; where a page has formulas, MathJax (shipped with the site) must have typeset every one.
Screenshots go to docs/screenshots/ (home and ring-tutorial are committed).

The site is ``site/`` as ``make docs`` built it (``make test`` builds it first); when it is absent or older than its
sources, the test builds it into a temporary directory itself. It skips, saying so, only where Debian's chromium and
chromium-driver are not installed (``make install`` installs them).
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "docs" / "screenshots"
#: screenshot name -> the page's path in the site, and a text the page must show.
PAGES = {
    "home": ("index.html", "Normalizing flows with exact, tractable densities"),
    "ring-tutorial": ("tutorials/02_planar_ring/", "Planar flows on the ring"),
    "api": ("api/models/", "NSF"),
}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin"]))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1000"]
#: Every other executed tutorial is loaded and checked too, without a screenshot.
OTHER_TUTORIALS = sorted(p.stem for p in (ROOT / "docs" / "tutorials").glob("[0-9][0-9]_*.ipynb")
                         if p.stem != "02_planar_ring")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="the browser test needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; "
    "make install does it): not installed here",
)


def _sources() -> list[Path]:
    files = [ROOT / "mkdocs.yml", *ROOT.joinpath("docs").rglob("*"), *ROOT.joinpath("src").rglob("*.py")]
    return [f for f in files if f.is_file() and SCREENSHOTS not in f.parents]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The built site: site/ when it is newer than every source, else a fresh strict build."""
    built = ROOT / "site" / "index.html"
    if built.exists() and built.stat().st_mtime >= max(f.stat().st_mtime for f in _sources()):
        return built.parent
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def server(site: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def _broken_images(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.currentSrc || i.src || i.outerHTML).map(s => s.slice(0, 120));")


def _errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _math(driver) -> dict[str, int]:
    """Once MathJax has done what it had queued (the page's typesetting): the formulas it found, those it typeset,
    those it could not, and the dollars left in the prose of the notebook's Markdown cells (TeX left raw)."""
    if driver.execute_script("return !!(window.MathJax && window.MathJax.Hub)"):
        driver.execute_async_script("const done = arguments[arguments.length - 1]; MathJax.Hub.Queue(() => done());")
    return driver.execute_script("""return {
        found: document.querySelectorAll('script[type^="math/tex"]').length,
        typeset: document.querySelectorAll('span.MathJax').length,
        failed: document.querySelectorAll('.MathJax_Error, .merror, .noError').length,
        dollars: Array.from(document.querySelectorAll('.jp-MarkdownCell'), cell => {
            const text = cell.cloneNode(true);  // code may hold a $ of its own
            text.querySelectorAll('pre, code, script').forEach(e => e.remove());
            return text.textContent.split('$').length - 1;
        }).reduce((a, b) => a + b, 0)};""")


def _check(browser, url: str, text: str) -> dict[str, int]:
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(url)
    deadline = time.monotonic() + 20
    while browser.execute_script("return document.readyState") != "complete" and time.monotonic() < deadline:
        time.sleep(0.1)
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight);")  # any lazily loaded image
    while _broken_images(browser) and time.monotonic() < deadline:
        time.sleep(0.2)
    browser.execute_script("window.scrollTo(0, 0);")
    time.sleep(0.5)  # the search worker starts after the load event
    math = _math(browser)

    assert text in browser.find_element("tag name", "body").text, f"{url}: expected {text!r} on the page"
    assert _broken_images(browser) == [], f"{url}: images that did not load"
    assert _errors(browser) == [], f"{url}: console errors"
    assert math["typeset"] == math["found"] and math["failed"] == math["dollars"] == 0, f"{url}: formulas {math}"
    return math


@pytest.mark.parametrize("name", list(PAGES))
def test_page_loads_with_its_images_and_no_console_error(name: str, server: str, browser) -> None:
    path, text = PAGES[name]
    math = _check(browser, server + path, text)
    assert math["found"] > 0 or name != "ring-tutorial", f"{path}: no formula typeset"
    assert browser.execute_script("return document.images.length") > 0 or name == "api", f"{path}: no image"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def test_every_other_tutorial_loads_with_its_images(server: str, browser) -> None:
    for stem in OTHER_TUTORIALS:
        _check(browser, f"{server}tutorials/{stem}/", "In [")
