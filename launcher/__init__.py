"""The launcher's parts: supervision lives in run_ensemble.py, the live display here."""
