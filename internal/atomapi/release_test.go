package atomapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"runnerd/internal/atomapi"
)

// exchange is one request a test server saw.
type exchange struct {
	method, path, body string
}

// exchanges collects the requests a handler saw.
type exchanges struct {
	mu  sync.Mutex
	got []exchange
}

func (e *exchanges) add(r *http.Request) exchange {
	b, _ := io.ReadAll(r.Body)
	x := exchange{r.Method, r.URL.EscapedPath(), string(b)}
	e.mu.Lock()
	e.got = append(e.got, x)
	e.mu.Unlock()
	return x
}

func (e *exchanges) list() []exchange {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]exchange(nil), e.got...)
}

func strp(s string) *string { return &s }

// checkRows fails unless the ledger rows have these operation names, in
// order, and are all safe.
func checkRows(t *testing.T, h *harness, want ...string) {
	t.Helper()
	calls, _ := h.rec.calls()
	var got []string
	for _, c := range calls {
		got = append(got, c.Operation)
		if !c.Safe {
			t.Errorf("ledger row %s %s is unsafe; want safe", c.Operation, c.Path)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ledger rows %q; want %q", got, want)
	}
	h.rec.checkBalanced(t)
}

func TestFlexBool(t *testing.T) {
	for in, want := range map[string]bool{
		`true`: true, `false`: false, `"true"`: true, `"false"`: false, `"TRUE"`: true, `" False "`: false,
		`null`: false, `""`: false, ` true `: true,
	} {
		var b atomapi.FlexBool = !atomapi.FlexBool(want)
		if err := json.Unmarshal([]byte(in), &b); err != nil || bool(b) != want {
			t.Errorf("Unmarshal(%s) = %v, %v; want %v", in, b, err, want)
		}
	}
	for _, in := range []string{`1`, `"yes"`, `[]`, `{}`} {
		var b atomapi.FlexBool
		if err := json.Unmarshal([]byte(in), &b); err == nil {
			t.Errorf("Unmarshal(%s) = %v; want an error", in, b)
		}
	}
	out, err := json.Marshal(struct {
		A atomapi.FlexBool `json:"a"`
		B atomapi.FlexBool `json:"b"`
		C atomapi.FlexBool `json:"c,omitempty"`
	}{true, false, false})
	if err != nil || string(out) != `{"a":true,"b":false}` {
		t.Errorf("Marshal = %s, %v; want JSON bools, omitempty honoured", out, err)
	}
	var s atomapi.ProcessScheduleStatus
	if err := json.Unmarshal([]byte(`{"@type":"ProcessScheduleStatus","enabled":"true","id":"x"}`), &s); err != nil || !s.Enabled {
		t.Errorf(`enabled "true" decodes as %v, %v; want true`, s.Enabled, err)
	}
}

// TestProcessScheduleStatus: the query's filter (both ids ANDed, or one
// alone), paging, GET, and the update's exact body and escaped path; the
// update is safe, so a 500 is retried.
func TestProcessScheduleStatus(t *testing.T) {
	var seen exchanges
	failOnce := true
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		x := seen.add(r)
		switch x.path {
		case testPrefix + "/ProcessScheduleStatus/query":
			io.WriteString(w, `{"numberOfResults":2,"@type":"QueryResult","queryToken":"tok+/=","result":[{"@type":"ProcessScheduleStatus",`+
				`"processId":"proc-1","atomId":"atom-1","id":"Ab0Cd1","enabled":false}]}`)
		case testPrefix + "/ProcessScheduleStatus/queryMore":
			io.WriteString(w, `{"numberOfResults":2,"@type":"QueryResult","result":[{"@type":"ProcessScheduleStatus",`+
				`"processId":"proc-1","atomId":"atom-2","id":"Ef2Gh3","enabled":"true"}]}`)
		case testPrefix + "/ProcessScheduleStatus/Ab0Cd1":
			io.WriteString(w, `{"@type":"ProcessScheduleStatus","enabled":true,"processId":"proc-1","atomId":"atom-1","id":"Ab0Cd1"}`)
		case testPrefix + "/ProcessScheduleStatus/Ab0%2FCd1":
			if failOnce {
				failOnce = false
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			io.WriteString(w, `{"@type":"ProcessScheduleStatus","processId":"proc-1","atomId":"atom-1","id":"Ab0/Cd1","enabled":false}`)
		default:
			t.Errorf("unexpected %s %s", x.method, x.path)
			w.WriteHeader(http.StatusNotFound)
		}
	})
	ctx := context.Background()

	all, err := h.c.QueryProcessScheduleStatus(ctx, "atom-1", "proc-1")
	if err != nil || len(all) != 2 || all[0].ID != "Ab0Cd1" || all[0].Enabled || !all[1].Enabled || all[1].AtomID != "atom-2" {
		t.Fatalf("Query = %+v, %v; want the two pages' records", all, err)
	}
	if _, err := h.c.QueryProcessScheduleStatus(ctx, "", "proc-1"); err != nil {
		t.Fatal(err)
	}
	got, err := h.c.GetProcessScheduleStatus(ctx, "Ab0Cd1")
	if err != nil || got != (atomapi.ProcessScheduleStatus{Type: "ProcessScheduleStatus", ID: "Ab0Cd1", AtomID: "atom-1", ProcessID: "proc-1", Enabled: true}) {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	set, err := h.c.SetProcessScheduleStatus(ctx, atomapi.ProcessScheduleStatus{Type: "ignored", ID: "Ab0/Cd1", AtomID: "atom-1", ProcessID: "proc-1", Enabled: false})
	if err != nil || set.ID != "Ab0/Cd1" || set.Enabled {
		t.Fatalf("Set = %+v, %v; want the platform's answer", set, err)
	}
	for _, bad := range []atomapi.ProcessScheduleStatus{{AtomID: "a", ProcessID: "p"}, {ID: "i", ProcessID: "p"}, {ID: "i", AtomID: "a"}} {
		if _, err := h.c.SetProcessScheduleStatus(ctx, bad); err == nil {
			t.Errorf("Set(%+v): no error; id, atomId and processId are required", bad)
		}
	}

	want := []exchange{
		{"POST", testPrefix + "/ProcessScheduleStatus/query", `{"QueryFilter":{"expression":{"operator":"and","nestedExpression":[` +
			`{"operator":"EQUALS","property":"atomId","argument":["atom-1"]},{"operator":"EQUALS","property":"processId","argument":["proc-1"]}]}}}`},
		{"POST", testPrefix + "/ProcessScheduleStatus/queryMore", "tok+/="},
		{"POST", testPrefix + "/ProcessScheduleStatus/query", `{"QueryFilter":{"expression":{"operator":"EQUALS","property":"processId","argument":["proc-1"]}}}`},
		{"POST", testPrefix + "/ProcessScheduleStatus/queryMore", "tok+/="},
		{"GET", testPrefix + "/ProcessScheduleStatus/Ab0Cd1", ""},
		{"POST", testPrefix + "/ProcessScheduleStatus/Ab0%2FCd1", `{"id":"Ab0/Cd1","atomId":"atom-1","processId":"proc-1","enabled":false}`},
		{"POST", testPrefix + "/ProcessScheduleStatus/Ab0%2FCd1", `{"id":"Ab0/Cd1","atomId":"atom-1","processId":"proc-1","enabled":false}`},
	}
	if got := seen.list(); !reflect.DeepEqual(got, want) {
		t.Errorf("requests:\n%q\nwant:\n%q", got, want)
	}
	checkRows(t, h, atomapi.OpProcessScheduleStatusQuery, "ProcessScheduleStatus.queryMore",
		atomapi.OpProcessScheduleStatusQuery, "ProcessScheduleStatus.queryMore",
		atomapi.OpProcessScheduleStatusGet, atomapi.OpProcessScheduleStatusUpdate, atomapi.OpProcessScheduleStatusUpdate)
}

// TestChangeListenerStatus: the exact bodies (listenerId left out for the
// *_all actions), an empty 200 is success, and a bad action or id
// combination is refused without a request.
func TestChangeListenerStatus(t *testing.T) {
	var seen exchanges
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		seen.add(r) // an empty 200
	})
	ctx := context.Background()
	if err := h.c.ChangeListenerStatus(ctx, "cont-1", "lst-1", atomapi.ListenerPause); err != nil {
		t.Fatal(err)
	}
	if err := h.c.ChangeListenerStatus(ctx, "cont-1", "", atomapi.ListenerRestartAll); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][3]string{
		{"cont-1", "lst-1", "stop"},
		{"cont-1", "lst-1", "PAUSE"},
		{"cont-1", "lst-1", ""},
		{"cont-1", "lst-1", "pause_all"}, // a listener id with an *_all action
		{"cont-1", "", "resume"},         // a single-listener action without one
		{"", "lst-1", "resume"},
	} {
		if err := h.c.ChangeListenerStatus(ctx, bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("ChangeListenerStatus(%q): no error", bad)
		}
	}
	want := []exchange{
		{"POST", testPrefix + "/changeListenerStatus", `{"listenerId":"lst-1","containerId":"cont-1","action":"pause"}`},
		{"POST", testPrefix + "/changeListenerStatus", `{"containerId":"cont-1","action":"restart_all"}`},
	}
	if got := seen.list(); !reflect.DeepEqual(got, want) {
		t.Errorf("requests:\n%q\nwant:\n%q", got, want)
	}
	checkRows(t, h, atomapi.OpChangeListenerStatus, atomapi.OpChangeListenerStatus)
}

