// Package testserver is the one test harness of the module: what the
// packages' tests use to run a tinysse server on 127.0.0.1 and talk to it
// as clients do. It holds
//
//   - Buffer, the log and output capture the server's goroutines write
//     into while a test reads it;
//   - Serve, which runs anything with Serve(net.Listener) and
//     Shutdown(ctx) on a free loopback port and stops it when the test
//     ends (the in-process engine + transport + lua stack is in
//     subpackage inproc, which the transport and engine packages' own
//     tests cannot import);
//   - Build and StartProcess, the cmd/tinysse binary as a child process;
//   - Stream, an SSE subscriber on a raw socket whose frames are read by
//     internal/sseparse, the module's one SSE parser;
//   - Do, Publish and WantError, plain HTTP requests and their checks;
//   - FreeAddr and Eventually.
//
// Every read and wait is bounded (by Wait unless a caller says otherwise),
// so a broken server fails a test instead of hanging it. It imports no
// tinysse package but sseparse, so any package's tests may use it.
package testserver
