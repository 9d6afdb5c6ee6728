"""Everything the synthetic world says: captions, narrations, questions, answers, vocabulary.

All text is lower case and built from the templates below, so ``vocabulary()`` can list
every word any caption, question, answer or prompt can contain. Words are split by
``split_words`` (temporal tokens and ``<grounded>`` stay whole, punctuation is one token per
character); a word-level tokenizer built from ``vocabulary()`` must split the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from training.datasets import prompts
from training.synth.events import Event
from training.synth.world import COLOURS, DIRECTIONS, ENTRY_SIDE, SHAPES, SIZES, ObjectSpec, Scene

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")
SIDES = ("left", "right", "top", "bottom")
# Where a still object is in a 3x3 grid (row, column) -> words (stage-1 narrations).
POSITIONS = {
    (0, 0): "at the top left", (0, 1): "at the top", (0, 2): "at the top right",
    (1, 0): "on the left", (1, 1): "in the middle", (1, 2): "on the right",
    (2, 0): "at the bottom left", (2, 1): "at the bottom", (2, 2): "at the bottom right",
}
YES_NO = ("yes", "no")

# Templates (every literal word of the world's text is in one of these).
OBJECT_PHRASE = "a {size} {colour} {shape}"
NARRATION_START = "there is"
CLAUSES = {
    "enter": "enters from the {side}",
    "move": "moves {direction}",
    "then_move": "then moves {direction}",
    "stop": "stops",
    "still": "stays still",
    "leave": "leaves at the {side}",
}
PASS_SENTENCE = "{name} passes in front of {other}."
QUESTIONS = {
    "colour_of_shape": "what colour is the {shape}?",
    "colour_of_mover": "what colour is the object that moves {direction}?",
    "shape_of_colour": "what shape is the {colour} object?",
    "count": "how many objects are there?",
    "count_moving": "how many objects move?",
    "direction": "which way does {name} move?",
    "size": "is {name} small or large?",
    "enter_order": "which enters first, {name} or {other}?",
    "enter_side": "where does {name} enter from?",
    "stops": "does {name} stop?",
    "referring": "what does {name} do from {start} to {end}?",
}
REFERRING_ANSWER = "it {clause}."
QUERIES = {
    "enter": "{name} enters from the {side}",
    "move": "{name} moves {direction}",
    "leave": "{name} leaves at the {side}",
    "pass-in-front": "{name} passes in front of {other}",
}
_WORDS = re.compile(r"<[^<>\s]+>|\w+|[^\w\s]")


def split_words(text: str) -> list[str]:
    """Word-level tokens of ``text``: ``<...>`` tokens whole, words, single punctuation marks."""
    return _WORDS.findall(text)


def vocabulary() -> list[str]:
    """Every word (per ``split_words``) the world's captions, questions, answers and prompts use.

    Temporal tokens ``<0>..<M>`` are not listed (``pite_ros.model.temporal.temporal_vocabulary``).
    """
    texts = [
        OBJECT_PHRASE, NARRATION_START, PASS_SENTENCE, REFERRING_ANSWER, "the , and .",
        *CLAUSES.values(), *QUESTIONS.values(), *QUERIES.values(), *POSITIONS.values(),
        *COLOURS, *SHAPES, *SIZES, *DIRECTIONS, *SIDES, *NUMBER_WORDS, *YES_NO,
        prompts.STAGE1_PROMPT, prompts.STAGE2_PROMPT, prompts.GROUNDING_PROMPT, prompts.DENSE_PROMPT,
        prompts.GROUNDED_TOKEN, prompts.HISTORY_TURN,
        prompts.choice_prompt("?", list(prompts.OPTION_LETTERS[:4])), "From to ,",
    ]
    words = {w for text in texts for w in split_words(re.sub(r"\{\w+\}", " ", text))}
    return sorted(words)


def join_clauses(clauses: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + " and " + clauses[-1]


def describe(spec: ObjectSpec) -> str:
    """The indefinite first mention: ``a large red circle``."""
    return OBJECT_PHRASE.format(size=spec.size, colour=spec.colour, shape=spec.shape)


def motion_clauses(events: list[Event]) -> list[str]:
    """What an object does, in time order, from its events (``stays still`` if nothing)."""
    enter = next((e for e in events if e.type == "enter"), None)
    clauses: list[str] = []
    for event in events:
        if event.type == "enter":
            clauses.append(CLAUSES["enter"].format(side=event.side))
        elif event.type == "move":
            entering = enter is not None and event.start <= enter.end and ENTRY_SIDE[event.direction] == enter.side
            if not entering:
                template = "then_move" if clauses == [CLAUSES["still"]] else "move"
                clauses.append(CLAUSES[template].format(direction=event.direction))
        elif event.type == "stop":
            clauses.append(CLAUSES["stop"])
        elif event.type == "start" and not clauses:
            clauses.append(CLAUSES["still"])
        elif event.type == "leave":
            clauses.append(CLAUSES["leave"].format(side=event.side))
    return clauses or [CLAUSES["still"]]


@dataclass(frozen=True)
class Phrase:
    """A noun phrase of a caption: its text, character span and the object it names."""

    text: str
    start: int
    end: int
    object: int


def caption(scene: Scene, events: list[list[Event]]) -> tuple[str, list[Phrase]]:
    """The stage-2 caption: one sentence per object (by first appearance), then the passes."""
    def appearance(spec: ObjectSpec) -> float:
        """When the object comes into view: its enter event, else the first frame."""
        return next((e.start for e in events[spec.index] if e.type == "enter"), 0.0)

    text, phrases = "", []

    def add(sentence: str, named: list[tuple[str, int]]) -> None:
        nonlocal text
        offset = len(text) + (1 if text else 0)
        text = f"{text} {sentence}" if text else sentence
        cursor = 0
        for phrase, index in named:
            start = sentence.index(phrase, cursor)
            phrases.append(Phrase(phrase, offset + start, offset + start + len(phrase), index))
            cursor = start + len(phrase)

    for spec in sorted(scene.objects, key=lambda o: (appearance(o), o.index)):
        clauses = motion_clauses([e for e in events[spec.index] if e.type != "pass-in-front"])
        add(f"{describe(spec)} {join_clauses(clauses)}.", [(describe(spec), spec.index)])
    passes = [(e, spec) for spec in scene.objects for e in events[spec.index] if e.type == "pass-in-front"]
    for event, spec in sorted(passes, key=lambda p: (p[0].start, p[1].index)):
        other = scene.objects[event.other]
        add(PASS_SENTENCE.format(name=spec.name, other=other.name), [(spec.name, spec.index), (other.name, other.index)])
    return text, phrases


def position_words(spec: ObjectSpec, width: int, height: int) -> str:
    """``at the top left`` ... from the centre's cell in a 3x3 grid."""
    x, y = spec.origin
    return POSITIONS[(min(int(3 * y / height), 2), min(int(3 * x / width), 2))]


