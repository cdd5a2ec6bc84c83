"""Augmentation inside real runs: the ``augment`` layer, each modality end to end, exact resume."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from scipy.io import wavfile

import regulab as rl
from regulab.cli import main
from regulab.modalities.audio.augment import add_noise
from regulab.modalities.image.augment import center_crop, normalize, resize
from regulab.modalities.layer import Augment
from regulab.runs import prepare as prepare_mod

from .conftest import assert_resume_exact, write

NOTES = """
name = "notes"
[data]
dataset = "digits"
train_size = 300
[model]
kind = "cnn"
channels = [4]
kernel_size = 3
hidden = [16]
[image]
resize = 12
random_crop = 10
rotation = 30
mean = [0.5]
std = [0.5]
[train]
epochs = 2
early_stopping = false
"""


def test_the_augment_layer_is_random_in_training_and_deterministic_at_evaluation(workdir):
    p = prepare_mod.prepare(rl.load_config(write(workdir / "c.toml", NOTES)))
    net = p.trainer.model
    assert isinstance(net.augment, Augment) and list(net.named_children())[0][0] == "augment"
    X = p.splits["val"][0][:8]
    net.eval()
    with torch.no_grad():
        expected = normalize(center_crop(resize(X, 12), 10), [0.5], [0.5])
        assert torch.allclose(net.augment(X), expected)
        assert torch.equal(net(X), net(X))                     # evaluation: deterministic
        net.train()
        net.augment.generator = torch.Generator().manual_seed(0)
        a = net.augment(X)
        net.augment.generator = torch.Generator().manual_seed(0)
        assert torch.equal(a, net.augment(X))                  # seeded
        assert a.shape == (8, 1, 10, 10) and not torch.allclose(a, expected)


def test_an_augmented_run_writes_a_model_that_takes_raw_images(workdir):
    cfg = write(workdir / "c.toml", NOTES)
    assert main(["train", str(cfg), "--out", "out", "--quiet"]) == 0
    p = prepare_mod.prepare(rl.load_config(workdir / "out" / "config.toml"))
    p.pipeline.load_state_dict(load_file(workdir / "out" / "model.safetensors"))
    ds = rl.load_dataset("digits")
    X = torch.as_tensor(ds.X[:5])                              # raw 8x8 images
    assert p.pipeline.eval()(X).shape == (5, 10)


def test_resume_with_augmentation_is_exact(workdir):
    assert_resume_exact(rl.load_config(write(workdir / "c.toml", NOTES), ["model.dropout=0.2"]),
                        workdir / "state.safetensors")


def test_mnist1d_shift_and_stretch(workdir):
    cfg = rl.load_config(None, ["data.n_samples=600", "image.translate=0.1",
                                "image.scale=[0.9, 1.1]", "train.epochs=2"])
    p = prepare_mod.prepare(cfg)
    assert isinstance(p.trainer.model.augment, Augment)
    p.trainer.fit(p.loader, p.splits["val"], epochs=2)
    assert len(p.trainer.history) == 2


def test_image_only_keys_on_1d_samples_exit_2(workdir, capsys):
    cfg = write(workdir / "c.toml", "[train]\nepochs = 1\n[image]\nrotation = 10\n")
    assert main(["train", str(cfg), "--out", "out", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "image.rotation" in err and "(40,)" in err and err.count("\n") == 1


def _tones(root, per_class=6, sr=8000):
    """Two 'words': 300 Hz and 1200 Hz tones of random length, named {label}_{speaker}_{index}.wav."""
    rng = np.random.default_rng(0)
    for label, freq in enumerate((300.0, 1200.0)):
        for i in range(per_class):
            n = int(sr * rng.uniform(0.3, 0.6))
            t = np.arange(n) / sr
            wave = 0.5 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(n)
            wavfile.write(root / f"{label}_spk_{i}.wav", sr, (wave * 32767).astype(np.int16))
    return root


def test_audio_run_trains_on_log_mel_features_with_noise_and_spec_augment(workdir):
    data = _tones(workdir)
    cfg = write(workdir / "a.toml", f"""
