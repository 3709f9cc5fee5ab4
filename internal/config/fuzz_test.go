package config

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// FuzzParseConfig checks that Parse never panics, that every failure is a
// non-empty ErrorList, that the position index has a line for every key the
// TOML decoder sees, and that a configuration that passes validation
// round-trips: Encode, Parse again, equal.
func FuzzParseConfig(f *testing.F) {
	f.Add(readExample(f))
	for _, b := range brokenConfigs {
		f.Add([]byte(b.src))
	}
	f.Add([]byte(base + execJob))
	f.Add([]byte(base + "[store]\nurl = \"postgres://runnerd@db.example.com/runnerd\"\npassword_env = \"PW\"\ninstance = \"a\"\nlease = \"5s\"\n" + execJob))
	opts := LoadOptions{Getenv: env("STATE_DIRECTORY", "/var/lib/runnerd")}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		checkIndexCovers(t, string(data))
		c, err := Parse(testFile, data, opts)
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("Parse() error %T %v; want a non-empty ErrorList", err, err)
			}
			return
		}
		var buf bytes.Buffer
		if err := c.Encode(&buf); err != nil {
			t.Fatalf("Encode() error = %v", err)
		}
		c2, err := Parse(testFile, buf.Bytes(), opts)
		if err != nil {
			t.Fatalf("Parse(Encode()) error:\n%v\nencoded:\n%s\ninput:\n%s", err, buf.Bytes(), data)
		}
		if a, b := comparable(c), comparable(c2); !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip differs:\n got %+v\nwant %+v\nencoded:\n%s", b, a, buf.Bytes())
		}
	})
}

// comparable returns c without what depends on the layout of the file.
func comparable(c *Config) Config {
	out := *c
	out.Jobs = append([]Job(nil), c.Jobs...)
	for i := range out.Jobs {
		out.Jobs[i].Line = 0
	}
	return out
}

func TestRoundTripExample(t *testing.T) {
	c := mustParse(t, string(readExample(t)))
	var buf bytes.Buffer
	if err := c.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	c2 := mustParse(t, buf.String())
	if a, b := comparable(c), comparable(c2); !reflect.DeepEqual(a, b) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", b, a)
	}
}
