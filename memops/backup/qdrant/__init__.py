"""The Qdrant engine of backup sets: collection snapshots and per-namespace point exports."""
