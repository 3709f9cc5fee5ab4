package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// qInsertAuditPG stores a page on PostgreSQL in one statement: the records
// not stored yet, then the properties of those it added, matched by the key
// the insert returned. A date is stored as unix milliseconds, rounded to the
// nearest (as SQLite's round does; PostgreSQL keeps microseconds).
const qInsertAuditPG = `WITH page AS (
		SELECT j.value AS v, j.ord,
			round(extract(epoch FROM (j.value->>'date')::timestamptz) * 1000)::bigint AS ms
		FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY j(value, ord)),
	ins AS (
		INSERT INTO audit_records
			(document_id, account_id, container_id, user_id, date, type, action, modifier, level, source, message)
		SELECT v->>'documentId', coalesce(v->>'accountId', ''), coalesce(v->>'containerId', ''),
			coalesce(v->>'userId', ''), ms, coalesce(v->>'type', ''), coalesce(v->>'action', ''),
			coalesce(v->>'modifier', ''), coalesce(v->>'level', ''), coalesce(v->>'source', ''),
			coalesce(v->>'message', '')
		FROM page ORDER BY ord
		ON CONFLICT (date, document_id) DO NOTHING
		RETURNING id, date, document_id),
	props AS (
		INSERT INTO audit_properties (record_id, seq, name, value, previous_value)
		SELECT ins.id, p.ord - 1, coalesce(p.value->>'name', ''), coalesce(p.value->>'value', ''),
			coalesce(p.value->>'previousValue', p.value->>'previousvalue', '')
		FROM page JOIN ins ON ins.date = page.ms AND ins.document_id = page.v->>'documentId'
		CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(page.v->'AuditLogProperty') = 'array'
			THEN page.v->'AuditLogProperty' ELSE '[]'::jsonb END) WITH ORDINALITY p(value, ord)
		ON CONFLICT DO NOTHING
		RETURNING 1)
	SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM props)`

// upsertAuditPG is UpsertAuditJSON on PostgreSQL. Records auditPlain is not
// sure of are checked by auditWhy, in Go, with the rules qCheckAudit has in
// SQLite.
func (db *DB) upsertAuditPG(ctx context.Context, records []json.RawMessage, page string) (int, error) {
	for i, r := range records {
		if auditPlain(r) {
			continue
		}
		if why, doc := auditWhy(r); why != "" {
			if doc != "" {
				return 0, fmt.Errorf("store: upsert audit: record %d of %d (%q) %s", i+1, len(records), doc, why)
			}
			return 0, fmt.Errorf("store: upsert audit: record %d of %d %s", i+1, len(records), why)
		}
	}
	tx, err := db.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: upsert audit: %w", err)
	}
	defer tx.Rollback()
	var added, props int64
	if err := tx.QueryRowContext(ctx, qInsertAuditPG, page).Scan(&added, &props); err != nil {
		return 0, fmt.Errorf("store: upsert audit: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("store: upsert audit: %w", err)
	}
	return int(added), nil
}

var auditRFC3339 = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$`)

// auditWhy returns why raw cannot be stored ("" if it can) and its
// documentId where it has one: qCheckAudit's rules, read from the record as
// PostgreSQL's jsonb reads it (a repeated key: the last).
func auditWhy(raw []byte) (why, doc string) {
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(raw, &rec); err != nil || rec == nil {
		return "is not a JSON object", ""
	}
	str := func(k string) (s string, isStr, present bool) {
		v, ok := rec[k]
		if !ok || string(v) == "null" {
			return "", false, ok
		}
		if json.Unmarshal(v, &s) != nil || !bytes.HasPrefix(bytes.TrimSpace(v), []byte(`"`)) {
			return "", false, true
		}
		return s, true, true
	}
	doc, isStr, _ := str("documentId")
	if !isStr || doc == "" {
		return "has no documentId", ""
	}
	date, isStr, present := str("date")
	if !isStr || !auditRFC3339.MatchString(date) || !plainRFC3339([]byte(date)) {
		// As SQLite's quote(j.value->'date') shows it.
		shown := "NULL"
		if present {
			var b bytes.Buffer
			json.Compact(&b, rec["date"])
			shown = "'" + strings.ReplaceAll(b.String(), "'", "''") + "'"
		}
		return "has no RFC 3339 date (" + shown + ")", doc
	}
	for _, k := range [...]string{"accountId", "containerId", "userId", "type", "action", "modifier", "level", "source",
		"message", "@type"} {
		if _, isStr, present := str(k); present && !isStr && string(rec[k]) != "null" {
			return "has a field that is not a string", doc
		}
	}
	props, ok := rec["AuditLogProperty"]
	if !ok || string(props) == "null" {
		return "", doc
	}
	var list []json.RawMessage
	if json.Unmarshal(props, &list) != nil {
		return "has an AuditLogProperty that is not a list", doc
	}
	for _, p := range list {
		var obj map[string]json.RawMessage
		if json.Unmarshal(p, &obj) != nil || obj == nil {
			return "has a property that is not {name, value, previousValue} strings", doc
		}
		for _, k := range [...]string{"name", "value", "previousValue", "previousvalue"} {
			v, ok := obj[k]
			if !ok || string(v) == "null" {
				continue
			}
			var s string
			if json.Unmarshal(v, &s) != nil {
				return "has a property that is not {name, value, previousValue} strings", doc
			}
		}
	}
	return "", doc
}
