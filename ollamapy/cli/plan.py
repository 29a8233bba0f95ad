"""``ollamapy plan MODEL``: what a model needs and where the server would put it.

The server answers through ``POST /api/plan``, for its own probed devices or for an
inventory described in a JSON file (``--inventory``), so a user can ask "what would this
model need on two 24 GB cards?" on a machine without them:

    {"gpus": [{"vendor": "nvidia", "name": "RTX 4090", "total": "24 GiB", "compute": "8.9"},
              {"vendor": "nvidia", "name": "RTX 4090", "total": "24 GiB", "free": "20 GiB", "compute": "8.9"}],
     "system": {"total": "64 GiB", "free": "48 GiB"}}

Sizes are bytes or strings with a unit (GB = 10⁹, GiB = 2³⁰). ``free`` defaults to
``total``, ``system`` to the server's own memory, and ``compute`` (the CUDA compute
capability, on which automatic flash attention depends) to unknown.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ollamapy.api.client import Client, ClientError
from ollamapy.units import format_bytes

__all__ = ["plan_command", "render_plan"]


async def _request_plan(body: dict[str, Any]) -> dict[str, Any]:
    """Ask the server at ``OLLAMA_HOST``; its errors become ``click.ClickException`` (``Error: …``)."""
    try:
        async with Client() as client:
            return await client.plan(body)
    except ClientError as err:
        raise click.ClickException(str(err)) from err


def _grid() -> Table:
    table = Table.grid(padding=(0, 3))
    table.add_column(style="bold")
    table.add_column()
    return table


def _table(*headers: str) -> Table:
    table = Table(box=None, pad_edge=False, padding=(0, 3), header_style="bold")
    for header in headers:
        table.add_column(header)
    return table


def render_plan(plan: dict[str, Any], console: Console) -> None:
    """Print a ``/api/plan`` answer as readable tables."""
    est = plan["estimate"]
    inventory = plan["inventory"]
    placement = plan.get("placement")

    head = _grid()
    head.add_row("Model", plan["model"])
    head.add_row(
        "Context",
        f"{est['num_ctx']} tokens × {est['num_parallel']} parallel, batch {est['num_batch']}, "
        f"KV cache {est['kv_cache_type']}, flash attention {'on' if est['flash_attention'] else 'off'}",
    )
    console.print(head)

    console.print("\n[bold]Memory estimate[/bold]")
    memory = _grid()
    memory.add_row("Weights", f"{format_bytes(est['weights'])} ({est['block_count']} layers + output)")
    memory.add_row("KV cache", format_bytes(est["kv"]))
    memory.add_row("Compute graph", format_bytes(est["graph"]))
    memory.add_row("Projector", format_bytes(est["projector"]) if est["projector"] else "-")
    memory.add_row("Whole model on one GPU", f"{format_bytes(est['full_offload'])} (+ {format_bytes(est['reserve'])} kept free per GPU)")
    memory.add_row("Whole model on CPU", format_bytes(est["cpu_only"]))
    console.print(memory)

    console.print("\n[bold]Devices[/bold]")
    devices = _table("ID", "NAME", "VENDOR", "FREE", "TOTAL")
    for gpu in inventory["gpus"]:
        devices.add_row(gpu["id"], gpu["name"], gpu["vendor"], format_bytes(gpu["free"]), format_bytes(gpu["total"]))
    system = inventory["system"]
    devices.add_row("cpu", "system memory", "", format_bytes(system["free"]), format_bytes(system["total"]))
    console.print(devices)

    if placement is None:
        console.print(f"\n[bold]Placement[/bold]: does not fit\n{plan.get('reason', '')}")
        return
    console.print(f"\n[bold]Placement[/bold]: {placement['processor']}")
    summary = _grid()
    summary.add_row("Why", placement["reason"])
    summary.add_row("Layers on GPU", f"{placement['n_gpu_layers']}/{placement['layers_total']}")
    split = placement["split_mode"]
    if placement["tensor_split"]:
        split += f", tensor_split {', '.join(str(s) for s in placement['tensor_split'])}, main GPU {placement['main_gpu']}"
    summary.add_row("Split", split)
    summary.add_row("Size", f"{format_bytes(placement['size'])} ({format_bytes(placement['size_vram'])} in VRAM)")
    env = " ".join(f"{k}={v}" for k, v in placement["env"].items())
    summary.add_row("Environment", env or "-")
    console.print(summary)
    used = _table("DEVICE", "NAME", "LAYERS", "MEMORY")
    for device in placement["devices"]:
        used.add_row(device["id"], device["name"], str(device["layers"]), format_bytes(device["bytes"]))
    console.print()
    console.print(used)


@click.command("plan")
@click.argument("model")
@click.option("--num-ctx", type=click.IntRange(min=1), help="Context length per sequence (default: the model's, else the server's).")
@click.option("--parallel", "num_parallel", type=click.IntRange(min=1), help="Requests served at once (default: OLLAMA_NUM_PARALLEL).")
@click.option(
    "--inventory",
    "inventory_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Plan for the GPUs described in this JSON file instead of the server's.",
)
def plan_command(model: str, num_ctx: int | None, num_parallel: int | None, inventory_file: Path | None) -> None:
    """Show a model's memory estimate and where the server would load it."""
    body: dict[str, Any] = {"model": model}
    if num_ctx is not None:
        body["num_ctx"] = num_ctx
    if num_parallel is not None:
        body["num_parallel"] = num_parallel
    if inventory_file is not None:
        try:
            body["inventory"] = json.loads(inventory_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise click.ClickException(f"invalid inventory file {inventory_file}: {err}") from None
        if not isinstance(body["inventory"], dict):
            raise click.ClickException(f"invalid inventory file {inventory_file}: expected a JSON object")
    render_plan(asyncio.run(_request_plan(body)), Console())
