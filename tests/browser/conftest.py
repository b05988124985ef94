"""A headless Debian Chromium, driven by Debian's chromedriver, shared by the page tests.

Nothing is downloaded: the driver and browser paths are given to Selenium, so its
selenium-manager never runs, and the browser resolves no host but 127.0.0.1 and uses no
proxy, so a page can only reach the servers a test runs on loopback. Without Chromium or
chromedriver the tests fail (they are part of the suite): `bash .ci/test` installs both.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

# Where Debian's chromium-driver puts it, for a PATH that lacks /usr/bin.
DEBIAN_CHROMEDRIVER = "/usr/bin/chromedriver"
ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",  # as root (CI) Chromium refuses its sandbox
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--window-size=1024,768",
    # Off the network: no name resolves except loopback's, no proxy, no background fetches.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)


def _executables() -> tuple[str, str]:
    """Chromium's and chromedriver's paths, or the test fails saying how to install them."""
    chromium = shutil.which("chromium")
    chromedriver = shutil.which("chromedriver") or (
        DEBIAN_CHROMEDRIVER if Path(DEBIAN_CHROMEDRIVER).is_file() else None
    )
    missing = [
        name for name, path in (("chromium", chromium), ("chromedriver", chromedriver)) if not path
    ]
    if chromium is None or chromedriver is None:
        pytest.fail(
            f"tests/browser need Debian's Chromium and chromedriver; {' and '.join(missing)}"
            " not found. `bash .ci/test` installs them (as root: apt-get install chromium"
            " chromium-driver)",
            pytrace=False,
        )
    return chromium, chromedriver


@pytest.fixture(scope="session")
def browser() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the session, quit at its end."""
    chromium, chromedriver = _executables()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ARGUMENTS:
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
