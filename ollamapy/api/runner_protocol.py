"""Wire types of the internal protocol between the front process and a runner child.

Both sides import this module (it must never import llama_cpp): the front builds a
``LoadSpec`` and ``CompletionRequest`` and reads ``CompletionChunk`` lines; the runner
validates the same models. The transport is HTTP over a Unix socket in a private
directory:

    GET  /health      -> HealthResponse
    POST /completion  CompletionRequest  -> NDJSON stream of CompletionChunk (or a final
                                            ErrorResponse line if the runner fails mid-stream)
    POST /embedding   EmbeddingRequest   -> EmbeddingResponse
    POST /tokenize    TokenizeRequest    -> TokenizeResponse
    POST /detokenize  DetokenizeRequest  -> DetokenizeResponse

Errors before a stream starts are HTTP errors with an ``ErrorResponse`` body (400 for bad
input, 500 otherwise). Option names and defaults follow Ollama's ``api.Options``
(``DefaultOptions()``); unknown or removed options are the front's business and are
rejected here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ollamapy.api.options import SamplingOptions

__all__ = [
    "CompletionChunk",
    "CompletionRequest",
    "DetokenizeRequest",
    "DetokenizeResponse",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "ErrorResponse",
    "HealthResponse",
    "KvCacheType",
    "LoadSpec",
    "Logprob",
    "SplitMode",
    "TokenLogprob",
    "TokenizeRequest",
    "TokenizeResponse",
]

KvCacheType = Literal["f16", "q8_0", "q4_0"]
SplitMode = Literal["none", "layer", "row"]


class _Strict(BaseModel):
    """Unknown fields are an error: both sides are ours, so a typo must not pass silently."""

    model_config = ConfigDict(extra="forbid")


class LoadSpec(_Strict):
    """Everything that is fixed when a model is loaded; a change means a new runner.

    The front resolves Ollama's automatic values (``num_gpu=-1``, ``num_ctx=0``…) before it
    builds this, so every field here is concrete.
    """

    model_path: str
    """The GGUF file (a blob in the store)."""
    adapters: list[str] = []
    """LoRA adapter GGUFs, applied at load with scale 1.0 (Modelfile ``ADAPTER``)."""
    projectors: list[str] = []
    """Vision projector GGUFs (``general.architecture = clip``, the model's projector
    layers); the first is loaded with llama.cpp's multimodal library."""
    num_ctx: int = Field(4096, ge=4)
    """Context length in tokens (KV cache size), shared by all ``num_parallel`` sequences."""
    num_parallel: int = Field(1, ge=1, le=256)
    """Requests served at once, each a sequence in one batched decode; each sequence may
    use ``num_ctx // num_parallel`` tokens (Ollama's per-request ``num_ctx``)."""
    num_batch: int = Field(512, ge=1)
    """Logical and physical batch size for prompt evaluation and embeddings."""
    n_gpu_layers: int = 0
    """Layers to offload to the GPU; -1 offloads all of them."""
    main_gpu: int = 0
    split_mode: SplitMode = "layer"
    tensor_split: list[float] | None = None
    """Proportion of the model per visible GPU; None lets llama.cpp decide."""
    use_mmap: bool = True
    use_mlock: bool = False
    num_thread: int = Field(0, ge=0)
    """Threads for generation and batch evaluation; 0 = llama-cpp-python's default."""
    flash_attn: bool = False
    kv_cache_type: KvCacheType = "f16"
    """Quantized types need flash attention; without it the runner falls back to f16."""
    embedding: bool = False
    """Create the context in embedding mode (an embedding model). Any runner can embed."""
    seed: int = -1
    """Default sampler seed; requests carry their own."""


