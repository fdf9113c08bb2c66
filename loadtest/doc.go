// Command loadtest drives an SSE server with subscribers and publishers,
// checks every delivery and measures the server.
//
// It holds N subscriber streams (raw HTTP/1.1 GETs read by a tiny SSE
// parser: a goroutine and a 1 KiB buffer each) in worker processes of its
// own, as many as keep each below the per-process open-file limit, and
// publishes at a fixed rate (or as fast as it can) over keep-alive POSTs.
// Each payload carries its publisher, sequence number and send time, so a
// stream can check order, duplicates and losses (every message acknowledged
// after the stream became ready must arrive) and record publish-to-delivery
// latency in an HdrHistogram. Given the server's pid it reads CPU time and
// RSS from /proc and reports CPU seconds per million deliveries and RSS per
// subscriber. `go run ./loadtest --help` lists the flags.
//
// Files by concern: main.go (flags), run.go (the phases of a run),
// target.go (what differs between servers: the Target seam), peers.go
// (the Centrifugo and Mercure targets), subscriber.go
// (one stream), group.go (a process's share of the streams), worker.go (the
// JSON-lines protocol between the tool and its workers), publisher.go,
// check.go (payload and order checks), procstat.go (/proc), report.go,
// churn.go (--churn), stuck.go (--stuck: connections that never read, and
// when the server cuts them off), summarize.go (tables from scenarios.sh's
// results).
//
// Concurrency: each sub is owned by its goroutine and hands counts and
// latencies to its group under a sharded mutex; each publisher by its own
// goroutine; run reads the groups' reports on one goroutine per group.
package main
