"""The Modelfile parser, formatter and create request (the behaviour of Ollama's
parser_test.go and expandpath_test.go, plus ``ollama show --modelfile``)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ollamapy.errors import InvalidRequest, ParserError
from ollamapy.store.modelfile import (
    Command,
    Modelfile,
    format_show_modelfile,
    parse,
    resolve_from_path,
    to_create_request,
)

BAD_COMMAND = (
    'command must be one of "from", "license", "template", "system", "adapter", "draft", '
    '"renderer", "parser", "parameter", "message", or "requires"'
)
BAD_ROLE = 'message role must be one of "system", "user", or "assistant"'

LLAMA3_TEMPLATE = (
    "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
    "{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>"
)


def commands(text: str | bytes) -> list[tuple[str, str]]:
    return [(c.name, c.args) for c in parse(text).commands]


def parse_error(text: str | bytes) -> ParserError:
    with pytest.raises(ParserError) as info:
        parse(text)
    return info.value


# --- parsing -------------------------------------------------------------------------


def test_parse_file() -> None:
    text = f'\nFROM model1\nADAPTER adapter1\nLICENSE MIT\nPARAMETER param1 value1\nPARAMETER param2 value2\nTEMPLATE """{LLAMA3_TEMPLATE}"""    \n'
    assert commands(text) == [
        ("model", "model1"),
        ("adapter", "adapter1"),
        ("license", "MIT"),
        ("param1", "value1"),
        ("param2", "value2"),
        ("template", LLAMA3_TEMPLATE),
    ]


def test_values_are_trimmed_unless_quoted() -> None:
    text = (
        '\nFROM "     model 1"\nADAPTER      adapter3\nLICENSE "MIT       "\nPARAMETER param1        value1\n'
        f'PARAMETER param2    value2\nTEMPLATE """   {LLAMA3_TEMPLATE}   """    \n'
    )
    assert commands(text) == [
        ("model", "     model 1"),
        ("adapter", "adapter3"),
        ("license", "MIT       "),
        ("param1", "value1"),
        ("param2", "value2"),
        ("template", f"   {LLAMA3_TEMPLATE}   "),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('FROM "FOO  BAR  "', [("model", "FOO  BAR  ")]),
        ('FROM "FOO BAR"\nPARAMETER param1 value1', [("model", "FOO BAR"), ("param1", "value1")]),
        ("FROM     FOOO BAR    ", [("model", "FOOO BAR")]),
        ("FROM /what/is/the path ", [("model", "/what/is/the path")]),
        ("FROM foo", [("model", "foo")]),
        ("FROM /path/to/model/fp16.bin", [("model", "/path/to/model/fp16.bin")]),
        ("FROM llama3:latest", [("model", "llama3:latest")]),
        ("FROM llama3:7b-instruct-q4_K_M", [("model", "llama3:7b-instruct-q4_K_M")]),
        ("PARAMETER param1 value1\nFROM foo", [("param1", "value1"), ("model", "foo")]),
        ("PARAMETER what the \nFROM lemons make lemonade ", [("what", "the"), ("model", "lemons make lemonade")]),
        ("from foo\nSyStEm hi", [("model", "foo"), ("system", "hi")]),
    ],
)
def test_from(text: str, expected: list[tuple[str, str]]) -> None:
    assert commands(text) == expected


@pytest.mark.parametrize("text", ["", "PARAMETER param1 value1", "# FROM foo\n"])
def test_missing_from(text: str) -> None:
    error = parse_error(text)
    assert str(error) == "no FROM line" and error.line is None


def test_parameter_without_value_is_unexpected_eof() -> None:
    error = parse_error("\nFROM foo\nPARAMETER param1\n")
    assert str(error) == "unexpected EOF: param1"
    assert error.line == 4


def test_bad_command_names_its_line() -> None:
    error = parse_error("\nFROM foo\nBADCOMMAND param1 value1\n")
    assert str(error) == f"(line 3): {BAD_COMMAND}"
    assert error.line == 3 and error.status_code == 400


def test_keyword_ended_by_a_line_break_counts_the_new_line() -> None:
    assert str(parse_error("FROM foo\nSYSTEM\n")) == f"(line 3): {BAD_COMMAND}"


@pytest.mark.parametrize("name", ["renderer", "parser", "draft", "requires"])
def test_single_value_commands(name: str) -> None:
    text = f"\nFROM foo\n{name.upper()} value1\n"
    assert commands(text) == [("model", "foo"), (name, "value1")]
    assert f"{name.upper()} value1" in str(parse(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "\nFROM foo\nMESSAGE system You are a file parser. Always parse things.\n",
            [("model", "foo"), ("message", "system: You are a file parser. Always parse things.")],
        ),
        (
            "\nFROM foo\nMESSAGE system You are a file parser. Always parse things.",
            [("model", "foo"), ("message", "system: You are a file parser. Always parse things.")],
        ),
        (
            ("\nFROM foo\nMESSAGE system You are a file parser. Always parse things.\n"
            "MESSAGE user Hey there!\nMESSAGE assistant Hello, I want to parse all the things!\n"),
            [
                ("model", "foo"),
                ("message", "system: You are a file parser. Always parse things."),
                ("message", "user: Hey there!"),
                ("message", "assistant: Hello, I want to parse all the things!"),
            ],
        ),
        (
            '\nFROM foo\nMESSAGE system """\nYou are a multiline file parser. Always parse things.\n"""\n\t\t\t',
            [("model", "foo"), ("message", "system: \nYou are a multiline file parser. Always parse things.\n")],
        ),
    ],
)
def test_messages(text: str, expected: list[tuple[str, str]]) -> None:
    assert commands(text) == expected


def test_message_role_is_checked() -> None:
    error = parse_error("\nFROM foo\nMESSAGE badguy I'm a bad guy!\n")
    assert str(error) == f"(line 3): {BAD_ROLE}" and error.line == 3


def test_message_role_is_case_sensitive() -> None:
    assert str(parse_error("FROM foo\nMESSAGE User hi\n")) == f"(line 2): {BAD_ROLE}"


@pytest.mark.parametrize("text", ["\nFROM foo\nMESSAGE system\n", "\nFROM foo\nMESSAGE system"])
def test_message_without_text_is_unexpected_eof(text: str) -> None:
    assert str(parse_error(text)).startswith("unexpected EOF")


@pytest.mark.parametrize(
    ("text", "system"),
    [
        ('\nFROM foo\nSYSTEM """\nThis is a\nmultiline system.\n"""\n\t\t\t', "\nThis is a\nmultiline system.\n"),
        ('\nFROM foo\nSYSTEM """\nThis is a\nmultiline system."""\n\t\t\t', "\nThis is a\nmultiline system."),
        ('\nFROM foo\nSYSTEM """This is a\nmultiline system."""\n\t\t\t', "This is a\nmultiline system."),
        ('\nFROM foo\nSYSTEM """This is a multiline system."""\n\t\t\t', "This is a multiline system."),
        (
            '\nFROM foo\nSYSTEM """\nThis is a multiline system with "quotes".\n"""\n',
            '\nThis is a multiline system with "quotes".\n',
        ),
        ('\nFROM foo\nSYSTEM """"""\n', ""),
        ('\nFROM foo\nSYSTEM ""\n', ""),
        ("\nFROM foo\nSYSTEM \"'\"\n", "'"),
        ('\nFROM foo\nSYSTEM """\'\'"\'""\'""\'"\'\'\'\'\'""\'""\'"""\n', '\'\'"\'""\'""\'"\'\'\'\'\'""\'""\''),
        ('\nFROM foo\nSYSTEM "two\nlines"\n', "two\nlines"),
        ("FROM foo\nSYSTEM keep # this is not a comment\n", "keep # this is not a comment"),
    ],
)
def test_quoted_values(text: str, system: str) -> None:
    assert commands(text) == [("model", "foo"), ("system", system)]


