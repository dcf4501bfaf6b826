"""Swagger UI and ReDoc in a real headless Chromium, against `run.py` as a real process.

Debian's `chromium` and `chromium-driver` drive the pages (`apt-get install -y chromium
chromium-driver`; `.ci/run` installs them). Without them it fails in CI (CI=true) and
under REQUIRE_BROWSER_TESTS=1; elsewhere (a newcomer's `make test`) it is reported as
skipped, with the reason. There is no internet here: every asset must come from the service,
so any request to a host other than 127.0.0.1 fails the test. Screenshots of each page
are saved to test-artifacts/ at the repository root.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.helpers_process import REPO_ROOT, Server, call, started, wait_until_serving

pytestmark = [pytest.mark.browser, pytest.mark.engine_independent("the Swagger and Redoc pages")]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = REPO_ROOT / "test-artifacts"
TITLE = "Products and accounts API"
TAGS = {"login", "users", "two-factor", "recovery", "products", "health"}
USERNAME = "browser_alice"
PASSWORD = "browser-password-123"
WAIT_SECONDS = 15
MAX_SHOT_HEIGHT = 4000  # ReDoc's page is tens of thousands of pixels long
# Schemes that never leave the browser; anything else must go to 127.0.0.1.
LOCAL_SCHEMES = {"data", "blob", "about", "chrome", "devtools"}
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1600",
    # Belt and braces: a stray request is still logged (and fails the test), but cannot
    # reach a resolver and hang waiting for a network that is not there.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def _require_chromium() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if shutil.which(path) is None]
    if not missing:
        return
    reason = (
        f"{' and '.join(missing)} not found: the browser test needs Debian's chromium and "
        "chromium-driver (`apt-get update && apt-get install -y chromium chromium-driver`, "
        "as .ci/run does)"
    )
    if os.environ.get("CI") == "true" or os.environ.get("REQUIRE_BROWSER_TESTS") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


class Browser:
    """A headless Chromium and every URL it asked for, from DevTools performance logs."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver
        self.requested: set[str] = set()
        self.login_statuses: list[int] = []

    def wait(self, seconds: float = WAIT_SECONDS) -> WebDriverWait[webdriver.Chrome]:
        return WebDriverWait(self.driver, seconds)

    def visible(self, css: str, within: WebElement | None = None) -> WebElement:
        scope: Any = within or self.driver
        return self.wait().until(lambda _: _displayed(scope, css), f"no visible {css!r}")

    def click(self, css: str, within: WebElement | None = None) -> None:
        element = self.visible(css, within)
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        self.wait().until(lambda _: element.is_enabled(), f"{css!r} stays disabled")
        element.click()

    def screenshot(self, name: str, element: WebElement | None = None) -> Path:
        """Save test-artifacts/`name`: the whole page, or all of `element` (however tall)."""
        target = "document.documentElement" if element is None else "arguments[0]"
        box = self.driver.execute_script(
            f"const box = {target}.getBoundingClientRect();"
            " return [box.left + scrollX, box.top + scrollY, box.width, box.height]",
            *([] if element is None else [element]),
        )
        x, y, width, height = box
        clip = {"x": x, "y": y, "width": width, "height": min(height, MAX_SHOT_HEIGHT)}
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": {**clip, "scale": 1}},
        )
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def collect_requests(self) -> None:
        """Move the DevTools log and the page's resource timings into `requested`."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message["method"] == "Network.requestWillBeSent":
                self.requested.add(params["request"]["url"])
            elif message["method"] == "Network.webSocketCreated":
                self.requested.add(params["url"])
            elif message["method"] == "Network.responseReceived":
                response = params["response"]
                if urlsplit(response["url"]).path == "/login/access-token":
                    self.login_statuses.append(response["status"])
        script = "return performance.getEntriesByType('resource').map(e => e.name)"
        self.requested.update(self.driver.execute_script(script))

    def assert_offline(self, page: str) -> None:
        """Fail on any URL the browser asked for outside 127.0.0.1 so far."""
        self.collect_requests()
        foreign = sorted(url for url in self.requested if not _is_local(url))
        assert not foreign, f"on {page} the browser requested URLs outside 127.0.0.1: {foreign}"


def _displayed(scope: Any, css: str) -> WebElement | bool:
    for element in scope.find_elements(By.CSS_SELECTOR, css):
        if element.is_displayed():
            return element  # type: ignore[no-any-return]
    return False


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return True
    return parts.scheme in {"http", "https", "ws", "wss"} and parts.hostname == "127.0.0.1"


@contextlib.contextmanager
def headless_chromium(tmp_path: Path) -> Iterator[Browser]:
    """Debian's chromium under chromedriver; on a failure, a screenshot of where it stopped."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    service = ChromeService(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "driver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    browser = Browser(driver)
    try:
        yield browser
    except BaseException:
        with contextlib.suppress(Exception):
            print(f"screenshot of the failure: {browser.screenshot('failure.png')}")
        raise
    finally:
        driver.quit()


