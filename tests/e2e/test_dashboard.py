"""The dashboard in a real headless Chromium: it loads, shows the providers, and follows changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import Browser, chromium
from tests.conftest import fixture_provider, require
from tests.e2e.test_admin_api import ADMIN_TOKEN, call
from tests.e2e.test_http import ECHO_TOOL, http_hangar

ROWS = (  # each provider row's id and the state it shows
    "JSON.stringify(Object.fromEntries([...document.querySelectorAll('tr[data-provider]')]"
    ".map(r => [r.dataset.provider, r.dataset.state])))"
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    require(chromium() is not None, "chromium is not installed (make test installs Debian's chromium)")
    opened = Browser(tmp_path / "profile")
    try:
        yield opened
    finally:
        opened.close()


def states(browser: Browser) -> dict[str, str]:
    found: dict[str, str] = json.loads(browser.evaluate(ROWS))
    return found


def test_the_dashboard_shows_the_tree_and_follows_a_provider_being_stopped(
    write_config: Any, short_tmp: Path, tmp_path: Path, browser: Browser
) -> None:
    config = write_config({"fx": fixture_provider(), "lazy": fixture_provider(tools=[ECHO_TOOL])})
    with http_hangar(config, short_tmp / "ctl.sock", env={"HANGAR_ADMIN_TOKENS": ADMIN_TOKEN}) as h:
        call(f"{h.base}/api/v1/providers/lazy/start", "POST", ADMIN_TOKEN)
        browser.open(f"{h.base}/ui#token={ADMIN_TOKEN}")
        browser.wait_for(f"{ROWS}.includes('lazy')", what="the providers' rows")
        browser.wait_for(f"JSON.parse({ROWS}).lazy === 'ready'", what="lazy shown ready")
        shown = states(browser)
        assert shown == {"router": "running", "fx": "cold", "lazy": "ready"}
        header = browser.evaluate("document.querySelector('header').innerText")
        assert "providers" in header and str(h.proc.pid) in header
        assert "token" not in browser.evaluate("location.href")  # the token left the address bar
        call(f"{h.base}/api/v1/providers/lazy/stop", "POST", ADMIN_TOKEN)
        browser.wait_for(f"JSON.parse({ROWS}).lazy === 'cold'", what="lazy shown cold, without a reload")
        audit = browser.wait_for(
            "document.querySelector('#audit').innerText.includes('command=stop')"
            " && document.querySelector('#audit').innerText",
            what="the stop in the audit panel",
        )
        assert "id=lazy" in audit
        browser.screenshot(tmp_path / "dashboard.png")
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000


def test_without_a_token_the_page_asks_for_one(write_config: Any, short_tmp: Path, browser: Browser) -> None:
    config = write_config({"fx": fixture_provider()})
    with http_hangar(config, short_tmp / "ctl.sock", env={"HANGAR_ADMIN_TOKENS": ADMIN_TOKEN}) as h:
        browser.open(f"{h.base}/ui")
        browser.wait_for(
            "getComputedStyle(document.getElementById('login')).display === 'flex'", what="the token form"
        )
        assert states(browser) == {}
        browser.evaluate(
            f"document.getElementById('token').value = '{ADMIN_TOKEN}';"
            "document.getElementById('login').requestSubmit(); true"
        )
        browser.wait_for(f"JSON.parse({ROWS}).fx === 'cold'", what="the rows once the token is given")
