"""Swagger UI in a real browser: headless Chromium browses, authorises and creates a user.

Uses Debian's Chromium (`apt-get install chromium`; .ci/run installs it) through
Playwright; no browser is downloaded. Screenshots land in
test-output/: swagger-ui-create-user.png (the 201) and swagger-ui.png (the whole page).
"""

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests.helpers import ROOT, WRITE_KEY, LiveServer

pytestmark = pytest.mark.live

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
OUTPUT = ROOT / "test-output"
METHODS = ("get", "put", "post", "patch", "delete")

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        found = shutil.which("chromium")
        pytest.skip(
            f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; or set CHROMIUM)"
            + (f"; found {found}" if found else "")
        )
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, live_server: LiveServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 2000})
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()


def documented_operations() -> list[tuple[str, str]]:
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
    return [
        (method, path)
        for path, item in spec["paths"].items()
        for method in METHODS
        if method in item
    ]


def test_swagger_ui_creates_a_user_offline(page: Any, live_server: LiveServer) -> None:
    expect = playwright_api.expect
    origin = urlsplit(live_server.base_url).netloc
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    page.goto(f"{live_server.base_url}/v1/ui/")

    # Every operation of the contract is on the page.
    for method, path in documented_operations():
        block = page.locator(f".opblock-{method} .opblock-summary-path[data-path='{path}']")
        expect(block).to_have_count(1)

    # Authorise with a write key, as a person would.
    page.locator("button.authorize").first.click()
    page.locator(".auth-container input").first.fill(WRITE_KEY)
    page.locator(".auth-btn-wrapper button.authorize").first.click()
    page.locator(".auth-btn-wrapper button.btn-done").first.click()

    # Try it out: create a user.
    name = f"Browser {uuid.uuid4().hex[:8]}"
    create = page.locator(".opblock-post").filter(
        has=page.locator(".opblock-summary-path[data-path='/v1/users']")
    )
    create.locator(".opblock-summary").click()
    create.locator("button.try-out__btn").click()
    create.locator("textarea.body-param__text").fill(f'{{"name": "{name}", "age": 36}}')
    create.locator("button.execute").click()

    answer = create.locator(".live-responses-table tbody .response").first
    expect(answer.locator(".response-col_status")).to_have_text("201")
    expect(answer.locator(".response-col_description")).to_contain_text(name)
    OUTPUT.mkdir(exist_ok=True)
    create.screenshot(path=str(OUTPUT / "swagger-ui-create-user.png"))
    page.screenshot(path=str(OUTPUT / "swagger-ui.png"), full_page=True)

    # The user exists: the browser really went through the API.
    users = httpx.get(
        f"{live_server.base_url}/v1/users",
        params={"limit": 100},
        headers={"X-API-Key": WRITE_KEY},
    ).json()["items"]
    assert name in [user["name"] for user in users]

    # Offline: every asset and call went to the service itself, nothing to a CDN.
    elsewhere = [url for url in requested if urlsplit(url).netloc != origin]
    assert not elsewhere, f"Swagger UI fetched from other hosts: {elsewhere}"
