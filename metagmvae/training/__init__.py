"""The training loop (:mod:`.loop`: optimisation, logging, validation and checkpoint selection) and
what it needs: resume state, learning-rate schedules."""
