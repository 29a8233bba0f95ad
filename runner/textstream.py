"""Token pieces to sendable text: whole UTF-8 characters only, stop strings never leaked.

A token can end in the middle of a UTF-8 character, and a stop string can be spread over
several tokens, so text is held back until it can no longer turn into either. Logprobs
travel with the text of their token.
"""

from __future__ import annotations

import codecs

from ollamapy.api.runner_protocol import Logprob

__all__ = ["OutputFilter"]


class OutputFilter:
    """Feed token pieces with ``push``; send what it returns; call ``finish`` at the end.

    ``stopped`` becomes True once a stop string appeared: the text before it has been
    released and everything from the stop string on is dropped. Offsets (``decoded_length``,
    ``stop_offset``) count characters of the whole output, so the caller can tell which
    tokens lie before the stop string.
    """

    def __init__(self, stops: list[str]) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._stops = [s for s in stops if s]
        self._held = ""
        # (offset in _held where the token's text starts, its logprob)
        self._held_logprobs: list[tuple[int, Logprob]] = []
        self._released_length = 0  # characters before _held (sent or dropped)
        self.stopped = False
        self.stop_offset: int | None = None

    @property
    def decoded_length(self) -> int:
        """Characters decoded so far: where the next token's text will start."""
        return self._released_length + len(self._held)

    def push(self, piece: bytes, logprob: Logprob | None = None) -> tuple[str, list[Logprob]]:
        """Add one token's bytes; returns the text (and logprobs) that is now safe to send."""
        return self._add(self._decoder.decode(piece), logprob)

    def finish(self) -> tuple[str, list[Logprob]]:
        """Release everything still held (a dangling partial character becomes U+FFFD)."""
        text, logprobs = self._add(self._decoder.decode(b"", final=True), None)
        if self.stopped:
            return text, logprobs
        rest, rest_logprobs = self._held, [lp for _, lp in self._held_logprobs]
        self._released_length += len(rest)
        self._held, self._held_logprobs = "", []
        return text + rest, logprobs + rest_logprobs

    def _add(self, text: str, logprob: Logprob | None) -> tuple[str, list[Logprob]]:
        if self.stopped:
            return "", []
        if logprob is not None:
            self._held_logprobs.append((len(self._held), logprob))
        self._held += text
        hits = [i for i in (self._held.find(s) for s in self._stops) if i >= 0]
        if hits:
            self.stopped = True
            self.stop_offset = self._released_length + min(hits)
            return self._release(min(hits), drop_rest=True)
        return self._release(len(self._held) - self._stop_prefix_len(), drop_rest=False)

    def _stop_prefix_len(self) -> int:
        """Length of the longest end of the held text that could start a stop string."""
        best = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(self._held)), best, -1):
                if self._held.endswith(stop[:k]):
                    best = k
                    break
        return best

    def _release(self, upto: int, *, drop_rest: bool) -> tuple[str, list[Logprob]]:
        """Release ``_held[:upto]`` with the logprobs of the tokens whose text starts there.

        A token with no text of its own yet (the first bytes of a character) is released with
        the token that completes the character.
        """
        text = self._held[:upto]
        released = [lp for start, lp in self._held_logprobs if start < upto]
        self._released_length += len(self._held) if drop_rest else upto
        if drop_rest:
            self._held, self._held_logprobs = "", []
        else:
            self._held = self._held[upto:]
            self._held_logprobs = [(start - upto, lp) for start, lp in self._held_logprobs if start >= upto]
        return text, released
