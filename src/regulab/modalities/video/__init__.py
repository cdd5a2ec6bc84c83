"""The video modality: its config section, reader, features and augmentation."""
