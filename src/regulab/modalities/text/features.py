"""Text to vectors: normalization, tokens, stopwords, stemming, bag of words, TF-IDF and word2vec.

The lecture notes' preprocessing of text (lecture 001): bags of words with stopwords, stemming and
stripped characters, and words as dense vectors (word embeddings, word2vec).

Normalization (``normalize``), in this order: typographic apostrophes become ``'``; Unicode NFKD
and every combining mark dropped when ``strip_accents`` (``á -> a``, ``ñ -> n``, ``ü -> u``; NFKD
also unfolds compatibility forms, ``ﬁ -> fi``), else NFC; lower-case; every punctuation or symbol
character that ``keep`` does not match becomes a space (the apostrophe is kept by default, so
``don't`` stays one token). Tokens (``tokenize``) are runs of letters and digits with inner
apostrophes, regex ``[^\\W_]+(?:'[^\\W_]+)*``.

Stopwords come from the ``stop-words`` package (english: 1,333 words, spanish: 652); they are
normalized like the text before they are compared. Note that its English list holds sentiment
words such as ``not``, ``no``, ``good``, ``great``, ``best``. Stemming is Snowball's (Porter 2001,
"Snowball: A language for stemming algorithms"), via ``snowballstemmer``: ``running -> run``,
``corriendo -> corr``.

Bag of words: ``X[i, j]`` = count of vocabulary word j in document i (1/0 when ``binary``).
The vocabulary is fitted on training documents only: words with document frequency
``df >= min_df``, the ``max_features`` most frequent by total count (ties: alphabetical), sorted
alphabetically (scikit-learn's column order).

TF-IDF (Sparck Jones 1972; scikit-learn's defaults): ``idf_j = ln((1 + n) / (1 + df_j)) + 1``
with n the number of training documents ("smooth" idf: as if one extra document held every word
once); ``x_ij = count_ij * idf_j``, then each row divided by its L2 norm (empty rows stay 0).

Word2vec (Mikolov et al. 2013, "Distributed Representations of Words and Phrases and their
Compositionality"): skip-gram with negative sampling. For a centre word c and a context word o
within ``window`` positions, and K noise words w_k drawn from the unigram distribution to the 3/4
power, ``P(w) ~ count(w)^0.75``, the loss is

    -log sigma(u_o . v_c) - sum_k log sigma(-u_{w_k} . v_c)

with v the input ("word") vectors and u the output vectors. Frequent words are subsampled, word w
kept with probability ``min(1, (sqrt(f_w / t) + 1) t / f_w)`` (f_w its corpus frequency, t =
``subsample``; word2vec's C code), and a context at distance d is kept with probability
``(window - d + 1) / window`` (the expectation of word2vec's random reduced window). Vectors start
at ``U(-0.5/D, 0.5/D)`` (input) and 0 (output) and are trained on batches of pairs, mean loss, with
SparseAdam (Adam on the rows a batch touches). Not word2vec's pair-by-pair SGD: summing the
gradients of a batch diverges for frequent words (a word of a 10-word corpus collects ~100 per
batch of 1,024 pairs), averaging them starves small corpora of updates; Adam's step, normalized
per coordinate, does not depend on how many gradients a row collects. Early on, Adam moves every
vector along one shared direction (the K noise terms set the sign of each coordinate's step)
before groups separate: too few steps on a small corpus leave cosines near 1 everywhere (train
longer or raise lr).

A document's vector is the mean of the vectors of its in-vocabulary words (0 if it has none).

``TextPipeline.tokens``: normalize (accents kept), tokenize, drop stopwords (compared without
accents), stem, and only then strip accents: Snowball's Spanish suffixes carry accents
(``corrían -> corr`` but ``corrian -> corri``).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter

import numpy as np
import torch

from regulab.checks import number
from regulab.errors import CheckpointError, ConfigError, DataError, invalid
from regulab.modalities.text.section import FEATURES, LANGUAGES, TextConfig

__all__ = ["featurize", "LANGUAGES", "FEATURES", "normalize", "tokenize", "stopwords", "stem", "Vocabulary",
           "bag_of_words", "tfidf", "sgns_loss", "Word2Vec", "TextPipeline"]

TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def _docs(texts, name: str = "texts") -> list[str]:
    """A list of strings, or a DataError naming the first element that is not one."""
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise invalid(f"{name}[{i}]", "a string", t, kind="argument", error=DataError)
    return texts


def normalize(text: str, lowercase: bool = True, strip_accents: bool = True,
              strip_punctuation: bool = True, keep: str = r"'") -> str:
    """Normalized text (see the module docstring). ``keep``: regex of punctuation kept.

    Example: ``normalize("¡Mañana, José!") == " manana  jose "``.
    """
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    if strip_accents:
        text = _strip(text)
    else:
        text = unicodedata.normalize("NFC", text)
    if lowercase:
        text = text.lower()
    if strip_punctuation:
        kept = re.compile(keep)
        text = "".join(" " if unicodedata.category(c)[0] in "PS" and not kept.fullmatch(c) else c
                       for c in text)
    return text


def _strip(word: str) -> str:
    """``word`` without accents (NFKD, combining marks dropped)."""
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def tokenize(text: str) -> list[str]:
    """Runs of letters/digits with inner apostrophes: ``tokenize("don't stop-me") == ["don't", "stop", "me"]``."""
    return TOKEN.findall(text)


def _language(language: str) -> str:
    return TextConfig.check("language", language)


def stopwords(language: str) -> frozenset[str]:
    """The ``stop-words`` package's list for ``language`` ("english" or "spanish"), as written there."""
    _language(language)
    try:
        from stop_words import get_stop_words
    except ImportError:
        raise DataError("stopwords need the stop-words package: pip install stop-words") from None
    return frozenset(get_stop_words(language))


