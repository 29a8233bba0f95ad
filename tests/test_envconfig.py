"""Settings from the environment, table-driven like Ollama's envconfig/config_test.go."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ollamapy import envconfig
from ollamapy.golang.durations import FOREVER

_BUILTIN_ORIGINS = [
    "http://localhost",
    "https://localhost",
    "http://localhost:*",
    "https://localhost:*",
    "http://127.0.0.1",
    "https://127.0.0.1",
    "http://127.0.0.1:*",
    "https://127.0.0.1:*",
    "http://0.0.0.0",
    "https://0.0.0.0",
    "http://0.0.0.0:*",
    "https://0.0.0.0:*",
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
]


_KNOWN = set(envconfig.as_map()) | {"VISUAL", "EDITOR"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No variable of the machine running the tests leaks in; HOME is a fresh directory."""
    for name in list(os.environ):
        if name.startswith(("OLLAMA_", "OLLAMAPY_")) or name in _KNOWN:
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


# --- OLLAMA_HOST -----------------------------------------------------------------------

HOST_CASES = {
    "empty": ("", "http://127.0.0.1:11434"),
    "only address": ("1.2.3.4", "http://1.2.3.4:11434"),
    "all interfaces": ("0.0.0.0", "http://0.0.0.0:11434"),
    "only port": (":1234", "http://:1234"),
    "address and port": ("1.2.3.4:1234", "http://1.2.3.4:1234"),
    "hostname": ("example.com", "http://example.com:11434"),
    "hostname and port": ("example.com:1234", "http://example.com:1234"),
    "zero port": (":0", "http://:0"),
    "too large port": (":66000", "http://:11434"),
    "too small port": (":-1", "http://:11434"),
    "non-numeric port": ("1.2.3.4:abc", "http://1.2.3.4:11434"),
    "empty port": ("1.2.3.4:", "http://1.2.3.4:11434"),
    "ipv6 localhost": ("[::1]", "http://[::1]:11434"),
    "ipv6 world open": ("[::]", "http://[::]:11434"),
    "ipv6 no brackets": ("::1", "http://[::1]:11434"),
    "ipv6 + port": ("[::1]:1337", "http://[::1]:1337"),
    "ipv6 + port 1234": ("[::1]:1234", "http://[::1]:1234"),
    "ipv6 canonical form": ("2001:0db8::0001", "http://[2001:db8::1]:11434"),
    "ipv4-mapped ipv6": ("[::ffff:1.2.3.4]", "http://1.2.3.4:11434"),
    "extra space": (" 1.2.3.4 ", "http://1.2.3.4:11434"),
    "extra quotes": ('"1.2.3.4"', "http://1.2.3.4:11434"),
    "extra space+quotes": (' " 1.2.3.4 " ', "http://1.2.3.4:11434"),
    "extra single quotes": ("'1.2.3.4'", "http://1.2.3.4:11434"),
    "http": ("http://1.2.3.4", "http://1.2.3.4:80"),
    "http port": ("http://1.2.3.4:4321", "http://1.2.3.4:4321"),
    "http hostname": ("http://ollama.com", "http://ollama.com:80"),
    "https": ("https://1.2.3.4", "https://1.2.3.4:443"),
    "https port": ("https://1.2.3.4:4321", "https://1.2.3.4:4321"),
    "https hostname": ("https://example.com", "https://example.com:443"),
    "proxy path": ("https://example.com/ollama", "https://example.com:443/ollama"),
    "trailing slash": ("https://example.com/", "https://example.com:443"),
    "path escaping": ("http://h:1/a b", "http://h:1/a%20b"),
    "bare ollama.com": ("ollama.com", "https://ollama.com:443"),
    "ollama.com with port": ("ollama.com:8080", "http://ollama.com:8080"),
    "other scheme": ("ftp://host", "ftp://host:11434"),
}


@pytest.mark.parametrize(("value", "expect"), HOST_CASES.values(), ids=HOST_CASES.keys())
def test_host(monkeypatch: pytest.MonkeyPatch, value: str, expect: str) -> None:
    monkeypatch.setenv("OLLAMA_HOST", value)
    assert str(envconfig.host()) == expect


def test_host_unset_is_default() -> None:
    assert envconfig.host() == envconfig.HostAddress("http", "127.0.0.1", 11434)