def test_swagger_authorize_try_it_out_and_redoc_offline(tmp_path: Path) -> None:
    _require_chromium()
    # Product writes need a user here, so both Try-it-out calls depend on Authorize.
    with (
        started(tmp_path, PRODUCT_WRITE_ACCESS="user") as server,
        headless_chromium(tmp_path) as browser,
    ):
        wait_until_serving(server)
        status, _, body = call(
            server, "POST", "/users/signup", {"username": USERNAME, "password": PASSWORD}
        )
        assert status == 201, body
        operations = _operations(server)

        _docs_show_every_group(browser, server, operations)
        _authorize(browser)
        _try_read_me(browser)
        _try_create_product(browser, server)
        _redoc_shows_every_operation(browser, server, operations)


def _operations(server: Server) -> list[dict[str, Any]]:
    """Every operation of the API document, as the service serves it."""
    with urllib.request.urlopen(f"{server.base}/openapi.json", timeout=5) as response:  # noqa: S310
        spec = json.load(response)
    return [operation for by_method in spec["paths"].values() for operation in by_method.values()]


def _docs_show_every_group(browser: Browser, server: Server, operations: list[Any]) -> None:
    driver = browser.driver
    driver.get(f"{server.base}/docs")
    assert TITLE in browser.visible(".information-container .title").text
    browser.visible(".opblock-tag-section")
    tags = {
        element.get_attribute("data-tag")
        for element in driver.find_elements(By.CSS_SELECTOR, ".opblock-tag-section .opblock-tag")
    }
    assert tags == TAGS == {tag for operation in operations for tag in operation["tags"]}
    summaries = driver.find_elements(By.CSS_SELECTOR, ".opblock .opblock-summary")
    assert len(summaries) == len(operations)
    browser.screenshot("swagger-docs.png")
    browser.assert_offline("/docs")


def _authorize(browser: Browser) -> None:
    """Authorize: the OAuth2 password flow against /login/access-token, then Close."""
    browser.click(".auth-wrapper button.authorize")
    modal = browser.visible(".modal-ux")
    browser.visible("input#oauth_username", modal).send_keys(USERNAME)
    browser.visible("input#oauth_password", modal).send_keys(PASSWORD)
    browser.click(".auth-btn-wrapper button.authorize", modal)
    outcome = ".auth-container h6, .auth-container .errors"  # "Authorized", or the error
    try:
        answer = browser.visible(outcome, modal).text
    except TimeoutException:
        answer = "no answer"
    browser.collect_requests()
    assert answer == "Authorized" and browser.login_statuses == [200], (
        f"Swagger's Authorize did not log in: the login route answered "
        f"{browser.login_statuses}; the dialog says: {modal.text}"
    )
    browser.screenshot("swagger-authorized.png")
    browser.click(".auth-btn-wrapper button.btn-done", modal)
    browser.wait().until(ec.invisibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))
    assert browser.driver.find_elements(By.CSS_SELECTOR, ".auth-wrapper button.authorize.locked")


