-- 0009 (PostgreSQL only): several runnerd on one ledger, each job run by one
-- of them at a time (issue 21). Times are the server's clock (unix ms), so
-- that hosts whose clocks differ agree on when a lease ends.

-- The runnerd that use this ledger: one row each, kept up by its heartbeat.
CREATE TABLE instances (
	name         TEXT   PRIMARY KEY,          -- [store] instance (default: the host name)
	host         TEXT   NOT NULL DEFAULT '',
	pid          BIGINT NOT NULL DEFAULT 0,
	started_at   BIGINT NOT NULL,
	heartbeat_at BIGINT NOT NULL,
	stopped_at   BIGINT                        -- set by a clean stop; NULL while running (or killed)
);

-- Who runs each job. An instance renews its leases with every heartbeat; a
-- lease that ran out may be taken by any instance that has the job. A call
-- is recorded (and so sent) for a job only by the instance holding its lease
-- (BeginCall checks it in the same transaction).
CREATE TABLE leases (
	job         TEXT   PRIMARY KEY,
	instance    TEXT   NOT NULL,
	acquired_at BIGINT NOT NULL,
	expires_at  BIGINT NOT NULL
);
CREATE INDEX leases_instance ON leases (instance);

-- Which instance began each call: every connection of a runnerd names it in
-- application_name (store.Options.Instance), and the column takes it from
-- there, so the statements stay the SQLite ledger's. Calls begun before
-- 0009 (or by a session without one) have ''.
ALTER TABLE calls ADD COLUMN instance TEXT NOT NULL DEFAULT current_setting('application_name');
