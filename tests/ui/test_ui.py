"""The web UI in a real browser (the machine's Chromium, through Playwright) against a real stack.

One stack and one signed-in browser context for the module; the tests run in order, as one
person would use the UI: sign in, create a subscription, test it, watch deliveries arrive,
retry a failure, pause and resume, replay, read the analytics, watch live events. Each page's
screenshot is written to docs/ui/ (shown in the README's "Web UI" section).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, expect

from .conftest import SCREENSHOTS, TOKEN, Stack, wait_for

pytestmark = pytest.mark.timeout(60)
expect.set_options(timeout=10_000)  # a loaded 2-core machine renders slowly, not never

_STATE: dict[str, Any] = {}
_REQUESTS: list[str] = []
_VIEWPORT = {"width": 1280, "height": 800}


async def _shot(page: Page, name: str, *, full_page: bool = False) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


async def _sign_in(page: Page, stack: Stack, token: str = TOKEN) -> None:
    await page.goto(stack.url + "/sign-in")
    await page.get_by_label("Admin token").fill(token)
    await page.get_by_role("button", name="Sign in").click()


@pytest_asyncio.fixture(scope="module")
async def context(browser: Browser, stack: Stack) -> AsyncIterator[BrowserContext]:
    """The signed-in browser context; every request it makes is logged (to check none leaves the gateway)."""
    ctx = await browser.new_context(viewport=_VIEWPORT)  # type: ignore[arg-type]
    ctx.on("request", lambda request: _REQUESTS.append(request.url))
    ctx.set_default_timeout(10_000)
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest_asyncio.fixture(scope="module")
async def page(context: BrowserContext, stack: Stack) -> AsyncIterator[Page]:
    tab = await context.new_page()
    await tab.goto(stack.url + "/sign-in")
    await _shot(tab, "sign-in")
    await _sign_in(tab, stack)
    await expect(tab).to_have_url(re.compile(r"/settings/webhooks$"))
    yield tab


async def _publish(stack: Stack, entity_id: str, event_type: str = "issue.created") -> str:
    answer = await stack.api.post(
        "/api/events",
        json={"event_type": event_type, "entity_id": entity_id, "data": {"current": {"title": "From the UI test"}}},
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["event_id"])


async def test_signed_out_pages_redirect_to_sign_in(browser: Browser, stack: Stack) -> None:
    ctx = await browser.new_context(viewport=_VIEWPORT)  # type: ignore[arg-type]
    try:
        anonymous = await ctx.new_page()
        for path in ("/settings/webhooks", "/settings/webhooks/deliveries", "/settings/webhooks/analytics"):
            await anonymous.goto(stack.url + path)
            await expect(anonymous).to_have_url(re.compile(r"/sign-in\?next=" + re.escape(path) + "$"))
        # /schema and the API answer a browser without a session 401, as before.
        assert (await anonymous.request.get(stack.url + "/schema")).status == 401
        assert (await anonymous.request.get(stack.url + "/api/stats")).status == 401
    finally:
        await ctx.close()


async def test_a_wrong_token_is_refused(browser: Browser, stack: Stack) -> None:
    ctx = await browser.new_context(viewport=_VIEWPORT)  # type: ignore[arg-type]
    try:
        tab = await ctx.new_page()
        await _sign_in(tab, stack, token="not-the-token")
        await expect(tab.get_by_role("alert")).to_contain_text("not the admin token")
        assert not [c for c in await ctx.cookies() if c["name"] == "turbohooks_session"]
        await tab.goto(stack.url + "/settings/webhooks")
        await expect(tab).to_have_url(re.compile(r"/sign-in"))
    finally:
        await ctx.close()


async def test_signed_in_the_empty_state_says_what_to_do(page: Page, context: BrowserContext) -> None:
    session = next(c for c in await context.cookies() if c["name"] == "turbohooks_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    await expect(page.locator(".empty")).to_contain_text("No subscriptions yet")
    await expect(page.locator(".empty")).to_contain_text("turbohooks simulate")


async def test_a_refused_form_shows_the_error_beside_the_field_and_saves_nothing(page: Page, stack: Stack) -> None:
    await page.goto(stack.url + "/settings/webhooks/new")
    await page.get_by_label("Name", exact=True).fill("refused")
    await page.get_by_label("Destination URL").fill("ftp://example.com/hook")
    await page.locator("summary", has_text="issue").first.click()
    await page.get_by_label("issue.created").check()
    await page.get_by_role("button", name="Create subscription").click()
    url_error = page.locator("#err-url")
    await expect(url_error).to_be_visible()
    await expect(page.get_by_label("Destination URL")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label("Name", exact=True)).to_have_value("refused")  # what was typed is kept
    listed = (await stack.api.get("/api/subscriptions")).json()
    assert listed["total"] == 0


async def test_create_a_subscription_through_the_form(page: Page, stack: Stack) -> None:
    await page.goto(stack.url + "/settings/webhooks/new")
    await page.get_by_label("Name", exact=True).fill("ui-orders")
    await page.get_by_label("Destination URL").fill(stack.receiver.url + "/hook")
    await page.locator("summary", has_text="issue").first.click()
    await page.get_by_label("issue.created").check()
    await page.get_by_label("Custom headers").fill("X-Team: platform")
    await page.get_by_label("Retry schedule (seconds)").fill("0.2, 0.2")
    await page.get_by_label("Max in flight").fill("4")
    await _shot(page, "subscription-form")
    await page.get_by_role("button", name="Create subscription").click()
    secret = page.locator("#secret")
    await expect(secret).to_contain_text("whsec_")
    listed = (await stack.api.get("/api/subscriptions")).json()
    assert listed["total"] == 1
    sub = listed["items"][0]
    assert sub["name"] == "ui-orders" and sub["event_types"] == ["issue.created"]
    assert sub["headers"] == {"X-Team": "platform"} and sub["retry_schedule"] == [0.2, 0.2]
    assert sub["max_in_flight"] == 4
    _STATE["sub"] = sub["id"]
    # The secret is shown this once: the page read again does not show it.
    await page.reload()
    await expect(page.locator("#secret")).to_have_count(0)


async def test_the_test_button_shows_status_latency_and_body(page: Page, stack: Stack) -> None:
    before = len(stack.receiver.received)
    await page.goto(f"{stack.url}/settings/webhooks/{_STATE['sub']}")
    await page.get_by_role("button", name="Send a test event").click()
    await expect(page.locator("#test-status")).to_have_text("200")
    await expect(page.locator("#test-latency")).to_contain_text("ms")
    await expect(page.locator("#test-body")).to_contain_text('"ok": true')
    assert len(stack.receiver.received) == before + 1


async def test_a_published_event_appears_in_the_log_without_a_reload(page: Page, stack: Stack) -> None:
    await page.goto(stack.url + "/settings/webhooks/deliveries")
    await expect(page.locator(".empty")).to_contain_text("No deliveries")
    await page.evaluate("window.__notReloaded = true")
    entity = f"ui-{uuid.uuid4().hex[:8]}"
    _STATE["event"] = await _publish(stack, entity)
    rows = page.locator("#deliveries tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("success")
    assert await page.evaluate("window.__notReloaded") is True
    await _shot(page, "deliveries")


async def test_an_attempt_shows_request_and_response(page: Page, stack: Stack) -> None:
    await page.locator("#deliveries tbody tr a").first.click()
    await expect(page.locator("#delivery-status")).to_have_text("success")
    body = page.locator(".request-body").first
    await expect(body).to_contain_text('"event_type": "issue.created"')  # pretty-printed JSON, not base64
    await expect(page.locator(".attempt").first).to_contain_text("x-team: platform", ignore_case=True)
    await expect(page.locator(".response-body").first).to_contain_text('"ok": true')
    await _shot(page, "delivery")


async def test_a_failed_delivery_is_retried_from_the_ui(page: Page, stack: Stack) -> None:
    stack.receiver.status = 400  # refused for good: no automatic retry
    await _publish(stack, f"ui-{uuid.uuid4().hex[:8]}")
    await page.goto(stack.url + "/settings/webhooks/deliveries?status=failed")
    failed = page.locator("#deliveries tbody tr")
    await expect(failed).to_have_count(1)
    await failed.locator("a").first.click()
    await expect(page.locator("#attempt-count")).to_have_text("1 attempt")
    await expect(page.locator("#delivery-status")).to_have_text("failed")
    stack.receiver.status = 200
    await page.get_by_role("button", name="Retry").click()
    await expect(page.get_by_role("status").first).to_contain_text("retry queued")
    await expect(page.locator("#attempt-count")).to_have_text("2 attempts")
    await expect(page.locator("#delivery-status")).to_have_text("success")
    await expect(page.locator(".attempt").first).to_contain_text("manual")


async def test_pause_and_resume(page: Page, stack: Stack) -> None:
    sub_id = _STATE["sub"]
    await page.goto(f"{stack.url}/settings/webhooks/{sub_id}")
    await page.get_by_role("button", name="Pause").click()
    await expect(page.locator("h1 .badge")).to_have_text("paused")
    assert (await stack.api.get(f"/api/subscriptions/{sub_id}")).json()["status"] == "paused"
    await page.get_by_role("button", name="Resume").click()
    await expect(page.locator("h1 .badge")).to_have_text("active")
    assert (await stack.api.get(f"/api/subscriptions/{sub_id}")).json()["status"] == "active"


async def test_the_audit_log_has_the_sign_ins_and_the_ui_sessions_actions(page: Page, stack: Stack) -> None:
    """Sign-ins (refused ones too) and what a signed-in session changes are audited as ``ui:<session>``."""
    entries = (await stack.api.get("/api/audit", params={"limit": 200})).json()["items"]
    sign_ins = [e for e in entries if e["action"] == "sign-in"]
    assert any(e["details"] == {"ok": False} and e["actor"] == "ui:anonymous" for e in sign_ins)
    signed = [e for e in sign_ins if e["details"] == {"ok": True}]
    assert signed and all(e["actor"].startswith("ui:") and e["actor"] != "ui:anonymous" for e in signed)
    paused = [e for e in entries if e["action"] == "pause" and e["target"].endswith(_STATE["sub"])]
    assert paused and paused[0]["actor"] in {e["actor"] for e in signed}, paused
    assert TOKEN not in str(entries)


async def test_an_action_without_the_csrf_token_is_refused(page: Page, stack: Stack) -> None:
    sub_id = _STATE["sub"]
    # The session cookie rides along (same context), the CSRF token does not.
    refused = await page.request.post(f"{stack.url}/settings/webhooks/{sub_id}/pause", form={"x": "1"})
    assert refused.status == 403
    wrong = await page.request.post(f"{stack.url}/settings/webhooks/{sub_id}/pause", form={"_csrf_token": "0" * 128})
    assert wrong.status == 403
    assert (await stack.api.get(f"/api/subscriptions/{sub_id}")).json()["status"] == "active"
    # The API keeps taking the bearer token from scripts, with no CSRF token.
    assert (await stack.api.get("/api/stats")).status_code == 200


async def test_replay_dry_run_then_real(page: Page, stack: Stack) -> None:
    sub_id = _STATE["sub"]
    dry = (await stack.api.post(f"/api/subscriptions/{sub_id}/replay", json={"since": "1h", "dry_run": True})).json()
    # Another test's poison messages may share the session's stream: listed, never sent.
    expected = dry["matched"] - dry["skipped"]
    assert expected >= 2
    await page.goto(f"{stack.url}/settings/webhooks/{sub_id}")
    await page.get_by_label("Since", exact=True).fill("1h")
    await page.get_by_role("button", name="Preview (dry run)").click()
    await expect(page.locator("#replay-preview")).to_contain_text(f"{expected} events would be sent")
    await _shot(page, "subscription", full_page=True)
    before = len(stack.receiver.received)
    await page.get_by_role("button", name="Replay", exact=True).click()
    await expect(page.locator("#replay-progress")).to_be_visible()
    await expect(page.locator("#replay-done")).to_contain_text(f"Replay queued {expected} events")

    async def delivered() -> bool:
        return len(stack.receiver.received) >= before + expected

    # In the whole suite the session's stream holds every test's issue.created events (150+): one by one,
    # each written ahead and recorded, they take longer than the handful of a run of this file alone.
    await wait_for(delivered, timeout=15 + 0.5 * expected, what="the replayed events to reach the receiver")


async def _settled_stats(stack: Stack) -> dict[str, Any]:
    """``/api/stats`` once two reads a moment apart agree (the replay's attempts are recorded)."""
    previous: dict[str, Any] | None = None
    for _ in range(50):
        current = (await stack.api.get("/api/stats", params={"window": "24h"})).json()["deliveries"]
        current.pop("since")  # the window's start moves with the clock
        if previous is not None and current == previous:
            return current  # type: ignore[no-any-return]
        previous = current
        await asyncio.sleep(0.2)
    raise AssertionError(f"the stats did not settle: {previous}")


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f} ms"


