"""Typed configuration: the one way anything in regulab is configured (``regulab.config.core``)
and its sections (``regulab.config.sections``)."""

from regulab.config.core import Config, config_from_dict, load_config, parse_overrides, read_toml, to_toml
from regulab.config.sections import (ACTIVATIONS, INIT_SCHEMES, OPTIMIZERS, PREPROCESS, SECTIONS, DataConfig,
                                     EvalConfig, ModelConfig, MultitaskConfig, OptimConfig,
                                     RegularizationConfig, TrainConfig, TransferConfig)

__all__ = ["Config", "config_from_dict", "load_config", "parse_overrides", "read_toml", "to_toml",
           "ACTIVATIONS", "INIT_SCHEMES", "OPTIMIZERS", "PREPROCESS", "SECTIONS", "DataConfig",
           "EvalConfig", "ModelConfig", "MultitaskConfig", "OptimConfig", "RegularizationConfig",
           "TrainConfig", "TransferConfig"]
