"""Driving the web service's pages in a real browser (tests and benches): Debian's headless
Chromium through Selenium and its chromedriver, and what a seat page's terminal has received."""

from __future__ import annotations

from typing import Any

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def chromium() -> Any:
    """A headless Chromium (the system's: a browser library's own download is not reachable offline)."""
    from selenium import webdriver  # deferred: only browser tests need it
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900", "--disable-dev-shm-usage"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def term_text(driver: Any) -> str:
    """Everything the seat page's first terminal has received (its raw stream, escapes included)."""
    return str(driver.execute_script("const t = Object.values(window.storlabTerms || {})[0]; return t ? t.buffer : ''"))
