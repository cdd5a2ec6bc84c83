"""Issue 16's bad inputs that sized work or memory, or passed the check and crashed later: each is
refused with exit 2, one line naming the key, the value and the bound, and nothing written (no run
directory, no run store) -- in well under a second, before any data is generated or read whole."""

from __future__ import annotations

import numpy as np
import pytest

from regulab.checks import FLOAT32_MAX, MAX_CLASSES, MAX_SEED, MAX_SIDE, list_of, number
from regulab.cli import main
from regulab.config.core import config_from_dict, json_schema, load_config
from regulab.config.sections import MAX_EPOCHS, MAX_SAMPLES, MAX_WIDTH
from regulab.errors import MAX_QUOTE, ConfigError, invalid, quote
from regulab.explain import MAX_ITERATIONS
from regulab.limits import MAX_DEPTH, text_depth, value_depth
from regulab.studies.spec import MAX_SEEDS

from tests.conftest import assert_refused, write

BIG = 10**12


def _refused(capsys, workdir, argv: list[str], words: list[str]) -> None:
    """``regulab ARGV`` exits 2 with one line holding ``words``; no run directory, no store."""
    code = main([*argv, "--quiet"] if argv[0] in ("train", "study") else argv)
    assert_refused(capsys, code, words, workdir)
    assert not (workdir / "runs").exists() and not (workdir / "s").exists()


def _train(capsys, workdir, sets: list[str], words: list[str], toml: str = "[train]\nepochs = 1\n") -> None:
    write(workdir / "c.toml", toml)
    args = [a for s in sets for a in ("--set", s)]
    _refused(capsys, workdir, ["train", "c.toml", *args, "--out", "out"], words)


@pytest.mark.parametrize("setting, words", [
    (f"data.n_samples={BIG}", ["data.n_samples", str(BIG), str(MAX_SAMPLES)]),
    ("data.seed=4294967295", ["data.seed", "4294967295", str(MAX_SEED)]),
    (f"data.seed={MAX_SEED + 1}", ["data.seed", str(MAX_SEED)]),
    ("train.seed=18446744073709551616", ["train.seed", str(MAX_SEED)]),
    ("optim.betas=[0.9, 0.99, 0.9]", ["optim.betas", "at most 2 items", "[0.9, 0.99, 0.9]"]),
    ("optim.weight_decay=1e300", ["optim.weight_decay", "1e+300", "float32"]),
    ("optim.lr=1e39", ["optim.lr", "float32"]),
    ("regularization.l2=1e300", ["regularization.l2", "float32"]),
    ("train.epochs=" + "9" * 5000, ["train.epochs", "(5000 chars)"]),
    (f"train.epochs={2**63}", ["train.epochs", "64 bits", str(2**63)]),
    (f"train.epochs={MAX_EPOCHS + 1}", ["train.epochs", str(MAX_EPOCHS + 1), f"<= {MAX_EPOCHS}"]),
    (f"model.hidden=[{MAX_WIDTH + 1}]", ["model.hidden[0]", str(MAX_WIDTH)]),
    ("model.hidden=[1000000000, 10]", ["model.hidden[0]", str(MAX_WIDTH)]),
    ("model.channels=[10000000]", ["model.channels[0]", str(MAX_WIDTH)]),
    ("model.kernel_size=100000000", ["model.kernel_size", "1024"]),
    ("data.split=[0.5, 0.25, 0.25, 0.0]", ["data.split", "at most 3 items"]),
    (f"data.classes=[0, {MAX_CLASSES}]", ["data.classes[1]", str(MAX_CLASSES)]),
    ("multitask.groups={big = [0, 1000000]}", ["multitask.groups.big[1]", str(MAX_CLASSES)]),
    ("image.resize=100000", ["image.resize", str(MAX_SIDE)]),
    ("image.random_crop=[8, 100000]", ["image.random_crop", str(MAX_SIDE)]),
    ("image.crop_padding=1000000", ["image.crop_padding", str(MAX_SIDE)]),
    ("video.size=[100000, 64]", ["video.size", str(MAX_SIDE)]),
    ("video.frames=100000", ["video.frames", "1024"]),
    ("audio.seconds=1e9", ["audio.seconds", "3600"]),
    ("audio.sample_rate=1000000000", ["audio.sample_rate", "384000"]),
    ("audio.n_mels=1000000", ["audio.n_mels", "1024"]),
    ("text.max_features=10000000000", ["text.max_features", "1000000"]),
    ("text.copies=1000000", ["text.copies", "100"]),
    ("train.nproc=1000000", ["train.nproc", "1024"]),
    ("data.workers=100000", ["data.workers", "256"]),
    ("eval.mc_samples=1000000000", ["eval.mc_samples", "10000"]),
])
def test_a_bound_is_named_with_the_value(workdir, capsys, setting, words):
    _train(capsys, workdir, [setting], words)


