"""Model names: Ollama's grammar, defaults, per-part validity, display forms, and that no
valid name can ever point outside the model store (ported from types/model/name_test.go)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ollamapy.errors import InvalidModelName
from ollamapy.store.model_store import ModelStore
from ollamapy.store.names import ModelName, parse_model_name

PART80 = "8" * 80
PART350 = "3" * 350


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("registry.ollama.ai/library/dolphin-mistral:7b-v2.6-dpo-laser-q6_K", ("registry.ollama.ai", "library", "dolphin-mistral", "7b-v2.6-dpo-laser-q6_K")),
        ("scheme://host:port/namespace/model:tag", ("host:port", "namespace", "model", "tag")),
        ("host/namespace/model:tag", ("host", "namespace", "model", "tag")),
        ("host:port/namespace/model:tag", ("host:port", "namespace", "model", "tag")),
        ("host/namespace/model", ("host", "namespace", "model", "latest")),
        ("host:port/namespace/model", ("host:port", "namespace", "model", "latest")),
        ("namespace/model", ("registry.ollama.ai", "namespace", "model", "latest")),
        ("model", ("registry.ollama.ai", "library", "model", "latest")),
        ("h/nn/mm:t", ("h", "nn", "mm", "t")),
        (f"{PART80}/{PART80}/{PART80}:{PART80}", (PART80, PART80, PART80, PART80)),
        (f"{PART350}/{PART80}/{PART80}:{PART80}", (PART350, PART80, PART80, PART80)),
    ],
)
def test_parse_fills_defaults_and_splits_parts(text: str, parts: tuple[str, str, str, str]) -> None:
    name = ModelName.parse(text)
    assert name.manifest_parts() == parts
    assert name.is_valid()


def test_default_full_form() -> None:
    assert str(ModelName.parse("xx")) == "registry.ollama.ai/library/xx:latest"


def test_original_spelling_is_kept() -> None:
    name = ModelName.parse("Example.COM/Me/Llama3:Q4_K_M")
    assert name.manifest_parts() == ("Example.COM", "Me", "Llama3", "Q4_K_M")
    assert str(name) == "Example.COM/Me/Llama3:Q4_K_M"


def test_scheme_is_kept_for_the_registry_client_but_not_compared() -> None:
    plain = ModelName.parse("localhost:5000/ns/m:t")
    insecure = ModelName.parse("http://localhost:5000/ns/m:t")
    assert plain.scheme == "https"
    assert insecure.scheme == "http"
    assert insecure.host == "localhost:5000"
    assert plain == insecure


def test_tag_split_only_when_colon_follows_last_slash() -> None:
    name = ModelName.parse("host:1234/ns/model")
    assert (name.host, name.tag) == ("host:1234", "latest")


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("", False),
        ("_why/_the/_lucky:_stiff", True),
        ("host/namespace/model:tag", True),
        ("host:https/namespace/model:tag", True),
        (f"{PART80}/{PART80}/{PART80}:{PART80}", True),
        (f"{PART350}/{PART80}/{PART80}:{PART80}", True),
        # promised but missing parts
        ("n/m:", False),
        ("mm:", False),
        ("/nn/mm", False),
        ("//", False),
        ("//mm", False),
        ("hh//", False),
        ("//mm:@", False),
        ("a/:b", False),
        (":t", False),
        # characters
        ("^", False),
        ("00@", False),
        ("@", False),
        ("model@sha256:" + "1" * 64, False),
        ("host/name:space/model:tag", False),
        ("ns.dot/model", False),
        ("m o/del", False),
        ("modèle", False),
        ("model\n", False),
        # first character
        ("-hh/nn/mm:tt", False),
        ("hh/-nn/mm:tt", False),
        ("hh/nn/-mm:tt", False),
        ("hh/nn/mm:-tt", False),
        (".hh/nn/mm:tt", False),
        ("hh/nn/.mm:tt", False),
        ("hh/nn/mm:.tt", False),
        # lengths
        (f"{'h' * 351}/n/m:t", False),
        (f"h/{'n' * 81}/m:t", False),
        (f"h/n/{'m' * 81}:t", False),
        (f"h/n/m:{'t' * 81}", False),
        (f"h/n/{'m' * 80}:{'t' * 80}", True),
        # too many parts
        ("a/b/c/d:e", False),
    ],
)
def test_validity(text: str, valid: bool) -> None:
    assert ModelName.parse(text).is_valid() is valid


@pytest.mark.parametrize(
    "text",
    [
        "../x",
        "..",
        ".",
        "a/..",
        "../../etc/passwd:latest",
        "/etc/passwd",
        "a/../../b",
        "ns/..:latest",
        "ns/model:..",
        "ns/.:latest",
        "mod\x00el",
        "ns\\..\\model",
        "..\\model",
        "%2e%2e/model",
        "%2E%2E%2Fetc",
        "model%2F..",
        "~/model",
        "h" * 351 + "/ns/model:tag",
        "ns/" + "m" * 81,
        "model:" + "t" * 81,
    ],
)
def test_path_traversal_attempts_are_invalid(text: str) -> None:
    assert not ModelName.parse(text).is_valid()
    with pytest.raises(InvalidModelName, match=r"^invalid model name$"):
        parse_model_name(text)


def test_dotted_names_that_are_not_traversal_stay_valid() -> None:
    # Dots inside host, model and tag are legal (llama3.2, v1.0, example.com).
    assert ModelName.parse("example.com/me/llama3.2:v1.0").is_valid()
    assert ModelName.parse("h../n/b..:c..").is_valid()


@pytest.mark.parametrize(
    ("text", "short"),
    [
        ("registry.ollama.ai/library/model:latest", "model:latest"),
        ("registry.ollama.ai/library/model:tag", "model:tag"),
        ("registry.ollama.ai/namespace/model:tag", "namespace/model:tag"),
        ("host/namespace/model:tag", "host/namespace/model:tag"),
        ("host/library/model:tag", "host/library/model:tag"),
        ("llama3.2", "llama3.2:latest"),
        ("user/m:v1", "user/m:v1"),
        ("example.com/ns/m:t", "example.com/ns/m:t"),
        ("REGISTRY.ollama.ai/LIBRARY/Model", "Model:latest"),
    ],
)
def test_display_shortest(text: str, short: str) -> None:
    assert ModelName.parse(text).display_shortest() == short


def test_equal_fold_ignores_case_but_equality_does_not() -> None:
    a = ModelName.parse("Llama3:Latest")
    b = ModelName.parse("registry.ollama.ai/library/llama3:latest")
    assert a.equal_fold(b)
    assert a != b
    assert not a.equal_fold(ModelName.parse("llama3:8b"))


def test_parse_model_name_returns_valid_names() -> None:
    assert parse_model_name("user/m:v1") == ModelName("registry.ollama.ai", "user", "m", "v1")


_PIECES = ["a", "Z9", "_x", "..", ".", "", "a.b", "h:1", "%2e%2e", "%2F", "\\", "\x00", "-a", "~", "é", " ", "a\n"]
_structured = st.builds(
    lambda segments, tag: "/".join(segments) + (f":{tag}" if tag is not None else ""),
    st.lists(st.builds("".join, st.lists(st.sampled_from(_PIECES), min_size=1, max_size=3)), min_size=1, max_size=5),
    st.none() | st.builds("".join, st.lists(st.sampled_from(_PIECES), max_size=3)),
)


@given(_structured | st.text(alphabet=st.sampled_from("aZ09_.-:/\\%@\x00 é~"), max_size=40) | st.text(max_size=40))
@example("..")
@example("a/../../b")
@example("ns/model:..")
@settings(max_examples=400, deadline=None)
def test_valid_names_never_escape_the_store(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    name = ModelName.parse(text)
    if not name.is_valid():
        return
    assert str(ModelName.parse(str(name))) == str(name)  # round trip
    root = tmp_path_factory.getbasetemp() / "store"
    manifests = root / "manifests"
    path = ModelStore(root).manifest_path(name)
    resolved = Path(os.path.normpath(path))
    assert resolved.parent.parent.parent.parent == manifests
    assert resolved.relative_to(manifests).parts == name.manifest_parts()