def narration(scene: Scene) -> tuple[list[tuple[str, int | None]], str]:
    """Stage-1 narration as ``(word, object index or None)`` tokens and the caption text."""
    tokens: list[tuple[str, int | None]] = [(w, None) for w in NARRATION_START.split()]
    for position, spec in enumerate(scene.objects):
        if position:
            tokens.append(("and", None) if position == len(scene.objects) - 1 else (",", None))
        words = f"{describe(spec)} {position_words(spec, scene.config.width, scene.config.height)}".split()
        tokens.extend((w, spec.index) for w in words)
    tokens.append((".", None))
    text = ""
    for word, _ in tokens:
        text += word if word in ",." or not text else f" {word}"
    return tokens, text


@dataclass(frozen=True)
class QA:
    """A question with a short canonical answer (no final period).

    ``pool``: other answers of the same kind (colours, shapes, ...), to draw multiple-choice
    distractors from; None for open-ended only. ``segment``: the time the question is about.
    """

    kind: str
    question: str
    answer: str
    pool: tuple[str, ...] | None = None
    segment: tuple[float, float] | None = None


def seconds(value: float) -> str:
    """A time in a question, as Grounded-VideoLLM's data writes it: ``<1.25>`` (seconds)."""
    return f"<{value:.2f}>"