def test_quoted_template_at_end_of_input() -> None:
    assert commands('\nFROM foo\nTEMPLATE """\n{{ .Prompt }}\n"""') == [("model", "foo"), ("template", "\n{{ .Prompt }}\n")]


@pytest.mark.parametrize(
    "text", ['\nFROM foo\nSYSTEM """This is a multiline system.""\n\t\t\t', '\nFROM foo\nSYSTEM "\n\t\t\t']
)
def test_unterminated_quote_is_unexpected_eof(text: str) -> None:
    error = parse_error(text)
    assert str(error) == "unexpected EOF"
    assert error.line == 4


PARAMETER_CASES = {
    "numa true": ("numa", "true"),
    "num_ctx 1": ("num_ctx", "1"),
    "num_batch 1": ("num_batch", "1"),
    "num_gqa 1": ("num_gqa", "1"),
    "num_gpu 1": ("num_gpu", "1"),
    "main_gpu 1": ("main_gpu", "1"),
    "use_mmap true": ("use_mmap", "true"),
    "num_thread 1": ("num_thread", "1"),
    "num_keep 1": ("num_keep", "1"),
    "seed 1": ("seed", "1"),
    "num_predict 1": ("num_predict", "1"),
    "top_k 1": ("top_k", "1"),
    "top_p 1.0": ("top_p", "1.0"),
    "min_p 0.05": ("min_p", "0.05"),
    "typical_p 1.0": ("typical_p", "1.0"),
    "repeat_last_n 1": ("repeat_last_n", "1"),
    "temperature 1.0": ("temperature", "1.0"),
    "repeat_penalty 1.0": ("repeat_penalty", "1.0"),
    "presence_penalty 1.0": ("presence_penalty", "1.0"),
    "frequency_penalty 1.0": ("frequency_penalty", "1.0"),
    "penalize_newline true": ("penalize_newline", "true"),
    "stop ### User:": ("stop", "### User:"),
    "stop ### User: ": ("stop", "### User:"),
    'stop "### User:"': ("stop", "### User:"),
    'stop "### User: "': ("stop", "### User: "),
    'stop """### User:"""': ("stop", "### User:"),
    'stop """### User:\n"""': ("stop", "### User:\n"),
    "stop <|endoftext|>": ("stop", "<|endoftext|>"),
    "stop <|eot_id|>": ("stop", "<|eot_id|>"),
    "stop </s>": ("stop", "</s>"),
    "Num_Ctx 1": ("Num_Ctx", "1"),
}


