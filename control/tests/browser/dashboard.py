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
# The app the agent builds is served from its folder on port 3000.
SERVE = "mkdir -p /home/user/workspace/app && cd /home/user/workspace/app && exec python3 -m http.server 3000"
# Layout shifts not caused by the person (Chromium's Layout Instability API).
WATCH_SHIFTS = """
window.__shift = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (!e.hadRecentInput) window.__shift += e.value;
}).observe({ type: "layout-shift" });
"""
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
    page.fill("#create input[name=start]", SERVE)
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
    # Live use: memory sampled from Docker, next to the limit; no tasks yet.
    expect(row.locator("td.use")).to_contain_text(" / ")
    expect(row.locator("td.tasks-n")).to_have_text("–")
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

    # Before the agent: the preview (through the real edge) shows the app
    # folder's listing.
    frame = page.frame_locator("#preview")
    expect(frame.locator("body")).to_contain_text("Directory listing")

    # A task of 200+ events: they appear as a timeline, live (the sandbox
    # shows the task running meanwhile), nothing on the page jumps, and
    # markup in them stays text.
    page.evaluate(WATCH_SHIFTS)
    page.fill("#task-form textarea[name=prompt]", "make a chatty landing page slowly")
    page.select_option("#task-form select[name=agent]", "claude")
    page.click("#task-form button[type=submit]")
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("I will create index.html")
    expect(timeline).to_contain_text("step 200 of 200")
    expect(page.locator("#sandbox-usage")).to_contain_text("1 running")
    shift = page.evaluate("window.__shift")
    assert shift < 0.01, f"the page shifted by {shift} while events streamed in"
    # Scrolled along to the newest event.
    gap = page.evaluate("(() => { const t = document.querySelector('#timeline'); return t.scrollHeight - t.scrollTop - t.clientHeight; })()")
    assert gap < 60, f"the timeline is {gap} px above its newest event"
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
    assert timeline.locator("li").count() > 200
    expect(page.locator("#sandbox-usage")).to_contain_text("tasks –")

    # The preview loaded again when the task ended: the app's own text.
    expect(frame.locator("h1")).to_have_text("built by claude")

    # The file's diff, opened from the list, line by line as text.
    page.click("#changes-list li[data-path='index.html'] summary")
    diff = page.locator("#changes-list li[data-path='index.html'] .diff")
    expect(diff.locator(".add")).to_contain_text(["+<h1>built by claude</h1>"])
    expect(diff.locator(".head").first).to_contain_text("diff --git")
    assert diff.locator("h1").count() == 0
    page.screenshot(path=os.path.join(OUT, "sandbox.png"), full_page=True)

    # Files pane: browse into the app, view and edit the page, upload one.
    files = page.locator("#files-list")
    files.locator("li[data-name='app'] button").click()
    expect(page.locator("#files-path")).to_contain_text("app")
    files.locator("li[data-name='index.html'] button").click()
    expect(page.locator("#file-name")).to_have_text("app/index.html")
    expect(page.locator("#file-text")).to_have_value("<h1>built by claude</h1>\n")
    # The app's server (python's http.server) dates files to the second and
    # answers a revalidation with 304 when the file is no newer than that:
    # an edit within the second the agent wrote the file would be served
    # stale. Edit in the next second.
    page.wait_for_timeout(1100)
    page.fill("#file-text", "<h1>edited in the dashboard</h1>\n")
    page.click("#file-form button[type=submit]")
    expect(page.locator("#file-note")).to_contain_text("saved")
    got = api("GET", f"/v1/sandboxes/{sid}/files?path=app/index.html")
    assert got["content"] == "<h1>edited in the dashboard</h1>\n", got
    page.click("#preview-tabs button")
    expect(frame.locator("h1")).to_have_text("edited in the dashboard")
    page.set_input_files("#upload", files=[{"name": "notes <b>.txt", "mimeType": "text/plain", "buffer": b"uploaded \x00 bytes"}])
    expect(files.locator("li[data-name='notes <b>.txt']")).to_be_visible()
    assert files.locator("b").count() == 0
    raw = urllib.request.urlopen(
        urllib.request.Request(
            BASE + f"/v1/sandboxes/{sid}/files?path=app/notes%20%3Cb%3E.txt&raw=true",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ),
        timeout=30,
    ).read()
    assert raw == b"uploaded \x00 bytes", raw
    # A CRLF file saved unedited keeps its line endings.
    api("PUT", f"/v1/sandboxes/{sid}/files", {"path": "app/dos.txt", "content": "a\r\nb\r\n"})
    page.locator("#files-path button", has_text="app").click()
    files.locator("li[data-name='dos.txt'] button").click()
    expect(page.locator("#file-name")).to_have_text("app/dos.txt")
    page.click("#file-form button[type=submit]")
    expect(page.locator("#file-note")).to_contain_text("saved")
    assert api("GET", f"/v1/sandboxes/{sid}/files?path=app/dos.txt")["content"] == "a\r\nb\r\n"

    # Revert puts the workspace back.
    page.once("dialog", lambda d: d.accept())
    page.click("#revert")
    expect(timeline).to_contain_text("reverted")
    listing = api("GET", f"/v1/sandboxes/{sid}/files?path=app")
    names = [e["name"] for e in listing.get("entries", [])]
    assert "index.html" not in names, names
    expect(frame.locator("body")).to_contain_text("Directory listing")

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
    expect(page.locator("#sandbox-title")).to_have_text(sid)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the sandbox view is {width} px wide at 390"
    page.screenshot(path=os.path.join(OUT, "sandbox-390.png"), full_page=True)
    page.once("dialog", lambda d: d.accept())
    page.click("[data-action=purge]")
    expect(page.locator("#fleet")).to_be_visible()
    expect(row).to_have_count(0)

    # A private sandbox: the frame gets a minted preview token (through the
    # edge), and the button copies a link that carries one. The frame opens
    # before the app listens: the edge's page tries again by itself.
    private = api("POST", "/v1/sandboxes", {"ports": [3000], "start": SERVE, "public": False})
    pid = private["id"]
    try:
        api("PUT", f"/v1/sandboxes/{pid}/files", {"path": "app/index.html", "content": "<h1>private app</h1>"})
        page.goto(BASE + f"/ui/#/s/{pid}")
        expect(page.locator("#sandbox-title")).to_have_text(pid)
        expect(frame.locator("h1")).to_have_text("private app")
        page.click("[data-action=link]")
        expect(page.locator("#sandbox-error")).to_contain_text(f"Preview link (copied): http://s-{pid}-3000.")
        link = page.locator("#sandbox-error").inner_text().split(": ", 1)[1]
        assert "?berth_token=" in link, link
    finally:
        api("POST", f"/v1/sandboxes/{pid}/purge")

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