def questions(scene: Scene, events: list[list[Event]]) -> list[QA]:
    """Every question whose answer is well defined for this scene."""
    objects = scene.objects
    names = tuple(f"the {c} {s}" for c in COLOURS for s in SHAPES)
    result: list[QA] = []
    of_shape = {s: [o for o in objects if o.shape == s] for s in SHAPES}
    of_colour = {c: [o for o in objects if o.colour == c] for c in COLOURS}
    moves = [[e for e in events[o.index] if e.type == "move"] for o in objects]
    for shape, found in of_shape.items():
        if len(found) == 1:
            result.append(QA("colour_of_shape", QUESTIONS["colour_of_shape"].format(shape=shape), found[0].colour, tuple(COLOURS)))
    for colour, found in of_colour.items():
        if len(found) == 1:
            result.append(QA("shape_of_colour", QUESTIONS["shape_of_colour"].format(colour=colour), found[0].shape, SHAPES))
    for direction in DIRECTIONS:
        movers = [o for o in objects if any(e.direction == direction for e in moves[o.index])]
        if len(movers) == 1:
            segment = next((e.start, e.end) for e in moves[movers[0].index] if e.direction == direction)
            result.append(QA("colour_of_mover", QUESTIONS["colour_of_mover"].format(direction=direction),
                             movers[0].colour, tuple(COLOURS), segment))
    result.append(QA("count", QUESTIONS["count"], NUMBER_WORDS[len(objects)], NUMBER_WORDS[1:5]))
    moving = sum(bool(m) for m in moves)
    result.append(QA("count_moving", QUESTIONS["count_moving"], NUMBER_WORDS[moving], NUMBER_WORDS[:4]))
    for spec in objects:
        own = events[spec.index]
        if len(moves[spec.index]) == 1:
            move = moves[spec.index][0]
            result.append(QA("direction", QUESTIONS["direction"].format(name=spec.name), move.direction,
                             tuple(DIRECTIONS), (move.start, move.end)))
            clause = CLAUSES["move"].format(direction=move.direction)
            question = QUESTIONS["referring"].format(name=spec.name, start=seconds(move.start), end=seconds(move.end))
            result.append(QA("referring", question, REFERRING_ANSWER.format(clause=clause).rstrip(".")))
        result.append(QA("size", QUESTIONS["size"].format(name=spec.name), spec.size, tuple(SIZES)))
        stops = any(e.type == "stop" for e in own)
        result.append(QA("stops", QUESTIONS["stops"].format(name=spec.name), YES_NO[not stops], YES_NO))
        enter = next((e for e in own if e.type == "enter"), None)
        if enter is not None:
            result.append(QA("enter_side", QUESTIONS["enter_side"].format(name=spec.name), f"the {enter.side}",
                             tuple(f"the {s}" for s in SIDES), (enter.start, enter.end)))
    entries = [(e.start, o) for o in objects for e in events[o.index] if e.type == "enter"]
    for (t_a, a), (t_b, b) in zip(entries, entries[1:]):
        if abs(t_a - t_b) >= 0.5:
            first = a if t_a < t_b else b
            pool = tuple(dict.fromkeys([a.name, b.name, *names]))
            result.append(QA("enter_order", QUESTIONS["enter_order"].format(name=a.name, other=b.name), first.name, pool))
    return result


@dataclass
class GroundingQuery:
    """One query's event type (``enter``, ``move``, ``leave``, ``pass-in-front``: its kind in
    the grounding records, so an evaluation can tell which events it localises badly) and
    its segments."""

    kind: str
    segments: list[tuple[float, float]]


def grounding_queries(scene: Scene, events: list[list[Event]]) -> dict[str, GroundingQuery]:
    """Query text -> its kind and segments, for every enter, move, leave and pass-in-front event."""
    queries: dict[str, GroundingQuery] = {}
    for spec in scene.objects:
        for event in events[spec.index]:
            if event.type in QUERIES:
                other = scene.objects[event.other].name if event.other is not None else ""
                query = QUERIES[event.type].format(
                    name=spec.name, side=event.side, direction=event.direction, other=other)
                queries.setdefault(query, GroundingQuery(event.type, [])).segments.append((event.start, event.end))
    return queries


def choose(rng: np.random.Generator, items: list, count: int) -> list:
    """Up to ``count`` items drawn without replacement, in the drawn order."""
    picked = rng.permutation(len(items))[: min(count, len(items))]
    return [items[int(i)] for i in picked]
