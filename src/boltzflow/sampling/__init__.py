"""Sampling and reweighting: log weights, ESS, resampling, the ``Samples`` container."""

from __future__ import annotations

from .draw import draw
from .reweight import (
    FEW_EFFECTIVE_SAMPLES,
    HEAVY_TAIL_INDEX,
    ESSInterval,
    clip_log_weights,
    effective_sample_size,
    effective_sample_size_clipped,
    effective_sample_size_interval,
    few_effective_samples,
    heavy_tail,
    largest_weight,
    log_weight_spread,
    log_weights,
    resample_multinomial,
    resample_systematic,
)
from .samples import Samples

__all__ = [
    "ESSInterval",
    "FEW_EFFECTIVE_SAMPLES",
    "HEAVY_TAIL_INDEX",
    "Samples",
    "clip_log_weights",
    "draw",
    "effective_sample_size",
    "effective_sample_size_clipped",
    "effective_sample_size_interval",
    "few_effective_samples",
    "heavy_tail",
    "largest_weight",
    "log_weight_spread",
    "log_weights",
    "resample_multinomial",
    "resample_systematic",
]
