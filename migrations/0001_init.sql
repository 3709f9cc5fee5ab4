-- 0001: the ledger. Times are UTC unix milliseconds (INTEGER); NULL means
-- "not yet". Booleans are 0/1.

-- Per-job state persisted between restarts.
CREATE TABLE jobs (
	name         TEXT    PRIMARY KEY,
	paused       INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
	last_nominal INTEGER,          -- the last slot handled; only moves forward
	watermark    INTEGER,          -- exports: end of the last window safely on disk
	updated_at   INTEGER NOT NULL
) STRICT;

-- One row per scheduled occurrence; (job, nominal_time) can never be started twice.
CREATE TABLE runs (
	id           INTEGER PRIMARY KEY,
	job          TEXT    NOT NULL,
	kind         TEXT    NOT NULL DEFAULT '',
	nominal_time INTEGER NOT NULL,
	state        TEXT    NOT NULL CHECK (state IN ('planned', 'admitted', 'running', 'succeeded', 'failed',
	                                               'deferred', 'missed', 'unknown', 'skipped')),
	reason       TEXT    NOT NULL DEFAULT '',
	not_before   INTEGER,
	estimate     INTEGER NOT NULL DEFAULT 0,
	calls        INTEGER NOT NULL DEFAULT 0,   -- bumped by every call begun for the run, same transaction
	attempt      INTEGER NOT NULL DEFAULT 0,
	started_at   INTEGER,
	finished_at  INTEGER,
	error        TEXT    NOT NULL DEFAULT '',
	detail       TEXT    NOT NULL DEFAULT '',  -- kind-specific JSON
	created_at   INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL,
	UNIQUE (job, nominal_time)                 -- also serves "runs of job J, newest first"
) STRICT;
CREATE INDEX runs_nominal ON runs (nominal_time);
CREATE INDEX runs_state ON runs (state, nominal_time);

-- One row per HTTP attempt, committed before the first byte is sent.
-- Never headers; never bodies beyond the capped error excerpt.
CREATE TABLE calls (
	id          INTEGER PRIMARY KEY,
	run_id      INTEGER REFERENCES runs (id),  -- NULL: not part of a run
	job         TEXT    NOT NULL DEFAULT '',
	request_id  TEXT    UNIQUE,                -- X-Runnerd-Request-Id; NULL if none was given
	operation   TEXT    NOT NULL DEFAULT '',
	method      TEXT    NOT NULL DEFAULT '',
	path        TEXT    NOT NULL DEFAULT '',
	safe        INTEGER NOT NULL DEFAULT 0 CHECK (safe IN (0, 1)),
	recovery    INTEGER NOT NULL DEFAULT 0 CHECK (recovery IN (0, 1)),
	attempt     INTEGER NOT NULL DEFAULT 0,
	started_at  INTEGER NOT NULL,
	finished_at INTEGER,                       -- NULL while open (sent, not answered)
	status      INTEGER NOT NULL DEFAULT 0,    -- 0: no answer
	duration_ms INTEGER NOT NULL DEFAULT 0,
	bytes       INTEGER NOT NULL DEFAULT 0,
	error       TEXT    NOT NULL DEFAULT '',   -- capped at 1 KiB
	platform_id TEXT    NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX calls_started ON calls (started_at);             -- calls -since, prune
CREATE INDEX calls_job_started ON calls (job, started_at);    -- calls -job
CREATE INDEX calls_status_started ON calls (status, started_at); -- calls -status
CREATE INDEX calls_run ON calls (run_id);                     -- calls of a run
CREATE INDEX calls_open ON calls (run_id, started_at) WHERE finished_at IS NULL; -- reconciliation

-- Calls begun per UTC hour (hour = start of the hour, unix ms), kept in step
-- with calls in the same transaction and kept when calls are pruned. The
-- budget reads this, so its cost does not grow with the number of calls.
CREATE TABLE hourly_usage (
	hour  INTEGER PRIMARY KEY,
	calls INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Small daemon facts (e.g. the budget's 503 classification).
CREATE TABLE meta (
	key        TEXT    PRIMARY KEY,
	value      TEXT    NOT NULL,
	updated_at INTEGER NOT NULL
) STRICT;
