package main

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"runnerd/internal/evidence"
	"runnerd/internal/report"
	"runnerd/internal/store"
)

// cmdLogs prints (or with -o writes) the failure evidence kept with a run:
// its process log, or with -artifacts its execution artifacts.
func cmdLogs(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet(e, "logs", &c, true)
	out := fs.String("o", "", "write the kept ZIP to `FILE` instead of printing its contents")
	artifacts := fs.Bool("artifacts", false, "the execution artifacts instead of the process log")
	list := fs.Bool("list", false, "list the files in the ZIP, not their contents")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("logs: want exactly one RUN (a run id, as history shows)")
	}
	id, err := strconv.ParseInt(pos[0], 10, 64)
	if err != nil || id <= 0 {
		return usagef("logs: %q is not a run id", pos[0])
	}
	_, db, err := openConfigStore(ctx, e, c.config, store.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	es, err := db.RunEvidence(ctx, id)
	if err != nil {
		return err
	}
	if c.json {
		for _, x := range es {
			if err := jsonLines(e.stdout, report.ToEvidence(x)); err != nil {
				return err
			}
		}
		if len(es) == 0 {
			return errSilent
		}
		return nil
	}
	kind := store.EvidenceLog
	if *artifacts {
		kind = store.EvidenceArtifacts
	}
	var x *store.Evidence
	for i := range es {
		if es[i].Kind == kind {
			x = &es[i]
		}
	}
	what := map[string]string{store.EvidenceLog: "process log", store.EvidenceArtifacts: "execution artifacts"}[kind]
	if x == nil {
		if r, err := db.GetRun(ctx, id); err == nil {
			why := "runnerd keeps evidence of failed execute runs with a platform execution"
			if evidence.Wants(r) {
				why = "the job's log_level is off, or artifacts = false"
			}
			fmt.Fprintf(e.stdout, "run %d (job %s, %s): no %s is kept: %s\n", id, r.Job, r.State, what, why)
		} else {
			fmt.Fprintf(e.stdout, "run %d: no such run\n", id)
		}
		return errSilent
	}
	switch x.State {
	case store.EvidencePending:
		fmt.Fprintf(e.stdout, "run %d: %s of execution %s is pending: %s; next attempt at %s\n",
			id, what, x.ExecutionID, x.Reason, shortTime(x.NextAt))
		return errSilent
	case store.EvidenceGivenUp, store.EvidencePruned:
		fmt.Fprintf(e.stdout, "run %d: %s of execution %s was %s: %s\n", id, what, x.ExecutionID,
			strings.ReplaceAll(x.State, "_", " "), x.Reason)
		return errSilent
	}
	data, err := os.ReadFile(x.Path)
	if err != nil {
		return fmt.Errorf("run %d: the kept %s: %w", id, what, err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != x.SHA256 {
		return fmt.Errorf("run %d: %s: the file was changed or damaged since it was kept (sha256 differs from the ledger's)", id, x.Path)
	}
	if *out != "" {
		if err := evidence.WriteAtomic(*out, data); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "wrote %s: the %s of run %d (execution %s), %d bytes, sha256 %s\n",
			*out, what, id, x.ExecutionID, len(data), x.SHA256)
		return nil
	}
	return printZIP(e.stdout, data, *list)
}

// printZIP lists a ZIP's files and, unless list, prints each text file.
func printZIP(w io.Writer, data []byte, list bool) error {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return fmt.Errorf("the kept file is not a valid ZIP: %w", err)
	}
	for _, f := range zr.File {
		fmt.Fprintf(w, "== %s (%d bytes) ==\n", f.Name, f.UncompressedSize64)
		if list {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		body, err := io.ReadAll(io.LimitReader(rc, 64<<20))
		rc.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		if !utf8.Valid(body) || bytes.IndexByte(body, 0) >= 0 {
			fmt.Fprintf(w, "(binary; write the ZIP with -o FILE)\n")
			continue
		}
		w.Write(body)
		if len(body) > 0 && body[len(body)-1] != '\n' {
			fmt.Fprintln(w)
		}
	}
	return nil
}
