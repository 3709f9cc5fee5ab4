package atomapi

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
)

// decodeQueryResult decodes one QUERY/queryMore page. A missing "result" is an
// empty page.
//
// The records are cut out of one copy of the "result" array (splitJSONArray)
// rather than decoded one json.RawMessage at a time, which copied each record
// separately and grew the slice by reflection: the page costs 2 allocations for
// its records instead of ~110. Each record's slice has its capacity capped at
// its length, so appending to one never writes over the next. Anything but an
// array or null under "result", and any error, goes the general way
// (decodeQueryResultGeneral), so results and errors are the general path's.
func decodeQueryResult(data []byte) (*QueryResult, error) {
	var wire struct {
		Type            string       `json:"@type,omitempty"`
		Result          rawJSONArray `json:"result,omitempty"`
		NumberOfResults int          `json:"numberOfResults"`
		QueryToken      string       `json:"queryToken,omitempty"`
	}
	if err := json.Unmarshal(data, &wire); err != nil || wire.Result.other {
		return decodeQueryResultGeneral(data)
	}
	qr := &QueryResult{Type: wire.Type, NumberOfResults: wire.NumberOfResults, QueryToken: wire.QueryToken}
	if wire.Result.data != nil {
		qr.Result = splitJSONArray(wire.Result.data)
	}
	return qr, nil
}

// rawJSONArray keeps a copy of the last array decoded into it; null clears it.
// other records that some value was neither (decoding into a slice fails on it).
type rawJSONArray struct {
	data  []byte
	other bool
}

func (r *rawJSONArray) UnmarshalJSON(b []byte) error {
	switch {
	case string(b) == "null":
		r.data = nil
	case len(b) > 0 && b[0] == '[':
		r.data = append(r.data[:0:0], b...)
	default:
		r.other = true
	}
	return nil
}

// decodeQueryResultGeneral is decodeQueryResult through encoding/json alone.
func decodeQueryResultGeneral(data []byte) (*QueryResult, error) {
	var qr QueryResult
	if err := json.Unmarshal(data, &qr); err != nil {
		return nil, err
	}
	return &qr, nil
}

// splitJSONArray returns the elements of arr, a JSON array that encoding/json
// has already validated, as sub-slices of arr without surrounding whitespace
// (what decoding into []json.RawMessage gives). An empty array gives an empty,
// non-nil slice.
func splitJSONArray(arr []byte) []json.RawMessage {
	out := make([]json.RawMessage, 0, min(PageSize, len(arr)/2))
	i := skipJSONSpace(arr, 1)
	if i >= len(arr) || arr[i] == ']' {
		return out
	}
	start, depth := i, 0
	for i < len(arr) {
		switch c := arr[i]; c {
		case '"':
			i = endOfJSONString(arr, i)
			continue
		case '[', '{':
			depth++
		case ']', '}':
			if depth == 0 { // the array's own closing bracket
				out = append(out, trimJSONElement(arr, start, i))
				return out
			}
			depth--
		case ',':
			if depth == 0 {
				out = append(out, trimJSONElement(arr, start, i))
				start = skipJSONSpace(arr, i+1)
			}
		}
		i++
	}
	return out // not reached for a valid array
}

// endOfJSONString returns the index just past the string that opens at arr[i].
func endOfJSONString(arr []byte, i int) int {
	for j := i + 1; ; {
		k := bytes.IndexByte(arr[j:], '"')
		if k < 0 {
			return len(arr)
		}
		j += k
		// The quote is escaped when an odd number of backslashes precede it.
		n := 0
		for b := j - 1; b > i && arr[b] == '\\'; b-- {
			n++
		}
		j++
		if n%2 == 0 {
			return j
		}
	}
}

// trimJSONElement is arr[start:end] without trailing JSON whitespace, its
// capacity capped at its length.
func trimJSONElement(arr []byte, start, end int) json.RawMessage {
	for end > start && (arr[end-1] == ' ' || arr[end-1] == '\t' || arr[end-1] == '\n' || arr[end-1] == '\r') {
		end--
	}
	return arr[start:end:end]
}

// decodeAsyncRecord decodes a 200 answer of GET /ExecutionRecord/async/{id}. It
// accepts the wrapper {"responseStatusCode":…,"result":[record]} and a bare
// record. pending means no record exists yet: a wrapper with responseStatusCode
// 202 or an empty result, or an empty bare object. A wrapper carrying another
// non-2xx responseStatusCode is an *APIError with that status.
func decodeAsyncRecord(op string, data []byte) (rec ExecutionRecord, pending bool, err error) {
	var probe struct {
		ResponseStatusCode *int            `json:"responseStatusCode"`
		Result             json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return rec, false, err
	}
	if probe.ResponseStatusCode == nil && probe.Result == nil {
		if err := json.Unmarshal(data, &rec); err != nil {
			return rec, false, err
		}
		if rec.ExecutionID == "" && rec.Status == "" {
			return ExecutionRecord{}, true, nil
		}
		return rec, false, nil
	}
	code := 0
	if probe.ResponseStatusCode != nil {
		code = *probe.ResponseStatusCode
	}
	if code == http.StatusAccepted {
		return rec, true, nil
	}
	if code != 0 && (code < 200 || code > 299) {
		return rec, false, &APIError{Operation: op, Status: code,
			Message: fmt.Sprintf("async result carries responseStatusCode %d", code),
			Excerpt: capString(string(data), excerptMax)}
	}
	var results []ExecutionRecord
	if len(probe.Result) > 0 {
		if err := json.Unmarshal(probe.Result, &results); err != nil {
			return rec, false, fmt.Errorf("async result: %w", err)
		}
	}
	if len(results) == 0 {
		return rec, true, nil
	}
	return results[0], false, nil
}

// errorMessage extracts the platform's message from an error body of any known
// shape: {"@type":"Error","message":…}, {"error":{"message":…}}, XML
// <error><message>…</message></error> or <UserMessage><Data>…</Data>. It returns
// "" for anything else (HTML, text), which the caller keeps as an excerpt.
func errorMessage(data []byte) string {
	t := bytes.TrimSpace(data)
	if len(t) == 0 {
		return ""
	}
	switch t[0] {
	case '{':
		var eb ErrorBody
		if json.Unmarshal(t, &eb) == nil {
			return eb.Text()
		}
	case '<':
		var x struct {
			Message string `xml:"message"`
			Data    string `xml:"Data"`
		}
		if xml.Unmarshal(t, &x) == nil {
			if x.Message != "" {
				return x.Message
			}
			return x.Data
		}
	}
	return ""
}

// errNoRequestID: an accepted ExecutionRequest whose answer has no requestId.
var errNoRequestID = errors.New("answer has no requestId")
