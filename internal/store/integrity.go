package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// The integrity policy (issue 16). A full PRAGMA quick_check reads every
// page: seconds on a 90-day ledger, on every command, for damage that is
// rare. So:
//
//   - every open runs the cheap check, whose cost does not grow with the
//     file: checkFiles (the database header and the WAL header, read before
//     SQLite opens the file) and DB.check (SQLite parses the schema and
//     reads schema_migrations; an unknown schema version is refused);
//   - the full quick_check runs at the daemon's start when the last daemon
//     did not stop cleanly (Options.Daemon and its marker), when asked
//     (Options.FullCheck: runnerd check -full), and in the background when the
//     daemon calls DB.QuickCheck;
//   - damage the cheap check cannot see (inside a table's pages) is met by
//     the query that reads it, as SQLITE_CORRUPT: an error, never a silent
//     wrong answer.
//
// A file refused as corrupt is never changed: nothing is written before the
// checks pass.

const sqliteMagic = "SQLite format 3\x00"

// checkFiles reads the database header (the first 100 bytes) and, if there
// is one, the WAL header, and returns ErrCorrupt naming the file when either
// is not SQLite's. A missing or empty file passes when allowNew (SQLite
// creates or initialises it). It opens both read-only and writes nothing.
func checkFiles(path string, allowNew bool) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) && allowNew {
		return nil
	} else if err != nil {
		return fmt.Errorf("store: open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("store: open %s: %w", path, err)
	}
	if fi.Size() == 0 && allowNew {
		return nil
	}
	var h [100]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return corruptf(path, "the file is %d bytes, shorter than an SQLite header", fi.Size())
	}
	if string(h[:16]) != sqliteMagic {
		return corruptf(path, "the header is not an SQLite database's")
	}
	pageSize := int64(binary.BigEndian.Uint16(h[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	if pageSize < 512 || pageSize > 65536 || pageSize&(pageSize-1) != 0 {
		return corruptf(path, "the header gives an impossible page size %d", pageSize)
	}
	if h[21] != 64 || h[22] != 32 || h[23] != 32 {
		return corruptf(path, "the header's payload fractions are %d/%d/%d, not 64/32/32", h[21], h[22], h[23])
	}
	// The page count in the header is valid when its version-valid-for
	// number equals the change counter; a file shorter than that lost pages.
	// Not while a WAL holds frames: a checkpoint writes page 1 (the header,
	// with the new count) before the pages that extend the file, so a reader
	// beside a running daemon can catch it in between, and after a crash in a
	// checkpoint the WAL still holds the pages SQLite copies again. Without a
	// WAL the reading is taken twice, 50 ms apart, so that a writer that has
	// just opened the file cannot make it look short.
	short := func(h []byte, size int64) (pages int64, ok bool) {
		if binary.BigEndian.Uint32(h[24:28]) != binary.BigEndian.Uint32(h[92:96]) {
			return 0, false
		}
		pages = int64(binary.BigEndian.Uint32(h[28:32]))
		return pages, size < pages*pageSize
	}
	if _, bad := short(h[:], fi.Size()); bad && !walHasFrames(path+"-wal") {
		time.Sleep(50 * time.Millisecond)
		if fi2, err := f.Stat(); err == nil {
			if _, err := f.ReadAt(h[:], 0); err == nil {
				if pages, bad := short(h[:], fi2.Size()); bad && !walHasFrames(path+"-wal") {
					return corruptf(path, "the file is %d bytes, but its header counts %d pages of %d bytes (truncated?)",
						fi2.Size(), pages, pageSize)
				}
			}
		}
	}
	return checkWAL(path+"-wal", pageSize)
}

// walHasFrames reports whether the WAL at path holds more than its header.
func walHasFrames(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Size() > 32
}

// checkWAL refuses a WAL file whose header is not SQLite's: SQLite would
// ignore such a WAL, silently dropping the transactions committed in it.
func checkWAL(path string, pageSize int64) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("store: open %s: %w", path, err)
	}
	defer f.Close()
	var h [32]byte
	n, err := io.ReadFull(f, h[:])
	if n == 0 {
		return nil // empty: no frames
	}
	if err != nil {
		return corruptf(path, "the write-ahead log is %d bytes, shorter than its header", n)
	}
	if m := binary.BigEndian.Uint32(h[0:4]); m != 0x377f0682 && m != 0x377f0683 {
		return corruptf(path, "the write-ahead log's header is not SQLite's")
	}
	if ps := int64(binary.BigEndian.Uint32(h[8:12])); ps != pageSize {
		return corruptf(path, "the write-ahead log's page size %d differs from the database's %d", ps, pageSize)
	}
	return nil
}

func corruptf(path, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s; the file was left in place: "+
		"restore it from a backup (runnerd backup FILE) or move it aside to start an empty ledger",
		ErrCorrupt, path, fmt.Sprintf(format, args...))
}
