"""Images in prompts: a projector loaded through llama.cpp's multimodal library (mtmd).

The front renders a prompt with an ``[img-N]`` marker where image N goes (Ollama's
convention) and sends the images' bytes along. ``Vision.tokenize`` replaces each marker
with mtmd's media marker and lets mtmd split the prompt into text tokens and image chunks
(the projector decides how many embeddings an image becomes, and adds any begin/end
tokens its model expects). The engine keeps a prompt as one list of ints: text tokens as
they are, and each position of an image as a negative *pseudo-token* derived from the
image's content hash (mtmd's SHA-256 of the bytes) and the position within the image. So
the engine's prefix cache compares images by content: a follow-up turn with the same
image reuses its KV, a different image at the same place does not match.

An image chunk is evaluated whole, by ``mtmd_helper_eval_chunk_single`` (encode with the
projector, then decode the embeddings in ``n_batch`` pieces, switching to non-causal
attention where the model needs it).
"""

from __future__ import annotations

import ctypes
import logging
import re
import sys
import threading
from dataclasses import dataclass, field

from llama_cpp import llama_cpp as llama_lib
from llama_cpp import mtmd_cpp as mtmd

from ollamapy.errors import InvalidRequest

__all__ = ["IMAGE_MARKER", "ImageSpan", "Vision", "VisionPrompt", "load_vision"]

log = logging.getLogger("ollamapy.runner")

IMAGE_MARKER = re.compile(r"\[img-(\d+)\]")
"""Where the front's rendered prompt puts image N."""

_CHUNK_IMAGE = 1  # mtmd_input_chunk_type: MTMD_INPUT_CHUNK_TYPE_IMAGE
_POSITION_BITS = 20
"""An image's positions are told apart by the low bits of its pseudo-tokens."""


@dataclass(eq=False)
class ImageSpan:
    """One image of a prompt: where its positions start in the token list, and its chunk."""

    start: int
    n_pos: int
    """Positions (KV cells) the image takes; its pseudo-tokens in the prompt."""
    n_tokens: int
    """Embeddings the image becomes (counted as prompt tokens)."""
    chunk: int
    """The mtmd chunk, owned by the ``VisionPrompt``."""

    @property
    def end(self) -> int:
        return self.start + self.n_pos


@dataclass(eq=False)
class VisionPrompt:
    """A tokenized prompt with images; ``close`` frees its chunks (after the last evaluation)."""

    tokens: list[int]
    """Text tokens and image pseudo-tokens, one per position."""
    images: list[ImageSpan]
    _chunks: int | None = field(default=None, repr=False)

    @property
    def n_tokens(self) -> int:
        """Prompt tokens as Ollama counts them: text tokens plus image embeddings."""
        return len(self.tokens) + sum(span.n_tokens - span.n_pos for span in self.images)

    def image_at(self, index: int) -> ImageSpan | None:
        """The image whose positions start at ``index``."""
        return next((span for span in self.images if span.start == index), None)

    def next_image(self, index: int) -> int:
        """Where the first image at or after ``index`` starts (the prompt's length if none)."""
        return min((span.start for span in self.images if span.start >= index), default=len(self.tokens))

    def image_boundary(self, n: int) -> int:
        """``n``, or the start of the image that position ``n`` would cut in two: a prefix
        cache kept up to there holds whole images only."""
        for span in self.images:
            if span.start < n < span.end:
                return span.start
        return n

    def close(self) -> None:
        if self._chunks:
            mtmd.mtmd_input_chunks_free(self._chunks)
            self._chunks = None


def _pseudo_tokens(image_id: bytes, n_pos: int) -> list[int]:
    """Negative ids unique to the image's content and each of its positions."""
    base = int(image_id[:10] or b"0", 16) << _POSITION_BITS
    return [-(1 + base + k) for k in range(n_pos)]


