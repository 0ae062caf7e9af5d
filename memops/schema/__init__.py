"""The episodic-memory schema in PostgreSQL.

Versioned migrations, and the NOLOGIN role that owns the data.
"""
