"""The option table: what ``options`` / ``PARAMETER`` accept, their types and defaults.

Ollama keeps one ``api.Options`` struct and decodes maps into it by reflection
(``Options.FromMap`` for JSON ``options``, ``api.FormatParams`` for Modelfile
``PARAMETER`` text). Here the two pydantic models are the single source of truth: the
option names and kinds below are derived from their fields, so adding a field is all it
takes to accept a new option everywhere.

Load-time options (:class:`LoadOptions`) are frozen and hashable, because changing them
means reloading the model; the scheduler compares only those. Sampling options
(:class:`SamplingOptions`) change per request.

Unlike current Ollama, ollamapy still honours ``mirostat``, ``mirostat_tau``,
``mirostat_eta`` and ``use_mlock`` (llama-cpp-python implements them). Options llama.cpp
no longer has (:data:`DEPRECATED_PARAMETERS`) are accepted and reported, never applied.
"""

from __future__ import annotations

import enum
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ollamapy.errors import InvalidRequest
from ollamapy.golang import NumError, format_float, parse_bool, parse_int, quote, to_float32

__all__ = [
    "DEPRECATED_PARAMETERS",
    "OPTION_KINDS",
    "LoadOptions",
    "OptionKind",
    "Options",
    "SamplingOptions",
    "format_parameter_value",
    "format_parameters",
    "parse_parameter",
]


class LoadOptions(BaseModel):
    """Options fixed when a model is loaded; a different value means a reload."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    num_ctx: int | None = None
    """Context window in tokens. None (default) = auto: the scheduler uses
    ``OLLAMA_CONTEXT_LENGTH`` or a VRAM-based default, clamped to the trained context."""
    num_batch: int = 512
    """Prompt-processing batch size (llama.cpp ``n_batch``)."""
    num_gpu: int = -1
    """Layers to offload to the GPU; -1 (default) = as many as fit."""
    main_gpu: int | None = None
    """Device index that holds the scratch buffers when splitting; None = llama.cpp default."""
    use_mmap: bool | None = None
    """Memory-map the weights; None (default) = decide per platform and model size."""
    use_mlock: bool = False
    """Lock the weights in RAM so they are never swapped out (ollamapy honours it)."""
    num_thread: int = 0
    """CPU threads for generation; 0 (default) = let the runtime decide."""
    draft_num_predict: int = 4
    """Tokens the draft model proposes per step; only used by models with a DRAFT."""


class SamplingOptions(BaseModel):
    """Per-request generation options; changing them never reloads a model."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    num_keep: int = 4
    """Prompt tokens kept when the context shifts (4 avoids losing the BOS on shifts)."""
    seed: int = -1
    """Sampling seed; -1 (default) = random."""
    num_predict: int = -1
    """Maximum tokens to generate; -1 (default) = until a stop or the context is full."""
    top_k: int = 40
    """Sample from the k most likely tokens; 0 disables."""
    top_p: float = 0.9
    """Nucleus sampling: smallest set of tokens whose probability sums to p."""
    min_p: float = 0.0
    """Drop tokens less likely than min_p × the most likely one; 0 (default) disables."""
    typical_p: float = 1.0
    """Locally typical sampling; 1.0 (default) disables."""
    repeat_last_n: int = 64
    """How far back repetition penalties look; 0 disables, -1 = the whole context."""
    temperature: float = 0.8
    """Randomness; 0 = greedy."""
    repeat_penalty: float = 1.0
    """Penalty for repeated tokens; 1.0 (default) disables (Ollama ≤ 0.12 used 1.1)."""
    presence_penalty: float = 0.0
    """Flat penalty on tokens already present."""
    frequency_penalty: float = 0.0
    """Penalty proportional to how often a token already appeared."""
    mirostat: int = 0
    """Mirostat sampling: 0 (default) = off, 1 = Mirostat, 2 = Mirostat 2.0 (ollamapy honours it)."""
    mirostat_tau: float = 5.0
    """Mirostat target entropy: lower = more focused text."""
    mirostat_eta: float = 0.1
    """Mirostat learning rate."""
    stop: list[str] = Field(default_factory=list)
    """Stop sequences: generation ends before any of them; repeated PARAMETER stop lines add up."""


