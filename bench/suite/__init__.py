"""The benchmark's parts: scenarios (what runs), report (figures, table, plot); bench/run.py drives."""