// TestListenerStatus: the async query's filter and token, then the
// response: pending on HTTP 202 and on responseStatusCode 202, then the
// OpenAPI example's statuses; a single result object decodes too.
func TestListenerStatus(t *testing.T) {
	var seen exchanges
	polls := 0
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		x := seen.add(r)
		switch {
		case x.path == testPrefix+"/async/ListenerStatus/query":
			io.WriteString(w, `{"@type":"AsyncOperationTokenResult","asyncToken":{"@type":"AsyncToken",`+
				`"token":"ListenerStatus-3b0a7ae0-60f4-46e7-8169-f9c19a83a2e2"},"responseStatusCode":202}`)
		case x.path == testPrefix+"/async/ListenerStatus/response/ListenerStatus-3b0a7ae0-60f4-46e7-8169-f9c19a83a2e2":
			polls++
			switch polls {
			case 1:
				w.WriteHeader(http.StatusAccepted)
			case 2:
				io.WriteString(w, `{"@type":"AsyncOperationResult","responseStatusCode":202}`)
			default:
				io.WriteString(w, `{"@type":"AsyncOperationResult","result":[{"@type":"ListenerStatus",`+
					`"listenerId":"ea56da44-ea7d-4c80-9866-30556474938e","status":"listening","connectorType":"wss"}],`+
					`"numberOfResults":1,"responseStatusCode":200}`)
			}
		case x.path == testPrefix+"/async/ListenerStatus/response/single%2Fone":
			io.WriteString(w, `{"result":{"listenerId":"l2","status":"paused"},"numberOfResults":1,"responseStatusCode":200}`)
		case x.path == testPrefix+"/async/ListenerStatus/response/none":
			io.WriteString(w, `{"numberOfResults":0,"responseStatusCode":200}`)
		default:
			t.Errorf("unexpected %s %s", x.method, x.path)
			w.WriteHeader(http.StatusNotFound)
		}
	})
	ctx := context.Background()
	token, err := h.c.QueryListenerStatus(ctx, "cont-1", "lst-1")
	if err != nil || token != "ListenerStatus-3b0a7ae0-60f4-46e7-8169-f9c19a83a2e2" {
		t.Fatalf("QueryListenerStatus = %q, %v", token, err)
	}
	if _, err := h.c.QueryListenerStatus(ctx, "cont-1", ""); err != nil {
		t.Fatal(err)
	}
	for i, wantPending := range []bool{true, true, false} {
		st, pending, err := h.c.ListenerStatusResponse(ctx, token)
		if err != nil || pending != wantPending {
			t.Fatalf("poll %d = %+v, %v, %v; want pending=%v", i+1, st, pending, err, wantPending)
		}
		if !pending {
			want := []atomapi.ListenerStatus{{ListenerID: "ea56da44-ea7d-4c80-9866-30556474938e", Status: atomapi.ListenerListening, ConnectorType: "wss"}}
			if !reflect.DeepEqual(st, want) {
				t.Errorf("statuses %+v; want %+v", st, want)
			}
		} else if st != nil {
			t.Errorf("pending poll returned statuses %+v", st)
		}
	}
	st, pending, err := h.c.ListenerStatusResponse(ctx, "single/one")
	if err != nil || pending || len(st) != 1 || st[0].Status != atomapi.ListenerPaused {
		t.Errorf("single result object = %+v, %v, %v; want one paused listener", st, pending, err)
	}
	st, pending, err = h.c.ListenerStatusResponse(ctx, "none")
	if err != nil || pending || len(st) != 0 {
		t.Errorf("no result = %+v, %v, %v; want done with no statuses", st, pending, err)
	}
	if _, _, err := h.c.ListenerStatusResponse(ctx, ""); err == nil {
		t.Error("empty token: no error")
	}
	if _, err := h.c.QueryListenerStatus(ctx, "", "lst-1"); err == nil {
		t.Error("empty containerId: no error")
	}

	got := seen.list()
	wantBodies := []string{
		`{"QueryFilter":{"expression":{"operator":"and","nestedExpression":[` +
			`{"operator":"EQUALS","property":"containerId","argument":["cont-1"]},{"operator":"EQUALS","property":"listenerId","argument":["lst-1"]}]}}}`,
		`{"QueryFilter":{"expression":{"operator":"EQUALS","property":"containerId","argument":["cont-1"]}}}`,
	}
	if len(got) != 7 || got[0].body != wantBodies[0] || got[1].body != wantBodies[1] || got[0].method != "POST" || got[2].method != "GET" {
		t.Errorf("requests %q; want the query bodies %q then 5 GETs", got, wantBodies)
	}
	checkRows(t, h, atomapi.OpListenerStatusQuery, atomapi.OpListenerStatusQuery,
		atomapi.OpListenerStatusResponse, atomapi.OpListenerStatusResponse, atomapi.OpListenerStatusResponse,
		atomapi.OpListenerStatusResponse, atomapi.OpListenerStatusResponse)
}

