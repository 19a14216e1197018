"""Stage 4: sweeps of budgets and links, baselines, CSV and plots."""
