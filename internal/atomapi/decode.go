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
func decodeQueryResult(data []byte) (*QueryResult, error) {
	var qr QueryResult
	if err := json.Unmarshal(data, &qr); err != nil {
		return nil, err
	}
	return &qr, nil
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