[data]
dataset = "audio:{data}"
split = [0.7, 0.3, 0.0]
[model]
kind = "cnn"
channels = [4]
kernel_size = 3
hidden = [8]
[audio]
seconds = 0.5
test_indices = [0]
n_mels = 16
noise_snr = [10, 20]
time_shift = 0.1
freq_mask = 3
time_mask = 5
[train]
epochs = 2
batch_size = 4
early_stopping = false
""")
    assert main(["train", str(cfg), "--out", "out", "--quiet"]) == 0
    results = json.loads((workdir / "out" / "results.json").read_text())
    assert results["n_test"] == 2                            # index 0 of each class
    weights = load_file(workdir / "out" / "model.safetensors")
    assert any(k.startswith("net.augment.features") for k in weights)   # the features travel with it
    p = prepare_mod.prepare(rl.load_config(workdir / "out" / "config.toml"))
    assert p.splits["train"][0].shape[1:] == (4000,)         # waveforms; features inside the model


def test_text_run_adds_augmented_copies_and_saves_its_features(workdir):
    cfg = rl.load_config(None, ["data.dataset=rotten_tomatoes", "data.n_samples=300",
                                "model.hidden=[16]", "train.epochs=1"])
    plain = prepare_mod.prepare(cfg)
    aug = prepare_mod.prepare(rl.load_config(None, ["data.dataset=rotten_tomatoes", "data.n_samples=300",
                                                    "model.hidden=[16]", "text.copies=2",
                                                    "text.char_prob=0.1"]))
    n = len(plain.splits["train"][1])
    assert len(aug.splits["train"][1]) == 3 * n
    assert torch.equal(aug.splits["train"][1][n:], plain.splits["train"][1].repeat_interleave(2))
    assert torch.equal(aug.splits["val"][1], plain.splits["val"][1])    # validation untouched
    run = rl.train(cfg, out=workdir / "out", progress=False)
    state = json.loads((run.run_dir / "text_features.json").read_text())
    assert len(state["vocabulary"]["tokens"]) == plain.splits["train"][0].shape[1]


def test_video_run_on_generated_clips(workdir):
    root = workdir / "clips"
    rng = np.random.default_rng(0)
    for label, step in (("left", -2), ("right", 2)):
        (root / label).mkdir(parents=True)
        for i in range(4):
            frames = np.zeros((10, 32, 32, 3), np.uint8)
            x0 = int(rng.integers(8, 16))
            for t in range(10):
                x = x0 + step * t
                frames[t, 12:20, x:x + 6] = 255
            w = cv2.VideoWriter(str(root / label / f"{i}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 32))
            for f in frames:
                w.write(f)
            w.release()
    cfg = rl.load_config(None, [f'data.dataset="video:{root}"', "data.split=[0.5, 0.5, 0.0]",
                                "model.kind=cnn", "model.channels=[4]", "model.kernel_size=3",
                                "model.hidden=[8]", "video.frames=4", "video.size=[16, 16]",
                                "video.flow=true", "train.epochs=1"])
    p = prepare_mod.prepare(cfg)
    assert p.splits["train"][0].shape[1:] == (4 * 3, 16, 16)     # 4 frames x (gray + flow x, y)
    p.trainer.fit(p.loader, p.splits["val"], epochs=1)


def test_noise_from_a_file_reaches_training_batches(workdir):
    (workdir / "clips").mkdir()
    data = _tones(workdir / "clips")
    rng = np.random.default_rng(1)
    noise = (0.3 * rng.standard_normal(8000)).astype(np.float32)
    wavfile.write(workdir / "noise.wav", 8000, noise)
    cfg = rl.load_config(None, [f'data.dataset="audio:{data}"', "data.split=[0.7, 0.3, 0.0]",
                                "audio.seconds=0.5", "audio.noise_snr=0",
                                f'audio.noise_file="{workdir / "noise.wav"}"',
                                "model.kind=cnn", "model.channels=[4]", "model.kernel_size=3", "model.hidden=[8]"])
    p = prepare_mod.prepare(cfg)
    pipeline = p.trainer.model.augment.pipeline
    assert pipeline.noise.shape == (1, 8000)
    x = torch.zeros(2, 4000)
    x[:, ::2] = 0.5
    out = add_noise(x, 0.0, torch.Generator().manual_seed(0), noise=pipeline.noise)
    added = out - x                                 # a stretch of the file's noise, at 0 dB
    assert torch.allclose(added.pow(2).mean(1), x.pow(2).mean(1), rtol=1e-4)
    bad = rl.load_config(None, [f'data.dataset="audio:{data}"', "audio.seconds=0.5",
                                "data.split=[0.7, 0.3, 0.0]",
                                "audio.noise_snr=0", 'audio.noise_file="nowhere.wav"'])
    with pytest.raises(rl.ConfigError, match="audio.noise_file"):
        prepare_mod.prepare(bad)
