package store

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestNotifyDeliveries(t *testing.T) {
	db, clk := MustOpenDB(t)
	ctx := context.Background()
	rows := []NotifyDelivery{
		{Target: "hook", EventID: "a1", Event: "failed", Job: "orders", RunID: 7, Attempts: 1, Status: "sent", HTTPStatus: 200},
		{Target: "hook", EventID: "a2", Event: "budget", Attempts: 4, Status: "failed", HTTPStatus: 500, Error: "HTTP 500 " + strings.Repeat("x", 2000)},
		{Target: "cmd", EventID: "a3", Event: "auth", Attempts: 2, Status: "failed", Error: "logger: exit status 1"},
	}
	for i, d := range rows {
		clk.Set(t0.Add(time.Duration(i) * time.Minute))
		if _, err := db.RecordNotifyDelivery(ctx, d); err != nil {
			t.Fatalf("RecordNotifyDelivery(%+v) = %v", d, err)
		}
	}
	if _, err := db.RecordNotifyDelivery(ctx, NotifyDelivery{Target: "x", Event: "failed", Status: "lost"}); err == nil {
		t.Errorf("RecordNotifyDelivery(status lost) = nil; want an error (CHECK)")
	}

	tests := []struct {
		name string
		f    NotifyFilter
		want []string // event ids, newest first
	}{
		{"all", NotifyFilter{}, []string{"a3", "a2", "a1"}},
		{"target", NotifyFilter{Target: "hook"}, []string{"a2", "a1"}},
		{"failed", NotifyFilter{Status: "failed"}, []string{"a3", "a2"}},
		{"since", NotifyFilter{Since: t0.Add(time.Minute)}, []string{"a3", "a2"}},
		{"limit", NotifyFilter{Limit: 1}, []string{"a3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.ListNotifyDeliveries(ctx, tt.f)
			if err != nil {
				t.Fatalf("ListNotifyDeliveries(%+v) = %v", tt.f, err)
			}
			var ids []string
			for _, d := range got {
				ids = append(ids, d.EventID)
			}
			if strings.Join(ids, ",") != strings.Join(tt.want, ",") {
				t.Errorf("ListNotifyDeliveries(%+v) = %v; want %v", tt.f, ids, tt.want)
			}
		})
	}

	all, _ := db.ListNotifyDeliveries(ctx, NotifyFilter{})
	first := all[2]
	if first.RunID != 7 || first.Job != "orders" || first.HTTPStatus != 200 || !first.FinishedAt.Equal(t0) || !first.EventTime.Equal(t0) {
		t.Errorf("first delivery = %+v; want run 7, job orders, HTTP 200, at %v", first, t0)
	}
	if all[2].RunID != 7 || all[0].RunID != 0 {
		t.Errorf("run ids = %d, %d; want 7 and 0 (NULL)", all[2].RunID, all[0].RunID)
	}
	if n := len(all[1].Error); n > MaxErrorExcerpt {
		t.Errorf("stored error length = %d; want at most %d", n, MaxErrorExcerpt)
	}

	counts, err := db.NotifyDeliveryCounts(ctx, t0)
	if err != nil {
		t.Fatalf("NotifyDeliveryCounts() = %v", err)
	}
	if counts["hook"]["sent"] != 1 || counts["hook"]["failed"] != 1 || counts["cmd"]["failed"] != 1 {
		t.Errorf("NotifyDeliveryCounts() = %v; want hook sent 1 failed 1, cmd failed 1", counts)
	}

	clk.Set(t0.Add(time.Hour))
	n, err := db.PruneNotifyDeliveries(ctx, 59*time.Minute+30*time.Second)
	if err != nil || n != 1 {
		t.Errorf("PruneNotifyDeliveries(59m30s) = %d, %v; want 1, nil", n, err)
	}
}
