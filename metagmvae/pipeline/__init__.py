"""One module per DVC stage: validate the stage's params section, call the library, write outputs.

The scripts in ``stages/`` only parse the command line and call ``run`` here.
"""
