"""Run-time plumbing every layer uses: atomic files, checkpoints, the parameter schema base, device and
precision, progress bars, MLflow tracking, wall times, data-parallel set-up."""
