"""``ollamapy run``, ``ps``, ``stop`` and the interactive chat against a real server.

One ``python -m ollamapy serve`` runs for the module (its own port, model store and
home directory) with the tiny test GGUF created through the API. One-shot runs are
plain subprocesses; the REPL runs on a real pseudo-terminal (pexpect) whose output is
drawn by a terminal emulator (pyte), so the tests read the screen a user would see.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pexpect
import psutil
import pyte
import pytest

from ollamapy.testing.tiny_gguf import TinyModelSpec, write_tiny_gguf
from ollamapy.testing.tiny_vision import TinyProjectorSpec, tiny_png, write_tiny_vision_model

pytestmark = pytest.mark.serving

TEMPLATE = "{{ range .Messages }}{{ .Role }}: {{ .Content }}\n{{ end }}assistant: "
PLACEHOLDER = "Send a message (/? for help)"
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
WAIT = 120.0
"""Seconds any one step may take before the test gives up (a hang, not a slow machine)."""


@dataclass
class Live:
    """The running server: its address, and the environment CLI commands run with."""

    url: str
    env: dict[str, str]
    home: Path

    def api(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        method = "GET" if body is None else "POST"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            text = response.read().decode()
        return json.loads(text.splitlines()[-1]) if text.strip() else None

    def upload(self, path: Path) -> str:
        data = path.read_bytes()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        request = urllib.request.Request(f"{self.url}/api/blobs/{digest}", data=data, method="POST")
        urllib.request.urlopen(request, timeout=WAIT).close()
        return digest

    def cli(self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """A one-shot command; stdin and stdout are pipes, not a terminal."""
        return subprocess.run(
            [sys.executable, "-m", "ollamapy", *args],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            timeout=WAIT,
            check=False,
        )

    def loaded(self) -> list[str]:
        return [m["name"] for m in self.api("/api/ps")["models"]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"ollamapy serve exited with {server.returncode}")
        try:
            urllib.request.urlopen(url + "/", timeout=5).close()
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise RuntimeError("ollamapy serve did not start")


def _stop_server(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server, wait for it and for every runner it started; kill leftovers."""
    try:
        children = psutil.Process(server.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    _, alive = psutil.wait_procs(children, timeout=30)
    for child in alive:
        child.kill()
    assert not alive, f"runners left behind: {alive}"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("cli-live")
    (root / "models").mkdir()
    (root / "home").mkdir()
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OLLAMA_", "OLLAMAPY_"))}
    env.update(
        OLLAMA_HOST=f"127.0.0.1:{port}",
        OLLAMA_MODELS=str(root / "models"),
        HOME=str(root / "home"),
        TERM="xterm-256color",
    )
    with (root / "server.log").open("wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "ollamapy", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, server)
        live = Live(url, env, root / "home")
        tiny = live.upload(write_tiny_gguf(root / "tiny.gguf"))
        live.api("/api/create", {"model": "tiny", "files": {"tiny.gguf": tiny}, "template": TEMPLATE, "stream": False})
        live.api("/api/create", {"model": "greedy", "from": "tiny", "parameters": {"temperature": 0, "num_predict": 12}, "stream": False})
        embed = live.upload(write_tiny_gguf(root / "embed.gguf", TinyModelSpec(pooling_type=1, name="tiny-embed")))
        live.api("/api/create", {"model": "embedder", "files": {"embed.gguf": embed}, "stream": False})
        yield live
    finally:
        _stop_server(server)


# --- one-shot runs ------------------------------------------------------------------------------


def test_run_with_a_prompt_prints_the_answer_then_a_blank_line(live: Live) -> None:
    result = live.cli("run", "greedy", "the sky is")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n\n") and result.stdout.strip()
    assert result.stderr == ""  # no spinner, no timings off a terminal without --verbose
    assert live.cli("run", "greedy", "the sky is").stdout == result.stdout  # temperature 0


def test_run_prepends_piped_stdin_to_the_prompt(live: Live) -> None:
    piped = live.cli("run", "greedy", "blue", stdin="the sky is\n")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == live.cli("run", "greedy", "the sky is\n blue").stdout
    only_stdin = live.cli("run", "greedy", stdin="the sky is\n blue")
    assert only_stdin.stdout == piped.stdout


def test_run_verbose_prints_the_timing_block(live: Live) -> None:
    result = live.cli("run", "greedy", "hello", "--verbose")
    assert result.returncode == 0, result.stderr
    pattern = (
        r"total duration:       [0-9.]+(ns|µs|ms|s)\n"
        r"(load duration:        [0-9.]+(ns|µs|ms|s)\n)?"
        r"prompt eval count:    \d+ token\(s\)\n"
        r"prompt eval duration: [0-9.]+(ns|µs|ms|s)\n"
        r"prompt eval rate:     \d+\.\d\d tokens/s\n"
        r"eval count:           12 token\(s\)\n"
        r"eval duration:        [0-9.]+(ns|µs|ms|s)\n"
        r"eval rate:            \d+\.\d\d tokens/s\n"
    )
    assert re.fullmatch(pattern, result.stderr), result.stderr


def test_run_an_embedding_model_prints_the_vector(live: Live) -> None:
    result = live.cli("run", "embedder", "hello world")
    assert result.returncode == 0, result.stderr
    vector = json.loads(result.stdout)
    assert len(vector) == 64 and all(isinstance(x, float) for x in vector)
    assert abs(sum(x * x for x in vector) - 1) < 1e-3  # /api/embed normalizes
    empty = live.cli("run", "embedder")
    assert (empty.returncode, empty.stderr) == (
        1,
        'Error: embedding models require input text. Usage: ollamapy run embedder "your text here"\n',
    )


def test_run_errors_are_one_line(live: Live) -> None:
    thinking = live.cli("run", "greedy", "hi", "--think")
    assert (thinking.returncode, thinking.stdout) == (1, "")
    assert thinking.stderr.count("\n") == 1 and "does not support thinking" in thinking.stderr
    down = live.cli("run", "greedy", "hi", env={"OLLAMA_HOST": f"127.0.0.1:{_free_port()}"})
    assert (down.returncode, down.stderr) == (
        1,
        "Error: could not connect to ollamapy server, is it running? (start it with 'ollamapy serve')\n",
    )


# --- ps, stop, rm ---------------------------------------------------------------------------------


def _ps_rows(live: Live, *args: str) -> list[list[str]]:
    result = live.cli("ps", *args)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    return [re.split(r" {2,}", line.strip()) for line in lines[1:]]


def test_ps_and_stop(live: Live) -> None:
    assert live.cli("run", "greedy", "hi", "--keepalive", "10m").returncode == 0
    # (models made from the same weights share one runner, as in Ollama: use another GGUF)
    assert live.cli("run", "embedder", "hi", "--keepalive", "-1m").returncode == 0
    rows = {row[0]: row for row in _ps_rows(live)}
    greedy, embedder = rows["greedy:latest"], rows["embedder:latest"]
    assert re.fullmatch(r"[0-9a-f]{12}", greedy[1]) and greedy[1] != embedder[1]
    assert re.fullmatch(r"\d+(\.\d)? (B|KB|MB|GB)", greedy[2])
    assert greedy[3:5] == ["100% CPU", "4096"]
    assert greedy[5] in ("9 minutes from now", "10 minutes from now")
    assert embedder[5] == "Forever"
    assert [row[0] for row in _ps_rows(live, "gree")] == ["greedy:latest"]

    stopped = live.cli("stop", "greedy")
    assert (stopped.returncode, stopped.stdout, stopped.stderr) == (0, "", "")
    assert "greedy:latest" not in live.loaded()
    assert live.cli("stop", "embedder").returncode == 0
    assert _ps_rows(live) == []
    missing = live.cli("stop", "nosuchmodel")
    assert (missing.returncode, missing.stderr) == (1, 'Error: couldn\'t find model "nosuchmodel" to stop\n')


def test_rm_stops_a_loaded_model_first(live: Live) -> None:
    assert live.cli("cp", "greedy", "doomed").returncode == 0
    assert live.cli("run", "doomed", "hi", "--keepalive", "10m").returncode == 0
    assert "doomed:latest" in live.loaded()
    removed = live.cli("rm", "doomed")
    assert (removed.returncode, removed.stdout, removed.stderr) == (0, "deleted 'doomed'\n", "")
    assert "doomed:latest" not in live.loaded()


# --- the interactive chat on a pseudo-terminal ----------------------------------------------------


class Terminal:
    """``ollamapy ARGS`` on a pseudo-terminal, drawn by pyte, which also answers the line
    editor's cursor-position requests as a real terminal does."""

    def __init__(self, live: Live, *args: str, env: dict[str, str] | None = None, columns: int = 80, rows: int = 40) -> None:
        self.screen = pyte.Screen(columns, rows)
        self._stream = pyte.Stream(self.screen)
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "ollamapy", *args],
            env={**live.env, **(env or {})},
            dimensions=(rows, columns),
            encoding="utf-8",
            codec_errors="replace",
            timeout=WAIT,
        )
        self.screen.write_process_input = self.child.send  # type: ignore[method-assign]

    def _pump(self) -> bool:
        """Feed what the program printed to the screen; False once it has exited."""
        try:
            data = self.child.read_nonblocking(65536, timeout=0.05)
        except pexpect.TIMEOUT:
            return True
        except pexpect.EOF:
            return False
        self._stream.feed(data)
        return True

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def text(self) -> str:
        return "\n".join(line for line in self.lines() if line)

    def cursor_line(self) -> str:
        return self.lines()[self.screen.cursor.y]

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            if time.monotonic() > deadline or (not self._pump() and not condition()):
                raise AssertionError(f"waiting for {what}; the screen:\n{self.text()}")

    def at_prompt(self, after: int = -1) -> bool:
        """The cursor sits on an empty prompt below row ``after``."""
        return self.screen.cursor.y > after and self.cursor_line() in (">>> " + PLACEHOLDER, ">>>")

    def last_row(self, text: str) -> int:
        rows = [index for index, line in enumerate(self.lines()) if line == text]
        return rows[-1] if rows else -1

    def wait_for_row(self, text: str) -> int:
        """Wait until a screen row reads ``text``; its (last) row."""
        self.wait_for(lambda: self.last_row(text) >= 0, f"{text!r} on the screen")
        return self.last_row(text)

    def submit(self, line: str, prompt: str = ">>> ") -> int:
        """Type a line and Enter; wait until the next prompt is up. Returns the line's row."""
        self.child.send(line + "\r")
        shown = (prompt + line).rstrip()
        self.wait_for_row(shown)
        self.wait_for(lambda: self.at_prompt(self.last_row(shown)) or self.cursor_line().startswith("..."), "the next prompt")
        return self.last_row(shown)

    def exit_status(self) -> int:
        self.wait_for(lambda: not self.child.isalive(), "the program to exit")
        self.child.close()
        return int(self.child.exitstatus or 0)

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()


