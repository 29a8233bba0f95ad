"""OutputFilter: stop strings and UTF-8 characters split across tokens (no model needed)."""

from __future__ import annotations

import pytest

from ollamapy.api.runner_protocol import Logprob
from ollamapy.runner.textstream import OutputFilter


def run(pieces: list[bytes], stops: list[str]) -> tuple[list[str], bool]:
    """Feed the pieces; returns what was released per push (plus the finish) and stopped."""
    out = OutputFilter(stops)
    released = []
    for piece in pieces:
        text, _ = out.push(piece)
        released.append(text)
        if out.stopped:
            break
    released.append(out.finish()[0])
    return released, out.stopped


def test_text_without_stops_passes_through_at_once() -> None:
    released, stopped = run([b"Hello", b",", b" world"], [])
    assert released == ["Hello", ",", " world", ""]
    assert not stopped


def test_stop_string_split_across_tokens_never_leaks() -> None:
    released, stopped = run([b"The answer", b" is 4", b"2.", b"\nUs", b"er: more"], ["\nUser:"])
    assert "".join(released) == "The answer is 42."
    assert stopped
    assert all("\n" not in part for part in released)


def test_held_prefix_is_released_when_it_does_not_become_a_stop() -> None:
    released, stopped = run([b"a <", b"|e", b"nd", b"ing"], ["<|end|>"])
    assert released[0] == "a "  # "<" might start the stop string
    assert "".join(released) == "a <|ending"
    assert not stopped


def test_held_prefix_is_released_at_the_end() -> None:
    released, _ = run([b"abc", b"<|"], ["<|end|>"])
    assert released[-1] == "<|"


def test_earliest_of_several_stops_wins() -> None:
    released, stopped = run([b"one two three"], ["three", "two"])
    assert "".join(released) == "one "
    assert stopped


def test_utf8_character_split_across_tokens_is_never_broken() -> None:
    data = "héllo wörld ✓ 🙂".encode()
    pieces = [data[i : i + 1] for i in range(len(data))]  # one byte per token
    released, _ = run(pieces, [])
    assert "".join(released) == "héllo wörld ✓ 🙂"
    assert "\ufffd" not in "".join(released)
    for part in released:
        part.encode("utf-8")  # every released part is whole characters


def test_stop_string_with_multibyte_characters_split_across_tokens() -> None:
    data = "résumé — fin".encode()
    released, stopped = run([data[:2], data[2:9], data[9:11], data[11:]], ["— fin"])
    assert "".join(released) == "résumé "
    assert stopped


def test_dangling_partial_character_at_the_end_becomes_a_replacement_character() -> None:
    released, _ = run([b"ok", "é".encode()[:1]], [])
    assert "".join(released) == "ok\ufffd"


@pytest.mark.parametrize("stops", [[], ["zz"]])
def test_logprobs_travel_with_their_text(stops: list[str]) -> None:
    out = OutputFilter(stops)
    lp = [Logprob(token=str(i), logprob=-1.0) for i in range(3)]
    text0, lps0 = out.push("é".encode()[:1], lp[0])  # half a character: nothing to send yet
    text1, lps1 = out.push("é".encode()[1:], lp[1])
    text2, lps2 = out.push(b"z", lp[2])
    rest, rest_lps = out.finish()
    assert (text0, lps0) == ("", [])
    assert (text1, lps1) == ("é", [lp[0], lp[1]])
    assert text1 + text2 + rest == "éz"
    assert lps2 + rest_lps == [lp[2]]


def test_logprobs_of_a_stop_string_are_dropped() -> None:
    out = OutputFilter(["END"])
    lp = [Logprob(token=str(i), logprob=-1.0) for i in range(3)]
    sent = [out.push(b"ok", lp[0]), out.push(b"EN", lp[1]), out.push(b"D", lp[2])]
    assert "".join(text for text, _ in sent) == "ok"
    assert [x for _, lps in sent for x in lps] == [lp[0]]
    assert out.stopped
