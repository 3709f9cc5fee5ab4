package notify

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"time"
)

// Event names: the values of Event.Event and of a target's events key
// (config.Events), plus EventTest for `runnerd notify-test`.
const (
	EventFailed         = "failed"         // a run failed (its job-level retries spent)
	EventRecovered      = "recovered"      // a job that was failing succeeded again
	EventDeferred       = "deferred"       // a run waits for budget
	EventMissed         = "missed"         // a slot fell outside catch_up_window and was not run
	EventUnknown        = "unknown"        // a run's outcome is unknown after a crash: an operator should look
	EventBudget         = "budget"         // use of the rolling window crossed a threshold, up or back down
	EventClassification = "classification" // the 503 classification changed to or from "external"
	EventAuth           = "auth"           // the credentials were rejected twice in a row: the auth breaker opened
	EventTest           = "test"           // a sample event sent by `runnerd notify-test`
)

// Budget is the rolling window's use when the event was made.
type Budget struct {
	Used      int     `json:"used"`      // calls begun in the rolling 24 hours
	Remaining int     `json:"remaining"` // cap - used, never below 0
	Cap       int     `json:"cap"`       // daily_limit - reserve
	Percent   float64 `json:"percent"`   // used / cap, in percent, one decimal
}

// NewBudget returns the use of a window with used calls of capacity cap.
func NewBudget(used, capacity int) Budget {
	b := Budget{Used: used, Cap: capacity, Remaining: max(0, capacity-used)}
	b.Percent = percent(used, capacity)
	return b
}

func percent(used, capacity int) float64 {
	if capacity <= 0 {
		if used > 0 {
			return 100
		}
		return 0
	}
	return math.Round(float64(used)*1000/float64(capacity)) / 10
}

