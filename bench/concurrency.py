"""Concurrency benchmark: 1, 2, 4 and 8 streaming clients on one Gemma 3 270M runner.

ollamapy is a real server on loopback (``OLLAMA_NUM_PARALLEL=8``, so one runner decodes all
clients in one batch); each client streams a raw ``/api/generate`` with its own prompt,
greedy, ``--tokens`` tokens. In the same run, as the reference, a plain Python batched
loop over llama-cpp-python's low-level API (``llama_batch`` + ``llama_decode``, a greedy
sampler per sequence, the same context settings as the runner) generates the same number
of tokens for the same prompts. A third side sends the same streams straight to a runner
process of the same configuration (no front process, no HTTP to the client): the engine's
own share. Rounds alternate (ollamapy, runner alone, reference, …).

Printed per client count: aggregate tokens/s (all tokens over the wall time from the first
request to the last token), per-client tokens/s, p50/p99 time to first token and
inter-token latency, each also as a ratio to the 1-client run, and ollamapy's aggregate
as a fraction of the reference's (target: ≥ 0.90 at 4 and 8 clients).

    .venv/bin/python -m bench.concurrency [--rounds 3] [--tokens 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import time

import aiohttp

from bench._server import PROMPTS, Round, Stream, gemma_path, generate_round, running_server, stream_generate, table
from ollamapy.api.runner_protocol import CompletionRequest, LoadSpec
from ollamapy.supervisor.runner_process import RunnerProcess

__all__ = ["main"]

CLIENTS = (1, 2, 4, 8)


async def _runner_stream(runner: RunnerProcess, prompt: str, tokens: int) -> Stream:
    result = Stream(started=time.perf_counter())
    request = CompletionRequest(prompt=prompt, temperature=0.0, seed=42, num_predict=tokens, return_context=False)
    async for chunk in runner.completion(request):
        if chunk.content:
            result.chunk_times.append(time.perf_counter())
        if chunk.done:
            result.eval_count = chunk.eval_count
    return result


async def runner_round(runner: RunnerProcess, n: int, tokens: int) -> Round:
    """The same streams sent straight to a runner process (no front): the engine's share."""
    return Round(list(await asyncio.gather(*(_runner_stream(runner, PROMPTS[i], tokens) for i in range(n)))))


async def start_runner(args: argparse.Namespace) -> RunnerProcess:
    """A runner configured as the server configures its own for these options."""
    spec = LoadSpec(
        model_path=str(gemma_path()), num_ctx=args.ctx * max(CLIENTS), num_parallel=max(CLIENTS), num_batch=args.batch, num_thread=args.threads,
        flash_attn=True,
    )
    runner = await RunnerProcess.start(spec, model_name="gemma3:270m")
    await runner.wait_until_ready(stall_timeout=120)
    return runner


