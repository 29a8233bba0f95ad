"""Configuration from ``OLLAMA_*`` (and ``OLLAMAPY_*``) environment variables, read as Ollama reads them.

Like Ollama's ``envconfig`` package, every setting is a function that reads the environment
when called, so tests can ``monkeypatch.setenv`` and a changed variable takes effect without
reloading anything. Parsing follows Go's rules exactly, because users carry their Ollama
settings over unchanged:

* values are trimmed of spaces, then of surrounding ``"``/``'`` (:func:`var`);
* booleans use ``strconv.ParseBool`` and an unparsable non-empty value counts as *true*
  (:func:`bool_var`);
* unsigned integers that do not parse log a warning and fall back to the default
  (:func:`uint_var`);
* durations are a Go duration string or whole seconds; negative keep-alives mean forever.

:func:`as_map` is the registry of every variable (value, description, and whether it
applies to ollamapy); it feeds ``ollamapy serve --help`` and the start-up log line from
:func:`describe_config`. Variables that only make sense for Ollama's Go/llama-server build
are still parsed and reported, marked as not applicable.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ollamapy.golang import NumError, parse_bool, parse_int, parse_uint
from ollamapy.golang.durations import FOREVER, format_go_duration, parse_go_duration

__all__ = [
    "TRACE",
    "EnvVar",
    "HostAddress",
    "api_version",
    "as_map",
    "bool_var",
    "context_length",
    "debug_level",
    "describe_config",
    "editor",
    "flash_attention",
    "gpu_overhead",
    "home_dir",
    "host",
    "ignored_vars",
    "keep_alive",
    "kv_cache_type",
    "load_timeout",
    "max_loaded_models",
    "max_queue",
    "models_dir",
    "no_cloud",
    "no_cloud_source",
    "nohistory",
    "noprune",
    "num_parallel",
    "origins",
    "sched_spread",
    "shutdown_grace",
    "uint_var",
    "var",
]

_log = logging.getLogger(__name__)

TRACE = 5
"""Python logging level for ``OLLAMA_DEBUG=2`` (Ollama's TRACE, below DEBUG)."""

_DEFAULT_PORT = "11434"
_DEFAULT_KEEP_ALIVE = 300.0
_DEFAULT_LOAD_TIMEOUT = 300.0
_DEFAULT_SHUTDOWN_GRACE = 10.0
_DEFAULT_API_VERSION = "0.33.0"



# --- primitive readers ---------------------------------------------------------------


def var(key: str) -> str:
    """The variable's value stripped of surrounding spaces, then quotes (Ollama's ``envconfig.Var``).

    Service managers and shells often leave quotes in values (``OLLAMA_HOST="0.0.0.0"``).
    """
    return os.environ.get(key, "").strip().strip("\"'")


def _go_parse_bool(s: str) -> bool | None:
    """``strconv.ParseBool``: None when ``s`` is not one of Go's spellings."""
    try:
        return parse_bool(s)
    except NumError:
        return None


def _go_parse_int(s: str) -> int | None:
    """``strconv.ParseInt(s, 10, 64)``: None on syntax or range errors."""
    try:
        return parse_int(s)
    except NumError:
        return None


def _optional_bool(key: str) -> bool | None:
    """None when unset or empty; otherwise Go's bool, with garbage counting as true."""
    s = var(key)
    if not s:
        return None
    parsed = _go_parse_bool(s)
    return True if parsed is None else parsed


def bool_var(key: str, default: bool = False) -> bool:
    """A boolean variable: ``1/t/true`` → True, ``0/f/false`` → False, any other non-empty value → True."""
    value = _optional_bool(key)
    return default if value is None else value


def uint_var(key: str, default: int) -> int:
    """An unsigned decimal integer; a bad value (``-1``, ``0x10``, ``abc``) warns and gives ``default``."""
    s = var(key)
    if s:
        with contextlib.suppress(NumError):
            return parse_uint(s)
        _log.warning("invalid environment variable, using default key=%s value=%s default=%s", key, s, default)
    return default


def _duration_var(key: str, default: float) -> float:
    """Seconds from a Go duration (``"5m"``) or whole seconds (``"300"``); bad values warn and give ``default``."""
    s = var(key)
    if not s:
        return default
    try:
        return parse_go_duration(s)
    except ValueError:
        seconds = _go_parse_int(s)
        if seconds is not None:
            return float(seconds)
    _log.warning(
        "invalid environment variable, using default key=%s value=%s default=%s", key, s, format_go_duration(default)
    )
    return default


# --- OLLAMA_HOST -----------------------------------------------------------------------


@dataclass(frozen=True)
class HostAddress:
    """Where the server listens and clients connect, parsed from ``OLLAMA_HOST``.

    ``host`` is bare (IPv6 without brackets; ``""`` for every interface, as in ``:8080``),
    ``path`` is ``""`` or starts with ``/`` (a reverse-proxy prefix). ``str()`` gives the
    URL exactly as Ollama logs it; :attr:`url` is the address a client should connect to.
    """

    scheme: str
    host: str
    port: int
    path: str = ""

    @property
    def netloc(self) -> str:
        """``host:port``, with IPv6 hosts in brackets (Go's ``net.JoinHostPort``)."""
        return _join_host_port(self.host, self.port)

    @property
    def bind_host(self) -> str | None:
        """The address to bind; None means every interface (``OLLAMA_HOST=:8080``)."""
        return self.host or None

    @property
    def url(self) -> str:
        """The base URL for clients: unspecified bind addresses become loopback (Ollama's ``ConnectableHost``)."""
        host = self.host
        if host == "":
            host = "127.0.0.1"
        else:
            ip = _ip_address(host)
            if ip is not None and ip.is_unspecified:
                host = "127.0.0.1" if ip.version == 4 else "::1"
        return _url(self.scheme, _join_host_port(host, self.port), self.path)

    def __str__(self) -> str:
        return _url(self.scheme, self.netloc, self.path)


def _url(scheme: str, netloc: str, path: str) -> str:
    # As Go's url.URL.String: "%" of an IPv6 zone is escaped in the host, the path keeps
    # the reserved characters a path may hold, and an empty scheme is left out.
    prefix = f"{scheme}:" if scheme else ""
    return f"{prefix}//{netloc.replace('%', '%25')}{quote(path, safe='/$&+,:;=@')}"


def _join_host_port(host: str, port: int | str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ip_address(s: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Go's ``net.ParseIP``: dotted IPv4 or IPv6 without a zone, else None."""
    if "%" in s:
        return None
    try:
        return ipaddress.ip_address(s)
    except ValueError:
        return None


def _canonical_ip(s: str) -> str | None:
    """``net.ParseIP(s).String()``: IPv4-mapped IPv6 prints as IPv4, IPv6 compressed per RFC 5952."""
    ip = _ip_address(s)
    if ip is None:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _split_host_port(hostport: str) -> tuple[str, str] | None:
    """Go's ``net.SplitHostPort``; None where Go returns an error (e.g. no port, bare IPv6)."""
    i = hostport.rfind(":")
    if i < 0:
        return None
    j = k = 0
    if hostport[0] == "[":
        end = hostport.find("]")
        if end < 0 or end + 1 != i:
            return None
        host = hostport[1:end]
        j, k = 1, end + 1
    else:
        host = hostport[:i]
        if ":" in host:
            return None
    if "[" in hostport[j:] or "]" in hostport[k:]:
        return None
    return host, hostport[i + 1 :]


def host() -> HostAddress:
    """``OLLAMA_HOST``: ``[scheme://]host[:port][/path]``, default ``http://127.0.0.1:11434``.

    No scheme means ``http`` on port 11434; an explicit ``http://`` defaults to port 80 and
    ``https://`` to 443. A bare ``ollama.com`` means ``https://ollama.com:443``. A host
    without a port (``0.0.0.0``, ``[::1]``, ``::1``) gets the default port, and a port that
    is not a number in 0..65535 is replaced by the default with a warning.
    """
    default_port = _DEFAULT_PORT
    s = var("OLLAMA_HOST").strip()
    scheme, sep, hostport = s.partition("://")
    if not sep:
        scheme, hostport = "http", s
        if s == "ollama.com":
            scheme, hostport = "https", "ollama.com:443"
    elif scheme == "http":
        default_port = "80"
    elif scheme == "https":
        default_port = "443"

    hostport, _, path = hostport.partition("/")
    split = _split_host_port(hostport)
    if split is None:
        host_, port = "127.0.0.1", default_port
        ip = _canonical_ip(hostport.strip("[]"))
        if ip is not None:
            host_ = ip
        elif hostport:
            host_ = hostport
    else:
        host_, port = split

    port_num = _go_parse_int(port)
    if port_num is None or not 0 <= port_num <= 65535:
        _log.warning("invalid port, using default port=%s default=%s", port, default_port)
        port_num = int(default_port)
    return HostAddress(scheme=scheme, host=host_, port=port_num, path="/" + path if path else "")


# --- paths -----------------------------------------------------------------------------


def home_dir() -> Path:
    """``~/.ollama``: the ed25519 key pair, REPL history and ``server.json`` live here."""
    return Path.home() / ".ollama"


def models_dir() -> Path:
    """``OLLAMA_MODELS``, default ``~/.ollama/models``. Like Ollama, ``~`` inside the value is not expanded."""
    s = var("OLLAMA_MODELS")
    return Path(s) if s else home_dir() / "models"


# --- durations -------------------------------------------------------------------------


def keep_alive() -> float:
    """``OLLAMA_KEEP_ALIVE`` in seconds (default 300): ``"5m"``, ``"1h"`` or ``"3600"``.

    Negative means forever (:data:`~ollamapy.golang.durations.FOREVER`); 0 unloads right after each request.
    """
    seconds = _duration_var("OLLAMA_KEEP_ALIVE", _DEFAULT_KEEP_ALIVE)
    return FOREVER if seconds < 0 else seconds


def load_timeout() -> float:
    """``OLLAMA_LOAD_TIMEOUT`` in seconds (default 300): how long a load may stall; ≤ 0 → never time out."""
    seconds = _duration_var("OLLAMA_LOAD_TIMEOUT", _DEFAULT_LOAD_TIMEOUT)
    return FOREVER if seconds <= 0 else seconds


def shutdown_grace() -> float:
    """``OLLAMAPY_SHUTDOWN_GRACE`` in seconds (default 10): time running requests get on shutdown; negative → 0."""
    return max(0.0, _duration_var("OLLAMAPY_SHUTDOWN_GRACE", _DEFAULT_SHUTDOWN_GRACE))


# --- scheduler limits ------------------------------------------------------------------


def num_parallel() -> int:
    """``OLLAMA_NUM_PARALLEL``: parallel requests per loaded model; 0 (default) lets ollamapy choose."""
    return uint_var("OLLAMA_NUM_PARALLEL", 0)


def max_loaded_models() -> int:
    """``OLLAMA_MAX_LOADED_MODELS``: 0 (default) means 3 per GPU, or 3 on CPU."""
    return uint_var("OLLAMA_MAX_LOADED_MODELS", 0)


def max_queue() -> int:
    """``OLLAMA_MAX_QUEUE``: pending requests before answering 503 (default 512)."""
    return uint_var("OLLAMA_MAX_QUEUE", 512)


def context_length() -> int:
    """``OLLAMA_CONTEXT_LENGTH``: default ``num_ctx``; 0 (default) picks 4k/32k/256k from total VRAM."""
    return uint_var("OLLAMA_CONTEXT_LENGTH", 0)


def gpu_overhead() -> int:
    """``OLLAMA_GPU_OVERHEAD``: bytes of VRAM per GPU to leave unused (default 0)."""
    return uint_var("OLLAMA_GPU_OVERHEAD", 0)


def sched_spread() -> bool:
    """``OLLAMA_SCHED_SPREAD``: always spread a model over every GPU of its library."""
    return bool_var("OLLAMA_SCHED_SPREAD")


# --- runner options --------------------------------------------------------------------


def flash_attention() -> bool | None:
    """``OLLAMA_FLASH_ATTENTION``: None when unset (auto: on where every GPU supports it), else forced on/off."""
    return _optional_bool("OLLAMA_FLASH_ATTENTION")


def kv_cache_type() -> str:
    """``OLLAMA_KV_CACHE_TYPE``: K/V cache quantization (``f16``, ``q8_0``, ``q4_0``); ``""`` means f16."""
    return var("OLLAMA_KV_CACHE_TYPE")


# --- HTTP ------------------------------------------------------------------------------


def origins() -> list[str]:
    """Allowed CORS origins: ``OLLAMA_ORIGINS`` (comma separated) followed by Ollama's built-in list."""
    s = var("OLLAMA_ORIGINS")
    allowed = s.split(",") if s else []
    for name in ("localhost", "127.0.0.1", "0.0.0.0"):
        allowed += [f"http://{name}", f"https://{name}", f"http://{name}:*", f"https://{name}:*"]
    allowed += ["app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*"]
    return allowed


def cpu_backend() -> str:
    """``OLLAMAPY_CPU_BACKEND``: the llama.cpp CPU kernel variant runners load, unchecked
    (empty: the one the server's check chose)."""
    return var("OLLAMAPY_CPU_BACKEND")


def api_version() -> str:
    """``OLLAMAPY_API_VERSION``: the Ollama version ollamapy reports on ``/api/version`` (default ``0.33.0``)."""
    return var("OLLAMAPY_API_VERSION") or _DEFAULT_API_VERSION


# --- logging ---------------------------------------------------------------------------


def _debug_verbosity() -> int:
    """``OLLAMA_DEBUG`` as Ollama reads it: 0 INFO, 1/true DEBUG, 2 TRACE, negative quieter; garbage → 0."""
    s = var("OLLAMA_DEBUG")
    if not s:
        return 0
    if _go_parse_bool(s):
        return 1
    return _go_parse_int(s) or 0


def debug_level() -> int:
    """The Python logging level ``OLLAMA_DEBUG`` asks for.

    Unset, ``0`` or garbage → INFO; ``1``/``true`` → DEBUG; ``2`` → :data:`TRACE`; higher → everything;
    negative numbers are quieter (``-1`` WARNING, ``-2`` ERROR).
    """
    n = _debug_verbosity()
    if n >= 3:
        return 1
    if n == 2:
        return TRACE
    return min(logging.INFO - 10 * n, logging.CRITICAL)


def _slog_level_name(level: int) -> str:
    """Go's ``slog.Level.String()`` (``INFO``, ``DEBUG``, ``DEBUG-4``, ``WARN``, ``ERROR+4``)."""
    if level < 0:
        base, floor = "DEBUG", -4
    elif level < 4:
        base, floor = "INFO", 0
    elif level < 8:
        base, floor = "WARN", 4
    else:
        base, floor = "ERROR", 8
    return base if level == floor else f"{base}{level - floor:+d}"


# --- CLI -------------------------------------------------------------------------------


def nohistory() -> bool:
    """``OLLAMA_NOHISTORY``: do not keep the interactive prompt's history."""
    return bool_var("OLLAMA_NOHISTORY")


def noprune() -> bool:
    """``OLLAMA_NOPRUNE``: keep unreferenced blobs (no pruning at start-up, after pull or create)."""
    return bool_var("OLLAMA_NOPRUNE")


def editor() -> str:
    """``OLLAMA_EDITOR``, else ``$VISUAL``, else ``$EDITOR``: the editor Ctrl+G opens; ``""`` if none."""
    return var("OLLAMA_EDITOR") or var("VISUAL") or var("EDITOR")


# --- cloud -----------------------------------------------------------------------------


def _server_config() -> dict[str, Any]:
    """``~/.ollama/server.json``; missing or unreadable → ``{}`` (a broken file warns)."""
    path = home_dir() / "server.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        _log.warning("ignoring unreadable server config path=%s error=%s", path, err)
        return {}
    return data if isinstance(data, dict) else {}


def no_cloud_source() -> str:
    """Who disabled the cloud: ``none``, ``env`` (``OLLAMA_NO_CLOUD``), ``config`` (``server.json``) or ``both``."""
    env = bool_var("OLLAMA_NO_CLOUD")
    config = _server_config().get("disable_ollama_cloud") is True
    return {(False, False): "none", (True, False): "env", (False, True): "config", (True, True): "both"}[(env, config)]


def no_cloud() -> bool:
    """Whether cloud features are disabled (``OLLAMA_NO_CLOUD`` or ``disable_ollama_cloud`` in ``server.json``)."""
    return no_cloud_source() != "none"


# --- registry --------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvVar:
    """One variable as ``ollamapy serve --help`` and the start-up log show it.

    ``value`` is the parsed value, ``text`` its rendering as Ollama logs it (Go's ``%v``),
    ``applies`` False for variables that only mean something to Ollama's own build.
    """

    name: str
    value: Any
    description: str
    applies: bool = True
    text: str = ""


def _go_text(value: Any) -> str:
    """Render a value as Go's ``fmt`` ``%v`` would."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_go_text(v) for v in value) + "]"
    if value is None:
        return "auto"
    return str(value)


def _string(key: str) -> Callable[[], str]:
    return lambda: var(key)


def _bool(key: str, default: bool = False) -> Callable[[], bool]:
    return lambda: bool_var(key, default)


def _remotes() -> list[str]:
    s = var("OLLAMA_REMOTES").strip()
    return s.split(",") if s else ["ollama.com"]


@dataclass(frozen=True)
class _Setting:
    name: str
    read: Callable[[], Any]
    description: str
    applies: bool = True
    show: Callable[[Any], str] = _go_text


_SETTINGS: tuple[_Setting, ...] = (
    # Server
    _Setting("OLLAMA_HOST", host, "IP Address for the ollama server (default 127.0.0.1:11434)"),
    _Setting("OLLAMA_ORIGINS", origins, "A comma separated list of allowed origins"),
    _Setting("OLLAMA_MODELS", models_dir, "The path to the models directory"),
    _Setting(
        "OLLAMA_DEBUG",
        debug_level,
        "Show additional debug information (e.g. OLLAMA_DEBUG=1)",
        show=lambda _: _slog_level_name(-4 * _debug_verbosity()),
    ),
    _Setting("OLLAMA_NOPRUNE", noprune, "Do not prune model blobs on startup"),
    _Setting("OLLAMAPY_API_VERSION", api_version, 'Ollama API version reported on /api/version (default "0.33.0")'),
    _Setting("OLLAMAPY_CPU_BACKEND", cpu_backend, "llama.cpp CPU kernel variant to load, unchecked (e.g. haswell; default: the best one that passes a check)"),
    _Setting(
        "OLLAMAPY_SHUTDOWN_GRACE",
        shutdown_grace,
        'How long running requests may finish on shutdown before runners are stopped (default "10s")',
        show=format_go_duration,
    ),
    # Scheduler
    _Setting(
        "OLLAMA_KEEP_ALIVE",
        keep_alive,
        'The duration that models stay loaded in memory (default "5m")',
        show=format_go_duration,
    ),
    _Setting(
        "OLLAMA_LOAD_TIMEOUT",
        load_timeout,
        'How long to allow model loads to stall before giving up (default "5m")',
        show=format_go_duration,
    ),
    _Setting("OLLAMA_NUM_PARALLEL", num_parallel, "Maximum number of parallel requests (default 0 = automatic)"),
    _Setting("OLLAMA_MAX_LOADED_MODELS", max_loaded_models, "Maximum number of loaded models per GPU"),
    _Setting("OLLAMA_MAX_QUEUE", max_queue, "Maximum number of queued requests"),
    _Setting(
        "OLLAMA_CONTEXT_LENGTH",
        context_length,
        "Context length to use unless otherwise specified (default: 4k/32k/256k based on VRAM)",
    ),
    _Setting("OLLAMA_SCHED_SPREAD", sched_spread, "Always schedule model across all GPUs"),
    _Setting("OLLAMA_GPU_OVERHEAD", gpu_overhead, "Reserve a portion of VRAM per GPU (bytes)"),
    _Setting("OLLAMA_FLASH_ATTENTION", flash_attention, "Enabled flash attention"),
    _Setting("OLLAMA_KV_CACHE_TYPE", kv_cache_type, "Quantization type for the K/V cache (default: f16)"),
    # Client
    _Setting("OLLAMA_NOHISTORY", nohistory, "Do not preserve readline history"),
    _Setting("OLLAMA_EDITOR", editor, "Path to editor for interactive prompt editing (Ctrl+G)"),
    # Devices, passed through to runners
    _Setting("CUDA_VISIBLE_DEVICES", _string("CUDA_VISIBLE_DEVICES"), "Set which NVIDIA devices are visible"),
    _Setting("HIP_VISIBLE_DEVICES", _string("HIP_VISIBLE_DEVICES"), "Set which AMD devices are visible by numeric ID"),
    _Setting(
        "ROCR_VISIBLE_DEVICES",
        _string("ROCR_VISIBLE_DEVICES"),
        "Set which AMD devices are visible by UUID or numeric ID",
    ),
    _Setting("GPU_DEVICE_ORDINAL", _string("GPU_DEVICE_ORDINAL"), "Set which AMD devices are visible by numeric ID"),
    _Setting(
        "HSA_OVERRIDE_GFX_VERSION",
        _string("HSA_OVERRIDE_GFX_VERSION"),
        "Override the gfx used for all detected AMD GPUs",
    ),
    # Informational
    _Setting("HTTP_PROXY", _string("HTTP_PROXY"), "HTTP proxy"),
    _Setting("HTTPS_PROXY", _string("HTTPS_PROXY"), "HTTPS proxy"),
    _Setting("NO_PROXY", _string("NO_PROXY"), "No proxy"),
    _Setting("http_proxy", _string("http_proxy"), "HTTP proxy"),
    _Setting("https_proxy", _string("https_proxy"), "HTTPS proxy"),
    _Setting("no_proxy", _string("no_proxy"), "No proxy"),
    # Ollama's own build only: parsed and reported, never acted on
    _Setting(
        "OLLAMA_LLM_LIBRARY", _string("OLLAMA_LLM_LIBRARY"), "Set LLM library to bypass autodetection", applies=False
    ),
    _Setting("OLLAMA_VULKAN", _bool("OLLAMA_VULKAN"), "Enable experimental Vulkan support", applies=False),
    _Setting("OLLAMA_IGPU_ENABLE", _bool("OLLAMA_IGPU_ENABLE"), "Allow integrated GPUs", applies=False),
    _Setting(
        "OLLAMA_MAX_TRANSFER_STREAMS",
        lambda: uint_var("OLLAMA_MAX_TRANSFER_STREAMS", 4),
        "Concurrent streams for safetensors pulls and pushes (default 4)",
        applies=False,
    ),
    _Setting("OLLAMA_REMOTES", _remotes, 'Allowed hosts for remote models (default "ollama.com")', applies=False),
    _Setting(
        "OLLAMA_NO_CLOUD", no_cloud, "Disable Ollama cloud features (remote inference and web search)", applies=False
    ),
    _Setting(
        "OLLAMA_AUTH", _bool("OLLAMA_AUTH"), "Enable authentication between the Ollama client and server", applies=False
    ),
    _Setting(
        "OLLAMA_EXPERIMENT",
        _string("OLLAMA_EXPERIMENT"),
        "Comma separated list of experiments to enable",
        applies=False,
    ),
    _Setting(
        "OLLAMA_GO_TEMPLATE",
        _bool("OLLAMA_GO_TEMPLATE", True),
        "Prefer the Modelfile TEMPLATE over the GGUF chat template",
        applies=False,
    ),
    _Setting(
        "OLLAMA_MULTIUSER_CACHE",
        _bool("OLLAMA_MULTIUSER_CACHE"),
        "Optimize prompt caching for multi-user scenarios",
        applies=False,
    ),
    _Setting("OLLAMA_NEW_ENGINE", _bool("OLLAMA_NEW_ENGINE"), "Enable the new Ollama engine", applies=False),
    _Setting("OLLAMA_INTEL_GPU", _bool("OLLAMA_INTEL_GPU"), "Enable experimental Intel GPU detection", applies=False),
    _Setting("OLLAMA_TMPDIR", _string("OLLAMA_TMPDIR"), "Location for temporary files", applies=False),
    _Setting("OLLAMA_RUNNERS_DIR", _string("OLLAMA_RUNNERS_DIR"), "Location for runners", applies=False),
    _Setting(
        "OLLAMA_DEBUG_LOG_REQUESTS",
        _bool("OLLAMA_DEBUG_LOG_REQUESTS"),
        "Log inference request bodies and replay curl commands to a temp directory",
        applies=False,
    ),
    _Setting(
        "GGML_VK_VISIBLE_DEVICES",
        _string("GGML_VK_VISIBLE_DEVICES"),
        "Set which Vulkan devices are visible by numeric ID",
        applies=False,
    ),
    _Setting("JETSON_JETPACK", _string("JETSON_JETPACK"), "Override the detected JetPack version", applies=False),
    _Setting(
        "LLAMA_ARG_FIT", _string("LLAMA_ARG_FIT"), "llama-server automatic fitting of layers and context", applies=False
    ),
    _Setting(
        "LLAMA_ARG_FIT_TARGET", _string("LLAMA_ARG_FIT_TARGET"), "llama-server fitting margin (MiB)", applies=False
    ),
)


def as_map() -> dict[str, EnvVar]:
    """Every variable ollamapy knows, read now: name → :class:`EnvVar` (like Ollama's ``envconfig.AsMap``)."""
    result: dict[str, EnvVar] = {}
    for setting in _SETTINGS:
        value = setting.read()
        result[setting.name] = EnvVar(setting.name, value, setting.description, setting.applies, setting.show(value))
    return result


def _ignored(env: dict[str, EnvVar]) -> list[EnvVar]:
    return [v for v in env.values() if not v.applies and var(v.name)]


def ignored_vars() -> list[EnvVar]:
    """Variables the user set that only Ollama's own build uses, so ollamapy ignores them."""
    return _ignored(as_map())


def describe_config() -> str:
    """The start-up log text: ``server config env=map[NAME:value …]`` as Ollama logs it.

    The map lists the variables that apply to ollamapy, sorted like Go prints a map. When
    the user set variables that do not apply, a second line names them.
    """
    env = as_map()
    entries = sorted((v for v in env.values() if v.applies), key=lambda v: v.name)
    text = "server config env=map[" + " ".join(f"{v.name}:{v.text}" for v in entries) + "]"
    ignored = _ignored(env)
    if ignored:
        text += "\nnot applicable to ollamapy, ignored: " + " ".join(f"{v.name}={var(v.name)}" for v in ignored)
    return text
