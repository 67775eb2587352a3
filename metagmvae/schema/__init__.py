"""The schema of ``params.yaml``: one pydantic model per section, each key defined once (type,
default, check, help), importable without torch, so a parameter file is checked in well under a
second."""
