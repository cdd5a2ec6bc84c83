"""Population training: K networks of one architecture as one batched model.

``stacked`` (the stacked network and its flat parameters), ``functional`` (a user's network run
for all members at once with ``torch.func``), ``optimizer`` (the stacked optimizer step),
``population`` (the training loop over members' trainers) and ``eligibility`` (which configs
may stack, derived from the config keys' tags)."""
