"""The dashboard in a real Chromium (Debian's, driven by Playwright).

Run by control/tests/dashboard.rs against a real control whose default image
carries the test agents: dashboard.py BASE TOKEN OUT_DIR. Every step asserts
what a person would see; a failing step exits non-zero with a screenshot.
"""

import json
import os
import sys
import urllib.request

from playwright.sync_api import expect, sync_playwright

BASE, TOKEN, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
INJECTED = "<script>window.pwned=1</script>"
WAIT = 60_000


def api(method, path, body=None):
    req = urllib.request.Request(
        BASE + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as res:
        text = res.read()
        return json.loads(text) if text else None


def main(page):
    page.set_default_timeout(WAIT)
    expect.set_options(timeout=WAIT)
    page.goto(BASE + "/")
    assert page.url.endswith("/ui/"), page.url

    # A bad token is refused, the real one signs in.
    expect(page.locator("#signin")).to_be_visible()
    page.fill("#token", "not-the-token-at-all")
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#signin-error")).to_have_text("That token is not valid.")
    expect(page.locator("#fleet")).to_be_hidden()
    page.fill("#token", TOKEN)
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#fleet")).to_be_visible()
    expect(page.locator("#live")).to_have_text("live")
    # The token is in this tab's sessionStorage, never in the URL.
    assert TOKEN not in page.url
    assert page.evaluate("sessionStorage.getItem('berth.token')") == TOKEN

    # Create from the form; the agent will print the env value it got.
    page.click("#new")
    page.fill("#create input[name=ports]", "3000")
    page.fill("#create textarea[name=env]", f"FAKE_KEY={INJECTED}")
    page.click("#create button[type=submit]")
    expect(page.locator("#sandbox")).to_be_visible()
    sid = page.locator("#sandbox-title").inner_text()
    assert len(sid) == 26, sid
    expect(page.locator("#sandbox-status")).to_have_text("running")

    # The fleet view lists it, live.
    page.click("a.brand")
    row = page.locator(f"#fleet-table tr[data-id='{sid}']")
    expect(row).to_be_visible()
    expect(row.locator(".status")).to_have_text("running")
    expect(row.locator("td.links a")).to_have_text("3000")
    page.screenshot(path=os.path.join(OUT, "fleet.png"), full_page=True)
    row.locator("a").first.click()
    expect(page.locator("#sandbox-title")).to_have_text(sid)

    # A command streams its output and its exit code.
    page.fill("#exec-form input[name=cmd]", "echo hello-from-exec; echo oops >&2; exit 3")
    page.click("#exec-form button[type=submit]")
    out = page.locator("#exec-output")
    expect(out).to_contain_text("hello-from-exec")
    expect(out).to_contain_text("oops")
    expect(out).to_contain_text("[exit 3")

    # A task: the events appear as a timeline, markup in them stays text.
    page.fill("#task-form textarea[name=prompt]", "make a landing page")
    page.select_option("#task-form select[name=agent]", "claude")
    page.click("#task-form button[type=submit]")
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("I will create index.html")
    expect(timeline).to_contain_text("Write")
    expect(timeline).to_contain_text("done: succeeded")
    expect(timeline).to_contain_text("Done: index.html shows a heading.")
    expect(timeline).to_contain_text(INJECTED)
    expect(timeline).to_contain_text("$0.0421")
    assert timeline.locator("script, h1, img").count() == 0
    assert page.evaluate("window.pwned") is None
    changes = page.locator("#changes")
    expect(changes).to_be_visible()
    expect(page.locator("#changes-list")).to_contain_text("index.html")
    expect(page.locator("#tasks li")).to_have_count(1)
    page.screenshot(path=os.path.join(OUT, "sandbox.png"), full_page=True)

    # Revert puts the workspace back.
    page.once("dialog", lambda d: d.accept())
    page.click("#revert")
    expect(timeline).to_contain_text("reverted")
    listing = api("GET", f"/v1/sandboxes/{sid}/files?path=.")
    names = [e["name"] for e in listing.get("entries", [])]
    assert "index.html" not in names, names

    # Stop: the status changes through the fleet stream.
    page.click("[data-action=stop]")
    expect(page.locator("#sandbox-status")).to_have_text("stopped")

    # 390 px wide: nothing runs off the side.
    page.set_viewport_size({"width": 390, "height": 844})
    page.click("a.brand")
    expect(row.locator(".status")).to_have_text("stopped")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the fleet view is {width} px wide at 390"
    page.screenshot(path=os.path.join(OUT, "fleet-390.png"), full_page=True)

    # Purge, confirmed: gone from the list.
    row.locator("a").first.click()
    page.once("dialog", lambda d: d.accept())
    page.click("[data-action=purge]")
    expect(page.locator("#fleet")).to_be_visible()
    expect(row).to_have_count(0)

    # Keyboard: the sign-out button is reachable and signs out.
    page.focus("#signout")
    page.keyboard.press("Enter")
    expect(page.locator("#signin")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('berth.token')") is None


with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path=os.environ.get("BERTH_CHROMIUM", "/usr/bin/chromium"),
        args=["--no-sandbox", "--disable-dev-shm-usage"],
    )
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # The dashboard's own errors (a preview frame with nothing behind it in
    # this test logs its own, from its own origin).
    page.on(
        "console",
        lambda m: m.type == "error"
        and (m.location or {}).get("url", "").startswith(BASE)
        # Answers the test provokes (the bad token's 401) are not errors.
        and not m.text.startswith("Failed to load resource")
        and errors.append(m.text),
    )
    try:
        main(page)
    except Exception:
        page.screenshot(path=os.path.join(OUT, "failure.png"), full_page=True)
        print("page errors:", errors, file=sys.stderr)
        raise
    finally:
        browser.close()
    # A strict CSP and clean code: nothing refused, nothing thrown.
    assert not errors, errors
    print("dashboard: ok")