async def test_analytics_show_the_counts_of_the_api_stats(page: Page, stack: Stack) -> None:
    stats = await _settled_stats(stack)
    await page.goto(stack.url + "/settings/webhooks/analytics?window=24h")
    await expect(page.locator("#n-deliveries")).to_have_text(str(stats["deliveries"]))
    await expect(page.locator("#n-success")).to_have_text(str(stats["success"]))
    await expect(page.locator("#n-failed")).to_have_text(str(stats["failed"]))
    await expect(page.locator("#n-pending")).to_have_text(str(stats["pending"]))
    await expect(page.locator("#n-p95")).to_have_text(_ms(stats["latency_p95_ms"]))
    busiest = page.locator("#busiest tbody tr").first
    top = stats["most_active_subscriptions"][0]
    await expect(busiest).to_contain_text(top["name"])
    await expect(busiest).to_contain_text(str(top["deliveries"]))
    # The charts are drawn (Chart.js from the gateway) and read on hover.
    await expect(page.locator("#chart-outcomes")).to_be_visible()
    assert await page.evaluate("typeof Chart !== 'undefined' && Object.keys(Chart.instances).length >= 4")
    await _shot(page, "analytics", full_page=True)


async def test_live_events_with_click_through(page: Page, stack: Stack) -> None:
    await page.goto(stack.url + "/settings/webhooks/live")
    await page.get_by_label("Pattern").fill("issue.*")
    await page.get_by_role("button", name="Listen").click()
    await expect(page.locator("#live-status")).to_contain_text("listening on")
    entity = f"ui-live-{uuid.uuid4().hex[:6]}"
    event_id = await _publish(stack, entity)
    await _publish(stack, entity, event_type="comment.created")  # outside the pattern: not shown
    item = page.locator("#live-list li", has_text=entity)
    await expect(item).to_have_count(1)
    await expect(item).to_contain_text("issue.created")
    await _shot(page, "live")
    await item.get_by_role("link").click()
    await expect(page).to_have_url(re.compile(f"/settings/webhooks/events/{event_id}$"))
    await expect(page.locator("#envelope")).to_contain_text(f'"entity_id": "{entity}"')
    await expect(page.locator("table tbody tr").first).to_contain_text("ui-orders")
    await _shot(page, "event")


