"""Single-stream benchmark: ollamapy over HTTP against llama-cpp-python in process.

Both sides run Gemma 3 270M greedy with the same prompt, seed, threads, batch and context;
ollamapy is a real server on loopback (``gemma3:270m`` imported into a temporary store)
answering a streaming raw ``/api/generate``; the reference is ``llama_cpp.Llama`` in this
process with ``create_completion(stream=True)``. Runs alternate (ollamapy, in-process, …)
after one warm-up each, so both models are warm and share the machine's load equally.

Prints, per side: decode tokens/s and time to first token (median, min, max), and the
ratios the targets are stated in (throughput ≥ 0.97 of in-process, ≤ 5 ms added TTFT).

    .venv/bin/python -m bench.single_stream [--runs 5] [--tokens 256] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import aiohttp

from bench._server import Stream, gemma_path, running_server, stream_generate, summary

__all__ = ["main"]

PROMPT = "Once upon a time, in a kingdom by the sea, there lived an old fisherman who told the longest stories. One evening he began:"


def in_process(llm: Any, tokens: int, seed: int) -> Stream:
    """One streamed completion from ``llama_cpp.Llama``, timed like the HTTP client."""
    result = Stream(started=time.perf_counter())
    for chunk in llm.create_completion(PROMPT, max_tokens=tokens, temperature=0.0, seed=seed, stream=True):
        now = time.perf_counter()
        choice = chunk["choices"][0]
        if choice["text"]:
            result.chunk_times.append(now)
            result.text += choice["text"]
        if choice["finish_reason"] is None:
            result.eval_count += 1
    return result


async def main_async(args: argparse.Namespace) -> None:
    import llama_cpp

    from ollamapy.runner.backends import load_backends

    load_backends()  # the runner's CPU variant, before llama_cpp.Llama loads the model
    # The same work on both sides: no repetition penalty (llama-cpp-python's default; Ollama's
    # is 1.1) and flash attention (the server's choice on a CPU).
    options = {
        "temperature": 0.0, "seed": args.seed, "num_predict": args.tokens, "num_ctx": args.ctx, "num_batch": args.batch,
        "num_thread": args.threads, "repeat_penalty": 1.0,
    }
    llm = llama_cpp.Llama(
        str(gemma_path()), n_ctx=args.ctx, n_batch=args.batch, n_ubatch=args.batch, n_threads=args.threads,
        n_threads_batch=args.threads, seed=args.seed, flash_attn=True, verbose=False,
    )
    ours: list[Stream] = []
    theirs: list[Stream] = []
    with running_server({"OLLAMA_NUM_PARALLEL": "1"}) as url:
        async with aiohttp.ClientSession() as session:
            await stream_generate(session, url, PROMPT, options)  # load + warm up
            in_process(llm, args.tokens, args.seed)
            for _ in range(args.runs):
                # The pauses let the other side's idle llama.cpp threads stop spinning
                # (with OpenMP they spin for a while after each computation).
                await asyncio.sleep(args.pause)
                ours.append(await stream_generate(session, url, PROMPT, options))
                await asyncio.sleep(args.pause)
                theirs.append(in_process(llm, args.tokens, args.seed))
    report(ours, theirs, args)


def report(ours: list[Stream], theirs: list[Stream], args: argparse.Namespace) -> None:
    load = os.getloadavg()
    print(f"Gemma 3 270M, greedy, {args.tokens} tokens, {args.runs} alternating runs, {args.threads} threads, "
          f"batch {args.batch}, ctx {args.ctx}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"tokens generated: ollamapy {sorted({s.eval_count for s in ours})}, in-process {sorted({s.eval_count for s in theirs})}; "
          f"same text: {all(a.text == b.text for a, b in zip(ours, theirs))}")
    print()
    print(f"{'':24}{'median':>10}{'min':>10}{'max':>10}")
    rows = [
        ("ollamapy tok/s", [s.tokens_per_second for s in ours], 1.0),
        ("in-process tok/s", [s.tokens_per_second for s in theirs], 1.0),
        ("ollamapy TTFT ms", [s.ttft for s in ours], 1000.0),
        ("in-process TTFT ms", [s.ttft for s in theirs], 1000.0),
        ("ollamapy server tok/s", [(s.eval_count) / (s.eval_duration_ns / 1e9) for s in ours], 1.0),
        ("ollamapy prompt eval ms", [s.prompt_eval_duration_ns / 1e9 for s in ours], 1000.0),
    ]
    for name, values, scale in rows:
        med, lo, hi = summary(values)
        print(f"{name:24}{med * scale:10.2f}{lo * scale:10.2f}{hi * scale:10.2f}")
    ratio = summary([a.tokens_per_second / b.tokens_per_second for a, b in zip(ours, theirs)])
    added = summary([(a.ttft - b.ttft) * 1000 for a, b in zip(ours, theirs)])
    print()
    print(f"throughput ratio (per run pair): median {ratio[0]:.3f}  min {ratio[1]:.3f}  max {ratio[2]:.3f}   target >= 0.97")
    print(f"added TTFT ms (per run pair):    median {added[0]:.2f}  min {added[1]:.2f}  max {added[2]:.2f}   target <= 5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds of quiet before each run")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
