"""Text: loading (rotten tomatoes, text:PATH), features (normalize, stopwords, stems, BoW, TF-IDF,
word2vec, TextPipeline) and string augmentation. Each op is checked against what it must change."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
import torch

from regulab.data import shipped
from regulab.errors import CheckpointError, ConfigError, DataError
from regulab.modalities.sources import load_dataset
from regulab.modalities.text import augment as aug
from regulab.modalities.text.augment import (KEYBOARD, MISSPELLINGS, OCR, OPS, TextAugment, Thesaurus,
                                             augment_texts, keyboard_typo, misspell, ocr_error,
                                             random_delete, random_insert, random_substitute, random_swap,
                                             synonym_replace, word_delete, word_swap)
from regulab.modalities.text.features import (TextPipeline, Vocabulary, Word2Vec, bag_of_words, normalize,
                                              sgns_loss, stem, stopwords, tfidf, tokenize)
from regulab.modalities.text.reader import load_rotten_tomatoes, load_text

SENTENCE = "The modern film was Really interesting, and I believe it's a clear masterpiece of 2010!"


def is_subsequence(small: str, big: str) -> bool:
    it = iter(big)
    return all(c in it for c in small)


# ----------------------------------------------------------------------------- loading

def test_rotten_tomatoes_counts_and_subset():
    ds = load_rotten_tomatoes()
    assert (len(ds.X), ds.classes, ds.task) == (4866, ["rotten", "fresh"], "classification")
    assert ds.X.dtype == object and all(isinstance(t, str) and t for t in ds.X)
    assert np.bincount(ds.y).tolist() == [2411, 2455]
    a, b = load_rotten_tomatoes(300, seed=5), load_rotten_tomatoes(300, seed=5)
    assert len(a.X) == 300 and list(a.X) == list(b.X) and set(a.X) <= set(ds.X)
    assert list(load_rotten_tomatoes(300, seed=6).X) != list(a.X)
    with pytest.raises(DataError, match=r"'data.n_samples' must be at most the 4866 reviews; got 99999"):
        load_rotten_tomatoes(99999)


def test_rotten_tomatoes_without_its_data_file(monkeypatch, tmp_path):
    monkeypatch.setattr(shipped, "SHIPPED", tmp_path)       # an install that lacks the shipped files
    with pytest.raises(DataError, match="'rotten_tomatoes_corpus.csv.bz2' .*pip install --force-reinstall regulab"):
        load_rotten_tomatoes()


def test_load_text_csv(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text('review,stars\n"Great, fun",10\nawful,2\n"multi\nline",10\n', encoding="utf-8")
    ds = load_text(p, text_column="review", label_column="stars")
    assert ds.classes == ["2", "10"]  # numbers sort numerically
    assert list(ds.X) == ["Great, fun", "awful", "multi\nline"] and ds.y.tolist() == [1, 0, 1]
    with pytest.raises(DataError, match=r"text_column: column 'text' is not in .*'review', 'stars'"):
        load_dataset(f"text:{p}")  # the default columns: text, label
    q = tmp_path / "d.csv"
    q.write_text("text,label\nyes,b\nno,a\n", encoding="utf-8")
    ds = load_dataset(f"text:{q}")
    assert (ds.name, ds.classes, ds.y.tolist()) == (f"text:{q}", ["a", "b"], [1, 0])


@pytest.mark.parametrize("content, words", [
    ("", "is empty"),
    ("text,label\n", "no rows"),
    ("text,label\nhello,a\n ,b\n", "line 3: column 'text' is empty"),
    ("text,label\nhello,a\nbye,\n", "line 3: column 'label' is empty"),
    ("text,label\nhello,a\nbye,a\n", "at least 2 classes"),
])
def test_load_text_csv_errors(tmp_path, content, words):
    p = tmp_path / "t.csv"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(words)) as e:
        load_text(p)
    assert "\n" not in str(e.value)


def test_load_text_folder(tmp_path):
    for cls, texts in (("pos", ["good", "fine film"]), ("neg", ["bad"])):
        for i, t in enumerate(texts):
            (tmp_path / cls).mkdir(exist_ok=True)
            (tmp_path / cls / f"{i}.txt").write_text(t, encoding="utf-8")
    (tmp_path / "pos" / "notes.md").write_text("ignored")
    ds = load_text(tmp_path)
    assert ds.classes == ["neg", "pos"] and list(ds.X) == ["bad", "good", "fine film"]
    assert ds.y.tolist() == [0, 1, 1]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"class 'empty'\) holds no .txt files"):
        load_text(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_text(tmp_path / "nope")
    with pytest.raises(DataError, match="no sub-folders"):
        load_text(tmp_path / "empty")


# ----------------------------------------------------------------------------- normalization

def test_normalize_english_and_spanish():
    assert normalize("Héllo, WORLD! It’s naïve.") == "hello  world  it's naive "
    assert normalize("¿Qué tal, Señor Muñoz?") == " que tal  senor munoz "
    assert normalize("¿Qué tal, Señor Muñoz?", strip_accents=False) == " qué tal  señor muñoz "
    assert normalize("Año-Nuevo", lowercase=False, strip_punctuation=False) == "Ano-Nuevo"
    assert normalize("a-b c", keep=r"-") == "a-b c" and normalize("don't") == "don't"
    assert normalize("ﬁne") == "fine"  # NFKD unfolds the ligature
    assert tokenize("don't stop-me, 'now' 2x") == ["don't", "stop", "me", "now", "2x"]


def test_stopwords_and_stems():
    en, es = stopwords("english"), stopwords("spanish")
    assert {"the", "and", "of"} <= en and "movie" not in en
    assert {"el", "de", "además", "los"} <= es and "niño" not in es
    assert stem(["running", "happiness", "generously", "movies"], "english") == ["run", "happi", "generous", "movi"]
    assert stem(["corriendo", "canciones", "niños", "rápidamente"], "spanish") == ["corr", "cancion", "niñ", "rapid"]
    with pytest.raises(ConfigError, match="'text.language' must be one of english, spanish; got 'french'"):
        stopwords("french")


def test_pipeline_tokens_spanish_and_english():
    es = TextPipeline(language="spanish", stem=True)
    assert es.tokens("Además, los niños corrían por el parque.") == ["nin", "corr", "parqu"]
    assert TextPipeline(language="spanish").tokens("Además, los niños") == ["ninos"]  # accent-free stopwords match
    en = TextPipeline(stem=True)
    assert en.tokens("The actors were running and jumping!") == ["actor", "run", "jump"]
    assert TextPipeline(stopwords=False).tokens("The end.") == ["the", "end"]


# ----------------------------------------------------------------------------- bag of words, tf-idf

DOCS = [["the", "cat", "sat", "cat"], ["the", "dog"], ["a", "cat", "and", "a", "dog", "dog"], ["bird"]]


def test_vocabulary_and_bag_of_words_against_a_loop():
    vocab = Vocabulary.fit(DOCS)
    assert vocab.tokens == sorted({t for d in DOCS for t in d})
    X = bag_of_words(DOCS, vocab)
    for i, d in enumerate(DOCS):
        for j, t in enumerate(vocab.tokens):
            assert X[i, j] == d.count(t)
    assert np.array_equal(bag_of_words(DOCS, vocab, binary=True), (X > 0).astype(np.float32))
    assert Vocabulary.fit(DOCS, min_df=2).tokens == ["cat", "dog", "the"]
    assert Vocabulary.fit(DOCS, max_features=2).tokens == ["cat", "dog"]  # 3 each; a, the: 2
    assert bag_of_words([["zebra"]], vocab).sum() == 0


def test_tfidf_formula_and_sklearn():
    from sklearn.feature_extraction.text import TfidfVectorizer
    train, test = DOCS, [["cat", "zebra", "dog"], ["zebra"]]
    vocab = Vocabulary.fit(train)
    n, df = len(train), np.array([sum(t in d for d in train) for t in vocab.tokens])
    assert np.allclose(vocab.idf(), np.log((1 + n) / (1 + df)) + 1)
    sk = TfidfVectorizer(analyzer=lambda d: d).fit(train)
    assert list(sk.get_feature_names_out()) == vocab.tokens
    for docs in (train, test):
        assert np.allclose(tfidf(docs, vocab), sk.transform(docs).toarray(), atol=1e-6)
    assert np.all(tfidf(test, vocab)[1] == 0)  # only out-of-vocabulary words
    sk2 = TfidfVectorizer(analyzer=lambda d: d, min_df=2).fit(train)
    assert np.allclose(tfidf(test, Vocabulary.fit(train, min_df=2)), sk2.transform(test).toarray(), atol=1e-6)


# ----------------------------------------------------------------------------- word2vec

def cluster_corpus(n=300, seed=0):
    rng = np.random.default_rng(seed)
    a, b = ["cat", "dog", "mouse", "bird", "fish"], ["car", "bus", "train", "truck", "bike"]
    return a, b, [list(rng.choice(a if i % 2 else b, 8)) for i in range(n)]


def test_sgns_loss_against_numpy():
    rng = np.random.default_rng(0)
    v, u, n = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.normal(size=(3, 2, 4))
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    want = [-np.log(sig(u[b] @ v[b])) - sum(np.log(sig(-n[b, k] @ v[b])) for k in range(2)) for b in range(3)]
    got = sgns_loss(*(torch.tensor(a) for a in (v, u, n)))
    assert np.allclose(got.numpy(), want)


def test_word2vec_clusters_and_reproducibility():
    a, b, docs = cluster_corpus()
    w2v = Word2Vec(dim=16, window=3, subsample=0.0, epochs=3, lr=0.05).fit(docs, seed=0)
    assert w2v.losses[-1] < w2v.losses[0]
    V = w2v.vectors / np.linalg.norm(w2v.vectors, axis=1, keepdims=True)
    cos = {(s, t): float(V[w2v.tokens.index(s)] @ V[w2v.tokens.index(t)]) for s in a + b for t in a + b}
    within = [cos[s, t] for g in (a, b) for s in g for t in g if s < t]
    across = [cos[s, t] for s in a for t in b]
    assert min(within) > max(across)
    again = Word2Vec(dim=16, window=3, subsample=0.0, epochs=3, lr=0.05).fit(docs, seed=0)
    assert np.array_equal(again.vectors, w2v.vectors)
    one_epoch = [Word2Vec(dim=16, window=3, subsample=0.0, epochs=1).fit(docs, seed=s).vectors for s in (0, 1)]
    assert not np.array_equal(*one_epoch)  # the seed matters
    doc = w2v.transform([["cat", "dog", "unknown"], ["unknown"]])
    assert np.allclose(doc[0], (w2v["cat"] + w2v["dog"]) / 2) and np.all(doc[1] == 0)


# ----------------------------------------------------------------------------- TextPipeline

TRAIN = ["A great, moving film.", "Dull and boring plot.", "Great acting, great plot!", "Boring film."]


@pytest.mark.parametrize("features", ["tfidf", "bow", "word2vec"])
def test_pipeline_state_roundtrip(features):
    pipe = TextPipeline(features=features, embedding_dim=8, epochs=2).fit(TRAIN, seed=0)
    X = pipe.transform(TRAIN + ["unseen words only"])
    assert X.dtype == np.float32 and X.shape[0] == 5
    assert X.shape[1] == (8 if features == "word2vec" else len(pipe.vocabulary_))
    assert np.all(X[4] == 0)  # fitted on training texts only
    state = json.loads(json.dumps(pipe.state_dict()))
    fresh = TextPipeline(features=features, embedding_dim=8, epochs=2)
    fresh.load_state_dict(state)
    assert np.array_equal(fresh.transform(TRAIN), X[:4])
    with pytest.raises(CheckpointError, match="text.stem was False when fitted; this pipeline has True"):
        TextPipeline(features=features, embedding_dim=8, epochs=2, stem=True).load_state_dict(state)


def test_pipeline_errors():
    with pytest.raises(ConfigError, match=r"'text.features' must be one of tfidf, bow, word2vec.*'tfidif'"):
        TextPipeline(features="tfidif")
    with pytest.raises(ConfigError, match=r"'text.min_df' must be an integer >= 1; got 0"):
        TextPipeline(min_df=0)
    with pytest.raises(ConfigError, match="not fitted"):
        TextPipeline().transform(["x"])
    with pytest.raises(DataError, match=r"'texts\[1\]' must be a string; got 3"):
        TextPipeline().fit(["ok", 3])


# ----------------------------------------------------------------------------- augmentation

@pytest.mark.parametrize("name", sorted(OPS))
def test_op_identity_and_reproducible(name):
    op = OPS[name]
    extra = {"thesaurus": Thesaurus({"film": ("movie",), "clear": ("plain",)})} if name == "synonym_replace" else {}
    assert op(SENTENCE, random.Random(0), prob=0.0, **extra) == SENTENCE
    assert op(SENTENCE, 0, count=0, **extra) == SENTENCE
    outs = {op(SENTENCE, random.Random(7), prob=0.5, **extra) for _ in range(3)}
    assert len(outs) == 1 and outs != {SENTENCE}
    assert op(SENTENCE, 7, prob=0.5, **extra) in outs  # an int seed is random.Random(seed)
    with pytest.raises(ConfigError, match="'rng' must be a random.Random.*got None"):
        op(SENTENCE, None, **extra)
    with pytest.raises(ConfigError, match="prob and count"):
        op(SENTENCE, 0, prob=0.1, count=1, **extra)


def test_char_delete_insert_substitute_counts():
    letters = sum(c.isalpha() for c in SENTENCE)
    for k in (1, 5, 20):
        d = random_delete(SENTENCE, 3, count=k)
        assert len(d) == len(SENTENCE) - k and is_subsequence(d, SENTENCE)
        ins = random_insert(SENTENCE, 3, count=k)
        assert len(ins) == len(SENTENCE) + k and is_subsequence(SENTENCE, ins)
        s = random_substitute(SENTENCE, 3, count=k)
        diff = [i for i, (x, y) in enumerate(zip(SENTENCE, s)) if x != y]
        assert len(s) == len(SENTENCE) and len(diff) == k
        assert all(SENTENCE[i].isalpha() and s[i].isalpha() and SENTENCE[i].isupper() == s[i].isupper() for i in diff)
    assert random_delete(SENTENCE, 0, prob=1.0) == re.sub(r"[^\W\d_]", "", SENTENCE)
    assert len(random_insert(SENTENCE, 0, prob=1.0)) == len(SENTENCE) + letters


def test_random_swap_exchanges_neighbours():
    s = random_swap("abcdef", 1, count=1)
    diff = [i for i in range(6) if s[i] != "abcdef"[i]]
    assert len(diff) == 2 and diff[1] == diff[0] + 1 and sorted(s) == list("abcdef")
    assert random_swap("abcdef", 1, prob=1.0) == "badcfe"
    assert random_swap("aa b", 1, prob=1.0) == "aa b"  # equal letters and single letters: no site


def test_keyboard_typo_uses_qwerty_neighbours():
    assert set(KEYBOARD) == set("abcdefghijklmnopqrstuvwxyz")
    assert all(k in KEYBOARD[n] for k, ns in KEYBOARD.items() for n in ns)  # symmetric
    out = keyboard_typo(SENTENCE, 2, prob=1.0)
    for x, y in zip(SENTENCE, out):
        assert (y.lower() in KEYBOARD[x.lower()] and x.isupper() == y.isupper()) if x.lower() in KEYBOARD else x == y


def test_ocr_error_table():
    assert ocr_error("rn", 0, prob=1.0) == "m" and ocr_error("cl", 0, prob=1.0) == "d"
    assert ocr_error("m", 0, prob=1.0) == "rn" and ocr_error("5", 0, prob=1.0) in ("s", "S")
    assert ocr_error("0", 0, prob=1.0) in OCR["0"] and ocr_error("1", 0, prob=1.0) in OCR["1"]
    # sites of "modern", leftmost-longest: m, o, d, e, rn
    outs = {ocr_error("modern", seed, count=1) for seed in range(40)}
    assert outs == {"rnodern", "m0dern", "moclern", "modcrn", "modem"}
    assert ocr_error("?!", 0, prob=1.0) == "?!"


def test_word_swap_and_delete():
    assert word_swap("Hello, world!", 0, count=1) == "world, Hello!"
    s = word_swap("one two three four", 4, count=1).split()
    assert sorted(s) == ["four", "one", "three", "two"]
    assert sum(a != b for a, b in zip(s, "one two three four".split())) == 2
    assert word_delete("one two three", 0, count=1).split() in (["two", "three"], ["one", "three"], ["one", "two"])
    assert len(word_delete("one two three", 0, prob=1.0).split()) == 1  # one word is always kept


def test_synonym_replace():
    th = Thesaurus({"good": ("fine",), "film": ("movie", "picture")})
    assert synonym_replace("A Good film, good.", 0, thesaurus=th, prob=1.0) in (
        "A Fine movie, fine.", "A Fine picture, fine.")
    roget = Thesaurus.load_roget()
    assert len(roget) > 5000 and {"evil", "wrong"} <= set(roget["bad"]) and "tale" in roget["story"]
    assert all("bad" in roget[s] for s in roget["bad"])  # symmetric
    text = "the bad story of a dull actor"
    out = synonym_replace(text, 3, prob=1.0).split()
    for old, new in zip(text.split(), out):
        assert new == old if old in ("the", "of", "a") else new in roget[old]


def test_misspell_english_and_spanish():
    assert len(MISSPELLINGS) >= 50
    assert misspell("I Receive it, I believe.", 0, prob=1.0) == "I Recieve it, I beleive."
    assert misspell("La canción del niño está aquí, sin duda", 0, language="spanish", prob=1.0) == \
        "La cancion del nino esta aqui, sin duda"
    one = misspell("canción niño", 0, language="spanish", count=1)
    assert one in ("cancion niño", "canción nino")


def test_text_augment_and_augment_texts():
    assert TextAugment(0.0, 0.0, ops=["keyboard_typo", "word_delete"], seed=0)(SENTENCE) == SENTENCE
    a = [TextAugment(0.1, 0.2, seed=3)(SENTENCE) for _ in range(2)]
    assert a[0] == a[1] != SENTENCE
    with pytest.raises(ConfigError, match=r"ops\[1\]' must be one of .*got 'mispell'; did you mean 'misspell'"):
        TextAugment(ops=["ocr_error", "mispell"])
    with pytest.raises(ConfigError, match="without synonym_replace with language 'spanish'"):
        TextAugment(ops=["synonym_replace"], language="spanish")
    assert "synonym_replace" not in TextAugment(language="spanish").ops
    texts = ["one two three", "hello world"]
    out, src = augment_texts(texts, 3, random.Random(0), TextAugment(0.2, 0.3, seed=0))
    assert len(out) == 6 and src.tolist() == [0, 0, 0, 1, 1, 1]
    again, src2 = augment_texts(texts, 3, 0, TextAugment(0.2, 0.3, seed=0))
    assert again == out and np.array_equal(src, src2)
    none, src0 = augment_texts(texts, 0, 0)
    assert none == [] and src0.shape == (0,)
    assert aug.CHAR_OPS.keys() | aug.WORD_OPS.keys() == OPS.keys()
