-- Dropping memory_items destroys every tenant's episodic memory: the runner refuses
-- while it holds rows, unless told to accept data loss (migrate --allow-data-loss).
-- memops: refuse-if-rows memory_items
DROP TABLE memory_items;