def _try_read_me(browser: Browser) -> None:
    """GET /users/me, Try it out: 200 with the user who authorized, sent as a bearer."""
    block = _try_it_out(browser, "get", "/users/me")
    status, text = _execute(browser, block)
    assert status == "200", text
    assert json.loads(text)["username"] == USERNAME
    assert "authorization: bearer " in browser.visible(".curl-command", block).text.lower()
    browser.screenshot("swagger-users-me.png", block)


def _try_create_product(browser: Browser, server: Server) -> None:
    """POST /products, Try it out with a JSON body: 201, and the product is there."""
    block = _try_it_out(browser, "post", "/products")
    editor = browser.visible("textarea.body-param__text", block)
    product = json.dumps({"name": "Browser tea", "price": 4.5, "in_stock": True})
    # Type over the selected example (emptied first, Swagger UI puts `{}` back); Tab
    # leaves the field, which hands the debounced value to Swagger UI at once.
    browser.driver.execute_script("arguments[0].select()", editor)
    editor.send_keys(product, Keys.TAB)
    assert editor.get_attribute("value") == product
    status, text = _execute(browser, block)
    assert status == "201", text
    created = json.loads(text)
    assert (created["name"], created["price"]) == ("Browser tea", 4.5)
    got, _, body = call(server, "GET", f"/products/{created['id']}")
    assert got == 200 and json.loads(body)["name"] == "Browser tea"
    browser.screenshot("swagger-products-create.png", block)
    browser.assert_offline("/docs")


def _redoc_shows_every_operation(
    browser: Browser, server: Server, operations: list[dict[str, Any]]
) -> None:
    driver = browser.driver
    driver.get(f"{server.base}/redoc")
    assert TITLE in browser.visible(".api-info h1").text
    sections = driver.execute_script(
        "return [...document.querySelectorAll('[data-section-id]')].map(section =>"
        " [section.dataset.sectionId, section.querySelector('h2').textContent.trim()])"
    )
    assert {title for section, title in sections if re.fullmatch(r"tag/[^/]+", section)} == TAGS
    # ReDoc names an operation's section by its operationId (`operation/list_products`),
    # by its path without one (`tag/products/paths/...`).
    operation_ids = {operation["operationId"] for operation in operations}
    rendered = {
        section.removeprefix("operation/"): title
        for section, title in sections
        if section.removeprefix("operation/") in operation_ids or "/paths/" in section
    }
    assert sorted(rendered.values()) == sorted(operation["summary"] for operation in operations)
    assert set(rendered) == operation_ids
    browser.screenshot("redoc.png")
    browser.assert_offline("/redoc")
    redoc_js = "/static/redoc/redoc.standalone.js"
    assert any(urlsplit(url).path == redoc_js for url in browser.requested)


def _try_it_out(browser: Browser, method: str, path: str) -> WebElement:
    """The Swagger UI block of one operation, expanded, with Try it out switched on."""
    xpath = (
        f"//div[contains(@class, 'opblock-{method}')]"
        f"[.//*[contains(@class, 'opblock-summary-path') and @data-path='{path}']]"
    )
    block = browser.wait().until(ec.presence_of_element_located((By.XPATH, xpath)))
    browser.click(".opblock-summary", block)
    browser.click(".try-out__btn", block)
    return block


def _execute(browser: Browser, block: WebElement) -> tuple[str, str]:
    """Press Execute; the live response's status code and body text."""
    browser.click("button.execute", block)
    status = browser.visible(".live-responses-table .response .response-col_status", block)
    body = browser.visible(".live-responses-table .response-col_description pre", block)
    return status.text.strip(), body.text