@pytest.mark.parametrize("line", list(PARAMETER_CASES))
def test_parameters(line: str) -> None:
    assert commands(f"FROM foo\nPARAMETER {line}\n") == [("model", "foo"), PARAMETER_CASES[line]]


def test_parameter_name_with_other_characters_is_unexpected_eof() -> None:
    assert str(parse_error("FROM foo\nPARAMETER top-k 1\n")) == "unexpected EOF: top"


@pytest.mark.parametrize(
    "text",
    ["\n# comment\nFROM foo\n\t", "  # indented comment\nFROM foo", "FROM foo\n#PARAMETER x y", "FROM foo\n#"],
)
def test_comments(text: str) -> None:
    assert commands(text) == [("model", "foo")]


def test_crlf_line_endings() -> None:
    assert commands('FROM foo\r\nSYSTEM """a\r\nb"""\r\n') == [("model", "foo"), ("system", "a\r\nb")]


def test_non_printable_runes_are_dropped() -> None:
    assert commands("FROM foo\nSYSTEM a\x00b\u200bc\u00a0d\n") == [("model", "foo"), ("system", "abcd")]


def test_tabs_inside_values_are_kept() -> None:
    assert commands("FROM foo\nSYSTEM a\tb\n") == [("model", "foo"), ("system", "a\tb")]


