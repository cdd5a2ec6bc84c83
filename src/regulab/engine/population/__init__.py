"""Population training: K networks of one architecture as one batched model."""
