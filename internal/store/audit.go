package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// AuditRecord is one AuditLog entry stored by an export job. DocumentID, the
// platform's id, is unique: exporting the same window again adds nothing.
type AuditRecord struct {
	DocumentID, AccountID, ContainerID, UserID string
	Date                                       time.Time
	Type, Action, Modifier, Level, Source      string
	Message                                    string
	Properties                                 []AuditProperty
}

// AuditProperty is one name/value pair of an AuditRecord.
type AuditProperty struct {
	Name, Value, PreviousValue string
}

// The audit store is written a page at a time, and SQLite reads the page's
// JSON itself (json_each): one statement inserts the records, one their
// properties, whatever the page's size, and one checks every record when
// auditPlain, in Go, is not sure of them all (the platform's records are
// plain; the check cost a third of an export's CPU). Decoding each
// record in Go and inserting it row by row cost ten times as much (issue 16:
// three decodes of every record and ~300 statements, each through
// database/sql and cgo, per 100-record page).
//
// A record is keyed by (date, document_id): the platform's id with the date
// that never changes for it (migration 0005). A date is stored as unix
// milliseconds; fractional seconds beyond the millisecond round to the
// nearest (SQLite's date arithmetic).
const (
	// auditDateMS is a record's date as unix milliseconds, NULL if it is not
	// a time SQLite can read.
	auditDateMS = `CAST(round(unixepoch(j.value->>'date', 'subsec') * 1000) AS INTEGER)`

	// qCheckAudit finds the first record of a page that cannot be stored,
	// with the reason: the same rules as decoding atomsphere-api.md 4.2's
	// AuditLog into Go strings (a field may be missing or null, never a
	// number or an object), a documentId, and an RFC 3339 date: digits where
	// RFC 3339 has them, Z or a ±hh:mm offset, a real calendar date and time
	// (the strftime round trip refuses February 30th and 24:00).
	//
	// jsonb_each hands each record over as JSONB, so that the many ->>
	// lookups per record read the binary form instead of parsing the
	// record's text again each time.
	qCheckAudit = `SELECT j.key, CASE
		WHEN j.type IS NOT 'object' THEN 'is not a JSON object'
		WHEN json_type(j.value, '$.documentId') IS NOT 'text' OR j.value->>'documentId' = '' THEN 'has no documentId'
		WHEN json_type(j.value, '$.date') IS NOT 'text' OR NOT (SELECT
				d GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]*'
				AND (z = 1 OR z = 6 AND substr(d, -6) GLOB '[+-][0-9][0-9]:[0-9][0-9]')
				AND (length(d) = 19 + z OR substr(d, 20, 1) = '.' AND length(d) > 20 + z
					AND substr(d, 21, length(d) - 20 - z) NOT GLOB '*[^0-9]*')
				AND unixepoch(d, 'subsec') IS NOT NULL
				AND strftime('%Y-%m-%dT%H:%M:%S', substr(d, 1, 19)) IS substr(d, 1, 19)
				FROM (SELECT j.value->>'date' AS d, CASE WHEN j.value->>'date' GLOB '*Z' THEN 1 ELSE 6 END AS z))
			THEN 'has no RFC 3339 date (' || quote(j.value->'date') || ')'
		WHEN (SELECT count(*) FROM jsonb_each(j.value) f WHERE f.key IN ('accountId', 'containerId', 'userId', 'type',
			'action', 'modifier', 'level', 'source', 'message', '@type') AND f.type NOT IN ('text', 'null')) > 0
			THEN 'has a field that is not a string'
		WHEN coalesce(json_type(j.value, '$.AuditLogProperty'), 'null') NOT IN ('array', 'null')
			THEN 'has an AuditLogProperty that is not a list'
		WHEN json_type(j.value, '$.AuditLogProperty') = 'array' AND (SELECT count(*)
			FROM jsonb_each(j.value, '$.AuditLogProperty') p WHERE p.type IS NOT 'object'
			OR (SELECT count(*) FROM jsonb_each(p.value) f WHERE f.key IN ('name', 'value', 'previousValue', 'previousvalue')
				AND f.type NOT IN ('text', 'null')) > 0) > 0
			THEN 'has a property that is not {name, value, previousValue} strings'
		END AS why, j.value->>'documentId'
		FROM jsonb_each(?1) j WHERE why IS NOT NULL LIMIT 1`

	// qInsertNewAudit stores a page none of whose records is stored yet,
	// record i of the page (from 0) with the id ?2 + i + 1, ?2 being the
	// highest id before the page, so that its properties are matched to it
	// by id (qInsertNewAuditProperties) instead of by its key. If some record
	// was stored already, the page is undone and stored by qInsertAudit: ids
	// stay dense (probeProperty counts records by the highest).
	qInsertNewAudit = `INSERT INTO audit_records
		(id, document_id, account_id, container_id, user_id, date, type, action, modifier, level, source, message)
		SELECT ?2 + j.key + 1, ` + auditColumns + `
		FROM jsonb_each(?1) j WHERE true
		ON CONFLICT (date, document_id) DO NOTHING`

	qInsertNewAuditProperties = `INSERT INTO audit_properties (record_id, seq, name, value, previous_value)
		SELECT ?2 + j.key + 1, ` + auditPropertyColumns + `
		FROM jsonb_each(?1) j
		JOIN jsonb_each(j.value, '$.AuditLogProperty') p
		WHERE json_type(j.value, '$.AuditLogProperty') = 'array'`

	// qInsertAudit stores the page's records not stored yet.
	qInsertAudit = `INSERT INTO audit_records
		(document_id, account_id, container_id, user_id, date, type, action, modifier, level, source, message)
		SELECT ` + auditColumns + `
		FROM jsonb_each(?1) j WHERE true
		ON CONFLICT (date, document_id) DO NOTHING`

	// qInsertAuditProperties stores the properties of the records
	// qInsertAudit added (those with an id above ?2, the highest before it).
	qInsertAuditProperties = `INSERT INTO audit_properties (record_id, seq, name, value, previous_value)
		SELECT r.id, ` + auditPropertyColumns + `
		FROM jsonb_each(?1) j
		JOIN audit_records r ON r.date = ` + auditDateMS + ` AND r.document_id = j.value->>'documentId'
		JOIN jsonb_each(j.value, '$.AuditLogProperty') p
		WHERE r.id > ?2 AND json_type(j.value, '$.AuditLogProperty') = 'array'
		ON CONFLICT DO NOTHING`

	// auditColumns are a record's columns read from its JSON (j.value).
	auditColumns = `j.value->>'documentId', coalesce(j.value->>'accountId', ''),
			coalesce(j.value->>'containerId', ''), coalesce(j.value->>'userId', ''), ` + auditDateMS + `,
			coalesce(j.value->>'type', ''), coalesce(j.value->>'action', ''), coalesce(j.value->>'modifier', ''),
			coalesce(j.value->>'level', ''), coalesce(j.value->>'source', ''), coalesce(j.value->>'message', '')`

	// auditPropertyColumns are a property's columns read from its JSON
	// (p.key its position, p.value the object).
	auditPropertyColumns = `p.key, coalesce(p.value->>'name', ''), coalesce(p.value->>'value', ''),
			coalesce(p.value->>'previousValue', p.value->>'previousvalue', '')`

	qMaxAuditID = `SELECT coalesce(max(id), 0) FROM audit_records`
)