async def test_the_catalog_lists_every_type_with_its_subscriptions(page: Page, stack: Stack) -> None:
    await page.goto(stack.url + "/settings/webhooks/events")
    catalog = (await stack.api.get("/api/event-types")).json()
    await expect(page.locator("tr[id^='t-']")).to_have_count(len(catalog["items"]))
    await expect(page.locator("[id='t-issue.created']")).to_contain_text("ui-orders")
    await expect(page.locator("[id='t-project.created']")).to_contain_text("none")
    await _shot(page, "catalog")


async def test_the_subscriptions_table_and_phone_width(page: Page, stack: Stack) -> None:
    await page.goto(stack.url + "/settings/webhooks")
    row = page.locator("tbody tr", has_text="ui-orders")
    await expect(row).to_contain_text("active")
    await expect(row).to_contain_text("deliveries")
    await expect(row).to_contain_text("0 waiting")  # its health: the consumer's pending events
    await _shot(page, "subscriptions")
    # Keyboard: the first Tab reaches the skip link.
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.classList.contains('skip')")
    await page.set_viewport_size({"width": 390, "height": 844})
    try:
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        await page.evaluate("document.activeElement.blur()")
        await _shot(page, "subscriptions-phone")
    finally:
        await page.set_viewport_size(_VIEWPORT)  # type: ignore[arg-type]


