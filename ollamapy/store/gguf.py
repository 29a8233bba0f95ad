"""Read a GGUF file's header — every key/value and tensor info — without touching tensor data.

The store (create, show, list), the scheduler (memory estimates, GPU placement) and the
CLI all need a model's metadata; none of them may pay for the weights. Reading streams
through a refillable window over the file, so a multi-GB model costs a few MB of reads,
and the one part that is big even in the header — a 256k-entry vocabulary — is read in
bulk: numeric arrays in one ``numpy.frombuffer`` each, string arrays in a tight loop over
the window.

What Ollama derives from the same header (``fs/ggml``, ``server/routes.go``) is here too,
so the server answers as Ollama does: ``details()`` (ModelDetails), ``model_info()``
(ShowResponse.model_info), ``capabilities()`` (the GGUF side of a model's capabilities) and
``format_parameter_size()`` (``format.HumanNumber``, the config blob's ``model_type``).

Only GGUF v2 and v3 little-endian files are read; anything else raises
:class:`~ollamapy.errors.InvalidRequest` with a message that says what is wrong.
"""

from __future__ import annotations

import base64
import math
import os
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

from ollamapy.errors import InvalidRequest
from ollamapy.golang import format_float

__all__ = ["QUANTIZE_FILE_TYPES", "GGUFInfo", "TensorInfo", "file_type_name", "format_parameter_size", "read_gguf"]

_MAGIC = b"GGUF"
_SUPPORTED_VERSIONS = (2, 3)
_DEFAULT_ALIGNMENT = 32
_MAX_DIMS = 4  # GGML_MAX_DIMS
_CHUNK = 1 << 20  # bytes read from the file at a time
_MAX_ARRAY_NESTING = 16  # deeper is a corrupt (or hostile) file, not a model

# GGUF value types (gguf spec, gguf_type).
_T_UINT8, _T_INT8, _T_UINT16, _T_INT16, _T_UINT32, _T_INT32 = 0, 1, 2, 3, 4, 5
_T_FLOAT32, _T_BOOL, _T_STRING, _T_ARRAY, _T_UINT64, _T_INT64, _T_FLOAT64 = 6, 7, 8, 9, 10, 11, 12

# Fixed-size scalar types: GGUF type -> little-endian struct / numpy format.
_SCALAR_FORMATS: dict[int, str] = {
    _T_UINT8: "<B",
    _T_INT8: "<b",
    _T_UINT16: "<H",
    _T_INT16: "<h",
    _T_UINT32: "<I",
    _T_INT32: "<i",
    _T_FLOAT32: "<f",
    _T_BOOL: "<B",
    _T_UINT64: "<Q",
    _T_INT64: "<q",
    _T_FLOAT64: "<d",
}
_STRUCTS = {t: struct.Struct(f) for t, f in _SCALAR_FORMATS.items()}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def _file_type_names() -> dict[int, str]:
    """Ollama's ``FileType.String()`` names, keyed by ``general.file_type``.

    The names are llama.cpp's ``LLAMA_FTYPE_*`` suffixes. Ollama writes 4 (once
    ``Q4_1_SOME_F16``) for MXFP4; llama.cpp writes 38 (``MOSTLY_MXFP4_MOE``).
    """
    names = {
        ft.value: ft.name.removeprefix("ALL_").removeprefix("MOSTLY_")
        for ft in LlamaFileType
        if ft is not LlamaFileType.GUESSED
    }
    names[LlamaFileType.MOSTLY_MXFP4_MOE.value] = "MXFP4"
    names[4] = "MXFP4"
    return names


_FILE_TYPE_NAMES = _file_type_names()


def file_type_name(file_type: int) -> str:
    """The quantization level Ollama shows for a ``general.file_type`` value (``unknown`` if none)."""
    return _FILE_TYPE_NAMES.get(file_type, "unknown")