// UpsertAuditJSON stores a page of AuditLog records, each the platform's JSON
// object (atomsphere-api.md 4.2), in one transaction, and returns how many
// were new. A record already stored is left as it is (audit entries do not
// change), so re-exports never duplicate. A record that cannot be stored (no
// documentId, no RFC 3339 date, a field of the wrong type) fails the whole
// page with an error naming it; nothing of the page is stored.
func (db *DB) UpsertAuditJSON(ctx context.Context, records []json.RawMessage) (inserted int, err error) {
	if len(records) == 0 {
		return 0, nil
	}
	n := 2 + len(records) - 1
	for _, r := range records {
		n += len(r)
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, r := range records {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r...)
	}
	page := string(append(b, ']'))
	if db.pg {
		return db.upsertAuditPG(ctx, records, page)
	}

	tx, err := db.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: upsert audit: %w", err)
	}
	defer tx.Rollback()
	plain := true
	for _, r := range records {
		if !auditPlain(r) {
			plain = false
			break
		}
	}
	if !plain {
		var (
			bad      int
			why      string
			document sql.NullString
		)
		switch err := tx.queryRow(ctx, qCheckAudit, page).Scan(&bad, &why, &document); {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return 0, fmt.Errorf("store: upsert audit: %w", err)
		case document.String != "":
			return 0, fmt.Errorf("store: upsert audit: record %d of %d (%q) %s", bad+1, len(records), document.String, why)
		default:
			return 0, fmt.Errorf("store: upsert audit: record %d of %d %s", bad+1, len(records), why)
		}
	}
	var before int64
	if err := tx.queryRow(ctx, qMaxAuditID).Scan(&before); err != nil {
		return 0, fmt.Errorf("store: upsert audit: %w", err)
	}
	added, err := db.insertAudit(ctx, tx, page, before, len(records))
	if err != nil {
		return 0, fmt.Errorf("store: upsert audit: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("store: upsert audit: %w", err)
	}
	return int(added), nil
}