async def test_a_filter_and_template_previewed_then_saved_through_the_form(page: Page, stack: Stack) -> None:
    name = f"ui-tpl-{uuid.uuid4().hex[:8]}"
    await _publish(stack, name)
    template = '{"title": {{ data.current.title|tojson }}, "id": "{{ entity_id }}"}'
    await page.goto(stack.url + "/settings/webhooks/new")
    await page.get_by_label("Name", exact=True).fill(name)
    await page.get_by_label("Destination URL").fill(stack.receiver.url + "/templated")
    await page.locator("summary", has_text="issue").first.click()
    await page.get_by_label("issue.created").check()
    await page.get_by_label("Filter (JSON)").fill('{"data.current.title": "From the UI test"}')
    await page.get_by_label("Payload template").fill(template)
    await page.get_by_label("Rate limit", exact=True).fill("50")
    await page.get_by_label("Redact fields").fill("email")
    preview = page.get_by_role("button", name="Preview", exact=True)
    await preview.click()
    await expect(page.locator("#preview-summary")).to_contain_text("would be sent")
    # The newest stored issue.created is the one just published: its exact body, rendered.
    await expect(page.locator(".preview-body").first).to_have_text(f'{{"title": "From the UI test", "id": "{name}"}}')
    await _shot(page, "subscription-preview", full_page=True)

    await page.get_by_label("Payload template").fill("{% if %}")
    await preview.click()
    await expect(page.locator("#preview-errors")).to_contain_text("template")
    await page.get_by_role("button", name="Create subscription").click()
    await expect(page.locator("#err-template")).to_contain_text("line 1")
    assert all(s["name"] != name for s in (await stack.api.get("/api/subscriptions")).json()["items"])

    await page.get_by_label("Payload template").fill(template)
    await page.get_by_role("button", name="Create subscription").click()
    await expect(page.locator("#secret")).to_contain_text("whsec_")
    sub = next(s for s in (await stack.api.get("/api/subscriptions")).json()["items"] if s["name"] == name)
    assert sub["template"] == template and sub["filters"] == {"data.current.title": "From the UI test"}
    assert sub["rate_limit"] == {"count": 50, "per": "second"} and sub["redact_fields"] == ["email"]
    assert sub["auto_recover"] is True and sub["ordering"] == "none"
    assert (await stack.api.delete(f"/api/subscriptions/{sub['id']}")).status_code == 204


