"""Stage 3 (Video Question Answering): conversations and Grounded-VideoLLM style timed tasks.

Four readers, one per file kind (schemas with examples in docs/data-formats.md). All sample
``num_frames`` frames uniformly over ``[0, duration]``; ``duration`` is the record's
``duration`` field where given, else the video's length. The video path is ``video``
(Video-ChatGPT / Valley) or ``video_file`` (Grounded-VideoLLM's mix_*.json); the id is
``id``, else ``question_id``, else ``video_id``, else ``<file stem>:<line>``.

- ``ConversationDataset``: LLaVA / Valley / Video-ChatGPT ``conversations`` (or Grounded-
  VideoLLM's ``conversation``) of ``{"from": "human"|"gpt", "value"}``. Each gpt turn is one
  example (id ``<id>#<k>``); its prompt is the earlier turns as ``USER: q\\nASSISTANT: a\\n``
  lines followed by the turn's own question. ``<video>``/``<image>`` placeholders are removed
  (the model places the visual tokens itself). Angle-bracketed numbers such as ``<14.2>`` are
  seconds, as in Grounded-VideoLLM's data, and become temporal tokens (``time_format=
  "seconds"``, default); with ``time_format="tokens"`` they are kept as temporal tokens.
- ``GroundingDataset``: ``{"video", "duration", "query", "timestamps": [[s, e], ...]}`` ->
  Grounded-VideoLLM's grounding question, answer ``From <a> to <b>.`` per segment.
- ``DenseCaptionDataset``: ``{"video", "duration", "events": [{"timestamps": [s, e],
  "caption"}]}`` -> ``From <a> to <b>, caption.`` per event, events ordered by time.
- ``MultipleChoiceDataset``: ``{"video", "duration", "question", "options", "answer": index,
  "timestamps"?}`` -> Grounded-VideoLLM's ``Question: ...\\nOptions:\\n(A) ...`` prompt,
  answer ``option (B).`` (``choice_response``), followed by ``From <a> to <b>.`` when
  timestamps are given.
Prompts whose answers hold temporal tokens start with ``GROUNDED_TOKEN``.
Temporal tokens use ``seconds_to_token`` (Round, docs/papers.md), not Grounded-VideoLLM's
code, which truncates (``int(M * t / L)``).
"""

from __future__ import annotations

import re
from pathlib import Path

from pite_ros.model.temporal import seconds_to_token
from training.datasets.base import ImageSize, Prepared, RecordDataset
from training.datasets.fields import get, number, segment, text
from training.datasets.prompts import (
    DENSE_PROMPT,
    GROUNDING_PROMPT,
    HISTORY_TURN,
    OPTION_LETTERS,
    choice_prompt,
    choice_response,
    dense_response,
    grounded,
    grounding_response,
)
from training.datasets.report import BAD_FIELD, BAD_TIME, NO_TARGET, RecordError

_SECONDS = re.compile(r"<(-?\d+(?:\.\d+)?)>")
_PLACEHOLDER = re.compile(r"<(?:video|image)>\s*")
_TEMPORAL = re.compile(r"<\d+>")


class TimedVideoDataset(RecordDataset):
    """Shared parts of the stage-3 readers: the video, its duration, the frame count."""

    def __init__(
        self,
        path: str | Path,
        *,
        image_size: ImageSize = None,
        num_frames: int = 8,
        media_root: str | Path | None = None,
        check_media: bool = True,
    ) -> None:
        self.num_frames = num_frames
        super().__init__(path, image_size=image_size, media_root=media_root, check_media=check_media)

    def video_and_duration(self, record: dict) -> tuple[Path, float]:
        """The video path and the clip duration (record field or the video's length)."""
        video = self.media_path(record, "video", "video_file")
        if "duration" in record:
            duration = number(record["duration"], "duration")
            if duration <= 0:
                raise RecordError(BAD_TIME, "duration", f"must be positive, got {duration}")
            if self.check_media:
                self.video(video)
        else:
            duration = self.video_duration(video)
        return video, duration

    def example(self, record: dict, line: int, prompt: str, response: str, suffix: str = "") -> Prepared:
        """A prepared example over the whole video."""
        video, duration = self.video_and_duration(record)
        example_id = self.record_id(record, line, "question_id", "video_id") + suffix
        return Prepared(example_id, video, (0.0, duration), self.num_frames, prompt, response, duration)

    def segments(self, value: object, name: str, duration: float) -> list[tuple[float, float]]:
        """``[[s, e], ...]`` (a single ``[s, e]`` is accepted too) inside ``[0, duration]``."""
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
            value = [value]
        if not isinstance(value, list) or not value:
            raise RecordError(BAD_FIELD, name, "expected a non-empty list of [start, end]")
        return [segment(item, f"{name}[{i}]", duration) for i, item in enumerate(value)]


