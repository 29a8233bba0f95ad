"""``/dashboard`` in headless Chromium against a live server with a real model generating:
the page renders without console errors, lists the model with the numbers ``/api/ps`` gives,
and a screenshot is saved (``dashboard.png`` in the test's temporary directory).

Chromium is driven over the DevTools protocol on its websocket with aiohttp."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

pytestmark = [pytest.mark.serving, pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")]

ENDLESS = {"type": "array", "items": {"type": "boolean"}, "minItems": 100_000}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--window-size=1400,800",
]
# Resolves once the page has rendered ``count`` polls (the script counts them on <body>).
UPDATES = """new Promise(resolve => {
  const done = () => Number(document.body.dataset.updates || 0) >= %d;
  if (done()) return resolve(true);
  new MutationObserver((_, observer) => { if (done()) { observer.disconnect(); resolve(true); } })
    .observe(document.body, {attributes: true, attributeFilter: ["data-updates"]});
})"""
ROWS = """Array.from(document.querySelectorAll("#models tbody tr[data-model]")).map(row => {
  const out = {model: row.dataset.model};
  for (const td of row.querySelectorAll("td")) out[td.dataset.field] = {text: td.textContent, value: td.dataset.value};
  return out;
})"""


class DevTools:
    """One page of a Chromium, over the browser's DevTools websocket (flat sessions)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.errors: list[str] = []
        self.session: str | None = None
        self.loaded = asyncio.Event()
        """Set by the page's load event (``navigate`` waits for it)."""
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if "id" in data:
                self.pending.pop(data["id"]).set_result(data)
            else:
                self._event(data["method"], data.get("params", {}))

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Page.loadEventFired":
            self.loaded.set()
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            self.errors.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            self.errors.append("exception: " + json.dumps(params["exceptionDetails"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append("log: " + params["entry"]["text"] + " " + params["entry"].get("url", ""))

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        message: dict[str, Any] = {"id": number, "method": method, "params": params}
        if self.session is not None and not method.startswith("Target."):
            message["sessionId"] = self.session
        future = self.pending[number] = asyncio.get_running_loop().create_future()
        await self.ws.send_str(json.dumps(message))
        answer = await asyncio.wait_for(future, 60)
        assert "error" not in answer, answer
        return dict(answer["result"])

    async def navigate(self, url: str) -> None:
        """Open ``url`` and wait until the page has loaded (its script has run)."""
        self.loaded.clear()
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(self.loaded.wait(), 60)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"]["value"]


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[DevTools]:
    """A headless Chromium with a blank page attached, closed afterwards."""
    process = await asyncio.create_subprocess_exec(
        "chromium",
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        async with asyncio.timeout(60):
            while not (match := re.search(rb"DevTools listening on (ws://\S+)", await process.stderr.readline())):
                assert not process.stderr.at_eof(), "chromium exited before listening"
        async with aiohttp.ClientSession() as session, session.ws_connect(match[1].decode(), max_msg_size=0) as ws:
            tools = DevTools(ws)
            target = await tools.send("Target.createTarget", url="about:blank")
            tools.session = (await tools.send("Target.attachToTarget", targetId=target["targetId"], flatten=True))["sessionId"]
            for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
                await tools.send(domain)
            yield tools
            tools.reader.cancel()
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


@pytest.fixture
def client(two_slot_client: TestClient) -> TestClient:
    return two_slot_client


async def test_dashboard_lists_the_generating_model_as_api_ps_does(client: TestClient, tmp_path: Path) -> None:
    body = {"model": "tiny", "prompt": "hello", "format": ENDLESS, "options": {"num_predict": 100_000}}
    stream = await client.post("/api/generate", json=body)
    assert json.loads(await stream.content.readline())["done"] is False  # loaded and generating
    async with chromium(tmp_path / "profile") as page:
        await page.navigate(str(client.make_url("/dashboard")))
        await page.evaluate(UPDATES % 2)
        rows = await page.evaluate(ROWS)
        shown = {field: await page.evaluate(f'document.getElementById("{field}").textContent') for field in ("running", "queued", "loaded")}
        ps = (await (await client.get("/api/ps")).json())["models"]
        shot = await page.send("Page.captureScreenshot", format="png")
        (tmp_path / "dashboard.png").write_bytes(base64.b64decode(shot["data"]))
        errors = list(page.errors)
    stream.close()

    assert errors == []
    assert [row["model"] for row in rows] == [m["name"] for m in ps] == ["tiny:latest"]
    row, entry = rows[0], ps[0]
    assert int(row["size"]["value"]) == entry["size"] and int(row["size_vram"]["value"]) == entry["size_vram"]
    assert row["context_length"]["text"] == str(entry["context_length"])
    assert row["processor"]["text"] == entry["placement"]["processor"]
    assert row["slots"]["text"] == "1 / 2" and float(row["kv"]["value"]) > 0
    assert shown == {"running": "1", "queued": "0", "loaded": "1"}
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
