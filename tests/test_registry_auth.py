"""The registry's ed25519 identity, signed token requests, challenge parsing and part sizing."""

from __future__ import annotations

import base64
import hashlib
import shutil
import stat
import subprocess
from itertools import pairwise
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

from ollamapy.registry import (
    RegistryClient,
    RegistryError,
    TransferSettings,
    ensure_keypair,
)
from ollamapy.registry.auth import Challenge, parse_challenge, sign, token_request
from ollamapy.registry.urls import add_query
from ollamapy.store.names import ModelName

pytestmark = pytest.mark.registry


def _verify(public_b64: str, signature_b64: str, data: bytes) -> None:
    key = load_ssh_public_key(f"ssh-ed25519 {public_b64}".encode())
    assert isinstance(key, Ed25519PublicKey)
    key.verify(base64.b64decode(signature_b64), data)  # raises InvalidSignature


# --- key pair ---------------------------------------------------------------------------------


def test_keypair_is_created_once_in_openssh_format(tmp_path: Path) -> None:
    home = tmp_path / ".ollama"
    line = ensure_keypair(home)
    private, public = home / "id_ed25519", home / "id_ed25519.pub"
    assert private.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public.read_text() == f"{line}\n"
    assert line.startswith("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5") and len(line.split()) == 2

    assert ensure_keypair(home) == line  # never replaced
    public.unlink()
    assert ensure_keypair(home) == line and public.read_text() == f"{line}\n"  # .pub rebuilt from the key


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_openssh_reads_the_key(tmp_path: Path) -> None:
    line = ensure_keypair(tmp_path)
    out = subprocess.run(["ssh-keygen", "-y", "-f", str(tmp_path / "id_ed25519")], capture_output=True, text=True, check=True)
    assert out.stdout.split()[:2] == line.split()


def test_an_existing_openssh_key_is_used(tmp_path: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen not installed")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id_ed25519")], check=True)
    made_by_openssh = (tmp_path / "id_ed25519.pub").read_text().split()[:2]
    assert ensure_keypair(tmp_path).split() == made_by_openssh


def test_signature_is_pubkey_colon_signature(tmp_path: Path) -> None:
    line = ensure_keypair(tmp_path)
    public, _, signature = sign(tmp_path, b"hello").partition(":")
    assert public == line.split()[1]
    _verify(public, signature, b"hello")


# --- challenges and token requests ------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://auth.example.com/token",service="registry",scope="repo:foo:pull"',
            Challenge("https://auth.example.com/token", "registry", "repo:foo:pull"),
        ),
        ('Bearer realm="https://r.ollama.ai/v2/token",service="ollama",scope="-"', Challenge("https://r.ollama.ai/v2/token", "ollama", "-")),
        ("", Challenge("", "", "")),
    ],
)
def test_parse_challenge(header: str, expected: Challenge) -> None:
    assert parse_challenge(header) == expected


def test_token_request_is_signed_over_the_exact_url(tmp_path: Path) -> None:
    challenge = Challenge("https://auth.example.com/token?x=1", "registry", "repo:foo:pull repo:bar:push")
    url, authorization = token_request(challenge, tmp_path, now=1700000000)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "auth.example.com", "/token")
    query = parse_qsl(parts.query)
    assert [k for k, _ in query] == ["nonce", "scope", "scope", "service", "ts", "x"]  # sorted as Go encodes
    values = dict(query)
    assert [v for k, v in query if k == "scope"] == ["repo:foo:pull", "repo:bar:push"]
    assert values["ts"] == "1700000000" and values["x"] == "1" and values["service"] == "registry"
    assert len(values["nonce"]) == 22 and "=" not in values["nonce"]
    assert token_request(challenge, tmp_path)[0] != token_request(challenge, tmp_path)[0]  # fresh nonce

    empty_hash = base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()
    public, _, signature = authorization.partition(":")
    _verify(public, signature, f"GET,{url},{empty_hash}".encode())


async def test_realm_on_another_host_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    header = 'Bearer realm="https://evil.example.com/token",service="s",scope="x"'
    async with aiohttp.ClientSession() as session:
        client = RegistryClient(session, ModelName.parse("example.com/ns/model"), insecure=False, key_dir=tmp_path)
        with pytest.raises(RegistryError, match='realm host "evil.example.com" does not match original host "example.com"'):
            await client.fetch_token(header, "https://example.com/v2/ns/model/manifests/latest")
        with pytest.raises(RegistryError, match='does not match original host "example.com:5000"'):
            await client.fetch_token(header.replace("evil.example.com", "example.com"), "https://example.com:5000/v2/x")
        with pytest.raises(RegistryError, match="plain http"):
            await client.fetch_token(header.replace("https://evil.", "http://"), "https://example.com/v2/x")
    assert not (tmp_path / "id_ed25519").exists()  # nothing was signed


def test_upload_location_state_survives_adding_the_digest() -> None:
    location = "http://h:1/v2/a/b/blobs/uploads/u?_state=EvHgF-rB_9sa%3D%3D"
    assert add_query(location, [("digest", "sha256:ab"), ("etag", "x-1")]) == (
        "http://h:1/v2/a/b/blobs/uploads/u?_state=EvHgF-rB_9sa%3D%3D&digest=sha256%3Aab&etag=x-1"
    )


# --- part sizing --------------------------------------------------------------------------------


def test_parts_follow_ollamas_sizes() -> None:
    default = TransferSettings()
    assert default.split(0) == []
    assert default.split(50_000_000) == [(0, 50_000_000)]  # below the 100 MB minimum: one part
    assert default.split(250_000_000) == [(0, 100_000_000), (100_000_000, 100_000_000), (200_000_000, 50_000_000)]
    big = default.split(32_000_000_000)  # 32 GB / 16 = 2 GB, clamped to 1000 MB
    assert len(big) == 32 and {size for _, size in big} == {1_000_000_000}
    small = TransferSettings(min_part_size=16 * 1024).split(474_624)
    assert len(small) == 16 and sum(size for _, size in small) == 474_624
    assert all(offset == prev_offset + prev_size for (prev_offset, prev_size), (offset, _) in pairwise(small))
