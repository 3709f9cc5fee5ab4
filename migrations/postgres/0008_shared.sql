-- 0008 (PostgreSQL only): what several runnerd sharing one ledger share
-- beyond the ledger itself (issue 21). SQLite's ledger has one runnerd and
-- keeps these in its memory.

-- The rate limiter's log (budget.RateState): the last starts handed out to
-- any instance, so that all of them together keep the account's rate. One
-- row, locked (SELECT … FOR UPDATE) for each start.
CREATE TABLE rate_state (
	id         BIGINT PRIMARY KEY CHECK (id = 1),
	last_sched BIGINT NOT NULL DEFAULT 0,   -- unix ms: when the latest start was due
	last_start BIGINT NOT NULL DEFAULT 0,   -- unix ms: the latest start
	starts     TEXT   NOT NULL DEFAULT '',  -- unix ms of the last starts, oldest first, comma-separated
	updated_at BIGINT NOT NULL DEFAULT 0
);
INSERT INTO rate_state (id) VALUES (1);