_stopwords_of = stopwords  # TextPipeline's ``stopwords`` flag shadows the function there


@functools.cache
def _stemmer(language: str):
    import snowballstemmer
    return snowballstemmer.stemmer(language)


def stem(tokens: list[str], language: str) -> list[str]:
    """Snowball stems: ``stem(["running", "flies"], "english") == ["run", "fli"]``."""
    return _stemmer(_language(language)).stemWords(list(tokens))


class Vocabulary:
    """Words (sorted), their document frequencies and the number of documents they were counted in."""

    def __init__(self, tokens: list[str], df: list[int], n_docs: int):
        self.tokens, self.df, self.n_docs = list(tokens), [int(d) for d in df], int(n_docs)
        self.index = {t: j for j, t in enumerate(self.tokens)}

    @classmethod
    def fit(cls, docs: list[list[str]], max_features: int | None = None, min_df: int = 1) -> Vocabulary:
        """From tokenized training documents: df >= min_df, the max_features most frequent."""
        if max_features is not None:
            number(ge=1, integer=True)("max_features", max_features)
        number(ge=1, integer=True)("min_df", min_df)
        df = Counter(t for doc in docs for t in set(doc))
        total = Counter(t for doc in docs for t in doc)
        words = sorted((t for t in df if df[t] >= min_df), key=lambda t: (-total[t], t))
        words = sorted(words[:max_features])
        return cls(words, [df[t] for t in words], len(docs))

    def __len__(self) -> int:
        return len(self.tokens)

    def idf(self) -> np.ndarray:
        """Smooth idf, float64 ``(V,)``: ``ln((1 + n) / (1 + df)) + 1``."""
        return np.log((1.0 + self.n_docs) / (1.0 + np.asarray(self.df, dtype=np.float64))) + 1.0

    def state_dict(self) -> dict:
        return {"tokens": list(self.tokens), "df": list(self.df), "n_docs": self.n_docs}

    @classmethod
    def from_state(cls, state: dict) -> Vocabulary:
        return cls(state["tokens"], state["df"], state["n_docs"])


def bag_of_words(docs: list[list[str]], vocab: Vocabulary, binary: bool = False) -> np.ndarray:
    """Counts of the vocabulary's words, float32 ``(N, V)``; out-of-vocabulary words are ignored."""
    rows, cols = [], []
    for i, doc in enumerate(docs):
        for t in doc:
            j = vocab.index.get(t)
            if j is not None:
                rows.append(i)
                cols.append(j)
    X = np.zeros((len(docs), len(vocab)), dtype=np.float32)
    np.add.at(X, (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)), 1.0)
    return (X > 0).astype(np.float32) if binary else X


