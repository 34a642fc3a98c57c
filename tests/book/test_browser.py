"""The built book in a real browser (headless Chromium, as a reader opens it): every page loads without a console
error, a failed request or a broken image, shows no unrendered role or glue and no NaN in a table, and the explorer's
widget works without a kernel (choosing two faces and moving the slider changes the picture).

Chromium and ChromeDriver come from Debian (``tools/install_browser.sh``, which ``make test`` runs); where they cannot
be installed the test is skipped and says why. Pages are served from ``127.0.0.1`` (as Binder or a web server would),
not opened as files."""
from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="Chromium and ChromeDriver are not installed and could not be installed here "
    "(tools/install_browser.sh: apt-get install chromium chromium-driver needs Debian and root)")
#: The most a page may make a browser download (the explorer, with its widget manager and precomputed faces, is the
#: heaviest: tools/page_weight.py measures every page; results/measured/page_weight.json).
MAX_PAGE_MIB = 12
#: Text that only appears where a MyST role or a glue reference was not rendered.
UNRENDERED = ("{glue", "{numref", "{doc}", "{cite}", "{ref}", "{func}", "{mod}")


@pytest.fixture(scope="module")
def server(built_book):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # the test reports failed requests itself
            pass

    handler = functools.partial(Quiet, directory=str(built_book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", built_book
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (make install adds it)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-quic", "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _pages(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html")
                  if not p.relative_to(root).as_posix().startswith(("_static/", "_sources/", "genindex", "search")))


def _problems(driver, page: str) -> list[str]:
    """Everything wrong with the page now loaded: console errors, failed requests, broken images, unrendered roles,
    NaN cells."""
    bad = []
    for entry in driver.get_log("browser"):
        if entry["level"] == "SEVERE":
            bad.append(f"{page}: console error: {entry['message'][:200]}")
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.loadingFailed" and not msg["params"].get("canceled"):
            bad.append(f"{page}: request failed: {msg['params'].get('errorText')}")
        elif msg["method"] == "Network.responseReceived" and msg["params"]["response"]["status"] >= 400:
            bad.append(f"{page}: {msg['params']['response']['status']} {msg['params']['response']['url']}")
    broken = driver.execute_script(
        "return [...document.images].filter(i => i.complete && i.naturalWidth === 0 && i.src).map(i => i.src)")
    bad += [f"{page}: broken image {src[:100]}" for src in broken]
    text = driver.execute_script("return document.body.innerText")
    bad += [f"{page}: unrendered {t!r}" for t in UNRENDERED if t in text]
    cells = driver.execute_script(
        "return [...document.querySelectorAll('td, th')].map(c => c.innerText.trim())"
        ".filter(t => /^(nan|NaN|None|<NA>)$/.test(t))")
    bad += [f"{page}: {len(cells)} table cell(s) show {cells[0]!r}"] if cells else []
    loaded = driver.execute_script(
        "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
        ".reduce((a, e) => a + (e.decodedBodySize || 0), 0)")
    if loaded > MAX_PAGE_MIB * 2 ** 20:
        bad.append(f"{page}: loads {loaded / 2 ** 20:.1f} MiB (more than {MAX_PAGE_MIB} MiB)")
    return bad


def test_every_page_renders_cleanly(server, browser):
    base, root = server
    pages = _pages(root)
    assert len(pages) >= 10
    bad = []
    for page in pages:
        browser.get(f"{base}/{page}")
        time.sleep(0.5)  # scripts that run after load (MathJax, widgets) report their errors too
        bad += _problems(browser, page)
    assert not bad, f"{len(bad)} problems:\n" + "\n".join(bad[:40])


def test_the_explorer_works_without_a_kernel(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    base, _ = server
    browser.get(f"{base}/notebooks/05_explorer.html")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".widget-dropdown select"))
    shown = lambda: browser.execute_script(  # noqa: E731 - every widget image, as the reader sees them
        "return [...document.querySelectorAll('.jupyter-widgets img')].map(i => i.src).join(' ')")
    before = shown()
    assert before, "the explorer shows no image"
    selects = browser.find_elements(By.CSS_SELECTOR, ".widget-dropdown select")
    assert len(selects) >= 2
    Select(selects[0]).select_by_index(1)
    Select(selects[1]).select_by_index(2)
    wait.until(lambda d: shown() != before)
    after_choice = shown()
    handle = browser.find_element(By.CSS_SELECTOR, ".widget-slider .noUi-handle, .widget-slider input")
    handle.click()
    for _ in range(3):  # noUiSlider moves its handle a step a key press
        handle.send_keys(Keys.ARROW_RIGHT)
    wait.until(lambda d: shown() != after_choice)
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
