"""Bench: device profiles, timing, accuracy and memory in child processes, results, plots."""
