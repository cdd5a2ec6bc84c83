"""Modalities: images, audio, text and video, each with its config section, reader, features
and augmentation."""