// The platform's OpenAPI examples for EnvironmentExtensions: the GET answer
// (arrays, JSON booleans, encrypted values left out) and the update request
// (single objects where the schema has arrays, booleans as strings).
const (
	envExtGetExample = `{"@type":"EnvironmentExtensions","connections":{"@type":"Connections","connection":[{"@type":"Connection","field":[{"@type":"Field","customProperties":{"@type":"customProperties","properties":[{"@type":"PropertyPair","key":"plaintTextKey","value":"plainTextValue","encrypted":false},{"@type":"PropertyPair","key":"encryptedKey","encrypted":true}]},"id":"port","value":"9090","encryptedValueSet":false,"usesEncryption":false,"componentOverride":false,"useDefault":false},{"@type":"Field","id":"host","value":"boomi.com","encryptedValueSet":false,"usesEncryption":false,"componentOverride":false,"useDefault":false},{"@type":"Field","id":"user","value":"test","encryptedValueSet":false,"usesEncryption":false,"componentOverride":false,"useDefault":false},{"@type":"Field","id":"password","encryptedValueSet":true,"usesEncryption":true,"componentOverride":false,"useDefault":false}],"id":"ff4d8765...","name":"New FTP Connection"},{"@type":"Connection","field":[{"@type":"Field","id":"url","value":"boomi.com","encryptedValueSet":false,"usesEncryption":false,"componentOverride":false,"useDefault":false},{"@type":"Field","id":"authTokenURL2","encryptedValueSet":false,"usesEncryption":false,"componentOverride":false,"useDefault":false},{"@type":"Field","id":"accessToken2","encryptedValueSet":false,"usesEncryption":true,"componentOverride":false,"useDefault":false},{"@type":"Field","id":"refreshAuthScheme","value":"req_body_params_auth","encryptedValueSet":false,"usesEncryption":false,"componentOverride":false,"useDefault":false}],"id":"9e9cab68...","name":"New HTTP Client Connection"},{"@type":"Connection","field":[{"@type":"Field","id":"directory","value":"C://","encryptedValueSet":false,"usesEncryption":false,"componentOverride":false,"useDefault":false},{"@type":"Field","CloudManagedSecretConfig":{"@type":"CloudManagedSecretConfig","usesRemoteSecretsManager":true,"secretsManagerType":"GCP","secretReference":"projects/634801617861/secrets/testQA/versions/6"}}],"id":"f8f36a2c...","name":"Extension Test BOOMI-194"}]},"tradingPartners":{"@type":"TradingPartners","tradingPartner":[{"@type":"TradingPartner","category":[{"@type":"TradingPartnerCategory","field":[{"@type":"Field","id":"diskget-directory","value":"D:","encryptedValueSet":false,"usesEncryption":false,"componentOverride":false,"useDefault":false},{"@type":"Field","id":"disksend-create","value":"true","encryptedValueSet":false,"usesEncryption":false,"componentOverride":false,"useDefault":false}],"id":"disk","name":"Disk"},{"@type":"TradingPartnerCategory","field":[{"@type":"Field","id":"x12envelope-authorinfoqual","encryptedValueSet":false,"usesEncryption":false,"componentOverride":false,"useDefault":false},{"@type":"Field","id":"x12envelope-interchangeid","encryptedValueSet":false,"usesEncryption":false,"componentOverride":false,"useDefault":false},{"@type":"Field","id":"x12envelope-version","encryptedValueSet":false,"usesEncryption":false,"componentOverride":false,"useDefault":false},{"@type":"Field","id":"x12envelope-gsVersion","encryptedValueSet":false,"usesEncryption":false,"componentOverride":false,"useDefault":false},{"@type":"Field","id":"x12envelope-respagencycode","encryptedValueSet":false,"usesEncryption":false,"componentOverride":false,"useDefault":false}],"id":"x12","name":"X12 Information"}],"id":"a6b22ed0...","name":"Boomi - My Company"},{"@type":"TradingPartner","category":[{"@type":"TradingPartnerCategory","field":[{"@type":"Field","id":"disksend-create","encryptedValueSet":false,"usesEncryption":false,"componentOverride":false,"useDefault":false}],"id":"disk","name":"Disk"},{"@type":"TradingPartnerCategory","field":[{"@type":"Field","id":"x12basic","encryptedValueSet":false,"usesEncryption":false,"componentOverride":false,"useDefault":false},{"@type":"Field","id":"x12basic","encryptedValueSet":false,"usesEncryption":false,"componentOverride":false,"useDefault":false}],"id":"x12","name":"X12 Information"}],"id":"67383048...","name":"Trading Partner"}]},"crossReferences":{"@type":"CrossReferences","crossReference":[{"@type":"CrossReference","CrossReferenceRows":{"@type":""},"id":"07f7533a...","overrideValues":false,"name":"Cross Reference"},{"@type":"CrossReference","CrossReferenceRows":{"@type":""},"id":"702c5971-482d-45c3-87e1-f6d6840cf70e","overrideValues":false,"name":"Cross Reference"},{"@type":"CrossReference","CrossReferenceRows":{"@type":"","row":[{"@type":"CrossReferenceRow","ref1":"13.0","ref2":"1","ref3":"6","ref4":"6","ref5":"Monthly (with 13th period)","ref6":"","ref7":"","ref8":"","ref9":"","ref10":"","ref11":"","ref12":"","ref13":"","ref14":"","ref15":"","ref16":"","ref17":"","ref18":"","ref19":"","ref20":""}]},"id":"ef8147c4...","overrideValues":true,"name":"TEST-3292"}]},"processProperties":{"@type":"OverrideProcessProperties","ProcessProperty":[{"@type":"OverrideProcessProperty","ProcessPropertyValue":[{"@type":"ProcessPropertyValue","label":"String","key":"68dad3cb...","encryptedValueSet":false,"useDefault":true},{"@type":"ProcessPropertyValue","label":"Password","key":"af61be8f...","value":"","encryptedValueSet":false,"useDefault":true}],"id":"23a30680...","name":"Test Some Props Yo"}]},"properties":{"@type":"","property":[{"@type":"","name":"Properties","value":"10/10/2020"},{"@type":"","name":"DynamicProp","value":"string"}]},"PGPCertificates":{"@type":"PGPCertificates","PGPCertificate":[{"@type":"PGPCertificate","id":"0a1c950d...","value":"e8ed9a9e...","useDefault":false}]},"environmentId":"4f607d09...","extensionGroupId":"","id":"4f607d09..."}`

	envExtUpdateExample = `{"id":"456789ab-cdef-0123-4567-89abcdef0123","extensionGroupId":"2545e8cb-3162-4729-8dff-3a8ccfc48933","environmentId":"456789ab-cdef-0123-4567-89abcdef0123","partial":"false","connections":{"connection":[{"name":"Local MySql","id":"9ba5dfab-8781-4e6a-b908-0c7a7797d17a","field":[{"componentOverride":"false","usesEncryption":"false","encryptedValueSet":"false","id":"exhaustedAction","useDefault":"true","customProperties":{"properties":[{"key":"plainTextKey","value":"plainTextValue","encrypted":"false"},{"key":"encryptedKey","value":"encryptedValue","encrypted":"true"}]}},{"componentOverride":"false","usesEncryption":"false","encryptedValueSet":"false","id":"driverId","useDefault":"true"},{"componentOverride":"false","usesEncryption":"false","encryptedValueSet":"false","id":"driverId","useDefault":"true"}]},{"name":"AndLinux - Datadump","id":"e3aeadb7-ee49-4596-9e8f-22c04724c88d","field":{"componentOverride":"false","usesEncryption":"false","encryptedValueSet":"false","id":"directory","value":"mydirectory","useDefault":"true"}},{"name":"New QuickBooks Connection","id":"c9f59f09-e592-4dae-98b9-ddf1e3512f53","field":[{"componentOverride":"false","usesEncryption":"false","encryptedValueSet":"false","id":"appName","useDefault":"true"},{"componentOverride":"false","usesEncryption":"false","encryptedValueSet":"false","id":"companyFileName","useDefault":"true"},{"componentOverride":"false","usesEncryption":"true","encryptedValueSet":"false","id":"toBeEncrypted","value":"toBeEncrypted","useDefault":"true"},{"@type":"Field","CloudManagedSecretConfig":{"@type":"CloudManagedSecretConfig","usesRemoteSecretsManager":true,"secretsManagerType":"GCP","secretReference":"projects/634801617861/secrets/testQA/versions/6"}}]}]},"operations":{"operation":{"id":"2b9a80d2-103d-4eba-8b61-b7401ab76cf8","name":"WebService Operation","field":{"componentOverride":"false","encryptedValueSet":"false","id":"ObjectName","usesEncryption":"false","value":"Updated","useDefault":"true"}}},"tradingPartners":{"tradingPartner":{"name":"My Company","id":"19b261d1-70d3-45a7-bd48-ae7c7df5ea7e","category":[{"name":"AS2","id":"as2","field":[{"componentOverride":"true","usesEncryption":"false","encryptedValueSet":"false","value":"85166fdd-946e-42c7-9264-2b6db77d2d35","id":"as2identity-encryptAlias","useDefault":"true"},{"componentOverride":"false","usesEncryption":"false","encryptedValueSet":"false","value":"","id":"as2identity-as2Id","useDefault":"true"},{"componentOverride":"false","usesEncryption":"false","encryptedValueSet":"false","id":"as2identity-mdnAlias","useDefault":"true"}]},{"name":"X12 Information","id":"x12","field":[{"componentOverride":"false","usesEncryption":"false","encryptedValueSet":"false","id":"x12envelope-interchangeid","useDefault":"true"},{"componentOverride":"false","usesEncryption":"false","encryptedValueSet":"false","id":"x12envelope-securityinfo","useDefault":"true"},{"componentOverride":"false","usesEncryption":"false","encryptedValueSet":"false","id":"x12envelope-version","useDefault":"true"}]}]}},"sharedCommunications":{"sharedCommunication":{"id":"54748ce7-fd92-434c-8db3-2717b44b2692","name":"Best Enterprises MyCo","type":"http","field":[{"id":"http-trustedcertalias","encryptedValueSet":"false","usesEncryption":"false","componentOverride":"false","value":"usercred","useDefault":"true"},{"id":"http-password","encryptedValueSet":"false","usesEncryption":"true","componentOverride":"false","value":"toBeEncrypted","useDefault":"true"},{"id":"http-clientId","encryptedValueSet":"false","usesEncryption":"false","componentOverride":"false","value":"id123","useDefault":"true"},{"id":"http-user","encryptedValueSet":"false","usesEncryption":"false","componentOverride":"false","value":"admin","useDefault":"true"}]}},"crossReferences":{"crossReference":{"name":"My Cross Reference","overrideValues":"true","id":"a6759305-9ed9-47d4-a76f-2ba227454d18","CrossReferenceRows":{"row":[{"ref3":"3","ref2":"2","ref1":"1"},{"ref3":"1","ref2":"34","ref1":"12"},{"ref3":"2","ref2":"1","ref1":"3"}]}}},"processProperties":{"ProcessProperty":{"name":"Test Process Property","id":"5399215e-3cc8-4006-bfe7-c3ae71df6c26","ProcessPropertyValue":[{"encryptedValueSet":"false","value":"300","key":"new-1355426770730","label":"First","useDefault":"true"},{"encryptedValueSet":"false","value":"400","key":"new-1355426788553","label":"Second","useDefault":"true"}]}},"properties":{"property":[{"name":"reference","value":"myNewreference"},{"name":"baseURL","value":"myurl"},{"name":"datetime","value":"20110111"}]},"PGPCertificates":{"PGPCertificate":{"id":"6a9cb126-57ef-44e1-b30b-7770f4b803b6","value":"Production Certificate"}}}`

	// envExtUpdateAnswerHead is the update answer example without its
	// echoed "EnvironmentExtensions" member, which the test appends.
	envExtUpdateAnswerHead = `{"@type":"EnvironmentExtensions","processProperties":{"@type":"OverrideProcessProperties","ProcessProperty":[{"@type":"OverrideProcessProperty","ProcessPropertyValue":[{"@type":"ProcessPropertyValue","label":"String","key":"68dad3cb...","value":"Partialupdates","encryptedValueSet":false,"useDefault":false},{"@type":"ProcessPropertyValue","label":"Password","key":"af61be8f...","value":"PasswordUpdated","encryptedValueSet":false,"useDefault":false}],"id":"23a30680...","name":"Test Some Props Yo"}]},"environmentId":"456789ab...","extensionGroupId":"","id":"6f678d09...","partial":true`
)