async def test_the_api_docs_open_once_signed_in(page: Page, stack: Stack) -> None:
    await page.goto(stack.url + "/settings/webhooks")
    await page.get_by_role("link", name="API docs").click()
    # Swagger UI's bundle is large (1.7 MB of JavaScript to parse): give it time on a busy machine.
    await expect(page.locator(".swagger-ui .title").first).to_contain_text("turbohooks admin API", timeout=30_000)
    await _shot(page, "api-docs")


async def test_sign_out(page: Page, stack: Stack) -> None:
    await page.goto(stack.url + "/settings/webhooks")
    cookie = next(c for c in await page.context.cookies() if c["name"] == "turbohooks_session")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/sign-in$"))
    await page.goto(stack.url + "/settings/webhooks")
    await expect(page).to_have_url(re.compile(r"/sign-in\?next="))
    # The old cookie, sent again, no longer opens a page.
    answer = await page.request.get(
        stack.url + "/settings/webhooks", headers={"Cookie": f"turbohooks_session={cookie['value']}"}, max_redirects=0
    )
    assert answer.status == 303


async def test_no_request_left_the_gateway(stack: Stack) -> None:
    gateway = urlsplit(stack.url).netloc
    assert _REQUESTS, "the browser made no request"
    outside = sorted({url for url in _REQUESTS if urlsplit(url).netloc != gateway})
    assert not outside, outside