class CompletionRequest(SamplingOptions):
    """One generation: a prompt already rendered by the front, plus its sampling options
    (Ollama's names and defaults, shared with the front's option table)."""

    prompt: str | None = None
    """Prompt text; tokenized with the model's BOS and special-token parsing."""
    tokens: list[int] | None = None
    """Prompt as token ids instead of text (exactly one of ``prompt``/``tokens``)."""
    images: list[str] = Field(default_factory=list)
    """Base64 image data; image N goes where the prompt says ``[img-N]`` (needs ``prompt``
    and a runner loaded with a projector)."""
    mirostat: Literal[0, 1, 2] = 0
    """Mirostat sampling: 0 = off, 1 = Mirostat, 2 = Mirostat 2.0."""

    grammar: str | None = None
    """A GBNF grammar constraining the output."""
    format: Literal["json"] | dict[str, Any] | None = None
    """``"json"`` (any JSON object) or a JSON schema object; turned into a grammar."""
    format_after: list[str] | None = None
    """Texts that end the thinking section: the ``grammar``/``format`` constrains only
    what is generated after one of them (None or empty: from the first token)."""
    shift: bool = True
    """When prompt + output reach num_ctx: shift the context (True) or stop with ``length``."""
    logprobs: bool = False
    top_logprobs: int = Field(0, ge=0, le=20)
    return_context: bool = True
    """Put the prompt + response token ids on the final chunk (Ollama's ``context``)."""

    @model_validator(mode="after")
    def _one_prompt(self) -> CompletionRequest:
        if (self.prompt is None) == (self.tokens is None):
            raise ValueError("exactly one of prompt or tokens is required")
        if self.grammar is not None and self.format is not None:
            raise ValueError("grammar and format are mutually exclusive")
        return self


class TokenLogprob(BaseModel):
    """One candidate token with its log probability (Ollama's ``TokenLogprob``)."""

    token: str
    logprob: float
    bytes: list[int] | None = None


class Logprob(TokenLogprob):
    """The chosen token plus the most likely alternatives (Ollama's ``Logprob``)."""

    top_logprobs: list[TokenLogprob] = []


class CompletionChunk(BaseModel):
    """One NDJSON line of a completion stream.

    ``eval_count``/``eval_duration`` are running totals on every chunk, so the front gets
    per-token timing; the last chunk has ``done`` and the final counts.
    """

    content: str = ""
    """New output text; never a partial UTF-8 character, never part of a stop string."""
    logprobs: list[Logprob] | None = None
    """One entry per token behind ``content`` (when logprobs were requested)."""
    eval_count: int = 0
    """Tokens generated so far."""
    eval_duration: int = 0
    """Nanoseconds spent generating so far."""
    done: bool = False
    done_reason: Literal["stop", "length"] | None = None
    prompt_eval_count: int = 0
    """Prompt tokens, cached ones included (as Ollama reports it)."""
    prompt_eval_duration: int = 0
    """Nanoseconds spent evaluating the uncached part of the prompt."""
    prompt_cached_count: int = 0
    """Prompt tokens whose KV entries were reused from the previous request."""
    context: list[int] | None = None
    """Prompt + response token ids (final chunk, when requested)."""


class EmbeddingRequest(_Strict):
    content: list[str]


class EmbeddingResponse(BaseModel):
    """Vectors pooled by the model's pooling type (mean when the GGUF declares none), unnormalized."""

    embeddings: list[list[float]]
    prompt_eval_count: int


class TokenizeRequest(_Strict):
    content: str
    add_special: bool = False
    """Add BOS/EOS as the model's tokenizer would for a whole prompt."""


class TokenizeResponse(BaseModel):
    tokens: list[int]


class DetokenizeRequest(_Strict):
    tokens: list[int]


class DetokenizeResponse(BaseModel):
    content: str


class HealthResponse(BaseModel):
    """Load state and activity; the front's stall timer resets when ``progress`` moves."""

    status: Literal["loading", "ok"]
    progress: float = 0.0
    """Model load progress, 0.0 to 1.0."""
    tokens_generated: int = 0
    """Tokens sampled since the runner started (all requests)."""
    active: int = 0
    """Completion/embedding requests being served or waiting for a sequence slot."""
    active_sequences: int = 0
    """Completions in the decode batch now (holding a sequence slot: prompt or generation)."""
    max_active_sequences: int = 0
    """The most completions that were in the decode batch at once since the model loaded:
    whether the runner ever served ``num_parallel`` requests together."""
    prompt_tokens_pending: int = 0
    """Prompt tokens of the completions in the batch still to be evaluated: above zero
    while a prompt is being evaluated (requests waiting for a slot are not counted)."""
    kv_cells_used: int = 0
    """KV cache cells holding the tokens of the completions in the batch (the front's
    ``/metrics`` reports them over ``kv_cells_total``)."""
    kv_cells_total: int = 0
    """KV cache cells of the context, all sequence slots together (0 while loading)."""


class ErrorResponse(BaseModel):
    error: str