def test_a_seed_at_the_bound_splits_and_trains(workdir, capsys):
    """The largest seed reaches every library regulab seeds (the split's RandomState draws
    with seed + 1) and trains."""
    write(workdir / "c.toml", "[train]\nepochs = 1\n")
    code = main(["train", "c.toml", "--set", f"data.seed={MAX_SEED}", "--set", f"train.seed={MAX_SEED}",
                 "--set", "data.n_samples=200", "--set", "train.epochs=1", "--set", "model.hidden=[8]",
                 "--out", "out", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert (workdir / "out" / "results.json").exists()


@pytest.mark.parametrize("what, text", [
    ("table header", "[" + ".".join(["a"] * 3000) + "]\nx = 1\n"),
    ("array", "x = " + "[" * 5000 + "]" * 5000 + "\n"),
    ("inline table", "x = " + "{a = " * 2000 + "1" + "}" * 2000 + "\n"),
    ("dotted key", ".".join(["a"] * 3000) + " = 1\n"),
])
def test_a_deeply_nested_config_file_is_refused_before_it_is_parsed(workdir, capsys, what, text):
    _train(capsys, workdir, [], ["config file 'c.toml'", f"more than {MAX_DEPTH} levels"], text)


def test_a_deeply_nested_set_value_is_refused(workdir, capsys):
    _train(capsys, workdir, ["model.hidden=" + "[" * 5000 + "]" * 5000], ["--set value of 'model.hidden'",
                                                                              f"{MAX_DEPTH} levels"])


@pytest.mark.parametrize("deep", ["[" + ".".join(["a"] * 3000) + "]\n", "x = " + "[" * 5000 + "]" * 5000 + "\n"])
def test_deeply_nested_study_and_sweep_files_are_refused(workdir, capsys, deep):
    write(workdir / "s.toml", deep)
    _refused(capsys, workdir, ["study", "s.toml", "--out", "out"], ["s.toml", f"{MAX_DEPTH} levels"])
    _refused(capsys, workdir, ["sweep", "s.toml"], ["s.toml", f"{MAX_DEPTH} levels"])


@pytest.mark.parametrize("suffix, text", [(".json", "[" * 100_000 + "]" * 100_000),
                                          (".json", '{"a": ' * 5000 + "1" + "}" * 5000),
                                          (".toml", "x = " + "[" * 5000 + "]" * 5000)])
def test_a_deeply_nested_explain_spec_is_refused(workdir, capsys, suffix, text):
    write(workdir / f"spec{suffix}", text)
    _refused(capsys, workdir, ["explain", "backprop", "--spec", f"spec{suffix}"],
             [f"spec{suffix}", f"{MAX_DEPTH} levels"])


def test_a_huge_integer_literal_in_a_config_file_is_one_line(workdir, capsys):
    _train(capsys, workdir, [], ["config file 'c.toml'", "4300 digits"], "[train]\nepochs = " + "9" * 5000 + "\n")


def test_a_huge_integer_literal_in_a_json_spec_is_one_line(workdir, capsys):
    write(workdir / "spec.json", '{"sizes": [' + "9" * 5000 + "]}")
    _refused(capsys, workdir, ["explain", "backprop", "--spec", "spec.json"], ["spec.json", "not valid JSON"])


@pytest.mark.parametrize("iterations", [MAX_ITERATIONS + 1, 10**9])
def test_explain_iterations_are_bounded(workdir, capsys, iterations):
    _refused(capsys, workdir, ["explain", "backprop", "--iterations", str(iterations)],
             ["iterations", str(MAX_ITERATIONS), str(iterations)])


@pytest.mark.parametrize("seeds, words", [
    (str(BIG), [str(BIG), f"from 1 to {MAX_SEEDS}"]),
    (f"[0, {MAX_SEED + 1}]", [str(MAX_SEED + 1), f"from 0 to {MAX_SEED}"]),
    (str(list(range(MAX_SEEDS + 1))), ["chars)", f"at most {MAX_SEEDS} distinct seeds"]),
])
def test_study_seeds_are_bounded(workdir, capsys, seeds, words):
    write(workdir / "s.toml", f"[study]\nseeds = {seeds}\n[variants.l2]\nregularization = {{ l2 = 0.001 }}\n")
    _refused(capsys, workdir, ["study", "s.toml", "--out", "out"], ["study.seeds", *words])


def test_a_study_ensembles_member_seeds_stay_within_the_bound(workdir, capsys):
    write(workdir / "s.toml", f"[study]\nseeds = [{MAX_SEED // 2}]\n[variants.ens]\nmembers = 3\n")
    _refused(capsys, workdir, ["study", "s.toml", "--out", "out"], ["study.seeds", "seed * 3 + k"])


@pytest.mark.parametrize("members", ["101", str(BIG)])
def test_ensemble_members_are_bounded(workdir, capsys, members):
    write(workdir / "c.toml", "[train]\nepochs = 1\n")
    _refused(capsys, workdir, ["train", "c.toml", "--members", members, "--out", "out"], ["members", "100", members])


@pytest.fixture
def npz(workdir):
    """Write ``name.npz`` holding X (200 rows of ``features`` columns) and labels ``y``."""
    def make(name: str, y: np.ndarray, features: int = 3) -> str:
        np.savez(workdir / f"{name}.npz", X=np.ones((len(y), features), np.float32), y=y)
        return f'data.dataset="npz:{name}.npz"'
    return make


@pytest.mark.parametrize("big", [MAX_CLASSES, 10**6, np.iinfo(np.int64).max])
def test_labels_beyond_the_class_bound_are_refused(workdir, capsys, npz, big):
    y = np.where(np.arange(200) % 2 == 0, 0, big).astype(np.int64)
    _train(capsys, workdir, [npz("d", y)], ["'y'", str(big), f"K <= {MAX_CLASSES}", "MAX_CLASSES"])


def test_labels_just_within_the_class_bound_are_taken_as_given(npz, workdir):
    """Labels are never remapped: 0 and K-1 make K classes."""
    from regulab.modalities.sources import load_dataset
    npz("d", np.where(np.arange(200) % 2 == 0, 0, MAX_CLASSES - 1).astype(np.int64))
    assert load_dataset("npz:d.npz").num_classes == MAX_CLASSES


def test_zero_features_are_refused(workdir, capsys, npz):
    _train(capsys, workdir, [npz("z", np.arange(200) % 2, features=0)], ["samples have shape (0,)",
                                                                         "at least 1 feature"])


@pytest.mark.parametrize("setting, section", [
    ("audio.noise_snr=10", "audio"), ("augment.audio.time_shift=0.1", "audio"), ("text.max_features=50", "text"),
    ("video.frames=4", "video"), ("text.text_column=\"t\"", "text"),
])
def test_options_of_another_modality_are_refused(workdir, capsys, setting, section):
    _train(capsys, workdir, [setting], [f"[{section}]", setting.split("=")[0].removeprefix("augment."),
                                        "signal data", "mnist1d"])


def test_image_options_on_text_are_refused(workdir, capsys):
    _train(capsys, workdir, ["data.dataset=rotten_tomatoes", "data.n_samples=200", "image.translate=0.1"],
           ["[image]", "image.translate", "text data"])


def test_quote_cuts_a_huge_value():
    huge = "x" * 100_000_000
    err = invalid("data.target", "a column name", huge)
    assert len(str(err)) < 400 and "... (100000000 chars)" in str(err)
    assert quote(list(range(10**5))).endswith(" chars)") and len(quote(list(range(10**5)))) < MAX_QUOTE + 30
    assert "digits" in quote(10**5000) and quote("short") == "'short'"


def test_a_huge_value_in_a_config_is_quoted_short():
    with pytest.raises(ConfigError) as e:
        config_from_dict({"data": {"preprocess": "x" * 10_000_000}})
    assert len(str(e.value)) < 1000 and "(10000000 chars)" in str(e.value)


def test_a_deep_dict_from_python_is_refused():
    deep: dict = {}
    node = deep
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(ConfigError, match=f"more than {MAX_DEPTH} levels"):
        config_from_dict({"model": deep})


@pytest.mark.parametrize("text, depth", [("a = 1", 0), ("[a.b]\nc = [[1], {d = 2}]", 2),
                                          ("x = '[[[[' # [[[[\n", 0), ('x = "[[\\"[["', 0),
                                          ('x = """\n[[[\n"""', 0), ("x = 1.5", 1)])
def test_text_depth_skips_strings_and_comments(text, depth):
    assert text_depth(text) == depth


def test_value_depth():
    assert value_depth(1) == 0 and value_depth([1]) == 1 and value_depth({"a": [1, {"b": 2}]}) == 3


def test_numbers_stay_finite_in_float32_and_integers_in_64_bits():
    with pytest.raises(ConfigError, match="float32"):
        number()("k", FLOAT32_MAX * 2)
    with pytest.raises(ConfigError, match="float32"):
        number()("k", 10**400)
    assert number()("k", FLOAT32_MAX) == FLOAT32_MAX
    with pytest.raises(ConfigError, match="64 bits"):
        number(integer=True)("k", -(2**63) - 1)
    with pytest.raises(ConfigError, match="at most 2 items"):
        list_of(number(), max_len=2)("k", [1, 2, 3])


def test_the_schema_carries_the_bounds():
    props = json_schema()["properties"]
    assert props["data"]["properties"]["seed"]["maximum"] == MAX_SEED
    assert props["data"]["properties"]["n_samples"]["maximum"] == MAX_SAMPLES
    assert props["optim"]["properties"]["betas"]["maxItems"] == 2
    assert props["model"]["properties"]["hidden"]["items"]["maximum"] == MAX_WIDTH


def test_a_bound_value_still_loads():
    cfg = load_config(None, [f"data.n_samples={MAX_SAMPLES}", f"model.hidden=[{MAX_WIDTH}]", "optim.betas=[0.5, 0.5]"])
    assert cfg.data.n_samples == MAX_SAMPLES and cfg.model.hidden == [MAX_WIDTH]
