"""What a phrase says about its object's looks: colour, shape, size and number words."""

from __future__ import annotations

import re

from pite_ros.text import ATTACHING

COLOUR_SYNONYMS = {"gray": "grey", "violet": "purple", "golden": "yellow"}
COLOURS = frozenset({"red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown",
                     "black", "white", "grey"})
SHAPE_SYNONYMS = {
    "circle": "circle", "ball": "circle", "disc": "circle", "disk": "circle", "dot": "circle", "ring": "circle",
    "square": "square", "box": "square", "block": "square", "rectangle": "square",
    "triangle": "triangle",
    "star": "star",
}
LARGE = frozenset({"large", "big", "huge", "giant", "larger", "bigger", "largest", "biggest"})
SMALL = frozenset({"small", "little", "tiny", "smaller", "smallest"})
PLURAL_DETERMINERS = frozenset({"two", "three", "four", "five", "several", "many", "some", "all", "both", "these",
                                "those", "few"})
IRREGULAR_PLURALS = frozenset({"people", "men", "women", "children", "persons", "feet", "geese", "mice"})


def words(phrase: str) -> list[str]:
    """Lower-case words of a phrase."""
    return re.findall(r"[a-z]+", phrase.lower())


def _singular(word: str) -> str:
    if word.endswith("es") and word[:-2] in SHAPE_SYNONYMS:
        return word[:-2]
    return word[:-1] if word.endswith("s") and word[:-1] in SHAPE_SYNONYMS else word


def colours(phrase: str) -> set[str]:
    """Canonical colour names in the phrase (``gray`` -> ``grey``)."""
    return {COLOUR_SYNONYMS.get(w, w) for w in words(phrase) if COLOUR_SYNONYMS.get(w, w) in COLOURS}


def shapes(phrase: str) -> set[str]:
    """Canonical shape names in the phrase (``ball`` -> ``circle``, ``boxes`` -> ``square``)."""
    return {SHAPE_SYNONYMS[_singular(w)] for w in words(phrase) if _singular(w) in SHAPE_SYNONYMS}


def size(phrase: str) -> str | None:
    """``"large"``, ``"small"`` or None."""
    found = set(words(phrase))
    return "large" if found & LARGE else "small" if found & SMALL else None


def head_words(phrase: str) -> list[str]:
    """The words before the first attaching preposition ("a man in a red shirt" -> a, man)."""
    result = []
    for word in words(phrase):
        if word in ATTACHING and result:
            break
        result.append(word)
    return result


def is_plural(phrase: str) -> bool:
    """Whether the phrase names several objects: plural head noun or a plural determiner."""
    head = head_words(phrase)
    if not head:
        return False
    last = head[-1]
    regular = last.endswith("s") and not last.endswith(("ss", "us", "is"))
    return head[0] in PLURAL_DETERMINERS or last in IRREGULAR_PLURALS or regular
