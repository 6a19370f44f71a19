"""Deep Feature Factorization (1.5.x module path)."""

from pytorch_grad_cam.feature_factorization.deep_feature_factorization import (
    DeepFeatureFactorization,
    dff,
    non_negative_factorization,
    run_dff_on_image,
)

__all__ = ["DeepFeatureFactorization", "dff", "non_negative_factorization", "run_dff_on_image"]
