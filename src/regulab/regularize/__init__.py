"""Regularizers: norm penalties added to the loss, max-norm constraints, an EMA of the weights,
and dropout evaluated as an ensemble (Monte-Carlo, exact enumeration)."""

from regulab.regularize.constraints import MaxNorm, max_norm_
from regulab.regularize.ema import EMA, EMACallback
from regulab.regularize.mc_dropout import (exact_dropout_ensemble, geometric_mean, mc_predict, sampling,
                                           weight_scaling_predict)
from regulab.regularize.penalties import NormPenalty, l1_penalty, l2_penalty, selected_parameters

__all__ = ["NormPenalty", "l1_penalty", "l2_penalty", "selected_parameters", "MaxNorm", "max_norm_",
           "EMA", "EMACallback", "mc_predict", "sampling", "weight_scaling_predict", "geometric_mean",
           "exact_dropout_ensemble"]
