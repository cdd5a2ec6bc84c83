"""The training engines: the ``Trainer`` (one network), populations (many networks as one
batched model), the optimizers and data-parallel training."""
