"""Layers (the dropout family and noise), initialization schemes and models."""

from regulab.nn.init import init_tensor, init_weights
from regulab.nn.layers import (DropConnect, Dropout, GaussianNoise, StochasticLayer, WeightNoise, dropout,
                               gaussian_noise, set_generator)
from regulab.nn.models import CNN, MLP, LinearModel, Pipeline, Regularizers, build_model

__all__ = ["MLP", "CNN", "LinearModel", "Pipeline", "Regularizers", "build_model", "Dropout",
           "DropConnect", "GaussianNoise", "WeightNoise", "StochasticLayer", "dropout",
           "gaussian_noise", "set_generator", "init_tensor", "init_weights"]
