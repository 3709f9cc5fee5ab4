package evidence

import (
	"testing"

	"runnerd/internal/pgtest"
)

// TestMain stops the PostgreSQL server the tests started, if any
// (RUNNERD_TEST_STORE=postgres: see internal/pgtest/ledger).
func TestMain(m *testing.M) { pgtest.Main(m) }
