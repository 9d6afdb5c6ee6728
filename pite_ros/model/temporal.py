"""Grounded-VideoLLM's unified temporal tokens (docs/papers.md, "Unified temporal tokens").

Relative time is a discrete token ``<t>`` with ``t = Round(M * tau / L)`` for a time ``tau``
in a clip of ``L`` seconds, and back ``tau = L * t / M``. The paper uses ``M = 300``. A
round trip is exact to within ``L / (2M)`` seconds; these are the only two conversions.
"""

from __future__ import annotations

import re

from pite_ros.types import TimeSegment

DEFAULT_NUM_TIME_BINS = 300
_TOKEN = re.compile(r"<(\d+)>")
# "From <47> to <83>", "<47> - <83>", "between <47> and <83>": two temporal tokens joined by a
# short connective make one segment; the text after it (to the sentence end) describes it.
_SEGMENT = re.compile(r"<(\d+)>\s*(?:to|-|–|and)\s*<(\d+)>\s*[,:]?\s*([^.<]*)")


def time_token(index: int) -> str:
    """The vocabulary string of temporal token ``index``: ``<index>``."""
    return f"<{index}>"


def temporal_vocabulary(num_bins: int = DEFAULT_NUM_TIME_BINS) -> list[str]:
    """All temporal tokens ``<0>..<M>`` (``M + 1`` strings)."""
    return [time_token(i) for i in range(num_bins + 1)]


def seconds_to_index(seconds: float, duration: float, num_bins: int = DEFAULT_NUM_TIME_BINS) -> int:
    """``Round(M * tau / L)``, clamped to ``[0, M]``."""
    if duration <= 0:
        raise ValueError(f"clip duration must be positive, got {duration}")
    return int(min(max(round(num_bins * seconds / duration), 0), num_bins))


def index_to_seconds(index: int, duration: float, num_bins: int = DEFAULT_NUM_TIME_BINS) -> float:
    """``tau = L * t / M``."""
    return duration * index / num_bins


def seconds_to_token(seconds: float, duration: float, num_bins: int = DEFAULT_NUM_TIME_BINS) -> str:
    """The temporal token naming ``seconds`` in a clip of ``duration`` seconds."""
    return time_token(seconds_to_index(seconds, duration, num_bins))


def parse_segments(
    text: str, duration: float, num_bins: int = DEFAULT_NUM_TIME_BINS
) -> list[TimeSegment]:
    """Time segments named in ``text`` by pairs of temporal tokens, in seconds.

    Tokens above ``M`` are not temporal tokens and are ignored; a reversed pair is ordered.
    """
    segments = []
    for match in _SEGMENT.finditer(text):
        first, second = int(match.group(1)), int(match.group(2))
        if first > num_bins or second > num_bins:
            continue
        lo, hi = sorted((first, second))
        segments.append(
            TimeSegment(
                start=index_to_seconds(lo, duration, num_bins),
                end=index_to_seconds(hi, duration, num_bins),
                text=match.group(3).strip(" ,"),
            )
        )
    return segments


def strip_time_tokens(text: str) -> str:
    """``text`` with every temporal token removed (for display and exact-match scoring)."""
    return re.sub(r"\s{2,}", " ", _TOKEN.sub("", text)).strip()


def render_time_tokens(
    text: str, duration: float, num_bins: int = DEFAULT_NUM_TIME_BINS
) -> tuple[str, list[int]]:
    """``text`` with each temporal token ``<t>`` written as seconds (``"<150>"`` -> ``"2.0s"`` at L=4).

    Also returns ``offsets`` (``len(text) + 1`` entries): ``offsets[i]`` is where character
    ``i`` of ``text`` lands in the rendered text, so character spans (noun phrases) can be
    carried over; a character inside a token maps to the start of its rendering. Tokens
    above ``M`` are not temporal tokens and stay as written.
    """
    pieces: list[str] = []
    offsets: list[int] = []
    position = done = 0
    for match in _TOKEN.finditer(text):
        index = int(match.group(1))
        if index > num_bins:
            continue
        pieces.append(text[done : match.start()])
        offsets.extend(range(position, position + match.start() - done))
        position += match.start() - done
        rendered = f"{index_to_seconds(index, duration, num_bins):.1f}s"
        pieces.append(rendered)
        offsets.extend([position] * (match.end() - match.start()))
        position += len(rendered)
        done = match.end()
    pieces.append(text[done:])
    offsets.extend(range(position, position + len(text) - done + 1))
    return "".join(pieces), offsets