UTF16_TEXT = "FROM bob\nPARAMETER param1 1\nPARAMETER param2 4096\nSYSTEM You are a utf16 file.\n"
UTF16_EXPECTED = [("model", "bob"), ("param1", "1"), ("param2", "4096"), ("system", "You are a utf16 file.")]


@pytest.mark.parametrize(("bom", "encoding"), [(b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")])
def test_utf16_with_bom(bom: bytes, encoding: str) -> None:
    assert commands(bom + UTF16_TEXT.encode(encoding)) == UTF16_EXPECTED


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_multibyte(encoding: str) -> None:
    data = "FROM test\n\tSYSTEM 你好👋".encode(encoding)
    assert commands(data) == [("model", "test"), ("system", "你好👋")]


def test_utf8_bom_in_text_is_ignored() -> None:
    assert commands("\ufeffFROM foo") == [("model", "foo")]


def test_invalid_utf8_becomes_replacement_character() -> None:
    assert commands(b"FROM foo\nSYSTEM a\xffb\n") == [("model", "foo"), ("system", "a\ufffdb")]


# --- formatting ----------------------------------------------------------------------


ROUND_TRIP_CASES = [
    ("\nFROM foo\nADAPTER adapter1\nLICENSE MIT\nPARAMETER param1 value1\nPARAMETER param2 value2\nTEMPLATE template1\n"
    "MESSAGE system You are a file parser. Always parse things.\nMESSAGE user Hey there!\n"
    "MESSAGE assistant Hello, I want to parse all the things!\n"),
    ('\nFROM foo\nADAPTER adapter1\nLICENSE MIT\nPARAMETER param1 value1\nPARAMETER param2 value2\nTEMPLATE template1\n'
    'MESSAGE system """\nYou are a store greeter. Always respond with "Hello!".\n"""\nMESSAGE user Hey there!\n'
    "MESSAGE assistant Hello, I want to parse all the things!\n"),
    ('\nFROM foo\nADAPTER adapter1\nLICENSE """\nVery long and boring legal text.\nBlah blah blah.\n"Oh look, a quote!"\n"""\n\n'
    'PARAMETER param1 value1\nPARAMETER param2 value2\nTEMPLATE template1\nMESSAGE system """\nYou are a store greeter. '
    'Always respond with "Hello!".\n"""\nMESSAGE user Hey there!\nMESSAGE assistant Hello, I want to parse all the things!\n'),
    '\nFROM foo\nSYSTEM ""\n',
]


@pytest.mark.parametrize("text", ROUND_TRIP_CASES)
def test_parse_format_parse(text: str) -> None:
    parsed = parse(text)
    assert parse(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("command", "line"),
    [
        (Command("model", "/blobs/sha256-abc"), "FROM /blobs/sha256-abc"),
        (Command("system", "plain"), "SYSTEM plain"),
        (Command("system", "two\nlines"), 'SYSTEM "two\nlines"'),
        (Command("system", " padded "), 'SYSTEM " padded "'),
        (Command("template", 'say "hi"\n'), 'TEMPLATE """say "hi"\n"""'),
        (Command("license", 'has "quotes" only'), 'LICENSE has "quotes" only'),
        (Command("system", ""), "SYSTEM "),
        (Command("message", "user: hello there"), "MESSAGE user hello there"),
        (Command("message", "assistant: \nmulti"), 'MESSAGE assistant "\nmulti"'),
        (Command("stop", "<|eot_id|>"), "PARAMETER stop <|eot_id|>"),
        (Command("stop", "### User: "), 'PARAMETER stop "### User: "'),
        # stricter than Ollama, so these survive a round trip
        (Command("system", '"quoted"'), 'SYSTEM """"quoted""""'),
        (Command("system", "\ttabbed"), 'SYSTEM "\ttabbed"'),
        (Command("system", "a\rb"), 'SYSTEM "a\rb"'),
    ],
)
def test_command_formatting(command: Command, line: str) -> None:
    assert str(command) == line
    assert str(Modelfile([command])) == line + "\n"


PARAMETER_NAMES = st.from_regex(r"[A-Za-z0-9_]{1,12}", fullmatch=True).filter(
    lambda n: n not in {"model", "message", "license", "template", "system", "adapter", "renderer", "parser", "requires", "draft"}
)
KEYWORDS = ["model", "license", "template", "system", "adapter", "renderer", "parser", "requires", "draft"]


def command_strategy(values: st.SearchStrategy[str]) -> st.SearchStrategy[Command]:
    return st.one_of(
        st.builds(Command, st.sampled_from(KEYWORDS), values),
        st.builds(Command, PARAMETER_NAMES, values),
        st.builds(lambda role, text: Command("message", f"{role}: {text}"), st.sampled_from(["system", "user", "assistant"]), values),
    )


def modelfile_strategy(values: st.SearchStrategy[str]) -> st.SearchStrategy[Modelfile]:
    return st.builds(
        lambda first, rest: Modelfile([first, *rest]),
        st.builds(Command, st.just("model"), values),
        st.lists(command_strategy(values), max_size=6),
    )


# Everything a parsed value can hold: printable runes, spaces, tabs and line breaks.
PARSEABLE_TEXT = st.text(
    st.one_of(
        st.sampled_from(' \t\r\n"#:'),
        st.characters(codec="utf-8").filter(str.isprintable),
    ),
    max_size=20,
)


def unrepresentable(value: str) -> bool:
    """A value with a line break right after a `\"\"\"` cannot be written in any quoting."""
    return any(c in "\r\n" and value[:i].rstrip(" \t\r\n").endswith('"""') for i, c in enumerate(value))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(modelfile_strategy(PARSEABLE_TEXT.filter(lambda v: not unrepresentable(v))))
def test_format_then_parse_gives_back_the_commands(modelfile: Modelfile) -> None:
    assert parse(str(modelfile)) == modelfile


ANY_TEXT = st.text(st.one_of(st.sampled_from(' \t\r\n"#:\x00\u200b'), st.characters()), max_size=20)
RAW_VALUE = st.builds(lambda quote, text: f"{quote}{text}{quote}", st.sampled_from(["", '"', '"""']), ANY_TEXT)
RAW_LINE = st.one_of(
    st.builds(lambda k, v: f"{k} {v}", st.sampled_from(["FROM", "system", "Template", "LICENSE", "ADAPTER"]), RAW_VALUE),
    st.builds(lambda n, v: f"PARAMETER {n} {v}", PARAMETER_NAMES, RAW_VALUE),
    st.builds(lambda r, v: f"MESSAGE {r} {v}", st.sampled_from(["system", "user", "assistant"]), RAW_VALUE),
    st.builds(lambda t: f"#{t}", ANY_TEXT),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.builds(lambda first, rest: "\n".join([first, *rest]), RAW_LINE, st.lists(RAW_LINE, max_size=6)))
def test_parse_format_parse_is_identity(source: str) -> None:
    try:
        parsed = parse(source)
    except ParserError:
        assume(False)
        raise
    assert parse(str(parsed)) == parsed


def test_show_modelfile_is_ollamas_text() -> None:
    text = format_show_modelfile(
        short_name="llama3.2:latest",
        model_path="/models/blobs/sha256-aaa",
        adapter_paths=["/models/blobs/sha256-bbb"],
        projector_paths=["/models/blobs/sha256-ccc"],
        template=LLAMA3_TEMPLATE,
        system="You are helpful.",
        parameters={"temperature": 0.7, "stop": ["<|eot_id|>", "<|end_of_text|>"], "num_ctx": 1048576, "seed": 42},
        licenses=["MIT", 'Line one\n"quoted"'],
        messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " Hello "}],
    )
    assert text == (
        '# Modelfile generated by "ollama show"\n'
        "# To build a new Modelfile based on this, replace FROM with:\n"
        "# FROM llama3.2:latest\n"
        "\n"
        "FROM /models/blobs/sha256-aaa\n"
        "ADAPTER /models/blobs/sha256-bbb\n"
        "FROM /models/blobs/sha256-ccc\n"
        f'TEMPLATE "{LLAMA3_TEMPLATE}"\n'
        "SYSTEM You are helpful.\n"
        "PARAMETER num_ctx 1048576\n"
        "PARAMETER seed 42\n"
        "PARAMETER stop <|eot_id|>\n"
        "PARAMETER stop <|end_of_text|>\n"
        "PARAMETER temperature 0.7\n"
        "LICENSE MIT\n"
        'LICENSE """Line one\n"quoted""""\n'
        "MESSAGE user Hi\n"
        'MESSAGE assistant " Hello "\n'
    )
    reparsed = parse(text)
    assert ("stop", "<|end_of_text|>") in [(c.name, c.args) for c in reparsed.commands]


def test_show_modelfile_minimal_and_renderer_parser_draft() -> None:
    text = format_show_modelfile(
        short_name="m:latest", model_path="/b/sha256-1", draft_path="/b/sha256-2", template="{{ .Prompt }}",
        renderer="qwen3-coder", parser="qwen3-coder",
    )
    assert text.split("\n\n", 1)[1] == (
        "FROM /b/sha256-1\nDRAFT /b/sha256-2\nTEMPLATE {{ .Prompt }}\nRENDERER qwen3-coder\nPARSER qwen3-coder\n"
    )
    assert format_show_modelfile(short_name="m", model_path="/b/x").endswith("# FROM m\n\nFROM /b/x\n")


# --- FROM paths and the create request -----------------------------------------------


def test_resolve_from_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    (tmp_path / "dir").mkdir()
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "m.gguf").write_bytes(b"GGUF")
    monkeypatch.setenv("HOME", str(home))

    assert resolve_from_path("./model.gguf", tmp_path) == tmp_path / "model.gguf"
    assert resolve_from_path("model.gguf", tmp_path) == tmp_path / "model.gguf"
    assert resolve_from_path("dir/../model.gguf", tmp_path) == tmp_path / "model.gguf"
    assert resolve_from_path(str(tmp_path / "model.gguf"), Path("/elsewhere")) == tmp_path / "model.gguf"
    assert resolve_from_path("dir", tmp_path) == tmp_path / "dir"
    assert resolve_from_path("~/models/m.gguf", tmp_path) == home / "models" / "m.gguf"
    assert resolve_from_path("~", tmp_path) == home
    assert resolve_from_path("llama3.2", tmp_path) is None
    assert resolve_from_path("llama3.2:1b", tmp_path) is None
    assert resolve_from_path("./missing.gguf", tmp_path) is None