@pytest.mark.parametrize(
    ("value", "url", "bind_host", "port"),
    [
        ("", "http://127.0.0.1:11434", "127.0.0.1", 11434),
        ("0.0.0.0", "http://127.0.0.1:11434", "0.0.0.0", 11434),
        ("0.0.0.0:8080", "http://127.0.0.1:8080", "0.0.0.0", 8080),
        (":8080", "http://127.0.0.1:8080", None, 8080),
        ("[::]:99", "http://[::1]:99", "::", 99),
        ("[::1]:1234", "http://[::1]:1234", "::1", 1234),
        ("https://example.com/ollama", "https://example.com:443/ollama", "example.com", 443),
    ],
)
def test_host_client_url_and_bind_address(
    monkeypatch: pytest.MonkeyPatch, value: str, url: str, bind_host: str | None, port: int
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", value)
    address = envconfig.host()
    assert address.url == url
    assert address.bind_host == bind_host
    assert address.port == port


def test_host_bad_port_warns_and_uses_default(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "http://1.2.3.4:99999")
    with caplog.at_level(logging.WARNING, logger="ollamapy.envconfig"):
        address = envconfig.host()
    assert address.port == 80
    assert "invalid port" in caplog.text
    assert "99999" in caplog.text


# --- primitive readers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expect"),
    [
        ("value", "value"),
        (" value ", "value"),
        (" 'value' ", "value"),
        (' "value" ', "value"),
        (" ' value ' ", " value "),
        (' " value " ', " value "),
    ],
)
def test_var_trims_spaces_then_quotes(monkeypatch: pytest.MonkeyPatch, raw: str, expect: str) -> None:
    monkeypatch.setenv("OLLAMA_VAR", raw)
    assert envconfig.var("OLLAMA_VAR") == expect


@pytest.mark.parametrize(
    ("raw", "expect"),
    [
        ("", False),
        ("true", True),
        ("false", False),
        ("1", True),
        ("0", False),
        ("t", True),
        ("F", False),
        ("TRUE", True),
        ("False", False),
        ("'false'", False),
        # garbage counts as true
        ("random", True),
        ("something", True),
        ("yes", True),
        ("no", True),
    ],
)
def test_bool(monkeypatch: pytest.MonkeyPatch, raw: str, expect: bool) -> None:
    monkeypatch.setenv("OLLAMA_BOOL", raw)
    assert envconfig.bool_var("OLLAMA_BOOL") is expect


@pytest.mark.parametrize(
    ("name", "read"),
    [
        ("OLLAMA_SCHED_SPREAD", envconfig.sched_spread),
        ("OLLAMA_NOPRUNE", envconfig.noprune),
        ("OLLAMA_NOHISTORY", envconfig.nohistory),
    ],
)
def test_bool_settings(monkeypatch: pytest.MonkeyPatch, name: str, read: Callable[[], bool]) -> None:
    assert read() is False
    monkeypatch.setenv(name, "garbage")
    assert read() is True
    monkeypatch.setenv(name, "0")
    assert read() is False


@pytest.mark.parametrize(
    ("raw", "expect"),
    [("0", 0), ("1", 1), ("1337", 1337), ("18446744073709551615", 2**64 - 1), ("", 11434)],
)
def test_uint(monkeypatch: pytest.MonkeyPatch, raw: str, expect: int) -> None:
    monkeypatch.setenv("OLLAMA_UINT", raw)
    assert envconfig.uint_var("OLLAMA_UINT", 11434) == expect


@pytest.mark.parametrize(
    "raw", ["-1", "0o10", "0x10", "1_000", "+5", "string", "1.5", "18446744073709551616", "9" * 5000]
)
def test_uint_bad_values_warn_and_fall_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, raw: str
) -> None:
    monkeypatch.setenv("OLLAMA_UINT", raw)
    with caplog.at_level(logging.WARNING, logger="ollamapy.envconfig"):
        assert envconfig.uint_var("OLLAMA_UINT", 11434) == 11434
    assert "invalid environment variable, using default" in caplog.text
    assert "OLLAMA_UINT" in caplog.text


@pytest.mark.parametrize(
    ("read", "name", "default"),
    [
        (envconfig.num_parallel, "OLLAMA_NUM_PARALLEL", 0),
        (envconfig.max_loaded_models, "OLLAMA_MAX_LOADED_MODELS", 0),
        (envconfig.max_queue, "OLLAMA_MAX_QUEUE", 512),
        (envconfig.context_length, "OLLAMA_CONTEXT_LENGTH", 0),
        (envconfig.gpu_overhead, "OLLAMA_GPU_OVERHEAD", 0),
    ],
)
def test_uint_settings(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, read: Callable[[], int], name: str, default: int
) -> None:
    assert read() == default
    monkeypatch.setenv(name, "8192")
    assert read() == 8192
    monkeypatch.setenv(name, "lots")
    with caplog.at_level(logging.WARNING, logger="ollamapy.envconfig"):
        assert read() == default
    assert name in caplog.text


