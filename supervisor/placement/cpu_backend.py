"""The CPU variant of llama.cpp this server's runners load, chosen once when the server starts.

The choice is made by ``python -m ollamapy.runner.backends`` (the front never loads
llama.cpp): it checks the installed variants best first in child processes, or reads the
choice cached for this build and CPU, and prints it as JSON. It runs in the background, so
the server listens at once; runner starts wait for it. Its ``env`` goes into every
runner's environment, so runners load that variant without choosing again, and its name
is the ``cpu_backend`` of their placement on ``/api/ps``. When the probe fails, runners
choose by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from ollamapy.supervisor.placement.plan import Placement

__all__ = ["CpuBackendChoice", "CpuBackendProbe"]

log = logging.getLogger("ollamapy.server")

_PROBE = (sys.executable, "-m", "ollamapy.runner.backends")


@dataclass(frozen=True)
class CpuBackendChoice:
    """What the probe found."""

    name: str
    summary: str
    env: dict[str, str]
    """What a runner's environment needs to load this variant."""

    def apply(self, placement: Placement) -> Placement:
        """``placement`` with this variant: its name shown, its environment passed on."""
        return dataclasses.replace(placement, cpu_backend=self.name, env={**placement.env, **self.env})


class CpuBackendProbe:
    """The server's one probe; ``start`` it with the server, ``await result()`` before a runner starts."""

    def __init__(self, command: Sequence[str] = _PROBE) -> None:
        self._command = list(command)
        self._task: asyncio.Task[CpuBackendChoice | None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._probe(), name="cpu-backend-probe")

    @property
    def known(self) -> CpuBackendChoice | None:
        """The choice when the probe has finished with one, else None (never waits)."""
        if self._task is None or not self._task.done() or self._task.cancelled():
            return None
        return self._task.result()

    async def result(self) -> CpuBackendChoice | None:
        """The choice (starting the probe if it was not), or None when it failed."""
        self.start()
        assert self._task is not None
        return await asyncio.shield(self._task)

    async def stop(self) -> None:
        """Cancel a probe still running (its child is killed)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _probe(self) -> CpuBackendChoice | None:
        process = await asyncio.create_subprocess_exec(
            *self._command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            out, err = await process.communicate()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise
        try:
            if process.returncode != 0:
                raise ValueError(f"exit status {process.returncode}")
            data = json.loads(out.decode().strip().splitlines()[-1])
            choice = CpuBackendChoice(name=str(data["name"]), summary=str(data["summary"]), env={str(k): str(v) for k, v in data["env"].items()})
        except (ValueError, IndexError, KeyError, AttributeError) as exc:
            tail = err.decode(errors="replace").strip().splitlines()
            log.warning("cpu backend: the probe failed (%s%s); runners choose by themselves", exc, f": {tail[-1]}" if tail else "")
            return None
        log.info("cpu backend: %s", choice.summary)
        return choice
