"""The text modality: its config section, reader, features and augmentation."""
