"""The memory the stack holds, as memops reads and writes it.

Value envelopes, Redis scans, Qdrant points, the supersede lifecycle, recall checks.
"""