func otherKeys(x atomapi.EnvironmentExtensions) string {
	var k []string
	for key := range x.Other {
		k = append(k, key)
	}
	slices.Sort(k)
	return fmt.Sprint(k)
}

// TestEnvironmentExtensionsDecodeExamples decodes the OpenAPI examples:
// arrays or single objects, booleans or strings, missing encrypted values as
// nil, unknown sections kept in Other; encoding and decoding again gives the
// same value.
func TestEnvironmentExtensionsDecodeExamples(t *testing.T) {
	var g atomapi.EnvironmentExtensions
	if err := json.Unmarshal([]byte(envExtGetExample), &g); err != nil {
		t.Fatalf("GET example: %v", err)
	}
	if g.ID != "4f607d09..." || g.EnvironmentID != "4f607d09..." || g.Type != "EnvironmentExtensions" || g.Partial {
		t.Errorf("GET example header = %+v", g)
	}
	if g.Connections == nil || len(g.Connections.Connection) != 3 {
		t.Fatalf("GET example connections = %+v; want 3", g.Connections)
	}
	ftp := g.Connections.Connection[0]
	if ftp.ID != "ff4d8765..." || ftp.Name != "New FTP Connection" || len(ftp.Field) != 4 {
		t.Fatalf("FTP connection = %+v", ftp)
	}
	if port := ftp.Field[0]; port.ID != "port" || port.Value == nil || *port.Value != "9090" || port.CustomProperties == nil ||
		len(port.CustomProperties.Properties) != 2 || !port.CustomProperties.Properties[1].Encrypted || port.CustomProperties.Properties[1].Value != nil {
		t.Errorf("port field = %+v; want 9090 with two custom properties, the encrypted one without value", port)
	}
	if pw := ftp.Field[3]; pw.ID != "password" || pw.Value != nil || !pw.UsesEncryption || !pw.EncryptedValueSet {
		t.Errorf("password field = %+v; want no value, encrypted and set", pw)
	}
	if f := g.Connections.Connection[2].Field[1]; f.CloudManagedSecretConfig == nil || f.CloudManagedSecretConfig.SecretsManagerType != "GCP" ||
		!f.CloudManagedSecretConfig.UsesRemoteSecretsManager {
		t.Errorf("secrets-manager field = %+v", f)
	}
	pp := g.ProcessProperties.ProcessProperty
	if len(pp) != 1 || len(pp[0].ProcessPropertyValue) != 2 || pp[0].ProcessPropertyValue[0].Value != nil ||
		pp[0].ProcessPropertyValue[1].Value == nil || *pp[0].ProcessPropertyValue[1].Value != "" || !pp[0].ProcessPropertyValue[0].UseDefault {
		t.Errorf("process properties = %+v; want a missing value as nil and an empty one as \"\"", pp)
	}
	if want := []atomapi.ExtProperty{{"Properties", "10/10/2020"}, {"DynamicProp", "string"}}; !reflect.DeepEqual(g.Properties.Property, want) {
		t.Errorf("properties = %+v; want %+v", g.Properties.Property, want)
	}
	if got := otherKeys(g); got != "[PGPCertificates crossReferences tradingPartners]" {
		t.Errorf("Other keys %s", got)
	}
	roundTrip(t, "GET example", g)

	var u atomapi.EnvironmentExtensions
	if err := json.Unmarshal([]byte(envExtUpdateExample), &u); err != nil {
		t.Fatalf("update example: %v", err)
	}
	if u.Partial || u.ExtensionGroupID != "2545e8cb-3162-4729-8dff-3a8ccfc48933" {
		t.Errorf(`update example: partial "false" = %v, group %q`, u.Partial, u.ExtensionGroupID)
	}
	dd := u.Connections.Connection[1]
	if len(dd.Field) != 1 || dd.Field[0].ID != "directory" || *dd.Field[0].Value != "mydirectory" || !dd.Field[0].UseDefault || dd.Field[0].UsesEncryption {
		t.Errorf(`"field": {…} decodes as %+v; want the one field, useDefault "true" as true`, dd.Field)
	}
	if qb := u.Connections.Connection[2].Field[2]; !qb.UsesEncryption || *qb.Value != "toBeEncrypted" {
		t.Errorf("encrypted field = %+v", qb)
	}
	if pp := u.ProcessProperties.ProcessProperty; len(pp) != 1 || pp[0].ID != "5399215e-3cc8-4006-bfe7-c3ae71df6c26" ||
		len(pp[0].ProcessPropertyValue) != 2 || *pp[0].ProcessPropertyValue[1].Value != "400" || pp[0].ProcessPropertyValue[1].Label != "Second" {
		t.Errorf(`"ProcessProperty": {…} decodes as %+v`, pp)
	}
	if got := otherKeys(u); got != "[PGPCertificates crossReferences operations sharedCommunications tradingPartners]" {
		t.Errorf("Other keys %s", got)
	}
	roundTrip(t, "update example", u)

	var a atomapi.EnvironmentExtensions
	if err := json.Unmarshal([]byte(envExtUpdateAnswerHead+`,"EnvironmentExtensions":`+envExtUpdateExample+`}`), &a); err != nil {
		t.Fatalf("update answer example: %v", err)
	}
	if !a.Partial || a.ID != "6f678d09..." || *a.ProcessProperties.ProcessProperty[0].ProcessPropertyValue[0].Value != "Partialupdates" ||
		otherKeys(a) != "[EnvironmentExtensions]" {
		t.Errorf("update answer example = %+v", a)
	}

	for _, bad := range []string{`{"connections":{"connection":"x"}}`, `{"connections":{"connection":[{"field":7}]}}`, `{"partial":"maybe"}`} {
		var x atomapi.EnvironmentExtensions
		if err := json.Unmarshal([]byte(bad), &x); err == nil {
			t.Errorf("Unmarshal(%s): no error", bad)
		}
	}
}

