"""Versioned SQL migrations of the episodic-memory schema, applied by ``memops.schema.migrate``.

Files are ``NNNN_name.up.sql`` / ``NNNN_name.down.sql``. An applied ``up`` file
must never be edited: the runner stores its checksum and refuses to continue
when it changes. Fix a mistake with a new migration instead
(tests/test_migration_files.py pins every released file).

Comments in the files name modules as they were when each was written:
``memops.audit_owner`` is ``memops.schema.owner`` now.
"""
