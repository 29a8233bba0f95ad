"""The REPL's pieces that need no terminal: image paths in prompts, the history file,
and ``/save``'s create request. ``test_cli_run_functional.py`` drives the REPL itself."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from ollamapy.cli.interactive import (
    HISTORY_LIMIT,
    OllamaHistory,
    extract_file_data,
    new_create_request,
)
from ollamapy.cli.run import RunOptions

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def test_image_paths_are_attached_and_removed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "my pics"
    folder.mkdir()
    (folder / "cat.png").write_bytes(PNG)
    escaped = str(folder / "cat.png").replace(" ", "\\ ")
    text, images = extract_file_data(f"what is in {escaped} and /nope/missing.jpg?")
    assert text == "what is in  and /nope/missing.jpg?"
    assert [base64.b64decode(image) for image in images] == [PNG]
    assert capsys.readouterr().err == f"Added image '{folder / 'cat.png'}'\n"


def test_a_file_that_is_not_an_image_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "fake.jpg").write_text("hello")
    with pytest.raises(OSError, match="invalid image type"):
        extract_file_data(f"look {tmp_path / 'fake.jpg'}")
    assert capsys.readouterr().err.startswith('Couldn\'t process image: "invalid image type: ')


def test_history_keeps_ollamas_file_format(tmp_path: Path) -> None:
    path = tmp_path / ".ollama" / "history"
    history = OllamaHistory(path)
    for entry in ["hello", "/set verbose", "pasted\nlines"]:
        history.append_string(entry)
    assert path.read_text() == "hello\n/set verbose\npasted\nlines\n"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again = OllamaHistory(path)
    assert list(again.load_history_strings()) == ["lines", "pasted", "/set verbose", "hello"]  # newest first

    for n in range(HISTORY_LIMIT + 5):
        again.append_string(f"line {n}")
    assert path.read_text().splitlines() == [f"line {n}" for n in range(5, HISTORY_LIMIT + 5)]


def test_history_disabled_is_read_but_not_written(tmp_path: Path) -> None:
    path = tmp_path / "history"
    path.write_text("  old  \n\n")
    history = OllamaHistory(path, enabled=False)
    history.append_string("new")
    assert list(history.load_history_strings()) == ["new", "old"]
    assert path.read_text() == "  old  \n\n"


def test_save_request_carries_the_session() -> None:
    opts = RunOptions(model="tiny", system="be brief", options={"num_predict": 8})
    opts.messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert new_create_request("mine", opts) == {
        "model": "mine",
        "from": "tiny",
        "system": "be brief",
        "parameters": {"num_predict": 8},
        "messages": opts.messages,
    }
    opts.parent_model = "llama3.2:latest"  # a model made FROM another one saves from that one
    assert new_create_request("mine", opts)["from"] == "llama3.2:latest"
    assert new_create_request("bare", RunOptions(model="tiny", parent_model="not a name!")) == {"model": "bare", "from": "tiny"}


def test_image_path_rules_follow_gos_ascii_regexp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.png").write_bytes(PNG)
    # Go's \b sees a boundary before a non-ASCII letter; '~' is not expanded, so
    # "~/a.png" names "/a.png", which does not exist
    text, images = extract_file_data(f"{tmp_path}/a.pngé ~/a.png")
    assert (text, len(images)) == ("é ~/a.png", 1)
    assert capsys.readouterr().err == f"Added image '{tmp_path}/a.png'\n"