func roundTrip(t *testing.T, name string, x atomapi.EnvironmentExtensions) {
	t.Helper()
	b, err := json.Marshal(x)
	if err != nil {
		t.Fatalf("%s: Marshal: %v", name, err)
	}
	var y atomapi.EnvironmentExtensions
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: Unmarshal(Marshal): %v", name, err)
	}
	if !reflect.DeepEqual(x, y) {
		t.Errorf("%s: round trip differs:\n%+v\n%+v", name, x, y)
	}
}

// TestUpdateEnvironmentExtensions: the exact body ("partial": true although
// the caller said false, only the given values, Other sent back), the path,
// the answer, the ledger rows; a bad update is refused without a request.
func TestUpdateEnvironmentExtensions(t *testing.T) {
	var seen exchanges
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		x := seen.add(r)
		switch {
		case x.method == "GET" && x.path == testPrefix+"/EnvironmentExtensions/env-1":
			io.WriteString(w, envExtGetExample)
		case x.method == "POST" && x.path == testPrefix+"/EnvironmentExtensions/env-1":
			io.WriteString(w, envExtUpdateAnswerHead+`}`)
		default:
			t.Errorf("unexpected %s %s", x.method, x.path)
			w.WriteHeader(http.StatusNotFound)
		}
	})
	ctx := context.Background()
	g, err := h.c.GetEnvironmentExtensions(ctx, "env-1")
	if err != nil || len(g.Connections.Connection) != 3 {
		t.Fatalf("Get = %+v, %v", g, err)
	}
	x := atomapi.EnvironmentExtensions{
		EnvironmentID: "env-1",
		Partial:       false, // the client sends true regardless
		Connections: &atomapi.ExtConnections{Connection: []atomapi.ExtConnection{{ID: "conn-1", Field: []atomapi.ExtField{
			{ID: "host", Value: strp("db.example")},
			{ID: "password", Value: strp("s3cret"), UsesEncryption: true},
			{ID: "port", UseDefault: true},
		}}}},
		ProcessProperties: &atomapi.ExtProcessProperties{ProcessProperty: []atomapi.ExtProcessProperty{{ID: "pp-1",
			ProcessPropertyValue: []atomapi.ExtPropertyValue{{Key: "k1", Value: strp("v1")}, {Key: "k2", UseDefault: true}}}}},
		Properties: &atomapi.ExtProperties{Property: []atomapi.ExtProperty{{Name: "DynamicProp", Value: "x"}}},
		Other:      map[string]json.RawMessage{"crossReferences": json.RawMessage(`{ "crossReference": [] }`), "partial": json.RawMessage(`false`)},
	}
	out, err := h.c.UpdateEnvironmentExtensions(ctx, x)
	if err != nil || !out.Partial || out.ID != "6f678d09..." || len(out.ProcessProperties.ProcessProperty) != 1 {
		t.Fatalf("Update = %+v, %v; want the platform's answer", out, err)
	}
	if x.Partial || x.ID != "" {
		t.Errorf("Update changed the caller's value: %+v", x)
	}
	want := `{"id":"env-1","environmentId":"env-1","partial":true,` +
		`"connections":{"connection":[{"id":"conn-1","field":[` +
		`{"id":"host","value":"db.example","useDefault":false,"usesEncryption":false,"encryptedValueSet":false,"componentOverride":false},` +
		`{"id":"password","value":"s3cret","useDefault":false,"usesEncryption":true,"encryptedValueSet":false,"componentOverride":false},` +
		`{"id":"port","useDefault":true,"usesEncryption":false,"encryptedValueSet":false,"componentOverride":false}]}]},` +
		`"processProperties":{"ProcessProperty":[{"id":"pp-1","ProcessPropertyValue":[` +
		`{"key":"k1","value":"v1","useDefault":false,"usesEncryption":false,"encryptedValueSet":false},` +
		`{"key":"k2","useDefault":true,"usesEncryption":false,"encryptedValueSet":false}]}]},` +
		`"properties":{"property":[{"name":"DynamicProp","value":"x"}]},` +
		`"crossReferences":{"crossReference":[]}}`
	got := seen.list()
	if len(got) != 2 || got[1].body != want {
		t.Fatalf("update body:\n%s\nwant:\n%s", got[len(got)-1].body, want)
	}

	// A decoded example sent back: partial becomes true, the rest as it came.
	var u atomapi.EnvironmentExtensions
	if err := json.Unmarshal([]byte(envExtUpdateExample), &u); err != nil {
		t.Fatal(err)
	}
	u.ID, u.EnvironmentID = "env-1", "env-1"
	if _, err := h.c.UpdateEnvironmentExtensions(ctx, u); err != nil {
		t.Fatal(err)
	}
	var sent map[string]json.RawMessage
	if err := json.Unmarshal([]byte(seen.list()[2].body), &sent); err != nil || string(sent["partial"]) != "true" || sent["tradingPartners"] == nil {
		t.Errorf(`re-sent example: partial %s, tradingPartners %d bytes; want true and kept`, sent["partial"], len(sent["tradingPartners"]))
	}

	for _, bad := range []atomapi.EnvironmentExtensions{
		{Properties: &atomapi.ExtProperties{}},
		{ID: "env-1", Connections: &atomapi.ExtConnections{Connection: []atomapi.ExtConnection{{Field: []atomapi.ExtField{{ID: "f"}}}}}},
		{ID: "env-1", Connections: &atomapi.ExtConnections{Connection: []atomapi.ExtConnection{{ID: "c", Field: []atomapi.ExtField{{Value: strp("leak-me")}}}}}},
		{ID: "env-1", ProcessProperties: &atomapi.ExtProcessProperties{ProcessProperty: []atomapi.ExtProcessProperty{{ID: "p",
			ProcessPropertyValue: []atomapi.ExtPropertyValue{{Value: strp("leak-me")}}}}}},
		{ID: "env-1", Properties: &atomapi.ExtProperties{Property: []atomapi.ExtProperty{{Value: "leak-me"}}}},
		{ID: "env-1", Other: map[string]json.RawMessage{"tradingPartners": json.RawMessage(`{not json`)}},
	} {
		_, err := h.c.UpdateEnvironmentExtensions(ctx, bad)
		if err == nil {
			t.Errorf("Update(%+v): no error", bad)
		} else if strings.Contains(err.Error(), "leak-me") {
			t.Errorf("refusal shows a value: %v", err)
		}
	}
	if n := len(seen.list()); n != 3 {
		t.Errorf("%d requests; a refused update must not be sent", n)
	}
	checkRows(t, h, atomapi.OpEnvironmentExtensionsGet, atomapi.OpEnvironmentExtensionsUpdate, atomapi.OpEnvironmentExtensionsUpdate)
}