class ConversationDataset(TimedVideoDataset):
    """One example per gpt turn of a conversation, earlier turns in the prompt."""

    def __init__(self, path: str | Path, *, time_format: str = "seconds", **kwargs) -> None:
        if time_format not in ("seconds", "tokens"):
            raise ValueError(f"time_format must be 'seconds' or 'tokens', got {time_format!r}")
        self.time_format = time_format
        super().__init__(path, **kwargs)

    def _clean(self, value: str, duration: float) -> str:
        value = _PLACEHOLDER.sub("", value).strip()
        if self.time_format == "seconds":
            value = _SECONDS.sub(lambda m: seconds_to_token(float(m.group(1)), duration), value)
        return value

    def parse(self, record: dict, line: int) -> list[Prepared]:
        turns = get(record, "conversations", "conversation")
        if not isinstance(turns, list):
            raise RecordError(BAD_FIELD, "conversations", "expected a list of turns")
        _, duration = self.video_and_duration(record)
        history: list[tuple[str, str]] = []
        question: str | None = None
        examples = []
        for index, turn in enumerate(turns):
            name = f"conversations[{index}]"
            if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
                raise RecordError(BAD_FIELD, name, "expected {from, value}")
            value = self._clean(turn["value"], duration)
            if turn.get("from") == "human":
                question = value
            elif turn.get("from") == "gpt":
                if question is None:
                    raise RecordError(BAD_FIELD, name, "a gpt turn must follow a human turn")
                prompt = "".join(HISTORY_TURN.format(question=q, answer=a) for q, a in history) + question
                if _TEMPORAL.search(value):
                    prompt = grounded(prompt)
                examples.append(self.example(record, line, prompt, value, suffix=f"#{len(examples)}"))
                history.append((question, value))
                question = None
            else:
                raise RecordError(BAD_FIELD, f"{name}.from", f"expected 'human' or 'gpt', got {turn.get('from')!r:.30}")
        if not examples:
            raise RecordError(NO_TARGET, "conversations", "no gpt turn")
        return examples


class GroundingDataset(TimedVideoDataset):
    """Temporal grounding: a query -> the segments when it happens."""

    def parse(self, record: dict, line: int) -> list[Prepared]:
        query = text(record, "query").strip().rstrip(".")
        _, duration = self.video_and_duration(record)
        segments = self.segments(get(record, "timestamps"), "timestamps", duration)
        prompt = grounded(GROUNDING_PROMPT.format(query=query))
        return [self.example(record, line, prompt, grounding_response(segments, duration))]


class DenseCaptionDataset(TimedVideoDataset):
    """Dense video captioning: every event with its segment, ordered by start then end."""

    def parse(self, record: dict, line: int) -> list[Prepared]:
        _, duration = self.video_and_duration(record)
        events = get(record, "events")
        if not isinstance(events, list) or not events:
            raise RecordError(BAD_FIELD, "events", "expected a non-empty list of {timestamps, caption}")
        timed = []
        for index, event in enumerate(events):
            name = f"events[{index}]"
            if not isinstance(event, dict):
                raise RecordError(BAD_FIELD, name, "expected {timestamps, caption}")
            start, end = segment(get(event, "timestamps", where=f"{name}."), f"{name}.timestamps", duration)
            timed.append((start, end, text(event, "caption", where=f"{name}.")))
        timed.sort(key=lambda event: (event[0], event[1]))
        return [self.example(record, line, grounded(DENSE_PROMPT), dense_response(timed, duration))]


class MultipleChoiceDataset(TimedVideoDataset):
    """Multiple-choice QA, grounded when the record gives the answer's segments."""

    def parse(self, record: dict, line: int) -> list[Prepared]:
        question = text(record, "question")
        options = get(record, "options")
        if (
            not isinstance(options, list)
            or not 2 <= len(options) <= len(OPTION_LETTERS)
            or not all(isinstance(o, str) and o.strip() for o in options)
        ):
            raise RecordError(BAD_FIELD, "options", "expected 2 to 26 non-empty strings")
        answer = get(record, "answer")
        if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(options):
            raise RecordError(BAD_FIELD, "answer", f"expected an option index below {len(options)}, got {answer!r:.30}")
        _, duration = self.video_and_duration(record)
        prompt = choice_prompt(question, options)
        response = choice_response(answer, options[answer])
        if record.get("timestamps") is not None:
            segments = self.segments(record["timestamps"], "timestamps", duration)
            prompt, response = grounded(prompt), f"{response} {grounding_response(segments, duration)}"
        return [self.example(record, line, prompt, response)]