class OptionKind(enum.Enum):
    """How an option's value is typed; the value is the word Ollama's errors use."""

    INT = "integer"
    FLOAT = "float32"
    BOOL = "boolean"
    STRINGS = "array"


def _kind_of(annotation: Any) -> OptionKind:
    """Map a field annotation (``int``, ``float | None``, ``list[str]`` …) to its kind."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (annotation,) = (a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is list:
        return OptionKind.STRINGS
    return {int: OptionKind.INT, float: OptionKind.FLOAT, bool: OptionKind.BOOL}[annotation]


OPTION_KINDS: Mapping[str, OptionKind] = types.MappingProxyType(
    {
        name: _kind_of(field.annotation)
        for model in (LoadOptions, SamplingOptions)
        for name, field in model.model_fields.items()
    }
)
"""Every option ollamapy accepts, by name."""

DEPRECATED_PARAMETERS: frozenset[str] = frozenset(
    {"tfs_z", "penalize_newline", "numa", "num_gqa", "low_vram", "f16_kv", "logits_all", "vocab_only"}
)
"""Options llama.cpp no longer has: accepted, reported as ignored, never applied. A
Modelfile ``PARAMETER`` with one of these prints ``warning: parameter X is deprecated``."""


class Options(BaseModel):
    """Load-time and sampling options together, as resolved for one request."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    load: LoadOptions = Field(default_factory=LoadOptions)
    """What the runner is loaded with; the scheduler compares these."""
    sampling: SamplingOptions = Field(default_factory=SamplingOptions)
    """What each generation samples with."""

    @classmethod
    def from_layers(cls, *layers: Mapping[str, Any]) -> tuple[Options, list[str]]:
        """Merge option maps over the defaults, later layers winning (model params, then
        request ``options``), with the type rules of Ollama's ``Options.FromMap``.

        Returns the options and the names that were ignored (unknown or deprecated), in
        first-seen order, for the caller to log as ``invalid option provided``. A ``null``
        value leaves the option as it was. Raises :class:`InvalidRequest` with Ollama's
        message (``option "top_k" must be of type integer``) on a value of the wrong type.
        """
        values: dict[str, Any] = {**LoadOptions().model_dump(), **SamplingOptions().model_dump()}
        ignored: list[str] = []
        for layer in layers:
            for key, raw in layer.items():
                kind = OPTION_KINDS.get(key)
                if kind is None:
                    if key not in ignored:
                        ignored.append(key)
                elif raw is not None:
                    values[key] = _from_json(key, raw, kind)
        options = cls(
            load=LoadOptions(**{k: values[k] for k in LoadOptions.model_fields}),
            sampling=SamplingOptions(**{k: values[k] for k in SamplingOptions.model_fields}),
        )
        return options, ignored


def _from_json(key: str, raw: Any, kind: OptionKind) -> Any:
    """One JSON value checked as ``FromMap`` does: ints accept any number (truncated)."""
    if kind is OptionKind.INT:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, float) and math.isfinite(raw):
            return int(raw)
    elif kind is OptionKind.FLOAT:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
    elif kind is OptionKind.BOOL:
        if isinstance(raw, bool):
            return raw
    elif isinstance(raw, list):
        if all(isinstance(item, str) for item in raw):
            return list(raw)
        raise InvalidRequest(f"option {quote(key)} must be of an array of strings")
    raise InvalidRequest(f"option {quote(key)} must be of type {kind.value}")


