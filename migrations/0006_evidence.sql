-- 0006: failure evidence. One row per (run, kind) that runnerd fetches or
-- fetched from the platform after a run failed with an execution: the process
-- log, and the execution artifacts where the job asks. Files live under the
-- evidence directory; the row says where, how big, and how it ended.

CREATE TABLE evidence (
	id           INTEGER PRIMARY KEY,
	run_id       INTEGER NOT NULL REFERENCES runs (id),
	job          TEXT    NOT NULL,
	kind         TEXT    NOT NULL CHECK (kind IN ('log', 'artifacts')),
	execution_id TEXT    NOT NULL,
	level        TEXT    NOT NULL DEFAULT '',     -- the process log's level (log only)
	state        TEXT    NOT NULL CHECK (state IN ('pending', 'kept', 'given_up', 'pruned')),
	reason       TEXT    NOT NULL DEFAULT '',     -- pending: why it waits; given_up/pruned: why
	url          TEXT    NOT NULL DEFAULT '',     -- the platform's download link being polled
	url_at       INTEGER,                         -- when that link was made (unix ms)
	links        INTEGER NOT NULL DEFAULT 0,      -- links asked for
	polls        INTEGER NOT NULL DEFAULT 0,      -- downloads tried on the current link
	next_at      INTEGER NOT NULL,                -- pending: not before this (unix ms)
	ended_at     INTEGER NOT NULL,                -- when the run ended: the platform's purge counts from it
	path         TEXT    NOT NULL DEFAULT '',     -- kept: the file
	bytes        INTEGER NOT NULL DEFAULT 0,
	sha256       TEXT    NOT NULL DEFAULT '',
	created_at   INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL,
	UNIQUE (run_id, kind)
) STRICT;
CREATE INDEX evidence_due ON evidence (next_at) WHERE state = 'pending';
CREATE INDEX evidence_kept ON evidence (updated_at) WHERE state = 'kept';
CREATE INDEX evidence_ended ON evidence (ended_at);
