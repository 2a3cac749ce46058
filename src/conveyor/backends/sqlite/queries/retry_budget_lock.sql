-- Retry-budget decisions of one task one at a time: BEGIN IMMEDIATE already holds
-- the database's one write lock, so there is nothing more to take. The clock, read
-- under the lock, places this transaction's counts.
SELECT :now AS now