# --- durations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("", 300),
        ("1s", 1),
        ("1m", 60),
        ("5m", 300),
        ("1h", 3600),
        ("5m0s", 300),
        ("1h2m3s", 3723),
        ("0", 0),
        ("10", 10),
        ("60", 60),
        ("120", 120),
        ("3600", 3600),
        ("-0", 0),
        ("-1", FOREVER),
        ("-1m", FOREVER),
        ("'10m'", 600),
        # invalid values
        (" ", 300),
        ("???", 300),
        ("bogus", 300),
        ("1d", 300),
        ("1y", 300),
        ("1w", 300),
    ],
)
def test_keep_alive(monkeypatch: pytest.MonkeyPatch, raw: str, seconds: float) -> None:
    monkeypatch.setenv("OLLAMA_KEEP_ALIVE", raw)
    assert envconfig.keep_alive() == seconds


def test_keep_alive_bad_value_warns(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("OLLAMA_KEEP_ALIVE", "bogus")
    with caplog.at_level(logging.WARNING, logger="ollamapy.envconfig"):
        envconfig.keep_alive()
    assert "OLLAMA_KEEP_ALIVE" in caplog.text


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("", 300),
        ("1s", 1),
        ("1m", 60),
        ("1h", 3600),
        ("5m0s", 300),
        ("1h2m3s", 3723),
        ("0", FOREVER),
        ("60", 60),
        ("120", 120),
        ("3600", 3600),
        ("-0", FOREVER),
        ("-1", FOREVER),
        ("-1m", FOREVER),
        # invalid values
        (" ", 300),
        ("???", 300),
        ("1d", 300),
        ("1y", 300),
        ("1w", 300),
    ],
)
def test_load_timeout(monkeypatch: pytest.MonkeyPatch, raw: str, seconds: float) -> None:
    monkeypatch.setenv("OLLAMA_LOAD_TIMEOUT", raw)
    assert envconfig.load_timeout() == seconds


@pytest.mark.parametrize(("raw", "seconds"), [("", 10), ("30s", 30), ("2", 2), ("0", 0), ("-5s", 0), ("soon", 10)])
def test_shutdown_grace(monkeypatch: pytest.MonkeyPatch, raw: str, seconds: float) -> None:
    monkeypatch.setenv("OLLAMAPY_SHUTDOWN_GRACE", raw)
    assert envconfig.shutdown_grace() == seconds


# --- other settings --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "level"),
    [
        ("", logging.INFO),
        ("0", logging.INFO),
        ("false", logging.INFO),
        ("garbage", logging.INFO),
        ("1", logging.DEBUG),
        ("true", logging.DEBUG),
        ("T", logging.DEBUG),
        ("2", envconfig.TRACE),
        ("3", 1),
        ("-1", logging.WARNING),
        ("-2", logging.ERROR),
        ("-9", logging.CRITICAL),
    ],
)
def test_debug_level(monkeypatch: pytest.MonkeyPatch, raw: str, level: int) -> None:
    monkeypatch.setenv("OLLAMA_DEBUG", raw)
    assert envconfig.debug_level() == level


@pytest.mark.parametrize(
    ("raw", "shown"),
    [("", "INFO"), ("1", "DEBUG"), ("2", "DEBUG-4"), ("-1", "WARN"), ("-2", "ERROR"), ("-3", "ERROR+4")],
)
def test_debug_level_is_logged_with_ollamas_level_names(monkeypatch: pytest.MonkeyPatch, raw: str, shown: str) -> None:
    monkeypatch.setenv("OLLAMA_DEBUG", raw)
    assert envconfig.as_map()["OLLAMA_DEBUG"].text == shown


@pytest.mark.parametrize(
    ("raw", "expect"), [("", None), ("1", True), ("true", True), ("0", False), ("false", False), ("on", True)]
)
def test_flash_attention(monkeypatch: pytest.MonkeyPatch, raw: str, expect: bool | None) -> None:
    monkeypatch.setenv("OLLAMA_FLASH_ATTENTION", raw)
    assert envconfig.flash_attention() is expect


def test_kv_cache_type(monkeypatch: pytest.MonkeyPatch) -> None:
    assert envconfig.kv_cache_type() == ""
    monkeypatch.setenv("OLLAMA_KV_CACHE_TYPE", " q8_0 ")
    assert envconfig.kv_cache_type() == "q8_0"


