// Package apigate adapts the budget's Gate to the AtomSphere client's hooks:
// atomapi.Gate and atomapi.Pacer ask the budget before each attempt, and a
// Recorder wrapper shows each answer to the 503 classifier. It is the only
// place where the budget and the HTTP client meet, so that neither imports the
// other.
package apigate

import (
	"context"

	"runnerd/internal/atomapi"
	"runnerd/internal/budget"
)

// Gate is a budget.Gate seen by the client. With Paced set it is also an
// atomapi.Pacer: Wait only admits and counts the call, and Pace waits for the
// rate slot after the ledger row is committed, right before the request is
// written (what the daemon uses). Without it, Wait does both.
type Gate struct {
	G     *budget.Gate
	Paced bool
}

var (
	_ atomapi.Gate  = Gate{}
	_ atomapi.Pacer = Gate{}
)

// Ask is the budget's view of an attempt.
func Ask(c *atomapi.Call) budget.Ask {
	return budget.Ask{Priority: c.Priority, Recovery: c.Recovery}
}

// Wait admits c (budget, shares, external pause) and counts it; unpaced, it
// also waits for the rate.
func (g Gate) Wait(ctx context.Context, c *atomapi.Call) error {
	if g.Paced {
		return g.G.Admit(ctx, Ask(c))
	}
	return g.G.Wait(ctx, Ask(c))
}

// Pace waits for the rate slot of a call Wait admitted and sets c.SentAt to
// the time it may go, the hour the ledger counts it in (paced only; unpaced,
// Wait has waited already).
func (g Gate) Pace(ctx context.Context, c *atomapi.Call) error {
	if !g.Paced {
		return nil
	}
	sent, err := g.G.Pace(ctx)
	if err == nil {
		c.SentAt = sent
	}
	return err
}

// Observe shows an attempt's outcome to the gate's classifier.
func Observe(g *budget.Gate, r atomapi.Result) budget.Classification {
	return g.Observe(r.Sent, r.Status)
}

// Recorder wraps next (which may be nil) so that every completed attempt is
// also shown to g's classifier.
func Recorder(g *budget.Gate, next atomapi.Recorder) atomapi.Recorder {
	return &observing{g: g, next: next}
}

type observing struct {
	g    *budget.Gate
	next atomapi.Recorder
}

func (o *observing) Begin(ctx context.Context, c *atomapi.Call) error {
	if o.next == nil {
		return nil
	}
	return o.next.Begin(ctx, c)
}

func (o *observing) End(ctx context.Context, c *atomapi.Call, r atomapi.Result) {
	if o.next != nil {
		o.next.End(ctx, c, r)
	}
	Observe(o.g, r)
}
