"""Training engine: the only part of taas that imports torch (entry point: recipe.run_training)."""