QUANTIZE_FILE_TYPES: dict[str, LlamaFileType] = {
    "q4_0": LlamaFileType.MOSTLY_Q4_0,
    "q4_1": LlamaFileType.MOSTLY_Q4_1,
    "q5_0": LlamaFileType.MOSTLY_Q5_0,
    "q5_1": LlamaFileType.MOSTLY_Q5_1,
    "q8_0": LlamaFileType.MOSTLY_Q8_0,
    "q2_k": LlamaFileType.MOSTLY_Q2_K,
    "q3_k_s": LlamaFileType.MOSTLY_Q3_K_S,
    "q3_k_m": LlamaFileType.MOSTLY_Q3_K_M,
    "q3_k_l": LlamaFileType.MOSTLY_Q3_K_L,
    "q4_k_s": LlamaFileType.MOSTLY_Q4_K_S,
    "q4_k_m": LlamaFileType.MOSTLY_Q4_K_M,
    "q5_k_s": LlamaFileType.MOSTLY_Q5_K_S,
    "q5_k_m": LlamaFileType.MOSTLY_Q5_K_M,
    "q6_k": LlamaFileType.MOSTLY_Q6_K,
}
"""The levels ``create --quantize`` accepts (Ollama's names, matched lower-cased) and the
file type each produces. The values are llama.cpp's ``llama_ftype`` numbers, so the store
validates a request and the runner quantizes from this one table."""


def _file_type_for_tensor_type(ggml_type: int) -> str:
    """The file type llama.cpp guesses from a dominant tensor type (Q4_K -> Q4_K_M, ...)."""
    try:
        name = GGMLQuantizationType(ggml_type).name
    except ValueError:
        return "unknown"
    known = set(_FILE_TYPE_NAMES.values())
    if name not in known and f"{name}_M" in known:
        return f"{name}_M"
    return name if name in known else "unknown"


def format_parameter_size(n: int) -> str:
    """Format a parameter count as Ollama's ``format.HumanNumber`` does.

    Billions keep one decimal and millions two, unless the value is whole; thousands
    none: ``268098176`` -> ``268.10M``, ``8030261248`` -> ``8.0B``, ``1_000`` -> ``1K``.
    """
    for scale, suffix, decimals in ((1_000_000_000, "B", 1), (1_000_000, "M", 2)):
        if n >= scale:
            value = n / scale
            return f"{value:.{0 if value == math.floor(value) else decimals}f}{suffix}"
    if n >= 1_000:
        return f"{n / 1_000:.0f}K"
    return str(n)


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor's header entry; ``offset`` is relative to ``GGUFInfo.data_offset``."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int
    n_bytes: int

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def type_name(self) -> str:
        """The ggml type name (``F32``, ``Q4_K``, ...), as ``/api/show`` lists tensors."""
        return GGMLQuantizationType(self.ggml_type).name


