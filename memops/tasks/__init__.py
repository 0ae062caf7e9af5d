"""Invoke task modules: thin functions that hand their options to an operation.

``tasks.py`` at the project root builds the root collection from ``stack`` and
adds each namespace module (backup, rebuild, …) here as a sub-collection.
"""
