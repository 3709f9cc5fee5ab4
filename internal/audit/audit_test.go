package audit

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFilter(t *testing.T) {
	t1 := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	t2 := t1.Add(24 * time.Hour)
	tests := []struct {
		name    string
		q       Query
		wantErr string // "" = no error
		check   func(t *testing.T, q Query)
	}{
		{name: "enums upper-cased", q: Query{Action: "attach", Level: "info", Source: "ui", Modifier: "none"},
			check: func(t *testing.T, q Query) {
				f, _ := q.Filter()
				if f.Action != "ATTACH" || f.Level != "INFO" || f.Source != "UI" || f.Modifier != "NONE" || !f.Newest {
					t.Errorf("Filter() = %+v", f)
				}
			}},
		{name: "bad level", q: Query{Level: "loud"}, wantErr: `-level "loud"`},
		{name: "bad source", q: Query{Source: "cli"}, wantErr: `-source "cli"`},
		{name: "negative limit", q: Query{Limit: -1}, wantErr: "-limit -1"},
		{name: "since after until", q: Query{Since: t2, Until: t1}, wantErr: "-since 2026-01-03T00:00:00Z is not before -until"},
		{name: "equal since and until", q: Query{Since: t1, Until: t1}, wantErr: "is not before"},
		{name: "property without name", q: Query{Property: "=x"}, wantErr: `-property "=x"`},
		{name: "property name and value", q: Query{Property: "ENVIRONMENT_ID=env-prod=x"},
			check: func(t *testing.T, q Query) {
				f, _ := q.Filter()
				if f.Property != "ENVIRONMENT_ID" || f.PropertyValue != "env-prod=x" {
					t.Errorf("property = %q %q", f.Property, f.PropertyValue)
				}
			}},
		{name: "two shortcuts", q: Query{Shortcuts: []string{"deploys", "logins"}}, wantErr: "-deploys and -logins: choose one shortcut"},
		{name: "unknown shortcut", q: Query{Shortcuts: []string{"nope"}}, wantErr: "-nope: no such shortcut"},
		{name: "deploys", q: Query{Shortcuts: []string{"deploys"}},
			check: func(t *testing.T, q Query) {
				f, _ := q.Filter()
				if f.Type != "as.atom.process" || !slices.Equal(f.Actions, []string{"ATTACH", "DETACH"}) || f.Modifier != "" || f.Action != "" {
					t.Errorf("Filter() = %+v", f)
				}
			}},
		{name: "deploys narrowed to one action", q: Query{Shortcuts: []string{"deploys"}, Action: "detach"},
			check: func(t *testing.T, q Query) {
				f, _ := q.Filter()
				if f.Action != "DETACH" || f.Actions != nil {
					t.Errorf("Filter() = %+v; want action DETACH only", f)
				}
			}},
		{name: "shortcut contradicts type", q: Query{Shortcuts: []string{"logins"}, Type: "as.schedules"},
			wantErr: "-logins selects type account; -type as.schedules contradicts it"},
		{name: "shortcut contradicts action", q: Query{Shortcuts: []string{"manual-runs"}, Action: "attach"},
			wantErr: "-manual-runs selects action EXECUTE; -action ATTACH contradicts it"},
		{name: "shortcut contradicts modifier", q: Query{Shortcuts: []string{"manual-runs"}, Modifier: "none"},
			wantErr: "-manual-runs selects modifier MANUAL; -modifier NONE contradicts it"},
		{name: "shortcut agrees with modifier", q: Query{Shortcuts: []string{"logins"}, Modifier: "success"},
			check: func(t *testing.T, q Query) {
				f, _ := q.Filter()
				if f.Modifier != "SUCCESS" || f.Type != "account" {
					t.Errorf("Filter() = %+v", f)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.q.Filter()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Filter() error = %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Filter() error = %v; want one containing %q", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, tt.q)
			}
		})
	}
}

func TestNarrowsAndOnlyTime(t *testing.T) {
	if (Query{Limit: 5}).Narrows() {
		t.Error("a limit alone narrows")
	}
	for _, q := range []Query{{User: "a"}, {Since: time.Unix(1, 0)}, {Shortcuts: []string{"logins"}}, {Text: "x"}} {
		if !q.Narrows() {
			t.Errorf("%+v does not narrow", q)
		}
	}
	f, _ := Query{Since: time.Unix(1, 0), Until: time.Unix(2, 0)}.Filter()
	if !OnlyTime(f) {
		t.Errorf("a time range alone is not OnlyTime: %+v", f)
	}
	f, _ = Query{Shortcuts: []string{"deploys"}}.Filter()
	if OnlyTime(f) {
		t.Errorf("a shortcut is OnlyTime: %+v", f)
	}
}
