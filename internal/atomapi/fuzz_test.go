package atomapi

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// The fuzz targets below take their seeds from f.Add and from
// testdata/fuzz/FuzzX/. Run one with: go test -run '^$' -fuzz=FuzzDecodeQueryResult -fuzztime=30s

func FuzzDecodeQueryResult(f *testing.F) {
	for _, s := range []string{
		`{"@type":"QueryResult","numberOfResults":0}`,
		`{"@type":"QueryResult","result":[{"@type":"ExecutionRecord","executionDuration":["Long",3832]}],"numberOfResults":1,"queryToken":"a+b/c=="}`,
		`{"result":null}`, `null`, `[]`, `{"result":[1,"x",null]}`, `{"numberOfResults":"7"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		qr, err := decodeQueryResult(data)
		if err != nil {
			if qr != nil {
				t.Fatalf("decodeQueryResult(%q) = %v, %v; want nil page with an error", data, qr, err)
			}
			return
		}
		// A decoded page re-encodes and decodes to the same page.
		b, err := json.Marshal(qr)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", qr, err)
		}
		again, err := decodeQueryResult(b)
		if err != nil || len(again.Result) != len(qr.Result) || again.QueryToken != qr.QueryToken ||
			again.NumberOfResults != qr.NumberOfResults {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", data, again, err, qr)
		}
	})
}

func FuzzDecodeAsyncRecord(f *testing.F) {
	for _, s := range []string{
		`{"responseStatusCode":202,"result":[]}`,
		`{"@type":"AsyncOperationResult","responseStatusCode":200,"numberOfResults":1,"result":[{"executionId":"e","status":"COMPLETE","executionDuration":["Long",5]}]}`,
		`{"executionId":"e","status":"INPROCESS","inboundDocumentSize":"12"}`,
		`{}`, `{"responseStatusCode":404}`, `{"result":{}}`, `{"responseStatusCode":null,"result":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, pending, err := decodeAsyncRecord("ExecutionRecord.async", data)
		if err != nil {
			var ae *APIError
			if errors.As(err, &ae) && (ae.Status >= 200 && ae.Status <= 299 || ae.Status == 0) {
				t.Fatalf("decodeAsyncRecord(%q): APIError with status %d", data, ae.Status)
			}
			return
		}
		if pending && rec != (ExecutionRecord{}) {
			t.Fatalf("decodeAsyncRecord(%q) = %+v, pending; want no record while pending", data, rec)
		}
	})
}

func FuzzErrorMessage(f *testing.F) {
	for _, s := range []string{
		`{"@type":"Error","message":"No such process"}`,
		`{"error":{"message":"ERROR_MESSAGE"}}`,
		`<error><message>ERROR_MESSAGE</message></error>`,
		`<UserMessage id="error.user.login" type="error"><Data>Incorrect user name and password combination.</Data></UserMessage>`,
		`<html><body><h1>503 Service Unavailable</h1></body></html>`,
		`{"error":"text"}`, ``, `   `, "\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg := errorMessage(data)
		if t0 := strings.TrimSpace(string(data)); msg != "" && !strings.HasPrefix(t0, "{") && !strings.HasPrefix(t0, "<") {
			t.Fatalf("errorMessage(%q) = %q; want \"\" for a body that is neither JSON nor XML", data, msg)
		}
		// The client caps and sanitises the message; that must hold for any input.
		if c := capString(msg, excerptMax); len(c) > excerptMax+3 || !utf8.ValidString(c) {
			t.Fatalf("capString(errorMessage(%q)) = %d bytes, valid UTF-8 %v", data, len(c), utf8.ValidString(c))
		}
	})
}

func FuzzLong(f *testing.F) {
	for _, s := range []string{`["Long",3832]`, `3832`, `"3832"`, `null`, `["Long","7"]`, `1e3`, `[1]`, `["Long",["Long",1]]`, `-9223372036854775808`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var l Long
		if err := json.Unmarshal(data, &l); err != nil {
			return
		}
		b, err := json.Marshal(l)
		if err != nil {
			t.Fatalf("Marshal(%d): %v", l, err)
		}
		var again Long
		if err := json.Unmarshal(b, &again); err != nil || again != l {
			t.Fatalf("Long round trip of %q via %s = %d, %v; want %d", data, b, again, err, l)
		}
	})
}

func FuzzFlexString(f *testing.F) {
	for _, s := range []string{`"2.0"`, `2`, `2.5`, `true`, `null`, `"x\u00e9"`, `{}`, `[1]`, `1e400`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v FlexString
		if err := json.Unmarshal(data, &v); err != nil {
			return
		}
		// Its text survives a round trip as a JSON string.
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("Marshal(%q): %v", v, err)
		}
		var again FlexString
		if err := json.Unmarshal(b, &again); err != nil || again != v {
			t.Fatalf("FlexString round trip of %q = %q, %v; want %q", data, again, err, v)
		}
	})
}

// FuzzDecodeExtensions: any answer decodes without a panic, and what
// decoded encodes and decodes again to the same thing (the update runnerd
// sends is built from a decoded answer).
func FuzzDecodeExtensions(f *testing.F) {
	f.Add([]byte(`{"@type":"EnvironmentExtensions","id":"env-1","connections":{"connection":{"id":"c","field":{"id":"host","value":"h","useDefault":"false"}}}}`))
	f.Add([]byte(`{"processProperties":{"ProcessProperty":[{"id":"pp","ProcessPropertyValue":[{"key":"k","value":"v","usesEncryption":true}]}]},"partial":"true","crossReferences":{}}`))
	f.Add([]byte(`{"properties":{"property":[{"name":"A","value":"1"}]}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var x EnvironmentExtensions
		if json.Unmarshal(data, &x) != nil {
			return
		}
		b, err := json.Marshal(x)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", x, err)
		}
		var y EnvironmentExtensions
		if err := json.Unmarshal(b, &y); err != nil {
			t.Fatalf("re-decode %s: %v", b, err)
		}
		c, _ := json.Marshal(y)
		if string(b) != string(c) {
			t.Fatalf("not stable:\n%s\n%s", b, c)
		}
	})
}

// FuzzLogDownload: statusCode as a number or a string; never a panic.
func FuzzLogDownload(f *testing.F) {
	f.Add([]byte(`{"@type":"LogDownload","url":"http://h/x","message":"Beginning download.","statusCode":202}`))
	f.Add([]byte(`{"statusCode":"504","message":"Runtime is unavailable."}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var d LogDownload
		if json.Unmarshal(data, &d) != nil {
			return
		}
		if d.Ready() && d.URL == "" {
			t.Fatalf("ready without a URL: %+v", d)
		}
	})
}