// insertAudit stores the n records of page (a JSON list) and their
// properties, and returns how many were new. before is the highest record id.
func (db *DB) insertAudit(ctx context.Context, tx *tx, page string, before int64, n int) (int64, error) {
	if _, err := tx.exec(ctx, "SAVEPOINT audit_page"); err != nil {
		return 0, err
	}
	res, err := tx.exec(ctx, qInsertNewAudit, page, before)
	if err != nil {
		return 0, err
	}
	added, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	if added == int64(n) {
		if _, err := tx.exec(ctx, qInsertNewAuditProperties, page, before); err != nil {
			return 0, fmt.Errorf("properties: %w", err)
		}
		_, err := tx.exec(ctx, "RELEASE audit_page")
		return added, err
	}
	// Some record is stored already (a window exported again): undo, and
	// store the new ones by key.
	if _, err := tx.exec(ctx, "ROLLBACK TO audit_page"); err != nil {
		return 0, err
	}
	if _, err := tx.exec(ctx, "RELEASE audit_page"); err != nil {
		return 0, err
	}
	if res, err = tx.exec(ctx, qInsertAudit, page); err != nil {
		return 0, err
	}
	if added, err = res.RowsAffected(); err != nil || added == 0 {
		return added, err
	}
	if _, err := tx.exec(ctx, qInsertAuditProperties, page, before); err != nil {
		return 0, fmt.Errorf("properties: %w", err)
	}
	return added, nil
}

// UpsertAudit stores recs as UpsertAuditJSON does (it encodes them as the
// platform's AuditLog objects).
func (db *DB) UpsertAudit(ctx context.Context, recs []AuditRecord) (inserted int, err error) {
	raws := make([]json.RawMessage, len(recs))
	for i, r := range recs {
		type property struct {
			Name          string `json:"name"`
			Value         string `json:"value"`
			PreviousValue string `json:"previousValue"`
		}
		props := make([]property, len(r.Properties))
		for i, p := range r.Properties {
			props[i] = property(p)
		}
		date := ""
		if !r.Date.IsZero() {
			date = r.Date.UTC().Format(time.RFC3339Nano)
		}
		raw, err := json.Marshal(struct {
			DocumentID  string     `json:"documentId"`
			AccountID   string     `json:"accountId"`
			ContainerID string     `json:"containerId"`
			UserID      string     `json:"userId"`
			Date        string     `json:"date"`
			Type        string     `json:"type"`
			Action      string     `json:"action"`
			Modifier    string     `json:"modifier"`
			Level       string     `json:"level"`
			Source      string     `json:"source"`
			Message     string     `json:"message"`
			Properties  []property `json:"AuditLogProperty"`
		}{r.DocumentID, r.AccountID, r.ContainerID, r.UserID, date, r.Type, r.Action, r.Modifier, r.Level, r.Source,
			r.Message, props})
		if err != nil {
			return 0, fmt.Errorf("store: upsert audit %q: %w", r.DocumentID, err)
		}
		raws[i] = raw
	}
	return db.UpsertAuditJSON(ctx, raws)
}

// AuditFilter selects audit records for ListAudit and CountAudit. Zero fields
// do not filter; string fields match exactly. Property and PropertyValue
// select records having a property of that name (and value, if given).
type AuditFilter struct {
	UserID, Type, Action, Modifier, Level, Source, ContainerID string
	// Actions selects records whose action is any of these (ANDed with Action).
	Actions                 []string
	Property, PropertyValue string
	// Text selects records whose message contains it, ASCII letters compared
	// case-insensitively (SQLite LIKE); other characters match exactly.
	Text         string
	Since, Until time.Time // Since <= date < Until
	Newest       bool      // newest first; default oldest first (a log reads forwards); one millisecond's by documentId
	Limit        int       // 0: no limit
}

