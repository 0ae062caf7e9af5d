"""Namespace rebuild procedures (the `rebuild.*` tasks): quarantine and release here."""
