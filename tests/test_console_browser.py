"""The console in a real browser: Debian's Chromium driven by Playwright (the system's browser; nothing is
downloaded). A person's path from sign-in to sign-out, the refusals, the page without JavaScript, on a
phone in dark mode and by keyboard; no Content-Security-Policy violation on the way. Each page's
screenshot is kept under tests/artifacts/console/ (the README shows two of them, from docs/)."""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from consoling import site  # noqa: F401
from sqlalchemy import update

from reconciler.store.models import AgentStatus
from reconciler.store.state_store import connect

CHROMIUM = os.environ.get("RECONCILER_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's (apt-get install chromium) or set "
                "RECONCILER_TEST_CHROMIUM; scripts/test installs it when run as root", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

ARTIFACTS = Path(__file__).parent / "artifacts" / "console"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # its path is printed at the end of the run (conftest.py)
    with playwright.sync_playwright() as driver:
        # As root (CI, containers) Chromium's own sandbox cannot start.
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=args)
        # A busy machine (CI shares two cores) may take a while for a page; nothing here waits on purpose.
        playwright.expect.set_options(timeout=20_000)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, site, request):
    context = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    tab.csp_violations = []
    tab.on("console", lambda message: tab.csp_violations.append(message.text)
           if "Content Security Policy" in message.text else None)
    yield tab
    assert tab.csp_violations == [], tab.csp_violations
    context.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page, key: str) -> None:
    page.goto("/ui/agents")
    page.get_by_test_id("api-key").fill(key)
    page.get_by_test_id("sign-in").click()
    page.wait_for_url("**/ui/agents")


def test_a_persons_path_through_the_console(page, site):
    expect = playwright.expect
    # Signing in: the agents page sends an unsigned-in person to the sign-in form.
    page.goto("/ui/agents")
    expect(page).to_have_url(re.compile(r"/ui/sign-in$"))
    shot(page, "sign-in")
    sign_in(page, site.keys["all"])
    rows = page.get_by_test_id("agent-row")
    expect(rows).to_have_count(3)
    expect(page.locator('[data-agent="support/triage"]')).to_contain_text("ready")
    expect(page.locator('[data-agent="support/batch"]')).to_contain_text("SandboxWarmPool changed")
    shot(page, "agents")

    # Filtering by label, then by text.
    page.get_by_test_id("filter-label").fill("team=support")
    page.get_by_test_id("filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-agent", "support/triage")
    page.get_by_test_id("filter-label").fill("")
    page.get_by_test_id("filter-text").fill("claude")
    page.get_by_test_id("filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-agent", "code/reviewer")

    # An agent and its prompt.
    page.goto("/ui/agents")
    page.locator('[data-agent="support/triage"] a', has_text="triage").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("triage")
    expect(page.get_by_test_id("prompt")).to_contain_text("Never promise a refund.")
    shot(page, "agent")

    # A sync run and its agent changes, the object diffs folded until opened.
    page.get_by_role("link", name="Syncs").click()
    expect(page.get_by_test_id("run-row")).to_have_count(3)
    shot(page, "syncs")
    page.get_by_role("link", name=f"#{site.runs['prompt']}", exact=True).click()
    triage = page.get_by_test_id("agent-change").filter(has_text="support/triage")
    expect(triage).to_contain_text("gpt-4o-mini → gpt-4.1")
    diff = triage.locator("details.object").first
    expect(diff.locator("pre")).not_to_be_visible()
    diff.locator("summary").click()
    expect(diff.locator("pre")).to_be_visible()
    shot(page, "run")

    # Chat: the reply streams in token by token through the stream route.
    site.upstream.token_delay = 0.15
    try:
        page.goto("/ui/agents/support/triage/chat")
        page.get_by_test_id("chat-input").fill("where is my parcel today")
        page.evaluate("""() => {
            window.seen = [];
            new MutationObserver(() => {
                const reply = document.querySelector('[data-testid=chat-reply]');
                if (reply && reply.textContent) window.seen.push(reply.textContent);
            }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
        }""")
        with page.expect_response(lambda r: r.url.endswith("/chat/stream")) as streamed:
            page.get_by_test_id("chat-send").click()
        assert streamed.value.headers["content-type"].startswith("text/event-stream")
        final = "echo: where is my parcel today"
        expect(page.get_by_test_id("chat-reply")).to_have_text(final)
    finally:
        site.upstream.token_delay = 0.0
    seen = page.evaluate("window.seen")
    partial = sorted({text for text in seen if text != final}, key=len)
    assert len(partial) >= 2 and all(final.startswith(text) for text in partial), seen
    expect(page).to_have_url(re.compile(r"session=[0-9a-f-]{36}$"))
    session = page.url.rsplit("session=", 1)[1]
    expect(page.get_by_test_id("session-note")).to_contain_text(f"session {session[:8]}")
    # Continuing the session: the next reply answers in the same session.
    page.get_by_test_id("chat-input").fill("and tomorrow")
    page.get_by_test_id("chat-send").click()
    expect(page.get_by_test_id("chat-reply")).to_have_text("echo: and tomorrow")
    expect(page.locator("#messages li")).to_have_count(4)
    assert page.url.endswith(session)
    shot(page, "chat")

    # The session under Sessions, with each message's model, tokens and finish reason.
    page.get_by_role("link", name="Sessions").click()
    shot(page, "sessions")
    page.get_by_test_id("session-row").filter(has_text="support/triage").get_by_role(
        "link", name=session[:8]).click()
    messages = page.get_by_test_id("session-message")
    expect(messages).to_have_count(4)
    expect(messages.nth(1)).to_contain_text("echo: where is my parcel today")
    expect(messages.nth(1)).to_contain_text("stop")
    shot(page, "session")

    # Signing out.
    page.get_by_test_id("sign-out").click()
    expect(page).to_have_url(re.compile(r"/ui/sign-in$"))
    page.goto("/ui/agents")
    expect(page).to_have_url(re.compile(r"/ui/sign-in$"))


