"""Evals: suites of cases run as company runs, scored by hidden acceptance tests (see runner.py)."""