@pytest.mark.parametrize(
    ("raw", "extra"),
    [
        ("", []),
        ("http://10.0.0.1", ["http://10.0.0.1"]),
        ("http://172.16.0.1,https://192.168.0.1", ["http://172.16.0.1", "https://192.168.0.1"]),
        ("http://totally.safe,http://definitely.legit", ["http://totally.safe", "http://definitely.legit"]),
        ("*", ["*"]),
    ],
)
def test_origins(monkeypatch: pytest.MonkeyPatch, raw: str, extra: list[str]) -> None:
    monkeypatch.setenv("OLLAMA_ORIGINS", raw)
    assert envconfig.origins() == extra + _BUILTIN_ORIGINS


def test_models_and_home_dirs(monkeypatch: pytest.MonkeyPatch, clean_env: Path, tmp_path: Path) -> None:
    assert envconfig.home_dir() == clean_env / ".ollama"
    assert envconfig.models_dir() == clean_env / ".ollama" / "models"
    monkeypatch.setenv("OLLAMA_MODELS", f'"{tmp_path / "store"}"')
    assert envconfig.models_dir() == tmp_path / "store"


def test_api_version(monkeypatch: pytest.MonkeyPatch) -> None:
    assert envconfig.api_version() == "0.33.0"
    monkeypatch.setenv("OLLAMAPY_API_VERSION", "0.12.10")
    assert envconfig.api_version() == "0.12.10"


def test_editor_falls_back_to_visual_then_editor(monkeypatch: pytest.MonkeyPatch) -> None:
    assert envconfig.editor() == ""
    monkeypatch.setenv("EDITOR", "nano")
    assert envconfig.editor() == "nano"
    monkeypatch.setenv("VISUAL", "vim")
    assert envconfig.editor() == "vim"
    monkeypatch.setenv("OLLAMA_EDITOR", "code --wait")
    assert envconfig.editor() == "code --wait"


@pytest.mark.parametrize(
    ("env", "config", "source"),
    [
        (None, None, "none"),
        ("1", None, "env"),
        (None, {"disable_ollama_cloud": True}, "config"),
        ("true", {"disable_ollama_cloud": True}, "both"),
        ("0", {"disable_ollama_cloud": False}, "none"),
    ],
)
def test_no_cloud(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path, env: str | None, config: dict[str, bool] | None, source: str
) -> None:
    if env is not None:
        monkeypatch.setenv("OLLAMA_NO_CLOUD", env)
    if config is not None:
        (clean_env / ".ollama").mkdir()
        (clean_env / ".ollama" / "server.json").write_text(json.dumps(config))
    assert envconfig.no_cloud_source() == source
    assert envconfig.no_cloud() is (source != "none")


