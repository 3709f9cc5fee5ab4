package config

import (
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestPosIndexLines(t *testing.T) {
	src := `# comment
top = 1
[account]
id = "x"   # trailing comment
"quoted.key" = 'lit'
dotted.inner.key = true

[[job]]
name = "a"
multi = """
line one
line "two" ""
"""
after = 3
[job.properties]
P = "v"
[[job.filter]]
operator = "EQUALS"
arguments = [
  "one",
  # a comment inside an array
  "two",
]
[[job.filter]]
operator = 'IS_NULL'

[[job]]
name = "b"
lit = '''
x
'''
inline = { a = 1, b = { c = "}" } }
arr = [{ property = "p" }, { property = "q" }]
esc = "a\"b\\"
"\u0041\x42" = 1
[job.properties]
Q = "w"

[[ job . filter ]]
operator = "x"
[tail]
k = 1
`
	ix := buildIndex(src)
	tests := []struct {
		path []string
		want int
	}{
		{[]string{"top"}, 2},
		{[]string{"account"}, 3},
		{[]string{"account", "id"}, 4},
		{[]string{"account", "quoted.key"}, 5},
		{[]string{"account", "dotted"}, 6},
		{[]string{"account", "dotted", "inner", "key"}, 6},
		{[]string{"job"}, 8},
		{[]string{"job", idx(0)}, 8},
		{[]string{"job", idx(0), "name"}, 9},
		{[]string{"job", idx(0), "multi"}, 10},
		{[]string{"job", idx(0), "after"}, 14},
		{[]string{"job", idx(0), "properties"}, 15},
		{[]string{"job", idx(0), "properties", "P"}, 16},
		{[]string{"job", idx(0), "filter", idx(0)}, 17},
		{[]string{"job", idx(0), "filter", idx(0), "operator"}, 18},
		{[]string{"job", idx(0), "filter", idx(0), "arguments"}, 19},
		{[]string{"job", idx(0), "filter", idx(0), "arguments", idx(0)}, 20},
		{[]string{"job", idx(0), "filter", idx(0), "arguments", idx(1)}, 22},
		{[]string{"job", idx(0), "filter", idx(1)}, 24},
		{[]string{"job", idx(0), "filter", idx(1), "operator"}, 25},
		{[]string{"job", idx(1)}, 27},
		{[]string{"job", idx(1), "name"}, 28},
		{[]string{"job", idx(1), "lit"}, 29},
		{[]string{"job", idx(1), "inline"}, 32},
		{[]string{"job", idx(1), "inline", "b", "c"}, 32},
		{[]string{"job", idx(1), "arr", idx(1), "property"}, 33},
		{[]string{"job", idx(1), "esc"}, 34},
		{[]string{"job", idx(1), "AB"}, 35},
		{[]string{"job", idx(1), "properties", "Q"}, 37},
		{[]string{"job", idx(1), "filter", idx(0)}, 39},
		{[]string{"job", idx(1), "filter", idx(0), "operator"}, 40},
		{[]string{"tail", "k"}, 42},
		// Fallback to the nearest ancestor.
		{[]string{"job", idx(1), "filter", idx(0), "missing"}, 39},
		{[]string{"job", idx(0), "nope"}, 8},
		{[]string{"nothing"}, 0},
	}
	for _, tt := range tests {
		if got := ix.Line(tt.path...); got != tt.want {
			t.Errorf("Line(%q) = %d; want %d", strings.Join(tt.path, "."), got, tt.want)
		}
	}
}

// TestPosIndexCoversMetaKeys checks, on the example file, that every key the
// TOML decoder knows has a line.
func TestPosIndexCoversMetaKeys(t *testing.T) {
	data := readExample(t)
	checkIndexCovers(t, string(data))
}

func checkIndexCovers(t *testing.T, src string) {
	t.Helper()
	var m map[string]any
	md, err := toml.Decode(src, &m)
	if err != nil {
		return
	}
	ix := buildIndex(src)
	for _, k := range md.Keys() {
		if _, ok := ix.flat[strings.Join(k, "\x00.")]; !ok {
			t.Fatalf("index has no line for key %q of\n%s", k.String(), src)
		}
	}
}

func TestPosIndexMultilineInlineTable(t *testing.T) {
	// TOML 1.1 allows newlines in inline tables; BurntSushi accepts them.
	src := "a = {\n  b = 1,\n  c = [\n    {d = 2},\n  ],\n}\ne = 5\n"
	ix := buildIndex(src)
	for _, tt := range []struct {
		path []string
		want int
	}{
		{[]string{"a"}, 1}, {[]string{"a", "b"}, 2}, {[]string{"a", "c", idx(0), "d"}, 4}, {[]string{"e"}, 7},
	} {
		if got := ix.Line(tt.path...); got != tt.want {
			t.Errorf("Line(%q) = %d; want %d", strings.Join(tt.path, "."), got, tt.want)
		}
	}
	checkIndexCovers(t, src)
}