// Event is one notification, as sent: the JSON body of a webhook POST and the
// standard input of a command. Fields that do not apply to an event are left
// out; id, event, time and text are always present. The fields, by event:
//
//   - every event: id (unique per event; a retried delivery keeps it), event,
//     time (RFC 3339, UTC), host, text (one line for people; Slack shows it),
//     budget (when the daemon knows the window).
//   - failed, recovered, deferred, missed, unknown: job, kind, priority,
//     run_id, nominal_time, state, calls; error (failed, unknown) and reason
//     (deferred, missed, unknown) as the run recorded them; failures (how
//     many such outcomes in a row so far, or, for recovered, how many
//     preceded it) and since (when the problem began); for a failed
//     execution whose process log runnerd fetches, evidence (the file it is
//     kept in) and evidence_url (its link, with [http] public_url).
//   - a reminder of a still-open problem: the same, with reminder = true.
//   - budget: threshold (percent), direction ("up" or "down"), budget.
//   - classification: classification, previous_classification, reason.
//   - auth: reason.
//
// Nothing secret is ever put in an event: no password, no webhook secret, no
// URL. Error texts come from the run records, which hold none.
type Event struct {
	ID       string    `json:"id"`
	Event    string    `json:"event"`
	Time     time.Time `json:"time"`
	Host     string    `json:"host,omitempty"`
	Job      string    `json:"job,omitempty"`
	Kind     string    `json:"kind,omitempty"`
	Priority string    `json:"priority,omitempty"`
	RunID    int64     `json:"run_id,omitempty"`
	// URL is the run's page on the status page ([http] public_url).
	URL string `json:"url,omitempty"`
	// Evidence is where a failed execution's process log is kept once
	// fetched (runnerd logs RUN prints it); EvidenceURL is its link under
	// [http] public_url.
	Evidence    string `json:"evidence,omitempty"`
	EvidenceURL string `json:"evidence_url,omitempty"`
	// NominalTime is the slot the run belongs to.
	NominalTime time.Time `json:"nominal_time,omitzero"`
	State       string    `json:"state,omitempty"`
	Calls       *int      `json:"calls,omitempty"`
	Error       string    `json:"error,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	Failures    int       `json:"failures,omitempty"`
	Since       time.Time `json:"since,omitzero"`
	Reminder    bool      `json:"reminder,omitempty"`
	Budget      *Budget   `json:"budget,omitempty"`
	Threshold   int       `json:"threshold,omitempty"`
	Direction   string    `json:"direction,omitempty"`

	Classification         string `json:"classification,omitempty"`
	PreviousClassification string `json:"previous_classification,omitempty"`

	Text string `json:"text"`
}

// newID returns a random event id.
func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// maxText caps the error and reason texts copied into an event.
const maxText = 1000

func capText(s string) string {
	if len(s) <= maxText {
		return s
	}
	cut := maxText
	for cut > 0 && s[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
		cut--
	}
	return s[:cut] + "…"
}

// describe fills e.Text: one line a person can act on.
func (e *Event) describe() {
	var b strings.Builder
	b.WriteString("runnerd")
	if e.Host != "" {
		b.WriteString(" on " + e.Host)
	}
	b.WriteString(": ")
	if e.Reminder {
		b.WriteString("still ")
	}
	run := func(what string) {
		fmt.Fprintf(&b, "job %s %s", e.Job, what)
		if e.RunID != 0 {
			fmt.Fprintf(&b, " (run %d", e.RunID)
			if !e.NominalTime.IsZero() {
				fmt.Fprintf(&b, ", slot %s", e.NominalTime.UTC().Format(time.RFC3339))
			}
			b.WriteString(")")
		}
		if e.Failures > 1 {
			fmt.Fprintf(&b, ", %d in a row", e.Failures)
		}
		if !e.Since.IsZero() && (e.Reminder || e.Event == EventRecovered) {
			fmt.Fprintf(&b, " since %s", e.Since.UTC().Format(time.RFC3339))
		}
	}
	switch e.Event {
	case EventFailed:
		run("failed")
		if e.Error != "" {
			b.WriteString(": " + e.Error)
		}
	case EventRecovered:
		if e.Failures > 0 {
			fmt.Fprintf(&b, "job %s recovered: run %d succeeded after %d failure(s)", e.Job, e.RunID, e.Failures)
			if !e.Since.IsZero() {
				fmt.Fprintf(&b, " since %s", e.Since.UTC().Format(time.RFC3339))
			}
		} else {
			fmt.Fprintf(&b, "job %s recovered", e.Job)
		}
	case EventDeferred:
		run("deferred for budget")
		if e.Reason != "" {
			b.WriteString(": " + e.Reason)
		}
	case EventMissed:
		run("missed a slot")
		if e.Reason != "" {
			b.WriteString(": " + e.Reason)
		}
	case EventUnknown:
		run("has an unknown outcome; an operator should check the platform")
		if e.Reason != "" {
			b.WriteString(": " + e.Reason)
		} else if e.Error != "" {
			b.WriteString(": " + e.Error)
		}
	case EventBudget:
		if e.Direction == DirectionUp {
			fmt.Fprintf(&b, "budget use crossed %d%%", e.Threshold)
		} else {
			fmt.Fprintf(&b, "budget use back below %d%%", e.Threshold)
		}
		if e.Budget != nil {
			fmt.Fprintf(&b, ": %d of %d calls in the rolling 24 hours (%.1f%%), %d left",
				e.Budget.Used, e.Budget.Cap, e.Budget.Percent, e.Budget.Remaining)
		}
	case EventClassification:
		if e.Classification == "external" {
			b.WriteString("503 answers while runnerd has headroom: someone else is spending the account; normal and low priority work pauses")
		} else {
			fmt.Fprintf(&b, "503 classification changed from %s to %s", e.PreviousClassification, e.Classification)
		}
		if e.Reason != "" {
			b.WriteString(": " + e.Reason)
		}
	case EventAuth:
		b.WriteString("the account's credentials were rejected twice in a row; nothing is sent until they are fixed and runnerd restarted")
		if e.Reason != "" {
			b.WriteString(": " + e.Reason)
		}
	case EventTest:
		b.WriteString("test notification")
		if e.Reason != "" {
			b.WriteString(": " + e.Reason)
		}
	default:
		b.WriteString(e.Event)
	}
	if e.Evidence != "" && e.Event == EventFailed {
		b.WriteString(" (process log: " + e.Evidence + ")")
	}
	if e.URL != "" {
		b.WriteString(" — " + e.URL)
	}
	e.Text = b.String()
}

// Budget directions.
const (
	DirectionUp   = "up"
	DirectionDown = "down"
)