# Go's strconv.ParseFloat(s, 32) syntax: decimal or hexadecimal, underscores between digits.
_DIGITS = r"[0-9](?:_?[0-9])*"
_HEX_DIGITS = r"[0-9a-fA-F](?:_?[0-9a-fA-F])*"
_GO_DECIMAL = re.compile(rf"[+-]?(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?{_DIGITS})?")
_GO_HEX = re.compile(rf"[+-]?0[xX]_?(?:{_HEX_DIGITS}(?:\.(?:{_HEX_DIGITS})?)?|\.{_HEX_DIGITS})[pP][+-]?{_DIGITS}")


def _parse_go_float32(text: str) -> float | None:
    """``strconv.ParseFloat(text, 32)``, as the shortest decimal that round-trips through
    float32 (what Go's JSON encoder writes), or None when it is not a finite float32."""
    if _GO_DECIMAL.fullmatch(text):
        value = float(text)
    elif _GO_HEX.fullmatch(text):
        value = float.fromhex(text.replace("_", ""))
    else:
        return None  # also NaN and Inf, which the params layer's JSON cannot hold
    single = to_float32(value)
    if math.isinf(single):
        return None
    return float(format_float(single, "e", -1, 32))


def parse_parameter(name: str, value: str) -> Any:
    """Type one Modelfile ``PARAMETER name value`` as Ollama's ``api.FormatParams`` does.

    Integers and booleans keep their Python type, floats are float32 values and list
    options (``stop``) come back as a one-element list for the caller to accumulate.
    Deprecated names are unknown here: check :data:`DEPRECATED_PARAMETERS` first.
    Raises :class:`InvalidRequest` with ``unknown parameter 'x'`` or
    ``invalid int value [x]`` / ``invalid float value [x]`` / ``invalid bool value [x]``.
    """
    kind = OPTION_KINDS.get(name)
    if kind is None:
        raise InvalidRequest(f"unknown parameter '{name}'")
    if kind is OptionKind.STRINGS:
        return [value]
    try:
        if kind is OptionKind.INT:
            return parse_int(value)
        if kind is OptionKind.BOOL:
            return parse_bool(value)
    except NumError:
        pass
    if kind is OptionKind.FLOAT:
        number = _parse_go_float32(value)
        if number is not None:
            return number
    word = {OptionKind.INT: "int", OptionKind.FLOAT: "float", OptionKind.BOOL: "bool"}[kind]
    raise InvalidRequest(f"invalid {word} value [{value}]")


def _go_value(value: Any, *, sharp: bool) -> str:
    """A JSON-decoded value printed with Go's ``%#v`` (``sharp``) or ``%v``.

    Go decodes every JSON number into a float64, so integers print as floats do
    (``1.048576e+06``).
    """
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format_float(float(value))
    if isinstance(value, str):
        return quote(value) if sharp else value
    if isinstance(value, list):
        inner = (", " if sharp else " ").join(_go_value(v, sharp=sharp) for v in value)
        return f"[]interface {{}}{{{inner}}}" if sharp else f"[{inner}]"
    return str(value)


def format_parameters(params: Mapping[str, Any]) -> str:
    """The ``parameters`` text of ``/api/show``: ``%-30s %#v`` per value, joined by newlines.

    A list option gives one line per element. Ollama walks a Go map, so its order is
    random; ollamapy sorts by name (one of the orders Ollama can produce).
    """
    lines = []
    for key in sorted(params):
        value = params[key]
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{key:<30} {_go_value(item, sharp=True)}")
    return "\n".join(lines)


def format_parameter_value(value: Any) -> str:
    """One parameter value as a Modelfile ``PARAMETER`` argument (Go's ``%v``).

    Integers print as integers. Ollama prints them as float64s (``1.234567e+06`` for a
    seed), which its own ``PARAMETER`` parser then rejects; ollamapy keeps them readable
    so ``show --modelfile`` output can be fed back to ``create``.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return str(int(value))
    return _go_value(value, sharp=False)
