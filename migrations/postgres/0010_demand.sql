-- 0010 (PostgreSQL only): what each instance expects to spend, so that
-- priorities span every instance's runs (issue 21). Each instance replaces
-- its row at every heartbeat with its look-ahead: the runs of the jobs it
-- holds, waiting, running or scheduled in the next 24 hours, as a JSON list
-- of {job, nominal (unix ms), priority, estimate, duration_ms}. Another
-- instance keeps their shares as it keeps its own; a row older than two
-- leases (its instance died) is left out.
CREATE TABLE demand (
	instance   TEXT   PRIMARY KEY,
	runs       TEXT   NOT NULL,
	updated_at BIGINT NOT NULL
);
