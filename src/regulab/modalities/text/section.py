"""The config section of text: how it is read, preprocessed and augmented."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regulab.checks import _key, _Section, boolean, choice, list_of, number, string

__all__ = ["TextAugmentConfig"]


@dataclass
class TextAugmentConfig(_Section):
    """Text: reading (``text:PATH``, ``rotten_tomatoes``), features and augmentation."""
    SECTION = "augment.text"
    text_column: str = _key("text", string, "CSV column holding the text")
    label_column: str = _key("label", string, "CSV column holding the label")
    language: str = _key("english", choice("english", "spanish"), "stopwords and stemmer language")
    lowercase: bool = _key(True, boolean, "lower-case")
    strip_accents: bool = _key(True, boolean, "remove accents")
    strip_punctuation: bool = _key(True, boolean, "remove punctuation")
    stopwords: bool = _key(False, boolean, "drop stopwords (off: the English list holds not, no, "
                                           "good, best -- words that carry sentiment)")
    stem: bool = _key(False, boolean, "Snowball stemming")
    features: str = _key("tfidf", choice("tfidf", "bow", "word2vec"), "document features")
    max_features: int = _key(5000, number(ge=1, integer=True), "vocabulary size")
    min_df: int = _key(1, number(ge=1, integer=True), "minimum document frequency of a word")
    embedding_dim: int = _key(50, number(ge=1, integer=True), "word2vec: vector size")
    copies: int = _key(0, number(ge=0, integer=True), "augmented copies added per training text")
    char_prob: float = _key(0.0, number(ge=0.0, le=1.0), "per-character probability of a character edit")
    word_prob: float = _key(0.0, number(ge=0.0, le=1.0), "per-word probability of a word edit")
    ops: list = _key([], list_of(string, allowed="a list of augmentation names"), "augmentations to draw from (default: all)")