class Vision:
    """A projector (mmproj) bound to the runner's text model.

    mtmd's context is not safe to share between threads: tokenizing (which decodes and
    preprocesses the images) may run in a request thread while the engine thread
    evaluates, so both take ``_lock``.
    """

    def __init__(self, ctx: mtmd.mtmd_context_p, marker: bytes) -> None:
        self._ctx = ctx
        self._marker = marker
        self._lock = threading.Lock()

    def tokenize(self, prompt: str, images: list[bytes]) -> VisionPrompt:
        """The prompt's tokens (BOS added, special tokens parsed) with image N at each ``[img-N]``.

        A marker without its image is an error, as in Ollama; images no marker refers to
        are not part of the prompt.
        """
        order: list[int] = []

        def replace(match: re.Match[str]) -> str:
            index = int(match.group(1))
            if index >= len(images):
                raise InvalidRequest(f"invalid image index: {index}")
            order.append(index)
            return self._marker.decode()

        text = IMAGE_MARKER.sub(replace, prompt).encode("utf-8")
        with self._lock:
            bitmaps = [self._bitmap(images[i]) for i in order]
            chunks = mtmd.mtmd_input_chunks_init()
            try:
                array = (mtmd.mtmd_bitmap_p_ctypes * max(len(bitmaps), 1))(*bitmaps)
                source = mtmd.mtmd_input_text(text=text, text_len=len(text), add_special=True, parse_special=True)
                status = mtmd.mtmd_tokenize(self._ctx, chunks, ctypes.byref(source), array, len(bitmaps))
                if status != 0:
                    # 1: the text holds a media marker of its own; 2: an image failed to preprocess
                    raise InvalidRequest("failed to process inputs: the prompt's image markers do not match its images" if status == 1 else "image: unknown format")
                prompt_out = self._prompt(chunks)
            except BaseException:
                mtmd.mtmd_input_chunks_free(chunks)
                raise
            finally:
                for bitmap in bitmaps:
                    mtmd.mtmd_bitmap_free(bitmap)
        return prompt_out

    def _bitmap(self, data: bytes) -> int:
        """Decode an image (stb_image: JPEG, PNG, GIF, BMP…); the front sniffed its type already."""
        buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(self._ctx, buffer, len(data), False)
        if not bitmap:
            raise InvalidRequest("image: unknown format")
        return int(bitmap)

    @staticmethod
    def _prompt(chunks: int) -> VisionPrompt:
        tokens: list[int] = []
        images: list[ImageSpan] = []
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, i)
            if mtmd.mtmd_input_chunk_get_type(chunk) == _CHUNK_IMAGE:
                n_pos = mtmd.mtmd_input_chunk_get_n_pos(chunk)
                span = ImageSpan(start=len(tokens), n_pos=n_pos, n_tokens=mtmd.mtmd_input_chunk_get_n_tokens(chunk), chunk=int(chunk))
                images.append(span)
                tokens.extend(_pseudo_tokens(mtmd.mtmd_input_chunk_get_id(chunk) or b"", n_pos))
            else:
                n = ctypes.c_size_t(0)
                pointer = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                tokens.extend(pointer[: n.value])
        return VisionPrompt(tokens=tokens, images=images, _chunks=chunks)

    def evaluate(self, lctx: llama_lib.llama_context_p, span: ImageSpan, n_past: int, seq_id: int, n_batch: int, logits_last: bool) -> None:
        """Encode the image and put its embeddings into the sequence's KV at ``n_past``."""
        new_n_past = llama_lib.llama_pos(0)
        with self._lock:
            status = mtmd.mtmd_helper_eval_chunk_single(self._ctx, lctx, span.chunk, n_past, seq_id, n_batch, logits_last, ctypes.byref(new_n_past))
        if status != 0:
            raise RuntimeError(f"image evaluation failed with status {status}")

    def close(self) -> None:
        if self._ctx:
            mtmd.mtmd_free(self._ctx)
            self._ctx = mtmd.mtmd_context_p(0)


_CLIP_BACKEND = re.compile(r"CLIP using (\w+) backend")
_CLIP_WEIGHTS = re.compile(r"model size:\s*([0-9.]+) MiB")


def load_vision(model: llama_lib.llama_model_p, projector: str, n_threads: int, use_gpu: bool, log_callback: object) -> Vision:
    """Load the projector for ``model``; a file mtmd cannot use is a load error that says why.

    The front sizes a runner (``/api/ps``) from llama.cpp's "<backend> model buffer size"
    log lines; the projector's loader logs its weights differently, so its backend and
    weight size are read from that log as it passes and restated in that form.
    """
    seen: dict[str, str] = {}

    @llama_lib.llama_log_callback
    def watch(level: int, text: bytes, data: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", errors="replace")
        for key, pattern in (("backend", _CLIP_BACKEND), ("mib", _CLIP_WEIGHTS)):
            found = pattern.search(line)
            if found:
                seen[key] = found.group(1)
        log_callback(level, text, data)  # type: ignore[operator]  # a ctypes callback is callable

    mtmd.mtmd_log_set(watch, ctypes.c_void_p(0))
    params = mtmd.mtmd_context_params_default()
    params.use_gpu = use_gpu
    params.n_threads = n_threads
    params.print_timings = False
    params.warmup = True  # reserve the encoder graph now, not on the first image
    try:
        ctx = mtmd.mtmd_init_from_file(projector.encode(), model, params)
    finally:
        mtmd.mtmd_log_set(log_callback, ctypes.c_void_p(0))
        mtmd.mtmd_helper_log_set(log_callback, ctypes.c_void_p(0))
    if ctx and "backend" in seen and "mib" in seen:
        sys.stderr.write(f"load_vision: {seen['backend']} model buffer size = {seen['mib']} MiB\n")
        sys.stderr.flush()
    if not ctx:
        raise RuntimeError(f"error loading projector {projector}: llama.cpp's multimodal library could not load it (see the log above)")
    if not mtmd.mtmd_support_vision(ctx):
        mtmd.mtmd_free(ctx)
        raise RuntimeError(f"error loading projector {projector}: it has no vision encoder")
    log.info("vision projector loaded: %s", projector)
    return Vision(ctx, mtmd.mtmd_default_marker())
