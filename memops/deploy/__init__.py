"""Deploying: inventories, running playbooks, and what a deploy leaves behind.

targets.json (where each component listens), the Qdrant stand-in archive, and
the application's Qdrant token.
"""
