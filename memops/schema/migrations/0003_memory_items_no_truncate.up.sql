-- memory_items is never truncated: chats reference its rows, and a TRUNCATE
-- bypasses soft deletion, the supersede chains and retention. Removing data is
-- a per-row, per-tenant operation (soft delete, then anonymize).
CREATE FUNCTION memory_items_no_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'memory_items is never truncated: chats reference its rows'
        USING ERRCODE = 'restrict_violation',
              HINT = 'soft-delete rows per tenant (deleted_at) and let retention anonymize them';
END
$$;

CREATE TRIGGER memory_items_no_truncate
    BEFORE TRUNCATE ON memory_items
    FOR EACH STATEMENT EXECUTE FUNCTION memory_items_no_truncate();

ALTER TABLE memory_items ENABLE ALWAYS TRIGGER memory_items_no_truncate;
