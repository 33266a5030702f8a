"""The launcher's parts: run_ensemble.py is its command line; the processes it starts
(processes.py), their supervision (supervisor.py), the run's report (report.py), the checks before
a launch (check.py) and the live display (status.py) live here."""
