"""Training: options, the loop, its run folder and checkpoints, losses and optimisers."""
