package evidence_test

import (
	"archive/zip"
	"bytes"
	"testing"

	"runnerd/internal/evidence"
)

func sampleZIP(t testing.TB, files map[string]string) []byte {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for name, body := range files {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(body))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// FuzzCheckZIP: CheckZIP never panics, accepts only what archive/zip can
// read whole (every entry inflated with its checksum), and never accepts a
// prefix of a valid file that lost its central directory.
func FuzzCheckZIP(f *testing.F) {
	good := sampleZIP(f, map[string]string{"process_log.log": "2026-03-02 10:00:00 SEVERE Connection refused\n"})
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte("PK\x03\x04"))
	f.Add([]byte("<html>not a zip</html>"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := evidence.CheckZIP(data)
		if err != nil {
			return
		}
		zr, zerr := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		if zerr != nil || len(zr.File) != n || n == 0 {
			t.Fatalf("CheckZIP accepted %d entries; archive/zip says %v, %v", n, zr, zerr)
		}
	})
}

func TestCheckZIP(t *testing.T) {
	good := sampleZIP(t, map[string]string{"a.log": "hello\n", "b/c.dat": "x"})
	if n, err := evidence.CheckZIP(good); err != nil || n != 2 {
		t.Fatalf("CheckZIP(valid) = %d, %v", n, err)
	}
	for name, data := range map[string][]byte{
		"truncated": good[:len(good)-10],
		"empty":     nil,
		"html":      []byte("<html>oops</html>"),
		"no files":  sampleZIP(t, nil),
	} {
		if _, err := evidence.CheckZIP(data); err == nil {
			t.Errorf("CheckZIP(%s) accepted it", name)
		}
	}
	// A corrupted body with an intact directory fails its checksum.
	bad := bytes.Clone(good)
	i := bytes.Index(bad, []byte("hello"))
	bad[i] = 'j'
	if _, err := evidence.CheckZIP(bad); err == nil {
		t.Errorf("CheckZIP accepted a file whose entry fails its checksum")
	}
}
