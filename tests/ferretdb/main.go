// Command fzip-ferretdb runs FerretDB v1 (SQLite handler) in one process for
// fzip's tests.
//
// `go install .../cmd/ferretdb@v1.24.2` panics at start because the module
// zip lacks build/version/version.txt; the embeddable package
// github.com/FerretDB/FerretDB/ferretdb has no such check and keeps
// telemetry off, so this wrapper is the supported way to run it from a
// module cache.  It listens on 127.0.0.1 (port 0 picks a free one), writes
// the mongodb:// URI to -uri-file once the listener is bound (atomically,
// via rename, so a reader never sees half a line), and exits cleanly on
// SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	dataDir := flag.String("data-dir", "", "existing directory for FerretDB's SQLite files (required)")
	listen := flag.String("listen", "127.0.0.1:0", "TCP address to listen on; port 0 picks a free port")
	uriFile := flag.String("uri-file", "", "write the mongodb:// URI here once listening (default: stdout)")
	logLevel := flag.String("log-level", "warn", "FerretDB log level: debug, info, warn, error")
	sqliteParams := flag.String("sqlite-params", "_pragma=synchronous(normal)",
		"query parameters for FerretDB's SQLite URL; the default skips the fsync per commit, "+
			"still crash-consistent in WAL mode, which test data does not need more than")
	flag.Parse()

	if err := run(*dataDir, *listen, *uriFile, *logLevel, *sqliteParams); err != nil {
		fmt.Fprintf(os.Stderr, "fzip-ferretdb: %s\n", err)
		os.Exit(1)
	}
}

func run(dataDir, listen, uriFile, logLevel, sqliteParams string) error {
	if dataDir == "" {
		return fmt.Errorf("-data-dir is required")
	}

	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}

	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return fmt.Errorf("data directory %q does not exist", abs)
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("bad -log-level %q: %s", logLevel, err)
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	// The SQLite handler wants a file: URL naming a directory, with the
	// trailing slash.
	sqliteURL := "file:" + abs + "/"
	if sqliteParams != "" {
		sqliteURL += "?" + sqliteParams
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
	})
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	done := make(chan struct{})

	go func() {
		defer close(done)
		f.Run(ctx)
	}()

	// The listener is bound by New, so the URI is final already.
	if err := publishURI(f.MongoDBURI(), uriFile); err != nil {
		stop()
		<-done

		return err
	}

	<-done

	return nil
}

func publishURI(uri, uriFile string) error {
	if uriFile == "" {
		_, err := fmt.Println(uri)
		return err
	}

	tmp := uriFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(uri+"\n"), 0o644); err != nil {
		return err
	}

	return os.Rename(tmp, uriFile)
}
