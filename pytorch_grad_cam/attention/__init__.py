"""Explanations read from a transformer's attention: capture, LeGrad, rollouts, AttentionGradCAM."""
