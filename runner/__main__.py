"""Entry point of a runner child: ``python -m ollamapy.runner --socket PATH``.

The load spec arrives as one JSON line on stdin. stdin stays open afterwards as a lifeline:
when it reaches EOF the front process is gone (or wants this runner gone), and the runner
exits. Together with the parent-death signal this means a runner never outlives its front
process, even one that was SIGKILLed.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import signal
import sys
import threading

__all__ = ["main"]

log = logging.getLogger("ollamapy.runner")

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int | None) -> None:
    """Ask Linux to SIGKILL us when the parent dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if parent_pid is not None and os.getppid() != parent_pid:
        log.error("error: parent process %d is gone", parent_pid)
        os._exit(1)


def _watch_stdin() -> None:
    """Exit the whole process when stdin (a pipe from the front) reaches EOF."""
    while os.read(sys.stdin.fileno(), 4096):
        pass
    log.info("front process closed the runner's stdin, exiting")
    logging.shutdown()
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, read the spec, guard against orphaning, then serve."""
    parser = argparse.ArgumentParser(prog="python -m ollamapy.runner")
    parser.add_argument("--socket", required=True, help="Unix socket path to listen on")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit at once if this is no longer the parent")
    args = parser.parse_args(argv)

    # llama.cpp and friends sometimes print to stdout; keep all output on the one relayed stream.
    os.dup2(2, 1)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    _die_with_parent(args.parent_pid)

    # Imported late: loading llama_cpp takes a while and the parent check should not wait.
    from ollamapy.api.runner_protocol import LoadSpec

    from .engine import BatchEngine
    from .server import serve

    spec = LoadSpec.model_validate_json(sys.stdin.buffer.readline())
    threading.Thread(target=_watch_stdin, name="stdin-watchdog", daemon=True).start()
    try:
        asyncio.run(serve(BatchEngine(), spec, args.socket))
    except Exception:
        log.exception("error: runner failed")
        logging.shutdown()
        os._exit(1)


if __name__ == "__main__":
    main()
