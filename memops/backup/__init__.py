"""Backups of the three memory tiers into one verified set, and their restores.

One module per concern: ``artifacts`` (what a tier hands to the set), the tier
engines (``redis_tier``, ``postgres_tier``, ``qdrant_tier``), ``manifest``,
``store`` (local directory or S3), ``crypto``, ``retention``; the operations that
compose them live in ``memops/ops/backup*.py``.
"""
