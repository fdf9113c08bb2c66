package ops

import "github.com/tinysse/tinysse/internal/promtext"

// The metric families of /metrics, each described once: its # HELP and
// # TYPE lines (internal/promtext). README's metrics table lists the
// same families; TestMetricsMetadata fails when a series has no family
// here.

func gauge(name, help string) promtext.Family {
	return promtext.Family{Name: name, Type: promtext.Gauge, Help: help}
}

func counter(name, help string) promtext.Family {
	return promtext.Family{Name: name, Type: promtext.Counter, Help: help}
}

// The server's own families, written by Metrics.WritePrometheus.
var (
	famBuildInfo       = gauge("tinysse_build_info", "Always 1; the version label names the running build.")
	famUptime          = gauge("tinysse_uptime_seconds", "Seconds since the server started.")
	famPublishes       = counter("tinysse_publishes_total", "Messages published and accepted (the dashboard's own stats messages excluded).")
	famDeliveries      = counter("tinysse_deliveries_total", "Messages written to subscribers, one per message and subscriber.")
	famSubscribers     = gauge("tinysse_subscribers", "Subscribers connected now.")
	famSubscribes      = counter("tinysse_subscribes_total", "Subscriptions accepted.")
	famDisconnects     = counter("tinysse_disconnects_total", "Streams ended, by reason: left, lagged, slow, timeout, shutdown, expired, disconnected (server API).")
	famReplays         = counter("tinysse_replays_total", "Reconnections whose Last-Event-ID was replayed from the topic's ring.")
	famReplayGaps      = counter("tinysse_replay_gaps_total", "Reconnections whose Last-Event-ID had already left the ring (some messages missed).")
	famTopics          = gauge("tinysse_topics", "Topics held now.")
	famTopicSubs       = gauge("tinysse_topic_subscribers", "Subscribers of each of the --metrics-topics topics with the most subscribers.")
	famTopicSubsOther  = gauge("tinysse_topic_subscribers_other", "Subscribers of the topics without series of their own, summed.")
	famTopicsOther     = gauge("tinysse_topics_other", "Topics without series of their own.")
	famRingCapacity    = gauge("tinysse_ring_capacity", "Messages each topic's ring keeps (--capacity rounded up to a power of two).")
	famRingBuffered    = gauge("tinysse_ring_buffered", "Messages held in the ring of each of the --metrics-topics topics with the most subscribers.")
	famRingOther       = gauge("tinysse_ring_buffered_other", "Messages held in the rings of the other topics, summed.")
	famHistoryBytes    = gauge("tinysse_history_bytes", "Bytes of every topic's history together.")
	famHistoryMax      = gauge("tinysse_history_bytes_max", "--max-history-bytes (0: no bound).")
	famHistoryEvicted  = counter("tinysse_history_evicted_total", "Messages dropped from a history to keep within --max-history-bytes.")
	famPubRejected     = counter("tinysse_publish_rejected_total", "Publishes refused, by reason.")
	famSubRejected     = counter("tinysse_subscribe_rejected_total", "Subscriptions refused, by reason.")
	famConnsRefused    = counter("tinysse_connections_refused_total", "Connections refused at the server's connection limit.")
	famConnsRefusedIP  = counter("tinysse_connections_refused_per_ip_total", "Connections refused at --max-conns-per-ip.")
	famOpenConns       = gauge("tinysse_open_connections", "Client connections open now, both protocols.")
	famConns           = gauge("tinysse_connections", "Client connections open now, by protocol (one that has not said yet counts as http1).")
	famStreams         = gauge("tinysse_streams", "Event streams open now, by protocol.")
	famH2Cuts          = counter("tinysse_h2_connections_cut_total", "HTTP/2 connections cut by a flood guard, by reason.")
	famHookCalls       = counter("tinysse_hook_calls_total", "Calls of each Lua hook (message: the deliveries it was asked about).")
	famHookErrors      = counter("tinysse_hook_errors_total", "Errors of each Lua hook, the runtime's own count included.")
	famHookDuration    = promtext.Family{Name: "tinysse_hook_duration_seconds", Type: promtext.Histogram, Help: "Time in each Lua hook, per call (message: per batch of one shard pass)."}
	hookDurationFamily = promtext.Index([]promtext.Family{famHookDuration})
)

