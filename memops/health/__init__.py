"""Health: one probe cycle over the stack, its state across runs and its metrics.

The rollout gates (``rollout``) are judged from the history these cycles keep.
"""
