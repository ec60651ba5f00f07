"""The web console (issue 16, items 1 and 5) and the llama.cpp web UI on the gateway,
driven in headless Chromium against a real daemon (tests/test_browser.py's fixtures)."""

from __future__ import annotations

import httpx
import pytest
from conftest import wait_until
from test_browser import browser, wait_for  # noqa: F401  (browser: a fixture)

from llamaherd import control
from llamaherd.config import Config

pytestmark = pytest.mark.server


def state_shown(driver, model: str) -> str | None:
    """The state the models table shows (the table is redrawn each poll: read it in one go)."""
    return driver.execute_script(
        "const c = document.querySelector(`tr[data-model='${arguments[0]}'] td[data-state]`);"
        "return c && c.dataset.state;",
        model,
    )


def press(driver, model: str, action: str) -> None:
    driver.execute_script(
        "document.querySelector(`tr[data-model='${arguments[0]}'] "
        "button[data-action='${arguments[1]}']`).click();",
        model,
        action,
    )


def notice(driver) -> str:
    return driver.find_element("id", "notice").text


def table_text(driver) -> str:
    return driver.find_element("id", "model-table").text


def test_console_lists_models_switches_and_streams_the_log(daemon, browser) -> None:  # noqa: F811
    herd: Config = daemon()
    browser.get(f"{herd.server.api_url}/")
    wait_for(
        browser,
        lambda d: state_shown(d, "dense") == "stopped" and state_shown(d, "moe") == "stopped",
        lambda: f"the models table shows: {table_text(browser)}",
        timeout=30,
    )
    assert "Tiny dense" in table_text(browser)
    press(browser, "moe", "start")
    wait_for(
        browser,
        lambda d: state_shown(d, "moe") == "ready",
        lambda: f"moe never showed ready: {table_text(browser)}",
        timeout=90,
    )
    assert control.connect(herd).status().model == "moe"
    # The log page streams moe's llama-server log, and a request's lines follow live.
    browser.get(f"{herd.server.api_url}/#logs")
    lines = browser.find_element("id", "log-lines")
    wait_for(browser, lambda _: "llama" in lines.text, lambda: f"no log: {notice(browser)}", 30)
    before = len(lines.text.splitlines())
    chat = {"model": "moe", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    answer = httpx.post(f"{herd.server.public_url}/v1/chat/completions", json=chat, timeout=60)
    assert answer.status_code == 200
    usage = answer.json()["usage"]
    wait_for(
        browser,
        lambda _: len(lines.text.splitlines()) > before,
        lambda: "the request's log lines never streamed in",
        timeout=30,
    )
    search = browser.find_element("id", "log-search")
    search.send_keys("no line has this text")
    wait_for(browser, lambda _: lines.text.strip() == "", lambda: "search hid nothing", 10)
    # The activity page lists the request with the token counts its client received.
    browser.get(f"{herd.server.api_url}/#activity")
    expected = ["moe", "200", str(usage["prompt_tokens"]), str(usage["completion_tokens"])]

    def request_row(driver) -> list[str] | None:
        for row in driver.find_elements("css selector", "#activity-table tbody tr"):
            cells = [cell.text for cell in row.find_elements("tag name", "td")]
            if "/v1/chat/completions" in cells[2]:
                return [cells[3], cells[4], cells[5], cells[7]]
        return None

    wait_for(
        browser,
        lambda d: request_row(d) == expected,
        lambda: f"activity row {request_row(browser)} != {expected}",
        timeout=30,
    )


def test_console_asks_for_the_key_and_sends_it_as_a_header(daemon, browser) -> None:  # noqa: F811
    herd: Config = daemon(api_key="console-secret")
    browser.get(f"{herd.server.api_url}/")
    form = browser.find_element("id", "login")
    wait_for(browser, lambda _: form.is_displayed(), lambda: "no sign-in form", 30)
    browser.find_element("id", "key").send_keys("console-secret")
    browser.find_element("css selector", "#login button").click()
    wait_for(
        browser,
        lambda d: state_shown(d, "dense") == "stopped",
        lambda: f"the table stayed empty after signing in: {table_text(browser)}",
        timeout=30,
    )
    assert "console-secret" not in browser.current_url
    assert browser.execute_script("return sessionStorage.getItem('herd-api-key')")


def test_console_shows_config_and_failures(daemon, browser) -> None:  # noqa: F811
    herd: Config = daemon(api_key="console-secret")
    key = {"Authorization": "Bearer console-secret"}
    httpx.post(f"{herd.server.api_url}/switch", json={"model": "broken"}, headers=key, timeout=90)
    browser.get(f"{herd.server.api_url}/")
    browser.execute_script("sessionStorage.setItem('herd-api-key', 'console-secret')")
    browser.get(f"{herd.server.api_url}/#failures")
    failures = browser.find_element("id", "failure-list")
    wait_for(browser, lambda _: "broken" in failures.text, lambda: failures.text, 30)
    assert "broken.gguf" in failures.text  # the reason or its log tail names the file
    browser.get(f"{herd.server.api_url}/#config")
    config = browser.find_element("id", "config-text")
    wait_for(browser, lambda _: '"max_loaded"' in config.text, lambda: config.text, 30)
    assert "console-secret" not in config.text  # the key is masked
    browser.find_element("id", "reload").click()
    result = browser.find_element("id", "reload-result")
    wait_for(browser, lambda _: result.text.startswith("reloaded"), lambda: result.text, 30)


def test_the_llama_cpp_web_ui_lists_herds_profiles_and_switches(daemon, browser) -> None:  # noqa: F811
    herd: Config = daemon()
    control.up(herd, "dense")
    browser.set_window_size(1200, 900)
    browser.get(f"{herd.server.public_url}/")

    # The UI redraws as it loads: find and click in one script, by text.
    def click(selector: str, text: str) -> bool:
        return browser.execute_script(
            "const hit = [...document.querySelectorAll(arguments[0])]"
            ".find((e) => e.innerText.split('\\n').pop() === arguments[1]);"
            "if (hit) hit.click(); return Boolean(hit);",
            selector,
            text,
        )

    def listed() -> list[str]:
        return browser.execute_script(
            "return [...document.querySelectorAll('[role=option]')]"
            ".map((e) => e.innerText.split('\\n').pop());"
        )

    wait_for(browser, lambda _: click("button", "dense"), lambda: "no model selector", 60)
    wait_for(
        browser,
        lambda _: {"dense", "moe", "broken"} <= set(listed()),
        lambda: f"the UI's model list shows {listed()}",
        timeout=30,
    )
    assert click("[role=option]", "moe")  # picking a model loads it (POST /models/load)
    now = lambda: control.connect(herd).status()  # noqa: E731
    assert wait_until(lambda: (now().model, now().state) == ("moe", "ready"), timeout=90), now()


def test_console_shows_a_profiles_saved_prompt_cache(make_herd, browser) -> None:  # noqa: F811
    from test_kv_keep import swap_out_long

    herd, _ = swap_out_long(make_herd)  # long's 2k-token prompt saved as moe came in
    saved = control.connect(herd).status().kv_cache["long"].saved[0]
    browser.get(f"{herd.server.api_url}/")
    caches = browser.find_element("id", "kv-caches")
    wait_for(
        browser,
        lambda _: f"slot {saved.slot}: {saved.tokens} tokens" in caches.text,
        lambda: f"the saved cache is not shown: {caches.text!r}",
        timeout=30,
    )
    assert caches.text.startswith("long ")