def _after(terminal: Terminal, row: int) -> list[str]:
    return [line for line in terminal.lines()[row + 1:] if line]


def test_repl_multiline_parameters_save_load_and_bye(live: Live, terminals: list[Terminal]) -> None:
    term = Terminal(live, "run", "tiny")
    terminals.append(term)
    term.wait_for(term.at_prompt, "the first prompt")

    row = term.submit("/set parameter num_predict 8")
    assert _after(term, row)[0] == "Set parameter 'num_predict' to '8'"
    term.submit("/set parameter seed 42")  # unseeded, the 8-token answer is sometimes only blank lines
    row = term.submit("/set parameter bogus 1")
    assert _after(term, row)[0] == "Couldn't set parameter: \"unknown parameter 'bogus'\""
    row = term.submit("/set system You are terse.")
    assert _after(term, row)[0] == "Set system message."

    term.submit('"""first line')
    assert term.cursor_line().startswith('... Use """ to end multi-line input')
    row = term.submit('second line"""', prompt="... ")
    assert term.lines()[row - 1] == '>>> """first line'
    assert len(_after(term, row)) >= 2  # the answer, then the next prompt

    row = term.submit("/set verbose")
    assert _after(term, row)[0] == "Set 'verbose' mode."
    row = term.submit("and more")
    assert any(line.startswith("eval count:           8 token(s)") for line in _after(term, row))

    row = term.submit("/save mysession")
    assert _after(term, row)[0] == "Created new model 'mysession'"
    saved = live.api("/api/show", {"model": "mysession"})
    assert [(m["role"], m["content"]) for m in saved["messages"][:2]] == [
        ("system", "You are terse."),
        ("user", "first line\nsecond line"),
    ]
    assert [m["role"] for m in saved["messages"][2:]] == ["assistant", "user", "assistant"]
    assert re.search(r"^num_predict\s+8$", saved["parameters"], re.MULTILINE)

    row = term.submit("/load mysession")
    assert _after(term, row)[0] == "Loading model 'mysession'"
    row = term.submit("/show system")
    assert _after(term, row)[0] == "You are terse."
    row = term.submit("/bogus")
    assert _after(term, row)[0] == "Unknown command '/bogus'. Type /? for help"

    term.child.send("/bye\r")
    assert term.exit_status() == 0
    # every line typed, one per line, as Ollama's ~/.ollama/history keeps them
    assert (live.home / ".ollama" / "history").read_text().splitlines() == [
        "/set parameter num_predict 8",
        "/set parameter seed 42",
        "/set parameter bogus 1",
        "/set system You are terse.",
        '"""first line',
        'second line"""',
        "/set verbose",
        "and more",
        "/save mysession",
        "/load mysession",
        "/show system",
        "/bogus",
        "/bye",
    ]


