"""``[text]``: how texts are read (``text:PATH``), turned into features (TF-IDF, bag of words,
word2vec) and augmented (character and word edits). The names the keys take (``LANGUAGES``,
``FEATURES``, ``OPS``) are defined here once; the features and augmentation objects check their
arguments with these keys' own rules (``TextConfig.check``)."""

from __future__ import annotations

from dataclasses import dataclass

from regulab.checks import SHARED, Section, boolean, choice, key, list_of, number, string

__all__ = ["TextConfig", "LANGUAGES", "FEATURES", "CHAR_OPS", "WORD_OPS", "OPS"]

LANGUAGES = ("english", "spanish")
FEATURES = ("tfidf", "bow", "word2vec")
CHAR_OPS = ("random_insert", "random_substitute", "random_delete", "random_swap", "keyboard_typo",
            "ocr_error")
WORD_OPS = ("word_swap", "word_delete", "synonym_replace", "misspell")
OPS = CHAR_OPS + WORD_OPS


@dataclass
class TextConfig(Section):
    """Text: reading (``text:PATH``, ``rotten_tomatoes``), features and augmentation."""
    SECTION = "text"
    text_column: str = key("text", string, "CSV column holding the text", population=SHARED)
    label_column: str = key("label", string, "CSV column holding the label", population=SHARED)
    language: str = key("english", choice(*LANGUAGES), "stopwords and stemmer language",
                        population=SHARED)
    lowercase: bool = key(True, boolean, "lower-case", population=SHARED)
    strip_accents: bool = key(True, boolean, "remove accents", population=SHARED)
    strip_punctuation: bool = key(True, boolean, "remove punctuation", population=SHARED)
    stopwords: bool = key(False, boolean, "drop stopwords (off: the English list holds not, no, "
                                          "good, best -- words that carry sentiment)", population=SHARED)
    stem: bool = key(False, boolean, "Snowball stemming", population=SHARED)
    features: str = key("tfidf", choice(*FEATURES), "document features", population=SHARED)
    max_features: int = key(5000, number(ge=1, le=1_000_000, integer=True), "vocabulary size", population=SHARED)
    min_df: int = key(1, number(ge=1, integer=True), "minimum document frequency of a word",
                      population=SHARED)
    embedding_dim: int = key(50, number(ge=1, le=4096, integer=True), "word2vec: vector size", population=SHARED)
    copies: int = key(0, number(ge=0, le=100, integer=True), "augmented copies added per training text",
                      population=SHARED)
    char_prob: float = key(0.0, number(ge=0.0, le=1.0), "per-character probability of a character edit",
                           population=SHARED)
    word_prob: float = key(0.0, number(ge=0.0, le=1.0), "per-word probability of a word edit",
                           population=SHARED)
    ops: list = key([], list_of(choice(*OPS), allowed="a list of augmentation names"),
                    "augmentations to draw from (default: all)", population=SHARED)
