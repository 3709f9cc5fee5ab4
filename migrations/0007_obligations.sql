-- 0007: resume obligations of releases. A row is written, and committed,
-- before a release pauses anything on the platform (a process's schedules on
-- a runtime, a listener), and closed only once the resume was accepted: a
-- crash between the two leaves it open, and the next start resumes it before
-- anything else runs.

CREATE TABLE obligations (
	id          INTEGER PRIMARY KEY,
	run_id      INTEGER NOT NULL REFERENCES runs (id),
	job         TEXT    NOT NULL,
	kind        TEXT    NOT NULL CHECK (kind IN ('schedule', 'listener')),
	container   TEXT    NOT NULL,              -- the runtime (atom) id
	process_id  TEXT    NOT NULL,              -- schedule: the process; listener: the listener process
	object_id   TEXT    NOT NULL DEFAULT '',   -- schedule: the ProcessScheduleStatus id
	state       TEXT    NOT NULL CHECK (state IN ('open', 'done')),
	attempts    INTEGER NOT NULL DEFAULT 0,    -- resumes tried
	error       TEXT    NOT NULL DEFAULT '',   -- the last resume's error
	created_at  INTEGER NOT NULL,
	done_at     INTEGER
) STRICT;
CREATE INDEX obligations_open ON obligations (job) WHERE state = 'open';
