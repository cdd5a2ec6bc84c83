"""Layers, initialization schemes and models."""

from .init import init_tensor, init_weights
from .layers import Dropout, dropout, set_generator
from .models import CNN, MLP, LinearModel, Pipeline, build_model

__all__ = ["MLP", "CNN", "LinearModel", "Pipeline", "build_model", "Dropout", "dropout",
           "set_generator", "init_tensor", "init_weights"]
