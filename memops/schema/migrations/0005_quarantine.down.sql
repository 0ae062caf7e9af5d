-- Going down lifts every quarantine: refused while one is recorded.
-- memops: refuse-if-rows memory_quarantine
DROP POLICY memory_items_outside_quarantine ON memory_items;
ALTER TABLE memory_items NO FORCE ROW LEVEL SECURITY;
ALTER TABLE memory_items DISABLE ROW LEVEL SECURITY;
DROP TABLE memory_quarantine;
