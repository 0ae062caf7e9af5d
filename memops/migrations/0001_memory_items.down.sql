-- Dropping memory_items destroys every tenant's episodic memory. Refuse when it
-- holds rows unless the runner was told to accept data loss
-- (python -m memops migrate --allow-data-loss sets memops.allow_data_loss).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM memory_items)
       AND coalesce(current_setting('memops.allow_data_loss', true), '') <> 'on' THEN
        RAISE EXCEPTION 'refusing to drop memory_items: it still holds rows'
            USING HINT = 'rerun with --allow-data-loss if destroying this data is intended';
    END IF;
END
$$;

DROP TABLE memory_items;
