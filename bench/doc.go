// Package bench holds tinysse's cross-package benchmarks; it has no API.
//
// Every optimised path is measured beside a naive baseline, and the sizes
// come from one helper (bySize) and the lists at the top of
// harness_test.go:
//
//	BenchmarkRingAppend, BenchmarkRingRead  ring.Ring vs a mutex-guarded slice
//	BenchmarkEncode                         engine.AppendFrame vs fmt + strings.Split
//	BenchmarkFanout                         engine delivery to n subscribers
//	BenchmarkRawFanout                      one goroutine writing each subscriber in turn
//	BenchmarkChanFanout                     a goroutine and a channel per subscriber
//	BenchmarkPublish                        Publish alone, with 0..10,000 subscribers
//	BenchmarkStream                         fasthttp SetBodyStreamWriter vs hijacking
//	                                        vs tinysse's transport, and idle B/stream
//	BenchmarkAuth                           a publish and a subscribe over HTTP with no
//	                                        keys vs a verified HS256 and ES256 token
//	BenchmarkAuthTopics                     a token verified once per request vs once
//	                                        per topic
//
// The fan-out benchmarks come in two flavours. "devnull" subscribers write
// to /dev/null, so 10,000 of them cost no sockets and what is left is the
// delivery loop and one write syscall per delivery; "loopback" subscribers
// are TCP connections on 127.0.0.1, read by client goroutines in the same
// process, which share the CPUs with the server (compare loopback numbers
// only with each other). An op is one message delivered to every
// subscriber; the extra metrics are ns/delivery, deliveries/s and
// cpu-ns/delivery (the process's CPU time, clients included, per
// delivery). BenchmarkPublish reports cpu-ns/op, the publishing thread's
// own CPU time, and BenchmarkStream B/stream, the heap and stack that an
// idle stream adds.
//
// Run them with
//
//	go test -run=NONE -bench=. ./bench
//
// The process stays below about 2,100 open files (1,000 loopback pairs).
package bench
