"""The option table: defaults, Ollama's FromMap/FormatParams type rules, /api/show text."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ollamapy.api.options import (
    DEPRECATED_PARAMETERS,
    OPTION_KINDS,
    LoadOptions,
    OptionKind,
    Options,
    SamplingOptions,
    format_parameter_value,
    format_parameters,
    parse_parameter,
)
from ollamapy.errors import InvalidRequest


def test_defaults_are_ollamas_default_options() -> None:
    options, ignored = Options.from_layers()
    assert ignored == []
    assert options.load.model_dump() == {
        "num_ctx": None,
        "num_batch": 512,
        "num_gpu": -1,
        "main_gpu": None,
        "use_mmap": None,
        "use_mlock": False,
        "num_thread": 0,
        "draft_num_predict": 4,
    }
    assert options.sampling.model_dump() == {
        "num_keep": 4,
        "seed": -1,
        "num_predict": -1,
        "top_k": 40,
        "top_p": 0.9,
        "min_p": 0.0,
        "typical_p": 1.0,
        "repeat_last_n": 64,
        "temperature": 0.8,
        "repeat_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "mirostat": 0,
        "mirostat_tau": 5.0,
        "mirostat_eta": 0.1,
        "stop": [],
    }


def test_every_field_documents_itself() -> None:
    for model in (LoadOptions, SamplingOptions):
        for name, info in model.model_fields.items():
            assert info.description, name


def test_load_options_are_frozen_and_hashable() -> None:
    a = LoadOptions(num_ctx=2048)
    assert a == LoadOptions(num_ctx=2048) and hash(a) == hash(LoadOptions(num_ctx=2048))
    assert a != LoadOptions(num_ctx=4096)
    assert len({a, LoadOptions(num_ctx=2048), LoadOptions()}) == 2
    with pytest.raises(ValidationError):
        a.num_ctx = 1  # type: ignore[misc]


def test_from_layers_load_options_compare_equal_to_hand_built_ones() -> None:
    options, _ = Options.from_layers({"num_ctx": 2048})
    assert options.load == LoadOptions(num_ctx=2048)


def test_layers_merge_in_order_model_then_request() -> None:
    model = {"temperature": 0.2, "num_ctx": 8192, "stop": ["<|eot_id|>", "<|end|>"], "top_k": 10}
    request = {"temperature": 1, "stop": ["###"], "top_k": None}
    options, ignored = Options.from_layers(model, request)
    assert ignored == []
    assert options.sampling.temperature == 1.0
    assert options.sampling.stop == ["###"]  # a later layer replaces the list
    assert options.sampling.top_k == 10  # null leaves the option as it was
    assert options.load.num_ctx == 8192


def test_from_layers_does_not_share_the_default_stop_list() -> None:
    first, _ = Options.from_layers()
    first.sampling.stop.append("x")
    assert Options.from_layers()[0].sampling.stop == []


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("num_ctx", 4096, 4096),
        ("num_ctx", 4096.9, 4096),  # JSON numbers are truncated
        ("seed", -3.7, -3),
        ("main_gpu", 1.0, 1),
        ("temperature", 1, 1.0),
        ("top_p", 0.5, 0.5),
        ("use_mmap", False, False),
        ("use_mlock", True, True),
        ("mirostat", 2, 2),
        ("stop", [], []),
        ("stop", ["a", "b"], ["a", "b"]),
    ],
)
def test_values_are_typed_like_from_map(key: str, raw: Any, expected: Any) -> None:
    options, _ = Options.from_layers({key: raw})
    merged = {**options.load.model_dump(), **options.sampling.model_dump()}
    assert merged[key] == expected and type(merged[key]) is type(expected)


@pytest.mark.parametrize(
    ("key", "raw", "message"),
    [
        ("num_ctx", "4096", 'option "num_ctx" must be of type integer'),
        ("num_ctx", True, 'option "num_ctx" must be of type integer'),
        ("main_gpu", [1], 'option "main_gpu" must be of type integer'),
        ("temperature", "0.5", 'option "temperature" must be of type float32'),
        ("temperature", False, 'option "temperature" must be of type float32'),
        ("use_mmap", 1, 'option "use_mmap" must be of type boolean'),
        ("use_mlock", "true", 'option "use_mlock" must be of type boolean'),
        ("stop", "###", 'option "stop" must be of type array'),
        ("stop", ["a", 1], 'option "stop" must be of an array of strings'),
    ],
)
def test_wrong_types_are_rejected_with_ollamas_message(key: str, raw: Any, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        Options.from_layers({key: raw})
    assert str(info.value) == message
    assert info.value.status_code == 400


def test_unknown_and_deprecated_options_are_reported_not_applied() -> None:
    options, ignored = Options.from_layers(
        {"tfs_z": 0.5, "bogus": 1}, {"penalize_newline": "not even a bool", "bogus": 2, "top_k": 5}
    )
    assert ignored == ["tfs_z", "bogus", "penalize_newline"]
    assert options.sampling.top_k == 5


def test_deprecated_are_exactly_the_options_llama_cpp_dropped() -> None:
    assert {
        "tfs_z", "penalize_newline", "numa", "num_gqa", "low_vram", "f16_kv", "logits_all", "vocab_only",
    } == DEPRECATED_PARAMETERS
    assert not DEPRECATED_PARAMETERS & OPTION_KINDS.keys()
    # ollamapy still honours these, unlike current Ollama
    assert {"mirostat", "mirostat_tau", "mirostat_eta", "use_mlock"} <= OPTION_KINDS.keys()


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("num_ctx", "4096", 4096),
        ("seed", "-1", -1),
        ("seed", "+5", 5),
        ("seed", "08", 8),
        ("seed", "9223372036854775807", 2**63 - 1),
        ("main_gpu", "1", 1),
        ("temperature", "0.7", 0.7),
        ("temperature", "1", 1.0),
        ("top_p", ".5", 0.5),
        ("top_p", "1.", 1.0),
        ("min_p", "5e-2", 0.05),
        ("min_p", "+.5e3", 500.0),
        ("top_p", "0x1p-2", 0.25),
        ("top_p", "1_000", 1000.0),
        ("temperature", "0.123456789", 0.12345679),  # float32, as Go stores it
        ("use_mmap", "true", True),
        ("use_mmap", "F", False),
        ("use_mlock", "1", True),
        ("use_mlock", "FALSE", False),
        ("stop", "<|eot_id|>", ["<|eot_id|>"]),
    ],
)
def test_parse_parameter_follows_go_strconv(name: str, text: str, expected: Any) -> None:
    value = parse_parameter(name, text)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("num_ctx", "4k", "invalid int value [4k]"),
        ("num_ctx", "1.5", "invalid int value [1.5]"),
        ("seed", "1_000", "invalid int value [1_000]"),
        ("seed", "0x10", "invalid int value [0x10]"),
        ("seed", "9223372036854775808", "invalid int value [9223372036854775808]"),
        ("seed", " 1", "invalid int value [ 1]"),
        ("temperature", "hot", "invalid float value [hot]"),
        ("temperature", "1e39", "invalid float value [1e39]"),
        ("temperature", "1__0", "invalid float value [1__0]"),
        ("temperature", "NaN", "invalid float value [NaN]"),
        ("temperature", "a b", "invalid float value [a b]"),
        ("use_mmap", "yes", "invalid bool value [yes]"),
        ("use_mmap", "tRUE", "invalid bool value [tRUE]"),
        ("nonsense", "1", "unknown parameter 'nonsense'"),
        ("Stop", "x", "unknown parameter 'Stop'"),
        ("tfs_z", "1", "unknown parameter 'tfs_z'"),
    ],
)
def test_parse_parameter_errors_are_format_params_messages(name: str, text: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_parameter(name, text)
    assert str(info.value) == message


def test_option_kinds_cover_both_models() -> None:
    assert OPTION_KINDS["num_ctx"] is OptionKind.INT
    assert OPTION_KINDS["main_gpu"] is OptionKind.INT
    assert OPTION_KINDS["use_mmap"] is OptionKind.BOOL
    assert OPTION_KINDS["temperature"] is OptionKind.FLOAT
    assert OPTION_KINDS["stop"] is OptionKind.STRINGS
    assert set(OPTION_KINDS) == set(LoadOptions.model_fields) | set(SamplingOptions.model_fields)


def test_format_parameters_is_ollamas_show_text() -> None:
    params = {
        "temperature": 0.7,
        "stop": ["<|start_header_id|>", "<|eot_id|>"],
        "num_ctx": 4096,
        "use_mmap": True,
        "seed": 1234567,
    }
    assert format_parameters(params) == (
        "num_ctx                        4096\n"
        "seed                           1.234567e+06\n"
        'stop                           "<|start_header_id|>"\n'
        'stop                           "<|eot_id|>"\n'
        "temperature                    0.7\n"
        "use_mmap                       true"
    )


def test_format_parameters_of_nothing_is_empty() -> None:
    assert format_parameters({}) == ""


def test_long_names_are_not_truncated() -> None:
    assert format_parameters({"x" * 35: "v"}) == "x" * 35 + ' "v"'


@pytest.mark.parametrize(
    ("value", "text"),
    [(1234567, "1234567"), (4096.0, "4096"), (0.7, "0.7"), (1e-05, "1e-05"), (True, "true"), ("a b", "a b")],
)
def test_format_parameter_value_reparses(value: Any, text: str) -> None:
    assert format_parameter_value(value) == text
