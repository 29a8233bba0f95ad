"""``packaging/grafana/ollamapy.json`` is a Grafana dashboard over what ``/metrics`` really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ollamapy.testing.api import create_model

DASHBOARD = Path(__file__).resolve().parent.parent / "packaging" / "grafana" / "ollamapy.json"
METRIC = re.compile(r"\bollamapy_\w+")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def expressions(board: dict[str, Any]) -> list[str]:
    """Every PromQL text of the board: panel targets and the templating queries."""
    exprs = [target["expr"] for panel in board["panels"] for target in panel["targets"]]
    exprs += [var["definition"] for var in board["templating"]["list"] if var["type"] == "query"]
    return exprs


def test_dashboard_is_valid_grafana_json() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["title"] and board["panels"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"])


async def test_every_expression_names_an_exported_metric(fake_client: TestClient, tiny_gguf: Path) -> None:
    # a model loaded and a generation done, so that the labelled series exist too
    await create_model(fake_client, "tiny", tiny_gguf, template="{{ .Prompt }}")
    assert (await fake_client.post("/api/generate", json={"model": "tiny", "prompt": "hi", "stream": False})).status == 200
    exported: set[str] = set()
    for family in text_string_to_metric_families(await (await fake_client.get("/metrics")).text()):
        # a labelled family without children yet (no restarts so far) has no samples
        exported.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        exported.update(sample.name for sample in family.samples)
    board = json.loads(DASHBOARD.read_text())
    named = {name for expr in expressions(board) for name in METRIC.findall(expr)}
    assert named - exported == set()
    # the board shows what the endpoint picker reads, tokens/s and TTFT
    for metric in (
        "ollamapy_queued_requests",
        "ollamapy_running_requests",
        "ollamapy_kv_cache_utilization",
        "ollamapy_generated_tokens_total",
        "ollamapy_time_to_first_token_seconds_bucket",
    ):
        assert metric in named