def test_tilde_user_expands_to_that_users_home(tmp_path: Path) -> None:
    entry = pwd.getpwuid(os.getuid())
    home = Path(os.path.abspath(entry.pw_dir))
    assert resolve_from_path(f"~{entry.pw_name}", tmp_path) == (home if home.exists() else None)
    assert resolve_from_path(f"~{entry.pw_name}/surely-not-here.gguf", tmp_path) is None


def test_tilde_unknown_user_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as info:
        resolve_from_path("~no-such-user-xyz/m.gguf", tmp_path)
    assert str(info.value) == "failed to find user 'no-such-user-xyz': user: unknown user no-such-user-xyz"


def create_request(text: str, directory: Path = Path("/nonexistent"), **kwargs: object) -> tuple[dict, dict]:
    return to_create_request(parse(text), directory, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FROM test", {"from": "test"}),
        ("FROM test\nTEMPLATE some template\n", {"from": "test", "template": "some template"}),
        (
            "FROM test\nLICENSE single license\nPARAMETER temperature 0.5\nMESSAGE user Hello\n",
            {
                "from": "test",
                "license": ["single license"],
                "parameters": {"temperature": 0.5},
                "messages": [{"role": "user", "content": "Hello"}],
            },
        ),
        (
            ("FROM test\nPARAMETER temperature 0.5\nPARAMETER top_k 1\nSYSTEM You are a bot.\nLICENSE license1\n"
            "LICENSE license2\nMESSAGE user Hello there!\nMESSAGE assistant Hi! How are you?\n"),
            {
                "from": "test",
                "license": ["license1", "license2"],
                "system": "You are a bot.",
                "parameters": {"temperature": 0.5, "top_k": 1},
                "messages": [
                    {"role": "user", "content": "Hello there!"},
                    {"role": "assistant", "content": "Hi! How are you?"},
                ],
            },
        ),
        (
            ("FROM test\nPARAMETER stop a\nPARAMETER num_ctx 4096\nPARAMETER stop b\nPARAMETER use_mmap false\n"
            "RENDERER r\nPARSER p\nREQUIRES 0.14.0"),
            {
                "from": "test",
                "parameters": {"stop": ["a", "b"], "num_ctx": 4096, "use_mmap": False},
                "renderer": "r",
                "parser": "p",
                "requires": "0.14.0",
            },
        ),
        ('FROM test\nTEMPLATE ""\nSYSTEM ""', {"from": "test"}),
        ("FROM test\nMESSAGE system \"\"\"\nline\n\"\"\"", {"from": "test", "messages": [{"role": "system", "content": "\nline\n"}]}),
    ],
)
def test_create_request(text: str, expected: dict) -> None:
    request, local_files = create_request(text)
    assert request == expected
    assert local_files == {}


