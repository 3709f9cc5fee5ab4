package store

import (
	"context"
	"database/sql"
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

// UpsertAudit stores recs in one transaction and returns how many were new.
// A record whose DocumentID is already stored is left as it is (audit
// entries do not change), so re-exports never duplicate.
func (db *DB) UpsertAudit(ctx context.Context, recs []AuditRecord) (inserted int, err error) {
	if len(recs) == 0 {
		return 0, nil
	}
	tx, err := db.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: upsert audit: %w", err)
	}
	defer tx.Rollback()
	rec, err := tx.PrepareContext(ctx, `INSERT INTO audit_records
		(document_id, account_id, container_id, user_id, date, type, action, modifier, level, source, message)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (document_id) DO NOTHING`)
	if err != nil {
		return 0, fmt.Errorf("store: upsert audit: %w", err)
	}
	defer rec.Close()
	prop, err := tx.PrepareContext(ctx, `INSERT INTO audit_properties (record_id, seq, name, value, previous_value)
		VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		return 0, fmt.Errorf("store: upsert audit: %w", err)
	}
	defer prop.Close()
	for _, r := range recs {
		if r.DocumentID == "" {
			return 0, fmt.Errorf("store: upsert audit: record dated %s has no document id", r.Date.UTC().Format(time.RFC3339))
		}
		if r.Date.IsZero() {
			return 0, fmt.Errorf("store: upsert audit: record %q has no date", r.DocumentID)
		}
		res, err := rec.ExecContext(ctx, r.DocumentID, r.AccountID, r.ContainerID, r.UserID, r.Date.UnixMilli(),
			r.Type, r.Action, r.Modifier, r.Level, r.Source, r.Message)
		if err != nil {
			return 0, fmt.Errorf("store: upsert audit %q: %w", r.DocumentID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return 0, fmt.Errorf("store: upsert audit %q: %w", r.DocumentID, err)
		} else if n == 0 {
			continue // already stored
		}
		id, err := res.LastInsertId()
		if err != nil {
			return 0, fmt.Errorf("store: upsert audit %q: %w", r.DocumentID, err)
		}
		for i, p := range r.Properties {
			if _, err := prop.ExecContext(ctx, id, i, p.Name, p.Value, p.PreviousValue); err != nil {
				return 0, fmt.Errorf("store: upsert audit %q: property %q: %w", r.DocumentID, p.Name, err)
			}
		}
		inserted++
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("store: upsert audit: %w", err)
	}
	return inserted, nil
}

// AuditFilter selects audit records for ListAudit. Zero fields do not filter;
// string fields match exactly. Property and PropertyValue select records
// having a property of that name (and value, if given).
type AuditFilter struct {
	UserID, Type, Action, Modifier, Level, Source, ContainerID string
	Property, PropertyValue                                    string
	Since, Until                                               time.Time // Since <= date < Until
	Limit                                                      int       // 0: no limit
}

// ListAudit returns the stored audit records matching f with their
// properties, oldest first (a log reads forwards).
func (db *DB) ListAudit(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
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
	if !f.Since.IsZero() {
		where, args = append(where, "date >= ?"), append(args, f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		where, args = append(where, "date < ?"), append(args, f.Until.UnixMilli())
	}
	if f.Property != "" {
		if f.PropertyValue != "" {
			where = append(where, "id IN (SELECT record_id FROM audit_properties WHERE name = ? AND value = ?)")
			args = append(args, f.Property, f.PropertyValue)
		} else {
			where = append(where, "id IN (SELECT record_id FROM audit_properties WHERE name = ?)")
			args = append(args, f.Property)
		}
	} else if f.PropertyValue != "" {
		return nil, fmt.Errorf("store: list audit: a property value needs a property name")
	}
	q := `SELECT id, document_id, account_id, container_id, user_id, date, type, action, modifier, level, source, message
		FROM audit_records`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY date, id"
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
