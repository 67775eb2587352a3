"""Few-shot evaluation on fixed episodes: accuracies, confidence intervals, per-episode results."""
