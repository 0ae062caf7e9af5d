DROP TRIGGER memory_items_no_truncate ON memory_items;
DROP FUNCTION memory_items_no_truncate();
