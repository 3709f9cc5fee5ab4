-- PostgreSQL twin of ../0003_claims.sql: the same tables, columns and keys, with
-- PostgreSQL's types (BIGINT for SQLite's INTEGER; identity columns for ids).

-- 0003: claims of platform objects by runs. After a crash, reconciliation
-- finds the execution or deployment an unknown run started by lookup; one
-- platform object can satisfy only one run, so a claim is unique on it.

CREATE TABLE claims (
	platform_id TEXT    PRIMARY KEY,           -- executionId or deploymentId
	kind        TEXT    NOT NULL DEFAULT '',    -- execution | deployment
	run_id      BIGINT  NOT NULL REFERENCES runs (id),
	claimed_at  BIGINT  NOT NULL
);
CREATE INDEX claims_run ON claims (run_id);
