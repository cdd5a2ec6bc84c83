"""The image modality: its config section, reader, features and augmentation."""
