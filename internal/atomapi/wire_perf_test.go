package atomapi

import (
	"bytes"
	"testing"
)

// The fast paths of the wire types must give exactly what the general
// (encoding/json) paths give: these tests compare the two on the same input.

// longGeneral decodes b the general way only.
func longGeneral(b []byte) (Long, error) {
	var l Long
	err := l.unmarshalGeneral(bytes.TrimSpace(b))
	return l, err
}

func TestLongFastMatchesGeneral(t *testing.T) {
	for _, in := range []string{
		`["Long",3832]`, `["Long", 3832]`, "[ \"Long\" ,\t-12 \n]", `["Long",0]`, `["Long",-0]`, `0`, `-0`, `7`, `-7`,
		`9223372036854775807`, `-9223372036854775808`, `["Long",9223372036854775807]`, `["Long",-9223372036854775808]`,
		`9223372036854775808`, `-9223372036854775809`, `99999999999999999999`, `["Long",9223372036854775808]`,
		`012`, `-`, `--1`, `1-`, `1.5`, `1e3`, `-1E2`, `"3832"`, `" 12 "`, `null`, ` null `, ``, `[]`, `[1]`,
		`["Long"]`, `["Long",1,2]`, `["long",1]`, `["Int",5]`, `[7,5]`, `["Long","7"]`, `["Long",["Long",1]]`,
		`["Long",null]`, `["Long",1`, `["Long" 1]`, `["Long",01]`, `["Long",1]x`, `x`, `{}`, `true`, " \u00a05",
	} {
		t.Run(in, func(t *testing.T) {
			gen, genErr := longGeneral([]byte(in))
			var got Long
			err := got.UnmarshalJSON([]byte(in))
			if got != gen || (err == nil) != (genErr == nil) || err != nil && err.Error() != genErr.Error() {
				t.Errorf("UnmarshalJSON(%q) = %d, %v; want %d, %v (general path)", in, got, err, gen, genErr)
			}
		})
	}
}

// FuzzLongFast: UnmarshalJSON (fast path first) and the general path agree on
// every input, errors included.
func FuzzLongFast(f *testing.F) {
	for _, s := range []string{`["Long",3832]`, `["Long", -1]`, `12`, `-9223372036854775808`, `9223372036854775808`, `"5"`, `1e2`, `[ "Long" , 0 ]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		gen, genErr := longGeneral(data)
		var got Long
		err := got.UnmarshalJSON(data)
		if got != gen || (err == nil) != (genErr == nil) || err != nil && err.Error() != genErr.Error() {
			t.Fatalf("UnmarshalJSON(%q) = %d, %v; want %d, %v (general path)", data, got, err, gen, genErr)
		}
	})
}

// BenchmarkLongUnmarshal compares the platform's tuple through the fast path
// with the general path it replaced.
func BenchmarkLongUnmarshal(b *testing.B) {
	in := []byte(`["Long",38321]`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var l Long
			if err := l.UnmarshalJSON(in); err != nil || l != 38321 {
				b.Fatalf("UnmarshalJSON(%s) = %d, %v", in, l, err)
			}
		}
	})
	b.Run("general", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			l, err := longGeneral(in)
			if err != nil || l != 38321 {
				b.Fatalf("general(%s) = %d, %v", in, l, err)
			}
		}
	})
}
