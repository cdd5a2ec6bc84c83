"""``[augment.image|audio|text|video]``: parsing, --set, round trip and one-line errors."""

from __future__ import annotations

import tomllib

import pytest

import regulab as rl
from regulab.cli import main
from regulab.config.core import config_from_dict, to_toml

from .conftest import assert_refused, write

NOTES_PIPELINE = """
[augment.image]
resize = 32
random_crop = 28
rotation = 30
mean = [0.5]
std = [0.5]
"""


def test_the_notes_torchvision_pipeline_is_one_section(tmp_path):
    cfg = rl.load_config(write(tmp_path / "c.toml", NOTES_PIPELINE))
    i = cfg.augment.image
    assert (i.resize, i.random_crop, i.rotation, i.mean, i.std) == (32, 28, 30.0, [0.5], [0.5])
    assert cfg.augment.changed("image") and not cfg.augment.changed("audio")
    assert config_from_dict(tomllib.loads(to_toml(cfg))) == cfg


def test_set_reaches_a_modality_table():
    cfg = rl.load_config(None, ["augment.audio.noise_snr=[10, 20]", "augment.image.scale=[0.9, 1.1]",
                                "augment.video.size=[32, 48]", 'augment.text.ops=["keyboard_typo"]'])
    assert cfg.augment.audio.noise_snr == [10.0, 20.0]
    assert cfg.augment.image.scale == [0.9, 1.1]
    assert cfg.augment.video.size == [32, 48]
    assert cfg.augment.text.ops == ["keyboard_typo"]
    assert config_from_dict(tomllib.loads(to_toml(cfg))) == cfg


@pytest.mark.parametrize("sets, words", [
    (["augment.image.rotation=-5"], ["augment.image.rotation", "-5", ">= 0.0"]),
    (["augment.image.rotatoin=5"], ["augment.image.rotatoin", "did you mean 'rotation'"]),
    (["augment.imag.rotation=5"], ["augment.imag", "did you mean 'image'"]),
    (["augment.image.scale=[1.2, 0.8]"], ["augment.image.scale", "[1.2, 0.8]", "low <= high"]),
    (["augment.image.random_crop=0"], ["augment.image.random_crop", "0"]),
    (["augment.image.hflip=1.5"], ["augment.image.hflip", "1.5"]),
    (["augment.image.std=[0.0]"], ["augment.image.std[0]", "> 0"]),
    (["augment.audio.noise_snr=[20, 10]"], ["augment.audio.noise_snr", "[20, 10]"]),
    (["augment.audio.features=mfcc"], ["augment.audio.features", "'mfcc'"]),
    (["augment.text.language=french"], ["augment.text.language", "'french'", "english, spanish"]),
    (["augment.video.sampling=random"], ["augment.video.sampling", "'random'"]),
    (["augment.image=3"], ["augment.image", "table"]),
    (["augment.image.rotation.x=3"], ["--set", "augment.image.rotation.x"]),
])
def test_bad_augment_values_exit_2(workdir, capsys, sets, words):
    cfg = write(workdir / "c.toml", "[train]\nepochs = 1\n")
    code = main(["train", str(cfg), "--out", "out", "--quiet", *[a for s in sets for a in ("--set", s)]])
    assert_refused(capsys, code, words, workdir)
