"""The web UI with tokens asked for (`causeway serve --auth required`), in a real headless Chromium:
a page sends the browser to sign in and back; a reader sees a dead letter without its payload and
without the buttons that change things; an operator's dry run from the page carries the CSRF token
the sign-in left (the same request without it is refused); signing out ends it.
"""

import subprocess
from urllib.parse import urlparse

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import BINARY, chromium, serving

DEMO_SECONDS = 6


def make_token(data, role: str) -> str:
    result = subprocess.run([str(BINARY), "token", "create", "--role", role, "--data", str(data)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A server asking for tokens on the store a short demo left: its URL, a dead letter's id and
    a reader's and an operator's token."""
    tmp = tmp_path_factory.mktemp("sign-in")
    data = tmp / "data"
    demo = subprocess.run(
        [str(BINARY), "demo", "--data", str(data), "--duration", f"{DEMO_SECONDS}s", "--listen", "127.0.0.1:0", "--seed", "1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    tokens = {role: make_token(data, role) for role in ("reader", "operator")}
    config = tmp / "causeway.toml"
    config.write_text('[consumers.notification-service]\nreplay_url = "http://127.0.0.1:9/replay"\n')
    with serving(tmp, data, "--auth", "required", "--config", str(config), "--model", str(data / "model" / "model.yaml")) as url:
        headers = {"Authorization": f"Bearer {tokens['operator']}"}
        records = requests.get(f"{url}/v1/dlq?status=pending&consumer=notification-service", headers=headers, timeout=10).json()["records"]
        assert records, "the demo left a dead letter of the notification service"
        yield {"url": url, "dlq": records[0]["id"], **tokens}


@pytest.fixture
def browser(tmp_path):
    driver = chromium(tmp_path, 1280, 900)
    try:
        yield driver
    finally:
        driver.quit()


def loaded(browser) -> None:
    WebDriverWait(browser, 15).until(lambda b: b.execute_script("return document.readyState") == "complete")


def sign_in(browser, site, path: str, role: str) -> None:
    browser.get(site["url"] + path)
    loaded(browser)
    # Not signed in: the page sends the browser to the form, which remembers where it was going.
    assert urlparse(browser.current_url).path == "/sign-in", browser.current_url
    browser.find_element(By.ID, "token").send_keys(site[role])
    browser.find_element(By.CSS_SELECTOR, "form.sign-in button").click()
    WebDriverWait(browser, 15).until(lambda b: urlparse(b.current_url).path == path)
    loaded(browser)


def severe(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_a_reader_signs_in_and_sees_no_payload_and_no_actions(browser, site):
    sign_in(browser, site, f"/dlq/{site['dlq']}", "reader")
    # The session cookie is out of the script's reach; only the CSRF cookie is readable.
    cookies = {c["name"]: c for c in browser.get_cookies()}
    assert cookies["causeway_token"]["httpOnly"] is True and cookies["causeway_token"]["sameSite"] == "Strict"
    assert "causeway_token" not in browser.execute_script("return document.cookie")
    assert browser.find_elements(By.CSS_SELECTOR, 'form[data-action="dry-run"]') == []
    assert "hidden" in browser.find_element(By.ID, "original").find_element(By.XPATH, "..").text
    sign_out = browser.find_element(By.CSS_SELECTOR, "form.sign-out")
    assert sign_out.is_displayed()
    sign_out.find_element(By.TAG_NAME, "button").click()
    WebDriverWait(browser, 15).until(lambda b: urlparse(b.current_url).path == "/sign-in")
    assert "causeway_token" not in {c["name"] for c in browser.get_cookies()}
    browser.get(site["url"] + "/on-call")
    loaded(browser)
    assert urlparse(browser.current_url).path == "/sign-in", "signed out: the pages ask again"


def test_an_operator_dry_run_carries_the_csrf_token_and_a_write_without_it_is_refused(browser, site):
    sign_in(browser, site, f"/dlq/{site['dlq']}", "operator")
    browser.find_element(By.CSS_SELECTOR, 'form[data-action="dry-run"] button').click()
    result = WebDriverWait(browser, 15).until(lambda b: b.find_element(By.CSS_SELECTOR, 'form[data-action="dry-run"] [data-result]:not([hidden])'))
    assert result.get_attribute("data-status") == "200", result.text
    assert '"dry_run"' in result.text, result.text
    # The same request from the page's origin, with the cookie but without the header: refused.
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"fetch('/v1/dlq/{site['dlq']}/replay', {{method: 'POST', headers: {{'content-type': 'application/json'}}, body: '{{\"dry_run\": true}}'}})"
        ".then(r => done(r.status));"
    )
    assert status == 403
    assert [m for m in severe(browser) if "403" not in m] == []