// escapeLike escapes LIKE's wildcards (% and _) and the escape character itself.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// where returns f's WHERE clause ("" for none) and its arguments. A property
// filter is written as "id IN (the records having it)", or with probe as an
// EXISTS test of each candidate record: see ListAudit.
func (f AuditFilter) where(probe bool) (string, []any, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, v string }{
		{"user_id", f.UserID}, {"type", f.Type}, {"action", f.Action}, {"modifier", f.Modifier},
		{"level", f.Level}, {"source", f.Source}, {"container_id", f.ContainerID},
	} {
		if c.v != "" {
			where, args = append(where, c.col+" = ?"), append(args, c.v)
		}
	}
	if len(f.Actions) > 0 {
		where = append(where, "action IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(f.Actions)), ", ")+")")
		for _, a := range f.Actions {
			args = append(args, a)
		}
	}
	if !f.Since.IsZero() {
		where, args = append(where, "date >= ?"), append(args, f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		where, args = append(where, "date < ?"), append(args, f.Until.UnixMilli())
	}
	if f.Property != "" {
		props := "SELECT record_id FROM audit_properties WHERE name = ?"
		args = append(args, f.Property)
		if f.PropertyValue != "" {
			props += " AND value = ?"
			args = append(args, f.PropertyValue)
		}
		if probe {
			where = append(where, "EXISTS ("+props+" AND record_id = audit_records.id)")
		} else {
			where = append(where, "id IN ("+props+")")
		}
	} else if f.PropertyValue != "" {
		return "", nil, fmt.Errorf("a property value needs a property name")
	}
	if f.Text != "" {
		where = append(where, `message LIKE ? ESCAPE '\'`)
		args = append(args, "%"+escapeLike(f.Text)+"%")
	}
	if len(where) == 0 {
		return "", args, nil
	}
	return " WHERE " + strings.Join(where, " AND "), args, nil
}

// CountAudit returns how many stored audit records match f (f.Limit and
// f.Newest are ignored).
func (db *DB) CountAudit(ctx context.Context, f AuditFilter) (int, error) {
	w, args, err := f.where(false)
	if err != nil {
		return 0, fmt.Errorf("store: count audit: %w", err)
	}
	var n int
	if err := db.reader.QueryRowContext(ctx, `SELECT count(*) FROM audit_records`+w, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count audit: %w", err)
	}
	return n, nil
}

// probeProperty decides how a limited query filters on a property. "id IN
// (records having it)" reads every such record and sorts them by date: cheap
// for a rare property, slow for a common one (100,000 of 1,000,000 records:
// 0.7 s). Testing each record while walking the date index newest first stops
// after Limit matches: about Limit × records / matches steps, cheap for a
// common property and a full scan for a rare one. The walk is chosen when it
// is expected to take fewer steps: matches² > Limit × records. Both counts
// come from indexes (the property index, the largest record id).
func (db *DB) probeProperty(ctx context.Context, f AuditFilter) (bool, error) {
	if f.Property == "" || f.Limit <= 0 {
		return false, nil
	}
	q, args := `SELECT count(*) FROM audit_properties WHERE name = ?`, []any{f.Property}
	if f.PropertyValue != "" {
		q, args = q+` AND value = ?`, append(args, f.PropertyValue)
	}
	var matches, records int64
	if err := db.reader.QueryRowContext(ctx, q, args...).Scan(&matches); err != nil {
		return false, err
	}
	if err := db.reader.QueryRowContext(ctx, qAuditRecordCount).Scan(&records); err != nil {
		return false, err
	}
	return matches*matches > int64(f.Limit)*records, nil
}

// qAuditRecordCount is about how many records are stored, read from an
// index: the highest id in SQLite (ids are dense there), the planner's
// statistics in PostgreSQL (a sequence skips the ids of conflicting inserts),
// the highest id until the table was first analysed.
var qAuditRecordCount = pgQuery(`SELECT COALESCE(max(id), 0) FROM audit_records`,
	`SELECT CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint ELSE (SELECT COALESCE(max(id), 0) FROM audit_records) END
	FROM pg_class c WHERE c.oid = 'audit_records'::regclass`)

