"""`/docs` in a real headless Chromium: open `POST /predict`, "Try it out", "Execute", read
the answer off the page. Used by tests/test_docs_page.py, and to refresh the screenshot in
the docs from a running server (`make serve` in another shell):

    .venv/bin/python -m tests.docs_browser http://127.0.0.1:8080 docs/img/swagger-try-it-out.png

Chromium and its driver are Debian's (`apt-get install -y chromium chromium-driver`);
nothing is downloaded.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

CHROMIUM: Final = ("chromium", "chromium-browser")
DRIVER: Final = "chromedriver"
WAIT_SECONDS: Final = 30.0
# Headless, no sandbox (root in CI), and no traffic of the browser's own to anywhere.
FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1600",
)


@dataclass(frozen=True)
class Executables:
    browser: str
    driver: str


def find_executables() -> Executables | None:
    """Debian's chromium and chromedriver, or None when either is missing."""
    browser = next((found for name in CHROMIUM if (found := shutil.which(name))), None)
    driver = shutil.which(DRIVER)
    return Executables(browser, driver) if browser and driver else None


@dataclass(frozen=True)
class TriedOut:
    status: str
    """The status code the page shows for the request it sent."""
    body: str
    """The response body as the page shows it."""
    curl: str
    """The curl command the page shows for the request."""


@contextlib.contextmanager
def chromium(executables: Executables) -> Iterator[object]:
    """A headless Chromium with a fresh profile, driven by chromedriver; quit afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = executables.browser
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(executables.driver))
        try:
            yield driver
        finally:
            driver.quit()


def try_it_out(executables: Executables, base_url: str, screenshot: Path | None) -> TriedOut:
    """Send the documented sample through the page's "Try it out" on `POST /predict`."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium(executables) as browser:
        assert isinstance(browser, WebDriver)
        wait = WebDriverWait(browser, WAIT_SECONDS)
        browser.get(f"{base_url}/docs")
        where = "#operations-default-post_predict"
        operation = (By.CSS_SELECTOR, where)
        block = wait.until(ready.presence_of_element_located(operation))
        block.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
        try_button = (By.CSS_SELECTOR, f"{where} .try-out__btn")
        wait.until(ready.element_to_be_clickable(try_button)).click()
        execute = (By.CSS_SELECTOR, f"{where} .execute")
        wait.until(ready.element_to_be_clickable(execute)).click()
        status = (
            By.CSS_SELECTOR,
            f"{where} .live-responses-table tr.response .response-col_status",
        )
        shown = wait.until(ready.visibility_of_element_located(status))
        body = block.find_element(By.CSS_SELECTOR, ".live-responses-table .microlight")
        curl = block.find_element(By.CSS_SELECTOR, ".curl-command .curl")
        browser.execute_script("arguments[0].scrollIntoView();", block)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(screenshot))
        return TriedOut(shown.text.strip(), body.text, curl.text)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=".venv/bin/python -m tests.docs_browser",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("base_url", help="The running server, e.g. http://127.0.0.1:8080.")
    parser.add_argument("screenshot", type=Path, help="PNG to write.")
    args = parser.parse_args(argv)
    executables = find_executables()
    if executables is None:
        print("chromium and chromium-driver (Debian packages) are needed", file=sys.stderr)
        return 2
    tried = try_it_out(executables, args.base_url.rstrip("/"), args.screenshot)
    print(f"status {tried.status}\n{tried.body}\nwrote {args.screenshot}")
    return 0 if tried.status == "200" else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
