"""Evaluations: a judge measured against human labels (calibration)."""