// ListAudit returns the stored audit records matching f with their
// properties, oldest first (a log reads forwards), or newest first with
// f.Newest.
func (db *DB) ListAudit(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	probe, err := db.probeProperty(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("store: list audit: %w", err)
	}
	w, args, err := f.where(probe)
	if err != nil {
		return nil, fmt.Errorf("store: list audit: %w", err)
	}
	q := `SELECT id, document_id, account_id, container_id, user_id, date, type, action, modifier, level, source, message
		FROM audit_records` + w
	if f.Newest {
		q += " ORDER BY date DESC, document_id DESC"
	} else {
		q += " ORDER BY date, document_id"
	}
	if f.Limit > 0 {
		q, args = q+" LIMIT ?", append(args, f.Limit)
	}
	// One read transaction, so records and properties come from one snapshot.
	rtx, err := db.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("store: list audit: %w", err)
	}
	defer rtx.Rollback()
	rows, err := rtx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list audit: %w", err)
	}
	var out []AuditRecord
	index := map[int64]int{}
	for rows.Next() {
		var r AuditRecord
		var id, date int64
		if err := rows.Scan(&id, &r.DocumentID, &r.AccountID, &r.ContainerID, &r.UserID, &date, &r.Type, &r.Action,
			&r.Modifier, &r.Level, &r.Source, &r.Message); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: list audit: %w", err)
		}
		r.Date = time.UnixMilli(date).UTC()
		index[id] = len(out)
		out = append(out, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list audit: %w", err)
	}
	ids := make([]any, 0, len(index))
	for id := range index {
		ids = append(ids, id)
	}
	const chunk = 500
	for len(ids) > 0 {
		part := ids[:min(chunk, len(ids))]
		ids = ids[len(part):]
		marks := strings.TrimSuffix(strings.Repeat("?, ", len(part)), ", ")
		prows, err := rtx.QueryContext(ctx, `SELECT record_id, name, value, previous_value FROM audit_properties
			WHERE record_id IN (`+marks+`) ORDER BY record_id, seq`, part...)
		if err != nil {
			return nil, fmt.Errorf("store: list audit: properties: %w", err)
		}
		for prows.Next() {
			var id int64
			var p AuditProperty
			if err := prows.Scan(&id, &p.Name, &p.Value, &p.PreviousValue); err != nil {
				prows.Close()
				return nil, fmt.Errorf("store: list audit: properties: %w", err)
			}
			i := index[id]
			out[i].Properties = append(out[i].Properties, p)
		}
		prows.Close()
		if err := prows.Err(); err != nil {
			return nil, fmt.Errorf("store: list audit: properties: %w", err)
		}
	}
	return out, nil
}

// ExportWindow records that an export job wrote the window [From, To) of an
// object. Recording the same (Job, Object, From, To) again replaces Rows,
// RunID and File.
type ExportWindow struct {
	Job, Object string
	From, To    time.Time
	Rows        int
	RunID       int64
	File        string
}

// RecordExportWindow stores w (for the audit coverage report).
func (db *DB) RecordExportWindow(ctx context.Context, w ExportWindow) error {
	if w.Job == "" || w.Object == "" || w.From.IsZero() || w.To.IsZero() {
		return fmt.Errorf("store: record export window: need job, object, from and to (got %q %q %v %v)",
			w.Job, w.Object, w.From, w.To)
	}
	if w.To.Before(w.From) {
		return fmt.Errorf("store: record export window %q: to %v is before from %v", w.Job, w.To, w.From)
	}
	tx, err := db.begin(ctx)
	if err != nil {
		return fmt.Errorf("store: record export window %q: %w", w.Job, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO export_windows
		(job, object, window_from, window_to, rows, run_id, file, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
		ON CONFLICT (job, object, window_from, window_to) DO UPDATE SET rows = ?5, run_id = ?6, file = ?7, recorded_at = ?8`,
		w.Job, w.Object, w.From.UnixMilli(), w.To.UnixMilli(), w.Rows, nullID(w.RunID), w.File, tx.now.UnixMilli()); err != nil {
		return fmt.Errorf("store: record export window %q: %w", w.Job, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: record export window %q: %w", w.Job, err)
	}
	return nil
}

// ExportWindows returns the recorded windows of object ("" for every object),
// ordered by start, then end, then job.
func (db *DB) ExportWindows(ctx context.Context, object string) ([]ExportWindow, error) {
	q := `SELECT job, object, window_from, window_to, rows, COALESCE(run_id, 0), file FROM export_windows`
	var args []any
	if object != "" {
		q, args = q+` WHERE object = ?`, append(args, object)
	}
	q += ` ORDER BY window_from, window_to, job`
	rows, err := db.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: export windows %q: %w", object, err)
	}
	defer rows.Close()
	var out []ExportWindow
	for rows.Next() {
		var w ExportWindow
		var from, to int64
		if err := rows.Scan(&w.Job, &w.Object, &from, &to, &w.Rows, &w.RunID, &w.File); err != nil {
			return nil, fmt.Errorf("store: export windows %q: %w", object, err)
		}
		w.From, w.To = time.UnixMilli(from).UTC(), time.UnixMilli(to).UTC()
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: export windows %q: %w", object, err)
	}
	return out, nil
}
