"""One module per DVC stage: the schema of the stage's ``params.yaml`` section, and ``run``, which
takes that parsed section and the stage's paths, calls the library and writes the outputs.

The scripts in ``stages/`` only parse the command line (the paths dvc.yaml passes) and call
``run`` here (:mod:`metagmvae.pipeline.shared`).
"""