def test_no_cloud_ignores_broken_server_json(clean_env: Path, caplog: pytest.LogCaptureFixture) -> None:
    (clean_env / ".ollama").mkdir()
    (clean_env / ".ollama" / "server.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="ollamapy.envconfig"):
        assert envconfig.no_cloud() is False
    assert "server.json" in caplog.text


# --- registry and start-up log line ----------------------------------------------------

SPEC_VARIABLES = [
    "OLLAMA_HOST", "OLLAMA_MODELS", "OLLAMA_KEEP_ALIVE", "OLLAMA_LOAD_TIMEOUT", "OLLAMA_NUM_PARALLEL",
    "OLLAMA_MAX_LOADED_MODELS", "OLLAMA_MAX_QUEUE", "OLLAMA_CONTEXT_LENGTH", "OLLAMA_ORIGINS", "OLLAMA_DEBUG",
    "OLLAMA_FLASH_ATTENTION", "OLLAMA_KV_CACHE_TYPE", "OLLAMA_GPU_OVERHEAD", "OLLAMA_SCHED_SPREAD", "OLLAMA_NOPRUNE",
    "OLLAMA_NOHISTORY", "OLLAMA_LLM_LIBRARY", "OLLAMA_GO_TEMPLATE", "OLLAMA_VULKAN", "OLLAMA_IGPU_ENABLE",
    "OLLAMA_MAX_TRANSFER_STREAMS", "OLLAMA_REMOTES", "OLLAMA_NO_CLOUD", "OLLAMA_AUTH", "OLLAMA_EDITOR",
    "OLLAMA_DEBUG_LOG_REQUESTS", "OLLAMA_EXPERIMENT", "LLAMA_ARG_FIT", "LLAMA_ARG_FIT_TARGET",
    "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "GGML_VK_VISIBLE_DEVICES",
    "GPU_DEVICE_ORDINAL", "HSA_OVERRIDE_GFX_VERSION", "JETSON_JETPACK", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    "OLLAMA_MULTIUSER_CACHE", "OLLAMA_NEW_ENGINE", "OLLAMA_INTEL_GPU", "OLLAMA_TMPDIR", "OLLAMA_RUNNERS_DIR",
    "OLLAMAPY_API_VERSION", "OLLAMAPY_SHUTDOWN_GRACE",
]  # fmt: skip

NOT_APPLICABLE = [
    "OLLAMA_LLM_LIBRARY", "OLLAMA_VULKAN", "OLLAMA_IGPU_ENABLE", "OLLAMA_MAX_TRANSFER_STREAMS", "OLLAMA_REMOTES",
    "OLLAMA_NO_CLOUD", "OLLAMA_AUTH", "OLLAMA_EXPERIMENT", "OLLAMA_GO_TEMPLATE", "OLLAMA_MULTIUSER_CACHE",
    "OLLAMA_NEW_ENGINE", "OLLAMA_INTEL_GPU", "OLLAMA_TMPDIR", "OLLAMA_RUNNERS_DIR", "OLLAMA_DEBUG_LOG_REQUESTS",
]  # fmt: skip


def test_as_map_lists_every_variable_with_a_description() -> None:
    env = envconfig.as_map()
    assert set(SPEC_VARIABLES) <= set(env)
    for name, entry in env.items():
        assert entry.name == name
        assert entry.description


def test_as_map_marks_variables_that_do_not_apply() -> None:
    env = envconfig.as_map()
    assert {name for name in NOT_APPLICABLE if env[name].applies} == set()
    assert env["OLLAMA_HOST"].applies and env["OLLAMA_KEEP_ALIVE"].applies


def test_as_map_values_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_KEEP_ALIVE", "-1")
    monkeypatch.setenv("OLLAMA_MAX_QUEUE", "7")
    monkeypatch.setenv("OLLAMA_VULKAN", "1")
    monkeypatch.setenv("OLLAMA_REMOTES", "a.example,b.example")
    env = envconfig.as_map()
    assert env["OLLAMA_KEEP_ALIVE"].value == FOREVER
    assert env["OLLAMA_KEEP_ALIVE"].text == "2562047h47m16.854775807s"
    assert env["OLLAMA_MAX_QUEUE"].value == 7
    assert env["OLLAMA_VULKAN"].value is True
    assert env["OLLAMA_REMOTES"].value == ["a.example", "b.example"]
    assert env["OLLAMA_HOST"].value == envconfig.HostAddress("http", "127.0.0.1", 11434)


def test_describe_config_is_ollamas_log_line(clean_env: Path) -> None:
    text = envconfig.describe_config()
    assert "\n" not in text
    assert text.startswith("server config env=map[")
    assert text.endswith("]")
    for part in [
        "OLLAMA_HOST:http://127.0.0.1:11434 ",
        "OLLAMA_KEEP_ALIVE:5m0s ",
        "OLLAMA_LOAD_TIMEOUT:5m0s ",
        "OLLAMA_MAX_QUEUE:512 ",
        "OLLAMA_DEBUG:INFO ",
        "OLLAMA_NOPRUNE:false ",
        f"OLLAMA_MODELS:{clean_env / '.ollama' / 'models'} ",
        "OLLAMA_ORIGINS:[http://localhost https://localhost ",
    ]:
        assert part in text
    names = [item.split(":", 1)[0] for item in text.removeprefix("server config env=map[").split(" ") if ":" in item]
    assert "OLLAMA_VULKAN" not in names
    keys = [name for name in names if name in SPEC_VARIABLES]
    assert keys == sorted(keys)


def test_describe_config_lists_set_variables_that_do_not_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_VULKAN", "1")
    monkeypatch.setenv("OLLAMA_LLM_LIBRARY", "cuda_v12")
    line, ignored = envconfig.describe_config().split("\n")
    assert line.startswith("server config env=map[")
    assert "OLLAMA_VULKAN=1" in ignored
    assert "OLLAMA_LLM_LIBRARY=cuda_v12" in ignored
    assert "OLLAMA_AUTH" not in ignored
    assert {v.name for v in envconfig.ignored_vars()} == {"OLLAMA_VULKAN", "OLLAMA_LLM_LIBRARY"}
