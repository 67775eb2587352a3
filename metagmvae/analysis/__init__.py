"""Comparing and reporting runs: paired statistics, seed spread, the report, figures, the paper's numbers."""
