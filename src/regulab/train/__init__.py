"""Training: the trainer loop, callbacks, metrics and checkpoints."""
