-- PostgreSQL twin of ../0005_audit_lean.sql: the same tables, columns and keys, with
-- PostgreSQL's types (BIGINT for SQLite's INTEGER; identity columns for ids).

-- Nothing to do: postgres/0002_audit.sql creates the audit store in the shape
-- SQLite's 0005 rebuilds it into. The version is kept so that a schema version
-- means the same tables in both.
SELECT 1;
