"""The training loop and what it needs: resume state, learning-rate schedules, checkpoint selection."""
