"""Measuring on the device: the job plan, one worker process per job, timing, environment capture, plot.

The entry point is ``ddnn_deploy.bench`` (``measure.sweep.bench``); device profiles and the results
file live in ``ddnn_deploy.formats``.
"""
