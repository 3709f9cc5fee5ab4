-- 0002: audit records stored by AuditLog exports, and the windows exported.

CREATE TABLE audit_records (
	id           INTEGER PRIMARY KEY,
	document_id  TEXT    NOT NULL UNIQUE,  -- the platform's id: re-exports never duplicate
	account_id   TEXT    NOT NULL DEFAULT '',
	container_id TEXT    NOT NULL DEFAULT '',
	user_id      TEXT    NOT NULL DEFAULT '',
	date         INTEGER NOT NULL,         -- unix ms UTC
	type         TEXT    NOT NULL DEFAULT '',
	action       TEXT    NOT NULL DEFAULT '',
	modifier     TEXT    NOT NULL DEFAULT '',
	level        TEXT    NOT NULL DEFAULT '',
	source       TEXT    NOT NULL DEFAULT '',
	message      TEXT    NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX audit_date ON audit_records (date);
CREATE INDEX audit_user_date ON audit_records (user_id, date);
CREATE INDEX audit_type_date ON audit_records (type, date);
CREATE INDEX audit_action_date ON audit_records (action, date);
CREATE INDEX audit_modifier_date ON audit_records (modifier, date);
CREATE INDEX audit_level_date ON audit_records (level, date);
CREATE INDEX audit_source_date ON audit_records (source, date);
CREATE INDEX audit_container_date ON audit_records (container_id, date);

CREATE TABLE audit_properties (
	record_id      INTEGER NOT NULL REFERENCES audit_records (id) ON DELETE CASCADE,
	seq            INTEGER NOT NULL,       -- order within the record
	name           TEXT    NOT NULL,
	value          TEXT    NOT NULL DEFAULT '',
	previous_value TEXT    NOT NULL DEFAULT '',
	PRIMARY KEY (record_id, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX audit_properties_name_value ON audit_properties (name, value);

-- Which windows an export job wrote (for the audit coverage report).
CREATE TABLE export_windows (
	id          INTEGER PRIMARY KEY,
	job         TEXT    NOT NULL,
	object      TEXT    NOT NULL,
	window_from INTEGER NOT NULL,
	window_to   INTEGER NOT NULL,
	rows        INTEGER NOT NULL DEFAULT 0,
	run_id      INTEGER REFERENCES runs (id),
	file        TEXT    NOT NULL DEFAULT '',
	recorded_at INTEGER NOT NULL,
	UNIQUE (job, object, window_from, window_to)
) STRICT;
CREATE INDEX export_windows_object ON export_windows (object, window_from);