// TestUpdateEnvironmentExtensionsSecrets: a platform that echoes the body in
// its error (400, or 500 until the retries are spent, or cut in the middle
// of a secret) never gets an encrypted value into the error the client
// returns, in any section; plain values stay readable and the error still
// matches its sentinel.
func TestUpdateEnvironmentExtensionsSecrets(t *testing.T) {
	const (
		fieldSecret  = "FIELD-canary-7d1e"
		propSecret   = `prop"canary<9a>`
		customSecret = "CUSTOM-canary-41b0"
		otherSecret  = "OTHER-canary-c3f2"
	)
	secrets := []string{fieldSecret, propSecret, customSecret, otherSecret}
	x := atomapi.EnvironmentExtensions{
		ID: "env-1",
		Connections: &atomapi.ExtConnections{Connection: []atomapi.ExtConnection{{ID: "conn-1", Field: []atomapi.ExtField{
			{ID: "host", Value: strp("db.example")},
			{ID: "password", Value: strp(fieldSecret), UsesEncryption: true},
			{ID: "headers", CustomProperties: &atomapi.ExtCustomProperties{Properties: []atomapi.ExtPropertyPair{
				{Key: "token", Value: strp(customSecret), Encrypted: true}}}},
		}}}},
		ProcessProperties: &atomapi.ExtProcessProperties{ProcessProperty: []atomapi.ExtProcessProperty{{ID: "pp-1",
			ProcessPropertyValue: []atomapi.ExtPropertyValue{{Key: "pw", Value: strp(propSecret), UsesEncryption: true}}}}},
		Other: map[string]json.RawMessage{"sharedCommunications": json.RawMessage(
			`{"sharedCommunication":{"id":"sc","field":[{"id":"http-password","usesEncryption":"true","value":"` + otherSecret + `"}]}}`)},
	}
	for _, tc := range []struct {
		name     string
		status   int
		echo     func(body string) string
		sentinel error
	}{
		{"400 JSON message", http.StatusBadRequest, func(b string) string {
			m, _ := json.Marshal(map[string]string{"@type": "Error", "message": "Invalid extensions: " + b})
			return string(m)
		}, atomapi.ErrBadRequest},
		{"500 retried", http.StatusInternalServerError, func(b string) string {
			return `{"@type":"Error","message":` + fmt.Sprintf("%q", "bad "+b) + `}`
		}, atomapi.ErrServer},
		{"400 text cut in a secret", http.StatusBadRequest, func(b string) string {
			return strings.Repeat("x", 2040) + fieldSecret + " " + b
		}, atomapi.ErrBadRequest},
		{"400 message cut in a secret", http.StatusBadRequest, func(b string) string {
			m, _ := json.Marshal(map[string]string{"message": strings.Repeat("y", 2044) + customSecret})
			return string(m)
		}, atomapi.ErrBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.echo(string(b)))
			})
			_, err := h.c.UpdateEnvironmentExtensions(context.Background(), x)
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("Update = %v; want %v", err, tc.sentinel)
			}
			ae, ok := errorsAs[*atomapi.APIError](err)
			if !ok {
				t.Fatalf("Update = %v; want an APIError inside", err)
			}
			shown := []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err), ae.Message, ae.Excerpt, ae.Error()}
			for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
				shown = append(shown, u.Error())
			}
			_, ended := h.rec.calls()
			for _, res := range ended { // what the ledger's rows keep
				if res.Err != nil {
					shown = append(shown, res.Err.Error())
				}
			}
			for _, s := range shown {
				for _, sec := range secrets {
					if strings.Contains(s, "canary") || strings.Contains(s, sec[:8]) {
						t.Errorf("error shows secret %q: %.400s", sec, s)
					}
				}
			}
			if tc.name == "400 message cut in a secret" && (strings.HasSuffix(ae.Message, "CUST") || !strings.HasSuffix(ae.Message, "****")) {
				t.Errorf("message cut in a secret ends %q; want the secret's start redacted", ae.Message[len(ae.Message)-12:])
			}
			if tc.name == "400 JSON message" && !strings.Contains(ae.Message, "db.example") {
				t.Errorf("message %q lost the plain values", ae.Message)
			}
			if tc.status == http.StatusInternalServerError {
				if calls, _ := h.rec.calls(); len(calls) != 3 || !strings.Contains(err.Error(), "after 3 attempts") {
					t.Errorf("%d attempts, error %q; want 3 (safe: retried) and the count kept", len(calls), err)
				}
			}
		})
	}
}
