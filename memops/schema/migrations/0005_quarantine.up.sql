-- Namespace quarantine (invoke rebuild.quarantine NS --tier postgresql).
--
-- A tenant listed in memory_quarantine is invisible to the application role: its
-- memory_items rows can be neither read nor written (a SELECT, UPDATE or DELETE
-- sees no row of it, an INSERT or an UPDATE into it fails with a row-level
-- security error). Quarantine is one INSERT here and release one DELETE; no row of
-- memory_items changes, and the record survives a re-deploy as data.
--
-- The application role owns memory_items, and owners skip row security unless it
-- is FORCEd, hence FORCE. memops connects as postgresql_ops_user (BYPASSRLS, a
-- member of the application role), so its backups, restores and rebuilds still
-- see every row; pg_dump, which runs with row_security off, would fail otherwise.
-- Foreign-key checks run without row security, so chains stay checked.
--
-- The owner could still turn this off (ALTER TABLE ... NO FORCE ROW LEVEL
-- SECURITY): quarantine keeps a well-behaved application out of a namespace; it
-- is not a wall against a hostile one while the application role owns the table.
CREATE TABLE memory_quarantine (
    tenant_id text        NOT NULL,
    since     timestamptz NOT NULL DEFAULT now(),
    actor     text        NOT NULL,
    CONSTRAINT memory_quarantine_pkey PRIMARY KEY (tenant_id),
    CONSTRAINT memory_quarantine_tenant_id_check CHECK (tenant_id <> ''),
    CONSTRAINT memory_quarantine_actor_check CHECK (actor <> '')
);

ALTER TABLE memory_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_items FORCE ROW LEVEL SECURITY;

CREATE POLICY memory_items_outside_quarantine ON memory_items
    USING (NOT EXISTS (SELECT FROM memory_quarantine q WHERE q.tenant_id = memory_items.tenant_id))
    WITH CHECK (NOT EXISTS (SELECT FROM memory_quarantine q WHERE q.tenant_id = memory_items.tenant_id));
