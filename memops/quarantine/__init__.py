"""Quarantine and release of one namespace: the procedure, its record, and one module per tier."""
