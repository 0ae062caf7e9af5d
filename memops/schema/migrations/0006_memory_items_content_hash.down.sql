DROP TRIGGER memory_items_content_hash_default ON memory_items;
DROP FUNCTION memory_items_content_hash_default();
ALTER TABLE memory_items DROP COLUMN content_hash;
