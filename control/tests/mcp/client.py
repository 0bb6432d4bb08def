"""berth's MCP server driven by the official MCP Python SDK (PyPI `mcp`).

Run by control/tests/mcp.rs against a real control whose default image
carries the test agents: client.py URL TOKEN. Each step asserts what an
agent would rely on; the first failure exits non-zero.
"""

import json
import sys

import anyio
import httpx2
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client

URL, TOKEN = sys.argv[1], sys.argv[2]

TOOLS = {
    "create_sandbox", "list_sandboxes", "exec", "write_file", "read_file", "list_files",
    "run_task", "task_status", "preview_url", "sleep_sandbox", "stop_sandbox", "delete_sandbox",
}


def client(token):
    return httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx2.Timeout(30.0, read=300.0),
    )


async def refused(token):
    """A bad token: the server answers 401 before any MCP happens."""
    http = client(token)
    try:
        async with http, streamable_http_client(URL, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                try:
                    await session.initialize()
                except MCPError:
                    return True
                return False
    except BaseException:  # the transport's task group may wrap the error
        return True


def ok(result):
    assert not result.is_error, result.content[0].text if result.content else result
    return result.structured_content


def tool_error(result):
    assert result.is_error, result
    body = result.structured_content
    assert body and "error" in body, result.content
    return body["error"]


async def main():
    assert await refused("not-the-token-at-all-1234"), "a bad token was let in"

    http = client(TOKEN)
    async with http, streamable_http_client(URL, http_client=http) as (read, write):
        async with ClientSession(read, write) as s:
            init = await s.initialize()
            assert init.server_info.name == "berth", init
            assert init.capabilities.tools is not None and init.capabilities.resources is not None

            tools = {t.name: t for t in (await s.list_tools()).tools}
            assert set(tools) == TOOLS, sorted(tools)
            for t in tools.values():
                schema = t.input_schema
                assert schema["type"] == "object", (t.name, schema)
                assert len(t.description) > 30, t.name
            assert set(tools["exec"].input_schema["required"]) == {"sandbox_id", "command"}
            assert "prompt" in tools["run_task"].input_schema["properties"]

            made = ok(await s.call_tool("create_sandbox", {"ports": [3000], "env": {"FAKE_KEY": "from-mcp"}}))
            sid = made["id"]
            assert made["ports"] == [3000], made
            listed = ok(await s.call_tool("list_sandboxes", {}))
            assert sid in [x["id"] for x in listed["sandboxes"]], listed

            out = ok(await s.call_tool("exec", {"sandbox_id": sid, "command": "echo hi; echo oops >&2; exit 3"}))
            assert (out["exit_code"], out["stdout"], out["stderr"]) == (3, "hi\n", "oops\n"), out
            assert out["truncated"] is False and out["timed_out"] is False, out

            wrote = ok(await s.call_tool("write_file", {"sandbox_id": sid, "path": "app/notes/hello.txt", "content": "héllo\n"}))
            assert wrote["size"] == len("héllo\n".encode()), wrote
            got = ok(await s.call_tool("read_file", {"sandbox_id": sid, "path": "app/notes/hello.txt"}))
            assert got["content"] == "héllo\n" and got["encoding"] == "utf8", got
            entries = ok(await s.call_tool("list_files", {"sandbox_id": sid, "path": "app/notes"}))["entries"]
            assert [(e["name"], e["type"]) for e in entries] == [("hello.txt", "file")], entries

            # Resources: a workspace file, read-only, by its URI.
            templates = [t.uri_template for t in (await s.list_resource_templates()).resource_templates]
            assert "berth://sandboxes/{id}/files/{path}" in templates, templates
            res = await s.read_resource(f"berth://sandboxes/{sid}/files/app/notes/hello.txt")
            assert res.contents[0].text == "héllo\n", res

            # A task, with its events as progress notifications.
            notes = []

            async def progress(value, total, message):
                notes.append((value, message))

            done = ok(await s.call_tool(
                "run_task",
                {"sandbox_id": sid, "prompt": "make a landing page", "agent": "claude"},
                progress_callback=progress,
            ))
            assert done["status"] == "succeeded", done
            assert done["message"] == "Created index.html with a heading.", done
            assert {"path": "index.html", "change": "added"} in done["files_changed"], done
            assert done["cost_usd"] == 0.0421, done
            messages = [m for _, m in notes]
            assert "I will create index.html (key: from-mcp)." in messages, messages
            assert "tool Write" in messages and messages[-1] == "done: succeeded", messages
            values = [v for v, _ in notes]
            assert values == sorted(values) and len(set(values)) == len(values), values

            status = ok(await s.call_tool("task_status", {"sandbox_id": sid, "task_id": done["task_id"]}))
            assert status["status"] == "succeeded", status
            log = await s.read_resource(f"berth://sandboxes/{sid}/tasks/{done['task_id']}/events")
            lines = [json.loads(line) for line in log.contents[0].text.splitlines()]
            assert lines[-1]["event"] == "done", lines[-1]
            listed = [str(r.uri) for r in (await s.list_resources()).resources]
            assert f"berth://sandboxes/{sid}/tasks/{done['task_id']}/events" in listed, listed

            # Bad arguments and unknown ids: tool errors with berth's codes.
            err = tool_error(await s.call_tool("exec", {"sandbox_id": sid}))
            assert err["code"] == "invalid_request" and "command" in err["message"], err
            err = tool_error(await s.call_tool("create_sandbox", {"ports": "three thousand"}))
            assert err["code"] == "invalid_request", err
            try:
                await s.call_tool("no_such_tool", {})
                raise AssertionError("an unknown tool was called")
            except MCPError:
                pass
            err = tool_error(await s.call_tool("exec", {"sandbox_id": sid, "command": "true", "timeout_s": 10**9}))
            assert err["code"] == "invalid_request", err
            err = tool_error(await s.call_tool("read_file", {"sandbox_id": sid, "path": "../etc/passwd"}))
            assert err["code"] in ("invalid_path", "invalid_request"), err
            err = tool_error(await s.call_tool("task_status", {"sandbox_id": sid, "task_id": "01J0000000000000000000000X"}))
            assert err["code"] == "not_found", err
            err = tool_error(await s.call_tool("stop_sandbox", {"sandbox_id": "nope"}))
            assert err["code"] in ("not_found", "invalid_request"), err
            try:
                await s.read_resource("berth://elsewhere/x")
                raise AssertionError("an unknown resource was read")
            except MCPError:
                pass

            # Previews: a private sandbox's URL carries a minted token.
            public = ok(await s.call_tool("preview_url", {"sandbox_id": sid}))
            assert public["urls"]["3000"].startswith(f"http://s-{sid}-3000."), public
            private = ok(await s.call_tool("create_sandbox", {"ports": [3000], "public": False}))
            url = ok(await s.call_tool("preview_url", {"sandbox_id": private["id"], "port": 3000}))
            assert "?berth_token=" in url["urls"]["3000"], url

            # Light sleep: frozen, and any use wakes it (an exec here).
            asleep = ok(await s.call_tool("sleep_sandbox", {"sandbox_id": sid}))
            assert asleep["status"] == "asleep", asleep
            err = tool_error(await s.call_tool("sleep_sandbox", {"sandbox_id": "nope"}))
            assert err["code"] in ("not_found", "invalid_request"), err
            woke = ok(await s.call_tool("exec", {"sandbox_id": sid, "command": "echo awake"}))
            assert woke["stdout"] == "awake\n" and woke["exit_code"] == 0, woke

            stopped = ok(await s.call_tool("stop_sandbox", {"sandbox_id": sid}))
            assert stopped["status"] in ("stopped", "stopping"), stopped
            for x in (sid, private["id"]):
                ok(await s.call_tool("delete_sandbox", {"sandbox_id": x}))
    print("mcp: ok")


anyio.run(main)
