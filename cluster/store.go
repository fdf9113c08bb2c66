package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Store is a NATS server with JetStream inside this process: the durable
// history of a single node (--store). It listens on no port; the node
// reaches it through an in-process connection (Config.InProcess), so the
// rest is cluster mode's code path: one stream, the stream sequence as
// id, replay from the stream by Last-Event-ID.
//
// Durability: the stream is a file store of one replica, which writes
// each message to its file (a write(2) to the OS) before it acknowledges
// it, so a message answered 202 survives the process being killed. The
// files are fsynced every StoreConfig.Sync, or before every
// acknowledgement with SyncAlways: what a power cut may lose is what was
// acknowledged within the last Sync.
type Store struct {
	srv  *server.Server
	lock *os.File // holds the directory's lock (lockDir) until Close
}

// StoreConfig configures a Store. The zero value of every field but Dir
// is its documented default.
type StoreConfig struct {
	// Dir holds the store (JetStream's files under Dir/jetstream). Made if
	// missing. One process at a time: a second one is refused.
	Dir string
	// Sync is how often the files are fsynced. Default 1s.
	Sync time.Duration
	// SyncAlways fsyncs before every acknowledgement (much slower).
	SyncAlways bool
	// MaxPayload is the largest message the store takes, in bytes.
	// Default 1MB; at most 64MB.
	MaxPayload int
	// Logger receives the server's warnings and errors. Default
	// slog.Default().
	Logger *slog.Logger
}

// maxStorePayload is nats-server's hard limit on max_payload.
const maxStorePayload = 64 << 20

// OpenStore starts the embedded server on cfg.Dir and waits until it takes
// connections.
func OpenStore(cfg StoreConfig) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("cluster: the store needs a directory")
	}
	if cfg.Sync < 0 || cfg.MaxPayload < 0 {
		return nil, errors.New("cluster: store sync and max payload must not be negative")
	}
	if cfg.Sync == 0 {
		cfg.Sync = time.Second
	}
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = 1 << 20
	}
	if cfg.MaxPayload > maxStorePayload {
		return nil, fmt.Errorf("cluster: store max payload %d is over %d", cfg.MaxPayload, maxStorePayload)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("cluster: store: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("cluster: store: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "tinysse-store",
		DontListen: true,
		JetStream:  true,
		StoreDir:   dir,
		SyncAlways: cfg.SyncAlways,
		// SyncInterval is also the one the server uses with SyncAlways.
		SyncInterval: cfg.Sync,
		MaxPayload:   int32(cfg.MaxPayload),
		NoSigs:       true,
		NoLog:        true,
	})
	if err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("cluster: store: %w", err)
	}
	srv.SetLogger(&storeLogger{cfg.Logger}, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		_ = lock.Close()
		return nil, errors.New("cluster: the store did not start within 30s")
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		_ = lock.Close()
		return nil, errors.New("cluster: the store's JetStream did not start (see the log)")
	}
	return &Store{srv: srv, lock: lock}, nil
}

// Server is the embedded server, for Config.InProcess.
func (s *Store) Server() *server.Server { return s.srv }

// Close shuts the server down (flushing and closing its files) and frees
// the directory. Call it after the Node using it is closed.
func (s *Store) Close() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	_ = s.lock.Close()
}

// storeLogger hands the embedded server's warnings and errors to slog;
// its notices (start-up banners) are dropped.
type storeLogger struct{ log *slog.Logger }

func (l *storeLogger) Noticef(string, ...any) {}
func (l *storeLogger) Warnf(format string, v ...any) {
	l.log.Warn("store: " + fmt.Sprintf(format, v...))
}
func (l *storeLogger) Fatalf(format string, v ...any) {
	l.log.Error("store: " + fmt.Sprintf(format, v...))
}
func (l *storeLogger) Errorf(format string, v ...any) {
	l.log.Error("store: " + fmt.Sprintf(format, v...))
}
func (l *storeLogger) Debugf(string, ...any) {}
func (l *storeLogger) Tracef(string, ...any) {}
