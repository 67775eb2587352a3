"""Stage `report`: assemble metrics/report.md from the metrics of every dataset and stage.

Usage: the `report` command of dvc.yaml (`python stages/report.py --metrics metrics`).
Output: metrics/report.md (results per dataset/way/shot with the paper's values and the
baselines, paired differences against `report.baseline`, cross-way results, wall time per stage,
device, commit). `metagmvae docs` then copies its tables into README.md and docs/results.md.
"""

import sys

from metagmvae.analysis.report import main

if __name__ == "__main__":
    sys.exit(main())