def tfidf(docs: list[list[str]], vocab: Vocabulary) -> np.ndarray:
    """TF-IDF with the training idf held by ``vocab``, rows L2-normalized, float32 ``(N, V)``."""
    X = bag_of_words(docs, vocab).astype(np.float64) * vocab.idf()
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return (X / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def sgns_loss(v: torch.Tensor, u: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Skip-gram negative-sampling loss per pair, ``(B,)``: ``-log sigma(u.v) - sum_k log sigma(-n_k.v)``.

    v: centre input vectors (B, D); u: context output vectors (B, D); n: noise output vectors (B, K, D).
    """
    pos = torch.nn.functional.logsigmoid((v * u).sum(-1))  # (B,)
    neg = torch.nn.functional.logsigmoid(-torch.bmm(n, v.unsqueeze(-1)).squeeze(-1)).sum(-1)  # (B,)
    return -(pos + neg)


class Word2Vec:
    """Skip-gram with negative sampling (see the module docstring), trained with ``fit(docs, seed)``.

    dim: vector size D. window: max distance of a context word. negative: noise words K per pair.
    min_count / max_vocab: words counted fewer times are dropped / only the most frequent kept.
    subsample: t of the frequent-word subsampling (0 disables). epochs, batch_size (pairs), lr
    (SparseAdam).
    """

    def __init__(self, dim: int = 50, window: int = 5, negative: int = 5, min_count: int = 1,
                 max_vocab: int | None = None, subsample: float = 1e-3, epochs: int = 5,
                 batch_size: int = 1024, lr: float = 0.01):
        for key, v in (("dim", dim), ("window", window), ("negative", negative), ("min_count", min_count),
                       ("epochs", epochs), ("batch_size", batch_size)):
            number(ge=1, integer=True)(f"Word2Vec.{key}", v)
        if max_vocab is not None:
            number(ge=1, integer=True)("Word2Vec.max_vocab", max_vocab)
        self.subsample = number(ge=0.0)("Word2Vec.subsample", subsample)
        self.lr = number(gt=0.0)("Word2Vec.lr", lr)
        self.dim, self.window, self.negative, self.min_count = dim, window, negative, min_count
        self.max_vocab, self.epochs, self.batch_size = max_vocab, epochs, batch_size
        self.tokens: list[str] = []
        self.vectors = np.zeros((0, dim), dtype=np.float32)  # (V, D) input vectors
        self.losses: list[float] = []  # mean loss per epoch

    def _pairs(self, ids: torch.Tensor, doc: torch.Tensor, keep_prob: torch.Tensor,
               g: torch.Generator) -> torch.Tensor:
        """(P, 2) (centre, context) pairs of one epoch, after subsampling and window reduction."""
        kept = torch.rand(len(ids), generator=g) < keep_prob[ids]
        ids, doc = ids[kept], doc[kept]
        pairs = []
        for d in range(1, self.window + 1):
            same = doc[d:] == doc[:-d]
            same &= torch.rand(len(same), generator=g) < (self.window - d + 1) / self.window
            a, b = ids[:-d][same], ids[d:][same]
            pairs += [torch.stack([a, b], 1), torch.stack([b, a], 1)]
        return torch.cat(pairs) if pairs else torch.zeros((0, 2), dtype=torch.long)

    def fit(self, docs: list[list[str]], seed: int = 0) -> Word2Vec:
        """Train on tokenized documents; ``seed`` seeds a ``torch.Generator`` (no global state)."""
        number(ge=0, integer=True)("seed", seed)
        counts = Counter(t for doc in docs for t in doc)
        words = sorted((t for t in counts if counts[t] >= self.min_count), key=lambda t: (-counts[t], t))
        self.tokens = sorted(words[:self.max_vocab])
        if not self.tokens:
            raise DataError(f"Word2Vec.fit: no word occurs at least min_count={self.min_count} times "
                            f"in the {len(docs)} documents")
        index = {t: j for j, t in enumerate(self.tokens)}
        seq = [(index[t], i) for i, doc in enumerate(docs) for t in doc if t in index]
        ids, doc = torch.tensor(seq, dtype=torch.long).reshape(-1, 2).unbind(1)
        freq = torch.tensor([counts[t] for t in self.tokens], dtype=torch.float64)
        f = freq / freq.sum()
        keep_prob = (torch.clamp((torch.sqrt(f / self.subsample) + 1) * self.subsample / f, max=1.0)
                     if self.subsample > 0 else torch.ones_like(f))
        noise = (freq ** 0.75).float()  # P(w) ~ count^0.75, normalized by multinomial
        g = torch.Generator().manual_seed(int(seed))
        V, D, K = len(self.tokens), self.dim, self.negative
        w_in = torch.nn.Embedding.from_pretrained((torch.rand(V, D, generator=g) - 0.5) / D,
                                                  freeze=False, sparse=True)  # (V, D)
        w_out = torch.nn.Embedding.from_pretrained(torch.zeros(V, D), freeze=False, sparse=True)  # (V, D)
        opt = torch.optim.SparseAdam(list(w_in.parameters()) + list(w_out.parameters()), lr=self.lr)
        self.losses = []
        for _ in range(self.epochs):
            pairs = self._pairs(ids, doc, keep_prob, g)
            pairs = pairs[torch.randperm(len(pairs), generator=g)]
            total = 0.0
            for batch in pairs.split(self.batch_size) if len(pairs) else ():
                neg = torch.multinomial(noise, len(batch) * K, replacement=True, generator=g)
                loss = sgns_loss(w_in(batch[:, 0]), w_out(batch[:, 1]), w_out(neg.view(-1, K)))  # (B,)
                opt.zero_grad()
                loss.mean().backward()
                opt.step()
                total += float(loss.detach().sum())
            self.losses.append(total / max(len(pairs), 1))
        self.vectors = w_in.weight.detach().numpy().astype(np.float32)
        return self

    def __getitem__(self, word: str) -> np.ndarray:
        return self.vectors[self.tokens.index(word)]

    def transform(self, docs: list[list[str]]) -> np.ndarray:
        """Mean word vector of each document, float32 ``(N, D)``; zeros when no word is known."""
        index = {t: j for j, t in enumerate(self.tokens)}
        out = np.zeros((len(docs), self.dim), dtype=np.float32)
        for i, doc in enumerate(docs):
            js = [index[t] for t in doc if t in index]
            if js:
                out[i] = self.vectors[js].mean(0)
        return out

    def state_dict(self) -> dict:
        return {"tokens": list(self.tokens), "vectors": self.vectors.tolist()}

    def load_state_dict(self, state: dict) -> None:
        vectors = np.asarray(state["vectors"], dtype=np.float32).reshape(len(state["tokens"]), -1)
        if vectors.shape[1] != self.dim:
            raise CheckpointError(f"Word2Vec state: vectors have size {vectors.shape[1]}; this "
                                  f"model has dim={self.dim}")
        self.tokens, self.vectors = list(state["tokens"]), vectors


class TextPipeline:
    """Texts -> float32 features ``(N, D)``: normalize, tokenize, drop stopwords, stem, then
    TF-IDF / bag of words (D = vocabulary size) or mean word2vec vectors (D = embedding_dim).

    Parameters are the ``[text]`` keys; ``min_df`` doubles as word2vec's min_count and
    ``max_features`` as its vocabulary size. ``fit(train_texts, seed)`` on training texts only.
    Example: ``TextPipeline(features="bow", stopwords=False).fit(["a b", "b c"]).transform(["b"])``.
    """

    CONFIG = ("language", "lowercase", "strip_accents", "strip_punctuation", "stopwords", "stem",
              "features", "max_features", "min_df", "embedding_dim", "window", "epochs")

    def __init__(self, language: str = "english", lowercase: bool = True, strip_accents: bool = True,
                 strip_punctuation: bool = True, stopwords: bool = True, stem: bool = False,
                 features: str = "tfidf", max_features: int = 5000, min_df: int = 1,
                 embedding_dim: int = 50, window: int = 5, epochs: int = 5):
        check = TextConfig.check        # the rules of the [text] keys of the same names
        self.language = check("language", language)
        self.lowercase, self.strip_accents, self.strip_punctuation, self.stopwords, self.stem = (
            check(k, v) for k, v in (("lowercase", lowercase), ("strip_accents", strip_accents),
                                     ("strip_punctuation", strip_punctuation), ("stopwords", stopwords),
                                     ("stem", stem)))
        self.features = check("features", features)
        self.max_features, self.min_df, self.embedding_dim = (
            check(k, v) for k, v in (("max_features", max_features), ("min_df", min_df),
                                     ("embedding_dim", embedding_dim)))
        self.window, self.epochs = (number(ge=1, integer=True)(f"word2vec.{k}", v)
                                    for k, v in (("window", window), ("epochs", epochs)))
        self._stop = frozenset(_strip(t) for w in _stopwords_of(self.language) for t in self._norm(w)) \
            if self.stopwords else frozenset()  # compared without accents: "ademas" is "además"
        self.vocabulary_: Vocabulary | None = None
        self.word2vec_: Word2Vec | None = None

    @classmethod
    def from_config(cls, section: TextConfig) -> TextPipeline:
        """The features ``[text]`` asks for."""
        return cls(section.language, section.lowercase, section.strip_accents, section.strip_punctuation,
                   section.stopwords, section.stem, section.features, section.max_features, section.min_df,
                   section.embedding_dim)

    def _norm(self, text: str) -> list[str]:
        return tokenize(normalize(text, self.lowercase, False, self.strip_punctuation))

    def tokens(self, text: str) -> list[str]:
        """One text's tokens: normalized (accents kept), stopwords dropped, stemmed, then accents
        stripped -- Snowball's Spanish suffixes carry accents (corrían -> corr, corrian -> corri)."""
        words = [t for t in self._norm(text) if _strip(t) not in self._stop]
        words = stem(words, self.language) if self.stem else words
        return [_strip(t) for t in words] if self.strip_accents else words

    def fit(self, texts, seed: int = 0) -> TextPipeline:
        """Fit the vocabulary (and idf) or the word2vec vectors on training texts."""
        docs = [self.tokens(t) for t in _docs(texts)]
        if self.features == "word2vec":
            self.word2vec_ = Word2Vec(self.embedding_dim, window=self.window, min_count=self.min_df,
                                      max_vocab=self.max_features, epochs=self.epochs).fit(docs, seed)
        else:
            self.vocabulary_ = Vocabulary.fit(docs, self.max_features, self.min_df)
            if not len(self.vocabulary_):
                raise DataError(f"TextPipeline.fit: no word is left in the {len(docs)} training texts "
                                f"(min_df={self.min_df}, stopwords={self.stopwords})")
        return self

    def transform(self, texts) -> np.ndarray:
        """Features of any texts with the fitted state, float32 ``(N, D)``."""
        if self.vocabulary_ is None and self.word2vec_ is None:
            raise ConfigError("TextPipeline.transform: the pipeline is not fitted; call fit(train_texts, seed) first")
        docs = [self.tokens(t) for t in _docs(texts)]
        if self.features == "word2vec":
            return self.word2vec_.transform(docs)
        return tfidf(docs, self.vocabulary_) if self.features == "tfidf" else bag_of_words(docs, self.vocabulary_)

    def fit_transform(self, texts, seed: int = 0) -> np.ndarray:
        return self.fit(texts, seed).transform(texts)

    def state_dict(self) -> dict:
        """Plain JSON-able state: the config and the fitted vocabulary or word vectors."""
        return {"config": {k: getattr(self, k) for k in self.CONFIG},
                "vocabulary": self.vocabulary_.state_dict() if self.vocabulary_ else None,
                "word2vec": self.word2vec_.state_dict() if self.word2vec_ else None}

    def load_state_dict(self, state: dict) -> None:
        """Restore fitted state saved by a pipeline with the same config (else CheckpointError)."""
        for k in self.CONFIG:
            if state["config"].get(k) != getattr(self, k):
                raise CheckpointError(f"TextPipeline state: text.{k} was {state['config'].get(k)!r} "
                                      f"when fitted; this pipeline has {getattr(self, k)!r}")
        self.vocabulary_ = Vocabulary.from_state(state["vocabulary"]) if state["vocabulary"] else None
        self.word2vec_ = None
        if state["word2vec"]:
            self.word2vec_ = Word2Vec(self.embedding_dim, window=self.window, min_count=self.min_df,
                                      max_vocab=self.max_features, epochs=self.epochs)
            self.word2vec_.load_state_dict(state["word2vec"])


def featurize(section: TextConfig, arrays: dict, seed: int) -> TextPipeline:
    """Texts -> features, in place in ``arrays`` (split name -> (texts, labels)), as the ``[text]``
    section ``section`` says: ``copies`` augmented copies of each training text are added to
    the training split (labels repeated), the ``TextPipeline`` is fitted on the training texts
    only, and every split is transformed; returns the fitted pipeline. Seeded by ``seed``
    (``data.seed``). Text is the modality whose features are fitted after the split: the
    vocabulary and idf must not see validation or test texts."""
    from regulab.modalities.text.augment import TextAugment, augment_texts
    X, y = arrays["train"]
    if section.copies > 0:
        augment = TextAugment.from_config(section, seed)
        extra, source = augment_texts(X, section.copies, augment.rng, augment)
        X, y = np.concatenate([X, np.array(extra, dtype=object)]), np.concatenate([y, y[source]])
    pipeline = TextPipeline.from_config(section)
    arrays["train"] = (pipeline.fit_transform(list(X), seed), y)
    for name in [k for k in arrays if k != "train"]:
        arrays[name] = (pipeline.transform(list(arrays[name][0])), arrays[name][1])
    return pipeline
