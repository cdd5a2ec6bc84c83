"""Studies: many runs compared; fit diagnosis."""
