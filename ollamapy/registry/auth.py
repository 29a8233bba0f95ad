"""The ed25519 identity and the signed token requests of Ollama's registry auth.

Ollama identifies a machine to its registry by an ed25519 key in ``~/.ollama/id_ed25519``
(OpenSSH PEM, 0600, with ``id_ed25519.pub`` in authorized_keys form). When a registry
answers 401 with ``WWW-Authenticate: Bearer realm=…,service=…,scope=…``, the client asks
the realm for a token with ``GET <realm>?nonce=…&scope=…&service=…&ts=…`` and the header
``Authorization: <public key base64>:<signature base64>``, where the signature covers
``GET,<that exact URL>,<base64(hex(sha256("")))>``. A registry that knows the public key
checks the signature and answers ``{"token": "…"}``.

The key files are byte-compatible with Ollama's (``ssh.MarshalPrivateKey`` /
``ssh.MarshalAuthorizedKey``), so a user's existing key keeps working and a key made here
works with Ollama.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ollamapy.errors import OllamapyError
from ollamapy.registry.urls import add_query

__all__ = [
    "PRIVATE_KEY_NAME",
    "Challenge",
    "ensure_keypair",
    "parse_challenge",
    "public_key",
    "sign",
    "token_request",
]

log = logging.getLogger("ollamapy.registry")

PRIVATE_KEY_NAME = "id_ed25519"

# base64 of the hex of sha256 of an empty body: the third field of every signed token request.
_EMPTY_BODY_HASH = base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()


def _write_new(path: Path, data: bytes, mode: int) -> bool:
    """Create ``path`` with ``mode`` unless it exists (O_EXCL: two starting servers never clobber a key)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)  # the umask may have narrowed it; 0644 for .pub is what Ollama writes
    return True


def ensure_keypair(home: Path) -> str:
    """Make sure ``home/id_ed25519`` (and ``.pub``) exist; return the public key line.

    Called when ``serve`` starts, as Ollama does, and before signing, so a key is always
    there when a registry asks. An existing key is never replaced; a missing ``.pub`` is
    rebuilt from the private key. Returns ``ssh-ed25519 AAAA…`` (no comment, no newline).
    """
    private_path = home / PRIVATE_KEY_NAME
    public_path = home / f"{PRIVATE_KEY_NAME}.pub"
    if not private_path.exists():
        home.mkdir(mode=0o755, parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
        if _write_new(private_path, pem, 0o600):
            log.info("Couldn't find '%s'. Generating new private key.", private_path)
            with suppress(FileNotFoundError):
                public_path.unlink()  # a stray .pub of some other key would lie about this one
    line = public_key(home)
    if not public_path.exists():
        _write_new(public_path, f"{line}\n".encode(), 0o644)
    return line


def _private_key(home: Path) -> Ed25519PrivateKey:
    path = home / PRIVATE_KEY_NAME
    try:
        key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise OllamapyError(f"couldn't read private key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise OllamapyError(f"{path} is not an ed25519 key")
    return key


def public_key(home: Path) -> str:
    """``ssh-ed25519 <base64>`` of the key in ``home`` (what ``ollama`` shows users to register)."""
    raw = _private_key(home).public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return raw.decode()


def sign(home: Path, data: bytes) -> str:
    """``<public key base64>:<signature base64>``: Ollama's ``auth.Sign`` over ``data``.

    The first field is the SSH wire-format public key (the middle of the ``.pub`` line),
    the second the raw 64-byte ed25519 signature; both standard base64.
    """
    ensure_keypair(home)
    key = _private_key(home)
    wire = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).split()[1]
    return f"{wire.decode()}:{base64.b64encode(key.sign(data)).decode()}"


@dataclass(frozen=True)
class Challenge:
    """The parameters of a ``WWW-Authenticate: Bearer …`` header."""

    realm: str
    service: str
    scope: str


def _challenge_value(header: str, key: str) -> str:
    """One quoted value, read as Ollama's ``getValue`` does: up to the first ``"`` before a ``,`` or the end."""
    start = header.find(f"{key}=")
    if start < 0:
        return ""
    start += len(key) + 2  # skip `key="`
    end = start
    while end < len(header):
        if header[end] == '"' and (end + 1 >= len(header) or header[end + 1] == ","):
            break
        end += 1
    return header[start:end]


def parse_challenge(header: str) -> Challenge:
    """``Bearer realm="…",service="…",scope="…"`` → :class:`Challenge` (missing values are ``""``)."""
    header = header.removeprefix("Bearer ")
    return Challenge(
        realm=_challenge_value(header, "realm"),
        service=_challenge_value(header, "service"),
        scope=_challenge_value(header, "scope"),
    )


def token_request(challenge: Challenge, home: Path, *, now: float | None = None) -> tuple[str, str]:
    """The token URL for ``challenge`` and its signed ``Authorization`` value.

    The query keeps the realm's own parameters and adds ``service``, one ``scope`` per
    space-separated scope, ``ts`` (unix seconds) and a 16-byte base64url ``nonce``, sorted
    by key as Go's ``url.Values.Encode`` does. The URL must be sent byte for byte as
    returned: the signature covers it.
    """
    nonce = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    params = [("service", challenge.service)]
    params += [("scope", scope) for scope in challenge.scope.split(" ")]
    params += [("ts", str(int(time.time() if now is None else now))), ("nonce", nonce)]
    url = add_query(challenge.realm, params)
    return url, sign(home, f"GET,{url},{_EMPTY_BODY_HASH}".encode())
