-- 0004: notification deliveries: one row per event and target once it is sent
-- or given up, and one per batch of events a full queue dropped.

CREATE TABLE notify_deliveries (
	id          INTEGER PRIMARY KEY,
	target      TEXT    NOT NULL,             -- the [[notify]] name
	event_id    TEXT    NOT NULL DEFAULT '',  -- the event's id (as sent)
	event       TEXT    NOT NULL,             -- failed | recovered | … | test; "-" for a dropped batch
	job         TEXT    NOT NULL DEFAULT '',
	run_id      INTEGER,                      -- NULL: not about a run
	event_time  INTEGER NOT NULL,             -- unix ms UTC
	finished_at INTEGER NOT NULL,             -- unix ms UTC
	attempts    INTEGER NOT NULL DEFAULT 0,
	status      TEXT    NOT NULL CHECK (status IN ('sent', 'failed', 'dropped')),
	http_status INTEGER NOT NULL DEFAULT 0,
	error       TEXT    NOT NULL DEFAULT ''   -- never a URL or a secret
) STRICT;
CREATE INDEX notify_deliveries_time ON notify_deliveries (finished_at);
CREATE INDEX notify_deliveries_status_time ON notify_deliveries (status, finished_at);
