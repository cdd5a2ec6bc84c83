"""``[image]``, ``[audio]``, ``[text]``, ``[video]``: parsing, --set, round trip, one-line errors,
and the old names ``[augment.image]`` (``augment.image.rotation``) still read as the new ones."""

from __future__ import annotations

import pytest
import tomllib

import regulab as rl
from regulab.cli import main
from regulab.config.core import config_from_dict, to_toml

from .conftest import assert_refused, write

NOTES_PIPELINE = """
[image]
resize = 32
random_crop = 28
rotation = 30
mean = [0.5]
std = [0.5]
"""


def test_the_notes_torchvision_pipeline_is_one_section(tmp_path):
    cfg = rl.load_config(write(tmp_path / "c.toml", NOTES_PIPELINE))
    i = cfg.image
    assert (i.resize, i.random_crop, i.rotation, i.mean, i.std) == (32, 28, 30.0, [0.5], [0.5])
    assert cfg.changed("image") and not cfg.changed("audio")
    assert config_from_dict(tomllib.loads(to_toml(cfg))) == cfg
    assert "[image]" in to_toml(cfg) and "augment" not in to_toml(cfg)


def test_the_old_augment_names_are_read_as_the_new_sections(tmp_path):
    old = rl.load_config(write(tmp_path / "old.toml", NOTES_PIPELINE.replace("[image]", "[augment.image]")),
                         ["augment.audio.noise_snr=[10, 20]"])
    new = rl.load_config(write(tmp_path / "new.toml", NOTES_PIPELINE), ["audio.noise_snr=[10, 20]"])
    assert old == new and old.image.rotation == 30.0 and old.audio.noise_snr == [10.0, 20.0]
    assert config_from_dict({"augment": {"text": {"copies": 2}}}).text.copies == 2
    with pytest.raises(rl.ConfigError, match=r"'augment.image' is the old name of \[image\]"):
        config_from_dict({"augment": {"image": {"rotation": 5}}, "image": {"hflip": 0.5}})


def test_set_reaches_a_modality_table():
    cfg = rl.load_config(None, ["audio.noise_snr=[10, 20]", "image.scale=[0.9, 1.1]",
                                "video.size=[32, 48]", 'text.ops=["keyboard_typo"]'])
    assert cfg.audio.noise_snr == [10.0, 20.0]
    assert cfg.image.scale == [0.9, 1.1]
    assert cfg.video.size == [32, 48]
    assert cfg.text.ops == ["keyboard_typo"]
    assert config_from_dict(tomllib.loads(to_toml(cfg))) == cfg


@pytest.mark.parametrize("sets, words", [
    (["image.rotation=-5"], ["image.rotation", "-5", ">= 0.0"]),
    (["image.rotatoin=5"], ["image.rotatoin", "did you mean 'rotation'"]),
    (["imag.rotation=5"], ["imag", "did you mean 'image'"]),
    (["image.scale=[1.2, 0.8]"], ["image.scale", "[1.2, 0.8]", "low <= high"]),
    (["image.random_crop=0"], ["image.random_crop", "0"]),
    (["image.hflip=1.5"], ["image.hflip", "1.5"]),
    (["image.std=[0.0]"], ["image.std[0]", "> 0"]),
    (["audio.noise_snr=[20, 10]"], ["audio.noise_snr", "[20, 10]"]),
    (["audio.features=mfcc"], ["audio.features", "'mfcc'"]),
    (["text.language=french"], ["text.language", "'french'", "english, spanish"]),
    (["video.sampling=random"], ["video.sampling", "'random'"]),
    (["image=3"], ["override 'image'", "section.key"]),
    (["image.rotation.x=3"], ["override", "image.rotation.x"]),
    # the old names: the error names the key by its current name
    (["augment.image.rotatoin=5"], ["image.rotatoin", "did you mean 'rotation'"]),
    (["augment.imag.rotation=5"], ["augment.imag", "section.key"]),
    (["augment.image.rotation=-5"], ["image.rotation", "-5", ">= 0.0"]),
])
def test_bad_modality_values_exit_2(workdir, capsys, sets, words):
    cfg = write(workdir / "c.toml", "[train]\nepochs = 1\n")
    code = main(["train", str(cfg), "--out", "out", "--quiet", *[a for s in sets for a in ("--set", s)]])
    assert_refused(capsys, code, words, workdir)
