"""Developer tools, run as ``python -m metagmvae.tools.<name>``: benchmarks (``bench``), accuracy
against training time (``timecurve``, ``simclr_budget``, ``study``) and the GPU-machine job
(``device_run``). The pipeline never imports them."""