def test_repl_ctrl_c_stops_the_answer_and_stays(live: Live, terminals: list[Terminal], tmp_path: Path) -> None:
    term = Terminal(live, "run", "tiny", env={"HOME": str(tmp_path), "OLLAMA_NOHISTORY": "1"})
    terminals.append(term)
    term.wait_for(term.at_prompt, "the first prompt")
    # A long answer: the tiny model rarely ends on its own among its 5 likeliest tokens.
    term.submit("/set parameter num_predict 20000")
    term.submit("/set parameter top_k 5")

    for attempt in range(5):
        question = f"tell me a long story {attempt}"
        term.child.send(question + "\r")
        row = term.wait_for_row(">>> " + question)

        def answering(row: int = row) -> bool:
            return any(line.strip(SPINNER + " ") for line in term.lines()[row + 1:] if not line.startswith(">>>"))

        def back_at_prompt(row: int = row) -> bool:
            return term.at_prompt(row)

        term.wait_for(answering, "the first token")
        term.child.sendintr()
        term.wait_for(back_at_prompt, "the prompt after Ctrl+C")
        if "Use Ctrl + d or /bye to exit." not in term.text():
            break  # Ctrl+C reached the answer, not a prompt the answer had already returned to
        term.child.send("/clear\r")
    else:
        pytest.fail("every answer ended before Ctrl+C could stop it")
    assert term.child.isalive()

    term.child.sendintr()  # at the prompt: a hint, and the chat goes on
    term.wait_for(lambda: "Use Ctrl + d or /bye to exit." in term.text(), "the exit hint")
    term.wait_for(term.at_prompt, "the prompt after the hint")
    term.child.sendeof()
    assert term.exit_status() == 0
    assert not (tmp_path / ".ollama" / "history").exists()  # OLLAMA_NOHISTORY