class Reference:
    """A plain batched decode loop over llama-cpp-python's C API, configured like the runner."""

    def __init__(self, args: argparse.Namespace) -> None:
        from llama_cpp import llama_cpp as lib

        from ollamapy.runner.backends import load_backends

        self.lib = lib
        self._log = lib.llama_log_callback(lambda level, text, data: None)
        lib.llama_log_set(self._log, ctypes.c_void_p(0))
        load_backends()  # the runner's CPU variant
        lib.llama_backend_init()
        params = lib.llama_model_default_params()
        params.use_extra_bufts = False  # as the runner loads it
        self.model = lib.llama_model_load_from_file(str(gemma_path()).encode(), params)
        self.vocab = lib.llama_model_get_vocab(self.model)
        ctx_params = lib.llama_context_default_params()
        ctx_params.n_ctx = args.ctx * max(CLIENTS)
        ctx_params.n_batch = ctx_params.n_ubatch = args.batch
        ctx_params.n_seq_max = max(CLIENTS)
        ctx_params.kv_unified = False
        ctx_params.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_ENABLED
        ctx_params.n_threads = ctx_params.n_threads_batch = args.threads
        self.ctx = lib.llama_init_from_model(self.model, ctx_params)
        self.memory = lib.llama_get_memory(self.ctx)
        self.batch = lib.llama_batch_init(args.batch, 0, 1)
        self.tokens = args.tokens

    def _tokenize(self, text: str) -> list[int]:
        data = text.encode()
        buffer = (self.lib.llama_token * (len(data) + 8))()
        n = self.lib.llama_tokenize(self.vocab, data, len(data), buffer, len(buffer), True, True)
        return list(buffer[:n])

    def _decode(self, items: list[tuple[int, int, int, bool]]) -> None:
        batch = self.batch
        for k, (token, pos, seq, logits) in enumerate(items):
            batch.token[k], batch.pos[k], batch.n_seq_id[k], batch.logits[k] = token, pos, 1, logits
            batch.seq_id[k][0] = seq
        batch.n_tokens = len(items)
        if self.lib.llama_decode(self.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")

    def round(self, n: int) -> Round:
        lib = self.lib
        lib.llama_memory_clear(self.memory, True)
        samplers = [lib.llama_sampler_init_greedy() for _ in range(n)]
        streams = [Stream(started=time.perf_counter()) for _ in range(n)]
        prompts = [self._tokenize(PROMPTS[i]) for i in range(n)]
        last: list[int] = []
        for seq, prompt in enumerate(prompts):  # each prompt on its own, as the runner does
            self._decode([(t, pos, seq, pos == len(prompt) - 1) for pos, t in enumerate(prompt)])
            last.append(lib.llama_sampler_sample(samplers[seq], self.ctx, len(prompt) - 1))
            streams[seq].chunk_times.append(time.perf_counter())
        for step in range(1, self.tokens):
            self._decode([(last[seq], len(prompts[seq]) + step - 1, seq, True) for seq in range(n)])
            for seq in range(n):
                last[seq] = lib.llama_sampler_sample(samplers[seq], self.ctx, seq)
                streams[seq].chunk_times.append(time.perf_counter())
        for seq, stream in enumerate(streams):
            stream.eval_count = self.tokens
            lib.llama_sampler_free(samplers[seq])
        return Round(streams)


async def main_async(args: argparse.Namespace) -> None:
    options = {"temperature": 0.0, "seed": 42, "num_predict": args.tokens, "num_ctx": args.ctx, "num_batch": args.batch, "num_thread": args.threads}
    reference = Reference(args)
    ours: dict[int, list[Round]] = {n: [] for n in CLIENTS}
    direct: dict[int, list[Round]] = {n: [] for n in CLIENTS}
    theirs: dict[int, list[Round]] = {n: [] for n in CLIENTS}
    runner = await start_runner(args)
    try:
        with running_server({"OLLAMA_NUM_PARALLEL": str(max(CLIENTS))}) as url:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                await stream_generate(session, url, PROMPTS[0], options)  # load + warm up
                await runner_round(runner, 1, 8)
                reference.round(1)
                for _ in range(args.rounds):
                    for n in CLIENTS:
                        await asyncio.sleep(args.pause)
                        ours[n].append(await generate_round(session, url, n, options))
                        await asyncio.sleep(args.pause)
                        direct[n].append(await runner_round(runner, n, args.tokens))
                        await asyncio.sleep(args.pause)
                        theirs[n].append(reference.round(n))
    finally:
        await runner.close()
    load = os.getloadavg()
    print(f"Gemma 3 270M, greedy, {args.tokens} tokens per client, {args.rounds} rounds, {args.threads} threads, "
          f"batch {args.batch}, ctx {args.ctx} per sequence; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    tokens = sorted({s.eval_count for rs in ours.values() for r in rs for s in r.streams})
    print(f"ollamapy tokens per stream: {tokens}\n")
    mine = table("ollamapy (HTTP streaming, one runner, OLLAMA_NUM_PARALLEL=8)", ours)
    alone = table("the runner alone (the same streams sent straight to a runner process, no front)", direct)
    ref = table("reference: plain Python batched loop over llama-cpp-python's low-level API", theirs)
    print("ollamapy aggregate / reference:   " + "  ".join(f"{n} clients {mine[n]['agg'] / ref[n]['agg']:.2f}" for n in CLIENTS) + "   (target >= 0.90 at 4 and 8)")
    print("runner alone / reference:         " + "  ".join(f"{n} clients {alone[n]['agg'] / ref[n]['agg']:.2f}" for n in CLIENTS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--ctx", type=int, default=1024, help="context per sequence")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds of quiet before each round")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
