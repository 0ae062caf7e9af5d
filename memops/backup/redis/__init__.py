"""The Redis engine of backup sets: whole RDB backups, per-namespace exports and their restores."""
