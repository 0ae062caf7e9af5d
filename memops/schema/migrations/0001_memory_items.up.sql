-- Episodic memory: one row per remembered item, per tenant.
--
-- id is a uuid so that ids are stable across tiers (Qdrant points reuse it),
-- across restores and merges, and cannot be enumerated.
--
-- embedding is real[] because pgvector is not installable on every target.
-- The vector of record lives in Qdrant; this copy lets a rebuild re-index
-- Qdrant from PostgreSQL alone. Swap to vector(n) in a later migration once
-- pgvector is available everywhere.
--
-- superseded_by: a newer row of the SAME tenant replaces this one. The
-- composite foreign key (tenant_id, superseded_by) makes cross-tenant chains
-- impossible. ON DELETE is NO ACTION, not SET NULL: hard-deleting the newer
-- row must not silently make the older one current again (it would re-enter
-- the judge queue and resurface stale memory). A purge has to re-point or
-- delete the whole chain explicitly; NO ACTION (unlike RESTRICT) is checked at
-- the end of the statement, so deleting a whole chain in one DELETE works, and
-- the constraint can be deferred with SET CONSTRAINTS inside a transaction.
CREATE TABLE memory_items (
    id            uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id     text        NOT NULL,
    user_id       text,
    agent_id      text,
    source_kind   text        NOT NULL,
    content       text,
    embedding     real[],
    indexed_at    timestamptz,
    judge_at      timestamptz,
    superseded_by uuid,
    deleted_at    timestamptz,
    anonymized_at timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT memory_items_pkey PRIMARY KEY (id),
    -- Also the tenant index: every per-tenant scan can use its leading column.
    CONSTRAINT memory_items_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT memory_items_superseded_by_fkey
        FOREIGN KEY (tenant_id, superseded_by) REFERENCES memory_items (tenant_id, id)
        ON DELETE NO ACTION DEFERRABLE INITIALLY IMMEDIATE,
    CONSTRAINT memory_items_tenant_id_check CHECK (tenant_id <> ''),
    CONSTRAINT memory_items_not_self_superseded CHECK (superseded_by <> id),
    -- content may only be gone once the row has been anonymized.
    CONSTRAINT memory_items_content_check CHECK (content IS NOT NULL OR anonymized_at IS NOT NULL),
    CONSTRAINT memory_items_embedding_check
        CHECK (embedding IS NULL OR array_ndims(embedding) = 1)
);

COMMENT ON COLUMN memory_items.embedding IS
    'real[] (pgvector not available everywhere); Qdrant holds the vector of record';
COMMENT ON COLUMN memory_items.superseded_by IS
    'newer row of the same tenant that replaces this one (chains point old -> new)';

-- Tenant listing in time order (namespace backups, rebuilds, chats).
CREATE INDEX memory_items_tenant_created_idx ON memory_items (tenant_id, created_at);

-- Judge queue: live rows that no judge has looked at yet.
CREATE INDEX memory_items_judge_queue_idx ON memory_items (created_at, id)
    WHERE judge_at IS NULL AND deleted_at IS NULL AND superseded_by IS NULL;

-- Retention: soft-deleted rows whose content still has to be anonymized.
CREATE INDEX memory_items_retention_idx ON memory_items (deleted_at, id)
    WHERE deleted_at IS NOT NULL AND anonymized_at IS NULL;

-- Walking a chain backwards, and the FK check when a newer row is deleted.
CREATE INDEX memory_items_superseded_by_idx ON memory_items (tenant_id, superseded_by)
    WHERE superseded_by IS NOT NULL;
