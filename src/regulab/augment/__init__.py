"""Preprocessing and augmentation per modality: images, audio, text and video (``[augment.*]``)."""
