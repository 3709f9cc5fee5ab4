package engine

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"runnerd/internal/atomapi"
	"runnerd/internal/config"
)

func sp(s string) *string { return &s }

// TestExtensionsUpdate: only what the configuration names is sent; a value
// equal to the current one is no change; a process-property component is
// sent whole (its other values as they are, encrypted ones without a value
// so they are kept); an encrypted value comes from its file, is never
// compared, and never shows in the changes.
func TestExtensionsUpdate(t *testing.T) {
	cur := atomapi.EnvironmentExtensions{ID: "env-prod", EnvironmentID: "env-prod",
		Connections: &atomapi.ExtConnections{Connection: []atomapi.ExtConnection{{ID: "db", Name: "DB", Field: []atomapi.ExtField{
			{ID: "host", Value: sp("old.example")}, {ID: "port", Value: sp("5432")}, {ID: "password", UsesEncryption: true, EncryptedValueSet: true},
		}}}},
		ProcessProperties: &atomapi.ExtProcessProperties{ProcessProperty: []atomapi.ExtProcessProperty{{ID: "pp", Name: "PP", ProcessPropertyValue: []atomapi.ExtPropertyValue{
			{Key: "batch", Value: sp("500")}, {Key: "mode", Value: sp("live")}, {Key: "key", UsesEncryption: true},
		}}}},
		Properties: &atomapi.ExtProperties{Property: []atomapi.ExtProperty{{Name: "REGION", Value: "eu"}}},
	}
	dir := t.TempDir()
	secret := filepath.Join(dir, "db.secret")
	if err := os.WriteFile(secret, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	x := config.Extensions{
		Connections:       []config.ExtConnection{{ID: "db", Fields: map[string]string{"host": "new.example", "port": "5432"}, SecretFiles: map[string]string{"password": secret}}},
		ProcessProperties: []config.ExtProcessProperty{{ID: "pp", Values: map[string]string{"batch": "1000"}}},
		Properties:        map[string]string{"REGION": "eu"},
	}
	upd, changes, err := ExtensionsUpdate("env-prod", x, cur, config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(upd)
	got := string(body)
	for _, want := range []string{`"partial":true`, `"id":"host","value":"new.example"`, `"id":"password","value":"hunter2"`,
		`"key":"batch"`, `"value":"1000"`, `"key":"mode"`, `"value":"live"`} {
		if !strings.Contains(got, want) {
			t.Errorf("update lacks %s:\n%s", want, got)
		}
	}
	for _, not := range []string{`"id":"port"`, `REGION`} {
		if strings.Contains(got, not) {
			t.Errorf("update sends the unchanged %s:\n%s", not, got)
		}
	}
	if strings.Contains(got, `"key":"key","value"`) {
		t.Errorf("an encrypted value the configuration does not set is sent with a value:\n%s", got)
	}
	all := strings.Join(changes, "\n")
	if len(changes) != 3 || strings.Contains(all, "hunter2") || !strings.Contains(all, `host: "old.example" → "new.example"`) ||
		!strings.Contains(all, "never compared") || !strings.Contains(all, `batch: "500" → "1000"`) {
		t.Errorf("changes = %q", changes)
	}
	// Nothing to change: nothing to send.
	same := config.Extensions{Properties: map[string]string{"REGION": "eu"}}
	if _, ch, err := ExtensionsUpdate("env-prod", same, cur, config.LoadOptions{}); err != nil || len(ch) != 0 {
		t.Errorf("unchanged = %v, %v; want no changes", ch, err)
	}
	// A field the environment does not have is an error, not a new value.
	bad := config.Extensions{Connections: []config.ExtConnection{{ID: "db", Fields: map[string]string{"hots": "x"}}}}
	if _, _, err := ExtensionsUpdate("env-prod", bad, cur, config.LoadOptions{}); err == nil || !strings.Contains(err.Error(), `no field "hots"`) {
		t.Errorf("unknown field: %v", err)
	}
}
