-- Every row's content carries its sha256 (hex), so that rebuild.validate can tell
-- a row whose content changed behind the writer's back (a hand-written UPDATE, a bad
-- import, a damaged restore) from a good one: content_hash_mismatch.
--
-- Writers set it with the content (the workload generator does, as in Redis
-- values). A row inserted without one gets the hash of the content it arrives
-- with, so a writer that knows nothing of hashes still produces verifiable rows.
-- Nothing recomputes it on UPDATE: that is the point. A writer that changes
-- content changes content_hash in the same statement.
--
-- Rows that exist when this runs get the hash of the content they hold now: the
-- baseline from which later changes are detected.
ALTER TABLE memory_items ADD COLUMN content_hash text;
ALTER TABLE memory_items ADD CONSTRAINT memory_items_content_hash_check
    CHECK (content_hash IS NULL OR content_hash ~ '^[0-9a-f]{64}$');

COMMENT ON COLUMN memory_items.content_hash IS
    'sha256 (hex) of content, set by its writer; filled on INSERT when missing, never recomputed';

CREATE FUNCTION memory_items_content_hash_default() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.content_hash IS NULL AND NEW.content IS NOT NULL THEN
        NEW.content_hash := encode(sha256(convert_to(NEW.content, 'UTF8')), 'hex');
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER memory_items_content_hash_default
    BEFORE INSERT ON memory_items
    FOR EACH ROW EXECUTE FUNCTION memory_items_content_hash_default();

UPDATE memory_items SET content_hash = encode(sha256(convert_to(content, 'UTF8')), 'hex')
    WHERE content IS NOT NULL;
