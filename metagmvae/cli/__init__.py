"""The ``metagmvae`` command line and the parameter tools (validate, profile, generated docs)."""