// processFamilies describes what metrics.WriteProcessMetrics writes
// (github.com/VictoriaMetrics/metrics v1.44 on Linux). Three of its
// names break Prometheus's naming rules (a counter without _total, a
// _count suffix on what is no histogram); they are written under the
// name given here. Its process_io_* series are counters it calls gauges.
var processFamilies = promtext.Index([]promtext.Family{
	gauge("go_info", "Always 1; the version label names the Go release that built the server."),
	gauge("go_info_ext", "Always 1; the labels name the compiler, GOARCH, GOOS and GOROOT of the build."),
	{Name: "go_cgo_calls_total", From: "go_cgo_calls_count", Type: promtext.Counter, Help: "Calls from Go into C."},
	{Name: "go_cpus", From: "go_cpu_count", Type: promtext.Gauge, Help: "Logical CPUs usable by the process."},
	{Name: "go_gc_forced_total", From: "go_gc_forced_count", Type: promtext.Counter, Help: "Garbage collections forced by the program (runtime.GC)."},
	gauge("go_gomaxprocs", "GOMAXPROCS: the OS threads that may run Go code at once."),
	gauge("go_goroutines", "Goroutines that exist now."),
	gauge("go_threads", "OS threads the Go runtime created."),
	gauge("go_memlimit_bytes", "The Go runtime's soft memory limit (GOMEMLIMIT)."),
	{Name: "go_gc_duration_seconds", Type: promtext.Summary, Help: "Garbage collection pauses (stop-the-world), in seconds."},
	{Name: "go_gc_pauses_seconds", Type: promtext.Histogram, Help: "Garbage collection pauses (stop-the-world), in seconds, from runtime/metrics."},
	{Name: "go_sched_latencies_seconds", Type: promtext.Histogram, Help: "Time goroutines waited runnable before they ran, in seconds."},
	counter("go_mutex_wait_seconds_total", "Time goroutines spent blocked on a sync.Mutex or sync.RWMutex (approximate)."),
	counter("go_gc_cpu_seconds_total", "CPU time spent on garbage collection."),
	counter("go_gc_mark_assist_cpu_seconds_total", "CPU time goroutines spent helping the garbage collector mark."),
	counter("go_scavenge_cpu_seconds_total", "CPU time spent returning unused memory to the OS."),
	gauge("go_memstats_alloc_bytes", "Bytes of heap objects allocated and not yet freed."),
	counter("go_memstats_alloc_bytes_total", "Bytes allocated for heap objects since the start."),
	gauge("go_memstats_buck_hash_sys_bytes", "Bytes in profiling bucket hash tables."),
	counter("go_memstats_frees_total", "Heap objects freed since the start."),
	gauge("go_memstats_gc_cpu_fraction", "Fraction of the CPU time used by the garbage collector since the start."),
	gauge("go_memstats_gc_sys_bytes", "Bytes of garbage collection metadata."),
	gauge("go_memstats_heap_alloc_bytes", "Bytes of heap objects allocated and not yet freed."),
	gauge("go_memstats_heap_idle_bytes", "Bytes in idle (unused) heap spans."),
	gauge("go_memstats_heap_inuse_bytes", "Bytes in in-use heap spans."),
	gauge("go_memstats_heap_objects", "Heap objects allocated and not yet freed."),
	gauge("go_memstats_heap_released_bytes", "Bytes of heap memory returned to the OS."),
	gauge("go_memstats_heap_sys_bytes", "Bytes of heap memory obtained from the OS."),
	gauge("go_memstats_last_gc_time_seconds", "When the last garbage collection finished, in seconds since the Unix epoch."),
	counter("go_memstats_lookups_total", "Pointer lookups by the runtime."),
	counter("go_memstats_mallocs_total", "Heap objects allocated since the start."),
	gauge("go_memstats_mcache_inuse_bytes", "Bytes in use by mcache structures."),
	gauge("go_memstats_mcache_sys_bytes", "Bytes of memory obtained from the OS for mcache structures."),
	gauge("go_memstats_mspan_inuse_bytes", "Bytes in use by mspan structures."),
	gauge("go_memstats_mspan_sys_bytes", "Bytes of memory obtained from the OS for mspan structures."),
	gauge("go_memstats_next_gc_bytes", "Heap size at which the next garbage collection starts."),
	gauge("go_memstats_other_sys_bytes", "Bytes of other runtime memory obtained from the OS."),
	gauge("go_memstats_stack_inuse_bytes", "Bytes in stack spans."),
	gauge("go_memstats_stack_sys_bytes", "Bytes of stack memory obtained from the OS."),
	gauge("go_memstats_sys_bytes", "Bytes of memory obtained from the OS, in all."),
	counter("process_cpu_seconds_total", "CPU time of the process, user and system."),
	counter("process_cpu_seconds_user_total", "CPU time of the process in user mode."),
	counter("process_cpu_seconds_system_total", "CPU time of the process in the kernel."),
	counter("process_major_pagefaults_total", "Page faults that read from disk."),
	counter("process_minor_pagefaults_total", "Page faults served from memory."),
	gauge("process_num_threads", "OS threads of the process."),
	gauge("process_resident_memory_bytes", "Resident memory of the process."),
	gauge("process_resident_memory_anon_bytes", "Resident anonymous memory of the process."),
	gauge("process_resident_memory_file_bytes", "Resident file-backed memory of the process."),
	gauge("process_resident_memory_shared_bytes", "Resident shared memory of the process."),
	gauge("process_resident_memory_peak_bytes", "Peak resident memory of the process."),
	gauge("process_virtual_memory_bytes", "Virtual memory of the process."),
	gauge("process_virtual_memory_peak_bytes", "Peak virtual memory of the process."),
	gauge("process_start_time_seconds", "When the process started, in seconds since the Unix epoch."),
	counter("process_io_read_bytes_total", "Bytes the process read (all reads, caches included)."),
	counter("process_io_written_bytes_total", "Bytes the process wrote (all writes, caches included)."),
	counter("process_io_read_syscalls_total", "Read system calls of the process."),
	counter("process_io_write_syscalls_total", "Write system calls of the process."),
	counter("process_io_storage_read_bytes_total", "Bytes the process caused to be read from storage."),
	counter("process_io_storage_written_bytes_total", "Bytes the process caused to be written to storage."),
	counter("process_pressure_cpu_waiting_seconds_total", "Time some of the process's tasks waited for a CPU (pressure stall information)."),
	counter("process_pressure_cpu_stalled_seconds_total", "Time all of the process's tasks waited for a CPU (pressure stall information)."),
	counter("process_pressure_io_waiting_seconds_total", "Time some of the process's tasks waited for I/O (pressure stall information)."),
	counter("process_pressure_io_stalled_seconds_total", "Time all of the process's tasks waited for I/O (pressure stall information)."),
	counter("process_pressure_memory_waiting_seconds_total", "Time some of the process's tasks waited for memory (pressure stall information)."),
	counter("process_pressure_memory_stalled_seconds_total", "Time all of the process's tasks waited for memory (pressure stall information)."),
})
