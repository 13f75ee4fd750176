"""Scoring results: R-precision and geometry against ground truth."""
