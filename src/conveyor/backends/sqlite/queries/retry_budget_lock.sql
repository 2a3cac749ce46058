-- Retry-budget decisions of one task one at a time: BEGIN IMMEDIATE already holds
-- the database's one write lock, so there is nothing more to take.
SELECT 1 AS locked
