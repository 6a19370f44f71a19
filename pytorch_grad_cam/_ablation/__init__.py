"""AblationCAM's engine (private): which route an ablation batch takes, and the passes that run it."""
