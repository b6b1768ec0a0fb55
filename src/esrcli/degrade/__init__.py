"""Real-ESRGAN's high-order degradation model: random kernels, the pipeline, the pair pool."""

from esrcli.degrade.pipeline import degrade, degrade_with_params, paired_random_crop, sample_params, synthesize_pairs
from esrcli.degrade.pool import PairPool

__all__ = ["degrade", "degrade_with_params", "paired_random_crop", "sample_params", "synthesize_pairs", "PairPool"]