def test_parameter_values_are_typed() -> None:
    request, _ = create_request("FROM t\nPARAMETER top_k 1\nPARAMETER temperature 0.123456789\nPARAMETER use_mlock true")
    assert request["parameters"] == {"top_k": 1, "temperature": 0.12345679, "use_mlock": True}
    assert type(request["parameters"]["top_k"]) is int


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("PARAMETER top_k many", "invalid int value [many]"),
        ("PARAMETER temperature hot", "invalid float value [hot]"),
        ("PARAMETER use_mmap maybe", "invalid bool value [maybe]"),
        ("PARAMETER param1 value1", "unknown parameter 'param1'"),
        ("REQUIRES latest", "requires must be a valid semver (e.g. 0.14.0)"),
        ("REQUIRES 1.02.3", "requires must be a valid semver (e.g. 0.14.0)"),
    ],
)
def test_create_request_errors(line: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        create_request(f"FROM t\n{line}\n")
    assert str(info.value) == message and info.value.status_code == 400


@pytest.mark.parametrize(("given_", "sent"), [("v0.14.0", "0.14.0"), ("1", "1"), ("1.2", "1.2"), ("1.2.3-rc1+build.5", "1.2.3-rc1+build.5")])
def test_requires_accepts_semver(given_: str, sent: str) -> None:
    assert create_request(f"FROM t\nREQUIRES {given_}")[0]["requires"] == sent


def test_deprecated_parameters_warn_and_are_skipped() -> None:
    warnings: list[str] = []
    request, _ = create_request("FROM t\nPARAMETER penalize_newline true\nPARAMETER top_k 3\nPARAMETER tfs_z x", warn=warnings.append)
    assert request["parameters"] == {"top_k": 3}
    assert warnings == ["warning: parameter penalize_newline is deprecated", "warning: parameter tfs_z is deprecated"]


def test_from_file_becomes_files(tmp_path: Path) -> None:
    first = tmp_path / "first.gguf"
    second = tmp_path / "sub" / "second.gguf"
    second.parent.mkdir()
    first.write_bytes(b"GGUF first")
    second.write_bytes(b"GGUF second")
    request, local_files = create_request(f"FROM {first}\nFROM ./sub/second.gguf\nSYSTEM s", tmp_path)
    assert request == {"files": {"first.gguf": "", "second.gguf": ""}, "system": "s"}
    assert local_files == {"first.gguf": first, "second.gguf": second}


def test_from_directory_of_gguf_files(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model-00001-of-00002.gguf").write_bytes(b"GGUF1")
    (model / "model-00002-of-00002.gguf").write_bytes(b"GGUF2")
    (model / "config.json").write_text("{}")
    request, local_files = create_request("FROM model", tmp_path)
    assert request == {"files": {"model-00001-of-00002.gguf": "", "model-00002-of-00002.gguf": ""}}
    assert set(local_files.values()) == {model / "model-00001-of-00002.gguf", model / "model-00002-of-00002.gguf"}


def test_from_directory_of_gguf_bin_files(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"GGUF....")
    (tmp_path / "other.bin").write_bytes(b"\x00\x01")
    request, _ = create_request("FROM .", tmp_path)
    assert request == {"files": {"model.bin": ""}}


@pytest.mark.parametrize(
    "files", [["model.safetensors", "config.json"], ["consolidated.safetensors"], ["pytorch_model.bin"], ["consolidated.00.pth"]]
)
def test_from_directory_of_other_weights_is_not_supported(tmp_path: Path, files: list[str]) -> None:
    for name in files:
        (tmp_path / name).write_bytes(b"weights")
    with pytest.raises(InvalidRequest) as info:
        create_request("FROM .", tmp_path)
    assert str(info.value) == "safetensors import is not supported yet" and info.value.status_code == 400


def test_from_safetensors_file_is_not_supported(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"{}")
    with pytest.raises(InvalidRequest, match="safetensors import is not supported yet"):
        create_request("FROM ./model.safetensors", tmp_path)


def test_from_directory_without_weights(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(InvalidRequest, match="no Modelfile or safetensors files found"):
        create_request("FROM .", tmp_path)


def test_from_directory_symlink_escaping_is_rejected(tmp_path: Path) -> None:
    outside = tmp_path / "outside.gguf"
    outside.write_bytes(b"GGUF")
    model = tmp_path / "model"
    model.mkdir()
    (model / "linked.gguf").symlink_to(outside)
    with pytest.raises(InvalidRequest, match="insecure path: ../outside.gguf"):
        create_request("FROM model", tmp_path)


def test_adapter_and_draft_files(tmp_path: Path) -> None:
    for name in ("base.gguf", "lora.gguf", "other-lora.gguf", "draft.gguf"):
        (tmp_path / name).write_bytes(b"GGUF")
    request, local_files = create_request(
        "FROM base.gguf\nADAPTER lora.gguf\nADAPTER other-lora.gguf\nDRAFT draft.gguf", tmp_path
    )
    assert request == {"files": {"base.gguf": ""}, "adapters": {"other-lora.gguf": ""}, "draft_files": {"draft.gguf": ""}}
    assert local_files == {name: tmp_path / name for name in ("base.gguf", "other-lora.gguf", "draft.gguf")}


def test_adapter_must_exist(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as info:
        create_request("FROM base\nADAPTER ./lora.gguf", tmp_path)
    assert str(info.value) == f"stat {tmp_path / 'lora.gguf'}: no such file or directory"


@pytest.mark.parametrize("text", ["FROM ./model.gguf\nDRAFT ./model.gguf", "FROM .\nDRAFT ."])
def test_draft_must_not_be_the_from_path(tmp_path: Path, text: str) -> None:
    (tmp_path / "model.gguf").write_bytes(b"GGUF" + bytes(508))
    with pytest.raises(InvalidRequest, match="DRAFT must not reference the same local path as FROM"):
        create_request(text, tmp_path)


def test_from_name_and_at_digest_stay_names(tmp_path: Path) -> None:
    assert create_request("FROM @sha256:" + "a" * 64, tmp_path)[0] == {"from": "@sha256:" + "a" * 64}