def test_a_wrong_key_is_refused_and_a_scoped_key_sees_no_other_namespace(page, site):
    expect = playwright.expect
    page.goto("/ui/sign-in")
    page.get_by_test_id("api-key").fill("ark_not-a-key-of-this-console")
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("sign-in-error")).to_have_text("That key is not known here.")
    shot(page, "sign-in-refused")
    page.get_by_test_id("api-key").fill(site.keys["support"])
    page.get_by_test_id("sign-in").click()
    rows = page.get_by_test_id("agent-row")
    expect(rows).to_have_count(2)
    assert [rows.nth(i).get_attribute("data-agent") for i in range(2)] == ["support/batch", "support/triage"]
    answer = page.goto("/ui/agents/code/reviewer")
    assert answer.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    shot(page, "scoped-not-found")


def test_without_javascript_the_chat_form_posts_and_shows_the_reply(browser, site):
    context = browser.new_context(base_url=site.url, java_script_enabled=False)
    page = context.new_page()
    sign_in(page, site.keys["all"])
    page.goto("/ui/agents/support/triage/chat")
    page.get_by_test_id("chat-input").fill("no scripts here")
    page.get_by_test_id("chat-send").click()
    playwright.expect(page.get_by_test_id("chat-reply")).to_have_text("echo: no scripts here")
    assert "session=" in page.url
    shot(page, "chat-without-javascript")
    context.close()


def test_on_a_phone_in_dark_mode_nothing_overflows_and_the_keyboard_reaches_everything(browser, site):
    context = browser.new_context(base_url=site.url, viewport={"width": 390, "height": 844}, color_scheme="dark",
                                  is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto("/ui/sign-in")
    # By keyboard: the key field has focus on arrival and Enter signs in; on a page, the first Tab reaches
    # the skip link, which takes the focus to the content.
    assert page.evaluate("document.activeElement.dataset.testid") == "api-key"
    page.keyboard.type(site.keys["all"])
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/agents")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(17, 20, 24)", background  # the dark palette
    for path in ("/ui/agents", "/ui/agents/support/triage", f"/ui/syncs/{site.runs['prompt']}"):
        page.goto(path)
        # The page is as wide as the phone: wide tables scroll inside their own box.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
    page.goto("/ui/agents")
    shot(page, "agents-phone-dark")
    context.close()


def test_with_javascript_the_agents_table_follows_what_the_watcher_records(page, site):
    sign_in(page, site.keys["all"])
    reviewer = page.locator('[data-agent="code/reviewer"]')
    playwright.expect(reviewer).to_contain_text("unknown")
    engine = connect(site.database)
    status = AgentStatus.__table__
    with engine.begin() as connection:  # what the watcher writes when the reviewer's Sandbox turns Ready
        connection.execute(update(status).where(status.c.namespace == "code", status.c.name == "reviewer")
                           .values(ready=True, detail="SandboxReady"))
    engine.dispose()
    # No reload: the table refreshes itself (every 2 s in these tests).
    playwright.expect(reviewer.locator(".badge.ok").first).to_have_text("ready", timeout=15_000)
