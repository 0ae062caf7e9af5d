"""Migration 0005_quarantine, waiting for 0004_audit_owner.

The migrator refuses a gap in the versions, so these files move into
memops/migrations/ once 0004 is there (``git mv``); until then
``memops.rebuild.postgres_quarantine.QUARANTINE_MIGRATION`` reads them here.
"""
