"""The audio modality: its config section, reader, features and augmentation."""