# --- images in prompts, for a vision model --------------------------------------------------------


@dataclass
class Pictures:
    """Two PNGs the prompts name: ``cat`` in a plain folder, ``dog`` in one with a space."""

    cat: Path
    dog: Path

    def encoded(self, path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="module")
def pictures(live: Live, tmp_path_factory: pytest.TempPathFactory) -> Pictures:
    """Create ``seer`` (the tiny model with a projector, greedy, two tokens an answer) and
    write the pictures."""
    root = tmp_path_factory.mktemp("pictures")
    model, projector = write_tiny_vision_model(root / "model")
    files = {"model.gguf": live.upload(model), "mmproj.gguf": live.upload(projector)}
    parameters = {"temperature": 0, "num_predict": 2}
    live.api("/api/create", {"model": "seer", "files": files, "template": TEMPLATE, "parameters": parameters, "stream": False})
    (root / "pics").mkdir()
    (root / "my pics").mkdir()
    cat, dog = root / "pics" / "cat.png", root / "my pics" / "dog.png"
    cat.write_bytes(tiny_png(28, 28, (200, 10, 10)))
    dog.write_bytes(tiny_png(28, 28, (0, 0, 255), checker=(255, 255, 0)))
    return Pictures(cat, dog)


def _prompt_eval_count(lines: list[str]) -> int:
    counts = [int(m.group(1)) for line in lines if (m := re.match(r"prompt eval count:\s+(\d+) token\(s\)", line))]
    assert len(counts) == 1, lines
    return counts[0]


