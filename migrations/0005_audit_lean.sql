-- 0005: the audit store, cheaper to write (issue 16).
--
-- A record's key becomes (date, document_id) instead of document_id alone. The
-- platform's ids are random, so every page of 100 records inserted into 100
-- random leaves of a document_id index (read, dirtied, written to the WAL and
-- checkpointed again), a cost that grew with the table; records arrive in date
-- order, so a date-first key is appended to. A record's date never changes, so
-- re-exports still never duplicate, and the key also serves every date range
-- and the newest-first listing (audit_date is gone).
--
-- Of the eight per-column indexes, those on user_id and type stay (selective,
-- and what operators ask: who, which kind of change); modifier, level, source,
-- container_id and action are a few values each and answered by walking the
-- date key (BENCHMARKS.md, "audit store": each index's write cost and query
-- benefit on 1,000,000 records).
--
-- Both tables are rebuilt (SQLite cannot drop a UNIQUE constraint); the child
-- first, so that dropping the old parent cascades nothing.

CREATE TABLE audit_records_v5 (
	id           INTEGER PRIMARY KEY,
	document_id  TEXT    NOT NULL,         -- the platform's id
	account_id   TEXT    NOT NULL DEFAULT '',
	container_id TEXT    NOT NULL DEFAULT '',
	user_id      TEXT    NOT NULL DEFAULT '',
	date         INTEGER NOT NULL,         -- unix ms UTC
	type         TEXT    NOT NULL DEFAULT '',
	action       TEXT    NOT NULL DEFAULT '',
	modifier     TEXT    NOT NULL DEFAULT '',
	level        TEXT    NOT NULL DEFAULT '',
	source       TEXT    NOT NULL DEFAULT '',
	message      TEXT    NOT NULL DEFAULT '',
	UNIQUE (date, document_id)             -- re-exports never duplicate
) STRICT;
INSERT INTO audit_records_v5 (id, document_id, account_id, container_id, user_id, date, type, action, modifier,
	level, source, message)
SELECT id, document_id, account_id, container_id, user_id, date, type, action, modifier, level, source, message
FROM audit_records;

CREATE TABLE audit_properties_v5 (
	record_id      INTEGER NOT NULL REFERENCES audit_records_v5 (id) ON DELETE CASCADE,
	seq            INTEGER NOT NULL,       -- order within the record
	name           TEXT    NOT NULL,
	value          TEXT    NOT NULL DEFAULT '',
	previous_value TEXT    NOT NULL DEFAULT '',
	PRIMARY KEY (record_id, seq)
) STRICT, WITHOUT ROWID;
INSERT INTO audit_properties_v5 SELECT record_id, seq, name, value, previous_value FROM audit_properties;

DROP TABLE audit_properties;
DROP TABLE audit_records;
ALTER TABLE audit_records_v5 RENAME TO audit_records;       -- audit_properties_v5's reference follows
ALTER TABLE audit_properties_v5 RENAME TO audit_properties;

CREATE INDEX audit_user_date ON audit_records (user_id, date);
CREATE INDEX audit_type_date ON audit_records (type, date);
CREATE INDEX audit_properties_name_value ON audit_properties (name, value);
