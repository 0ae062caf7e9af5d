"""The PostgreSQL engine of backup sets: whole-database archives and per-namespace COPY files."""