def _user_messages(live: Live, model: str) -> list[tuple[str, list[str] | None]]:
    """What a session saved with ``/save`` sent as user messages: (content, images)."""
    messages = live.api("/api/show", {"model": model})["messages"]
    return [(m["content"], m.get("images")) for m in messages if m["role"] == "user"]


def test_run_with_an_image_path_attaches_the_image(live: Live, pictures: Pictures) -> None:
    plain = live.cli("run", "seer", "describe", "--verbose")
    seen = live.cli("run", "seer", "describe", str(pictures.cat), "--verbose")
    assert seen.returncode == 0, seen.stderr
    assert seen.stderr.startswith(f"Added image '{pictures.cat}'\n")
    with_image = _prompt_eval_count(seen.stderr.splitlines())
    assert with_image >= _prompt_eval_count(plain.stderr.splitlines()) + TinyProjectorSpec().image_tokens
    blind = live.cli("run", "tiny", f"describe {pictures.cat}")  # not a vision model: plain text
    assert blind.returncode == 0 and "Added image" not in blind.stderr


def test_repl_attaches_image_paths_for_a_vision_model(live: Live, pictures: Pictures, terminals: list[Terminal]) -> None:
    cat, dog = pictures.cat, pictures.dog
    term = Terminal(live, "run", "seer", columns=200)  # wide enough for a path on one row
    terminals.append(term)
    term.wait_for(term.at_prompt, "the first prompt")
    term.submit("/set verbose")
    plain = _prompt_eval_count(_after(term, term.submit("what is in  ?")))
    term.submit("/clear")

    row = term.submit(f"what is in {cat} ?")
    after = _after(term, row)
    assert after[0] == f"Added image '{cat}'"
    assert _prompt_eval_count(after) >= plain + TinyProjectorSpec().image_tokens

    # a line may start with a path; quoted, escaped and repeated paths are all attached;
    # a path to no file stays in the text
    escaped = str(dog).replace(" ", "\\ ")
    row = term.submit(f"{cat} and '{dog}' and {escaped} /nope/missing.png")
    assert _after(term, row)[:3] == [f"Added image '{cat}'", f"Added image '{dog}'", f"Added image '{dog}'"]

    term.submit("/save seen")
    red, blue = pictures.encoded(cat), pictures.encoded(dog)
    assert _user_messages(live, "seen") == [
        ("what is in  ?", [red]),
        ("and  and  /nope/missing.png", [red, blue, blue]),
    ]
    term.child.send("/bye\r")
    assert term.exit_status() == 0


def test_repl_load_of_a_vision_model_attaches_images_afterwards(live: Live, pictures: Pictures, terminals: list[Terminal]) -> None:
    cat = pictures.cat
    term = Terminal(live, "run", "tiny", columns=200)
    terminals.append(term)
    term.wait_for(term.at_prompt, "the first prompt")
    row = term.submit(f"{cat} is a file")  # not a vision model: a path is not a file here
    assert _after(term, row)[0] == f"Unknown command '{cat}'. Type /? for help"
    row = term.submit(f"what is in {cat} ?")
    assert not any(line.startswith("Added image") for line in _after(term, row))
    term.submit("/save blind-session")
    assert _user_messages(live, "blind-session") == [(f"what is in {cat} ?", None)]

    row = term.submit("/load seer")
    assert _after(term, row)[0] == "Loading model 'seer'"
    assert "seer:latest" in live.loaded()
    row = term.submit(f"and now, what is in {cat} ?")  # not the line above: submit finds its row by text
    assert _after(term, row)[0] == f"Added image '{cat}'"
    term.submit("/save seer-session")
    assert _user_messages(live, "seer-session") == [("and now, what is in  ?", [pictures.encoded(cat)])]
    term.child.send("/bye\r")
    assert term.exit_status() == 0
    assert live.cli("stop", "seer").returncode == 0