@dataclass(frozen=True)
class GGUFInfo:
    """A GGUF header: ``kv`` in file order, ``tensors`` in file order, and what Ollama derives.

    Values in ``kv`` are Python values: ints, floats (a float32 as the shortest decimal
    that reads back to the same float32, as Go's JSON prints it), bools, strings, lists
    for arrays (nested arrays as nested lists) — except arrays of uint8, which are
    ``bytes``.
    """

    path: Path
    version: int
    kv: dict[str, Any]
    tensors: list[TensorInfo]
    data_offset: int
    file_size: int

    # -- raw access ---------------------------------------------------------------------

    def arch_kv(self, name: str, default: Any = None) -> Any:
        """The value of ``<architecture>.<name>`` (``default`` if absent)."""
        return self.kv.get(f"{self.architecture}.{name}", default)

    def per_layer(self, name: str, default: int = 0) -> list[int]:
        """``<arch>.<name>`` for each of the ``block_count`` layers (Ollama's per-layer view).

        A scalar applies to every layer; a per-layer array (``head_count_kv`` of hybrid
        models, ``feed_forward_length`` of OpenELM) is padded with its single value, or
        with ``default`` if it has several.
        """
        value = self.arch_kv(name)
        if value is None:
            values = [default]
        elif isinstance(value, list):
            values = [int(v) for v in value]
        else:
            values = [int(value)]
        fill = values[0] if len(values) == 1 else default
        return [values[i] if i < len(values) else fill for i in range(self.block_count or 0)]

    def _arch_int(self, name: str) -> int | None:
        """An architecture integer; for a per-layer array its largest element."""
        value = self.arch_kv(name)
        if isinstance(value, list):
            return max((int(v) for v in value), default=None)
        return None if value is None else int(value)

    # -- derived properties -------------------------------------------------------------

    @property
    def architecture(self) -> str:
        """``general.architecture``; ``unknown`` if absent, as Ollama's ``KV.Architecture``."""
        return str(self.kv.get("general.architecture", "unknown"))

    @property
    def context_length(self) -> int | None:
        return self._arch_int("context_length")

    @property
    def embedding_length(self) -> int | None:
        return self._arch_int("embedding_length")

    @property
    def block_count(self) -> int | None:
        return self._arch_int("block_count")

    @property
    def head_count(self) -> int | None:
        """Attention heads (the largest layer's, for per-layer arrays)."""
        return self._arch_int("attention.head_count")

    @property
    def head_count_kv(self) -> int | None:
        """KV heads (the largest layer's); without the key, ``head_count`` as in llama.cpp."""
        value = self._arch_int("attention.head_count_kv")
        return self.head_count if value is None else value

    @property
    def key_length(self) -> int:
        """Size of one attention head's key (llama.cpp's ``n_embd_head_k``)."""
        return int(self.arch_kv("attention.key_length", (self.embedding_length or 0) // (self.head_count or 1)))

    @property
    def value_length(self) -> int:
        """Size of one attention head's value (llama.cpp's ``n_embd_head_v``)."""
        return int(self.arch_kv("attention.value_length", (self.embedding_length or 0) // (self.head_count or 1)))

    @property
    def pooling_type(self) -> int | None:
        """``<arch>.pooling_type``: present only in embedding models."""
        return self._arch_int("pooling_type")

    @property
    def chat_template(self) -> str | None:
        value = self.kv.get("tokenizer.chat_template")
        return None if value is None else str(value)

    @property
    def parameter_count(self) -> int:
        """The sum of all tensors' elements.

        Ollama overwrites ``general.parameter_count`` with this sum when it decodes a
        GGUF, so it is what ``/api/show`` and the config blob report, whatever the file says.
        """
        return sum(t.n_elements for t in self.tensors)

    @property
    def file_type_name(self) -> str:
        """The quantization level (``Q4_K_M``, ``F16``, ...) from ``general.file_type``.

        Without that key (Ollama would say ``unknown``) it is guessed from the tensor
        type holding the most bytes, named as llama.cpp names a guess (``Q4_K`` ->
        ``Q4_K_M``). Ollama's quirk of showing ``unknown`` for file type 0 is not copied.
        """
        file_type = self.kv.get("general.file_type")
        if isinstance(file_type, int) and not isinstance(file_type, bool):
            return file_type_name(file_type)
        weight: Counter[int] = Counter()
        for tensor in self.tensors:
            weight[tensor.ggml_type] += tensor.n_bytes
        if not weight:
            return "unknown"
        return _file_type_for_tensor_type(weight.most_common(1)[0][0])

    @property
    def is_adapter(self) -> bool:
        return self.kv.get("general.type") == "adapter"

    @property
    def is_projector(self) -> bool:
        return self.kv.get("general.type") in ("projector", "mmproj") or self.architecture == "clip"

    # -- Ollama's views -----------------------------------------------------------------

    def details(self) -> dict[str, Any]:
        """Ollama's ModelDetails for this file."""
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.architecture,
            "families": [self.architecture],
            "parameter_size": format_parameter_size(self.parameter_count),
            "quantization_level": self.file_type_name,
        }

    def model_info(self, verbose: bool = False) -> dict[str, Any]:
        """ShowResponse.model_info: the KV map as Ollama's ``/api/show`` sends it.

        ``general.name`` and ``tokenizer.chat_template`` are dropped and
        ``general.parameter_count`` is the tensor sum. Keys are sorted, as Go's JSON
        encoder sorts map keys. Unless ``verbose``, Ollama decodes arrays without their
        values, so every non-empty array is ``None`` (JSON ``null``) and an empty one
        ``[]``. Arrays of uint8 are base64 strings, as Go encodes ``[]uint8``.
        """
        kv = dict(self.kv)
        kv.pop("general.name", None)
        kv.pop("tokenizer.chat_template", None)
        kv["general.parameter_count"] = self.parameter_count
        return {key: _show_value(kv[key], verbose) for key in sorted(kv)}

    def capabilities(self) -> list[str]:
        """The capabilities this GGUF gives a model (GGUF side only)."""
        caps = ["embedding" if f"{self.architecture}.pooling_type" in self.kv else "completion"]
        if f"{self.architecture}.vision.block_count" in self.kv:
            caps.append("vision")
        return caps


def _show_value(value: Any, verbose: bool) -> Any:
    """One model_info value, shaped as Ollama's JSON encoding of its decoded GGUF value."""
    if isinstance(value, (list, bytes)):
        if value and not verbose:
            return None
        if isinstance(value, bytes):
            return base64.b64encode(value).decode("ascii")
        return [_show_value(v, verbose) for v in value]
    return value


# ---------------------------------------------------------------------------------------
# Reading


class _Cursor:
    """A forward-only reader over a binary file through a refillable window.

    Small reads are served from the window; big ones (a vocabulary's scores) go to the
    file directly. Running past the end of the file raises ``InvalidRequest``.
    """

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self._size = size
        self._buf = b""
        self._pos = 0  # position in _buf
        self._base = 0  # file offset of _buf[0]

    def tell(self) -> int:
        return self._base + self._pos

    def remaining(self) -> int:
        return self._size - self.tell()

    def _truncated(self, what: str) -> InvalidRequest:
        return InvalidRequest(
            f"invalid GGUF file: unexpected end of file reading {what} at offset {self.tell()} (truncated file?)"
        )

    def _fill(self, n: int, what: str) -> None:
        """Make ``n`` bytes available at ``_pos``."""
        avail = len(self._buf) - self._pos
        if avail >= n:
            return
        more = self._f.read(max(n - avail, _CHUNK))
        self._base += self._pos
        self._buf = self._buf[self._pos :] + more
        self._pos = 0
        if len(self._buf) < n:
            raise self._truncated(what)

    def read(self, n: int, what: str) -> bytes:
        if n > self.remaining():
            raise self._truncated(what)
        avail = len(self._buf) - self._pos
        if n > avail and n > _CHUNK:
            out = self._buf[self._pos :] + self._f.read(n - avail)
            self._base += len(self._buf)
            self._buf, self._pos = b"", 0
            self._base += n - avail
            if len(out) < n:
                raise self._truncated(what)
            return out
        self._fill(n, what)
        out = self._buf[self._pos : self._pos + n]
        self._pos += n
        return out

    def unpack(self, st: struct.Struct, what: str) -> Any:
        self._fill(st.size, what)
        (value,) = st.unpack_from(self._buf, self._pos)
        self._pos += st.size
        return value

    def string(self, what: str) -> str:
        n = self.unpack(_U64, what)
        return self.read(n, what).decode("utf-8", errors="replace")

    def strings(self, count: int, what: str) -> list[str]:
        """``count`` GGUF strings; the hot loop of a vocabulary, kept on local variables."""
        if count * _U64.size > self.remaining():
            raise self._truncated(what)
        out: list[str] = [""] * count
        unpack_len = _U64.unpack_from
        buf, pos, end = self._buf, self._pos, len(self._buf)
        for i in range(count):
            if end - pos < 8:
                self._pos = pos
                self._fill(8, what)
                buf, pos, end = self._buf, self._pos, len(self._buf)
            (n,) = unpack_len(buf, pos)
            pos += 8
            if end - pos < n:
                self._pos = pos
                if n > self.remaining():
                    raise self._truncated(what)
                self._fill(n, what)
                buf, pos, end = self._buf, self._pos, len(self._buf)
            out[i] = buf[pos : pos + n].decode("utf-8", errors="replace")
            pos += n
        self._pos = pos
        return out


def _f32_scalar(value: float) -> float:
    """A float32 as the shortest decimal that reads back to it (what Go's JSON prints)."""
    return float(format_float(value, "e", -1, 32))


def _read_value(cur: _Cursor, vtype: int, key: str) -> Any:
    if vtype == _T_STRING:
        return cur.string(key)
    if vtype == _T_ARRAY:
        return _read_array(cur, key)
    st = _STRUCTS.get(vtype)
    if st is None:
        raise InvalidRequest(f"invalid GGUF file: invalid type {vtype} for key {key!r}")
    value = cur.unpack(st, key)
    if vtype == _T_BOOL:
        return value != 0
    if vtype == _T_FLOAT32:
        return _f32_scalar(value)
    return value


def _read_array(cur: _Cursor, key: str, depth: int = 1) -> Any:
    if depth > _MAX_ARRAY_NESTING:
        raise InvalidRequest(f"invalid GGUF file: arrays nested more than {_MAX_ARRAY_NESTING} deep in key {key!r}")
    etype = cur.unpack(_U32, key)
    count = cur.unpack(_U64, key)
    if etype == _T_STRING:
        return cur.strings(count, key)
    if etype == _T_ARRAY:
        return [_read_array(cur, key, depth + 1) for _ in range(count)]
    fmt = _SCALAR_FORMATS.get(etype)
    if fmt is None:
        raise InvalidRequest(f"invalid GGUF file: invalid array type {etype} for key {key!r}")
    dtype = np.dtype(fmt)
    data = cur.read(count * dtype.itemsize, key)
    if etype == _T_UINT8:
        return data
    values = np.frombuffer(data, dtype=dtype)
    if etype == _T_BOOL:
        values = values != 0
    return values.tolist()


def _read_tensor_info(cur: _Cursor) -> tuple[str, tuple[int, ...], int, int]:
    name = cur.string("tensor name")
    n_dims = cur.unpack(_U32, f"tensor {name!r}")
    if n_dims > _MAX_DIMS:
        raise InvalidRequest(f"invalid GGUF file: tensor {name!r} has {n_dims} dimensions (at most {_MAX_DIMS})")
    shape = tuple(cur.unpack(_U64, f"tensor {name!r}") for _ in range(n_dims))
    ggml_type = cur.unpack(_U32, f"tensor {name!r}")
    offset = cur.unpack(_U64, f"tensor {name!r}")
    return name, shape, ggml_type, offset


def _tensor_bytes(name: str, shape: tuple[int, ...], ggml_type: int) -> int:
    try:
        block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError):
        raise InvalidRequest(f"invalid GGUF file: tensor {name!r} has unknown type {ggml_type}") from None
    return math.prod(shape) * type_size // block_size


def _read_preamble(cur: _Cursor) -> tuple[int, int, int]:
    """Magic, version and counts; (version, n_tensors, n_kv)."""
    if cur.remaining() < len(_MAGIC) or cur.read(len(_MAGIC), "magic") != _MAGIC:
        raise InvalidRequest("invalid file magic: not a GGUF file")
    version = cur.unpack(_U32, "version")
    if version not in _SUPPORTED_VERSIONS:
        if version & 0xFFFF == 0 and int.from_bytes(version.to_bytes(4, "little"), "big") in (1, 2, 3):
            raise InvalidRequest("big-endian GGUF files are not supported")
        raise InvalidRequest(f"unsupported GGUF version {version} (supported: 2, 3)")
    n_tensors = cur.unpack(_U64, "tensor count")
    n_kv = cur.unpack(_U64, "key/value count")
    return version, n_tensors, n_kv


def read_gguf(path: str | os.PathLike[str]) -> GGUFInfo:
    """Read the header of the GGUF file at ``path``: all key/values and tensor infos.

    Tensor data is never read, but its bounds are checked, so a file cut short anywhere
    raises :class:`InvalidRequest`, as does a file that is not GGUF.
    """
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        cur = _Cursor(f, size)
        version, n_tensors, n_kv = _read_preamble(cur)

        kv: dict[str, Any] = {}
        for _ in range(n_kv):
            key = cur.string("key")
            kv[key] = _read_value(cur, cur.unpack(_U32, f"type of {key!r}"), key)

        raw_tensors = [_read_tensor_info(cur) for _ in range(n_tensors)]
        header_end = cur.tell()

    alignment = kv.get("general.alignment", _DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise InvalidRequest(f"invalid GGUF file: general.alignment {alignment!r} is not a power of two")
    data_offset = -(-header_end // alignment) * alignment

    tensors: list[TensorInfo] = []
    for name, shape, ggml_type, offset in raw_tensors:
        n_bytes = _tensor_bytes(name, shape, ggml_type)
        if data_offset + offset + n_bytes > size:
            raise InvalidRequest(
                f"invalid GGUF file: data of tensor {name!r} runs past the end of the file (truncated file?)"
            )
        tensors.append(TensorInfo(name, shape, ggml_type, offset, n_bytes))

    return GGUFInfo(path=path, version=version, kv=kv, tensors=tensors, data_offset=data_offset, file_size=size)
