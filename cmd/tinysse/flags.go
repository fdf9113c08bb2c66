package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/pflag"
	"github.com/tinysse/tinysse/lua"
)

// options is every command-line option, after flags and environment.
type options struct {
	listen          string
	logLevel        slog.Level
	keepAlive       time.Duration
	keepAliveText   string
	timeout         time.Duration
	timeoutRetry    time.Duration
	capacity        int
	script          string
	scriptData      string
	scriptTick      time.Duration
	unsafeScript    bool
	dataDir         string
	maxBodySize     int64
	pubPath         string
	subPath         string
	staticDir       string
	staticPath      string
	corsOrigin      string
	corsMethods     string
	corsHeaders     string
	corsCredentials bool
	corsMaxAge      time.Duration
	autoID          bool
	writeTimeout    time.Duration
	writeCoalesce   time.Duration
	readTimeout     time.Duration
	shutdownTimeout time.Duration
	shards          int
	luaVMs          int // 0: auto (one per shard)
	scriptTimeout   time.Duration
	scriptMemory    int64
	maxSubscribers  int
	maxConnsPerIP   int
	noH2C           bool
	h2MaxStreams    int
	maxTopics       int
	maxHistoryBytes int64 // 0: no bound
	nats            natsOptions
	auth            authOptions
	store           storeOptions
	scale           scaleOptions // scale.go
	help            bool
	version         bool
	// config is --config; checkConfig says that --check names a config
	// file (FILE.toml), which was read as the config.
	config      string
	checkConfig bool

	// Operations (see ops.go).
	apiPath       string
	metricsPath   string
	metricsTopics int
	healthPath    string
	logFormat     string
	check         string
	tlsCert       string
	tlsKey        string
	dashboardPath string
	noDashboard   bool
}

// durationValue parses 500ms, 60s, 2m, 1h (and a bare 0).
type durationValue time.Duration

func (d *durationValue) Set(s string) error {
	if s == "0" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (like 500ms, 60s, 2m, 1h)", s)
	}
	if v < 0 {
		return fmt.Errorf("%q is negative", s)
	}
	*d = durationValue(v)
	return nil
}
func (d *durationValue) String() string { return time.Duration(*d).String() }
func (d *durationValue) Type() string   { return "DUR" }

// coalesceValue is a duration, or "off" (stored as -1: never hold).
type coalesceValue time.Duration

func (c *coalesceValue) Set(s string) error {
	if strings.EqualFold(s, "off") {
		*c = -1
		return nil
	}
	var d durationValue
	if err := d.Set(s); err != nil {
		return fmt.Errorf("%q is not a duration (like 5ms) or off", s)
	}
	*c = coalesceValue(d)
	return nil
}
func (c *coalesceValue) String() string {
	if *c < 0 {
		return "off"
	}
	return time.Duration(*c).String()
}
func (c *coalesceValue) Type() string { return "DUR|off" }

// sizeValue parses 65536, 64KB, 1MB (binary multiples: 1KB = 1024 bytes).
type sizeValue int64

func (v *sizeValue) Set(s string) error {
	n, err := units.RAMInBytes(s)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not a size (like 65536, 64KB, 1MB)", s)
	}
	*v = sizeValue(n)
	return nil
}
func (v *sizeValue) String() string { return units.BytesSize(float64(*v)) }
func (v *sizeValue) Type() string   { return "SIZE" }

// vmsValue is a positive count or "auto" (stored as 0).
type vmsValue int

func (v *vmsValue) Set(s string) error {
	if strings.EqualFold(s, "auto") {
		*v = 0
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 1024 {
		return fmt.Errorf("%q is not a number from 1 to 1024 or auto", s)
	}
	*v = vmsValue(n)
	return nil
}
func (v *vmsValue) String() string {
	if *v == 0 {
		return "auto"
	}
	return strconv.Itoa(int(*v))
}
func (v *vmsValue) Type() string { return "N|auto" }

// levelValue is a log level name; TRACE is below DEBUG.
type levelValue slog.Level

// levelTrace is the scripts' log.trace level, below DEBUG.
const levelTrace = lua.LevelTrace

func (l *levelValue) Set(s string) error {
	switch strings.ToUpper(s) {
	case "ERROR":
		*l = levelValue(slog.LevelError)
	case "WARN", "WARNING":
		*l = levelValue(slog.LevelWarn)
	case "INFO":
		*l = levelValue(slog.LevelInfo)
	case "DEBUG":
		*l = levelValue(slog.LevelDebug)
	case "TRACE":
		*l = levelValue(levelTrace)
	default:
		return fmt.Errorf("%q is not one of ERROR, WARN, INFO, DEBUG, TRACE", s)
	}
	return nil
}
func (l *levelValue) String() string {
	if slog.Level(*l) == levelTrace {
		return "TRACE"
	}
	return slog.Level(*l).String()
}
func (l *levelValue) Type() string { return "LEVEL" }

// parseOptions reads args, then TINYSSE_* variables for every flag not
// given on the command line. A bad value is one line naming the option.
func parseOptions(args []string, getenv func(string) string, usage io.Writer) (*options, error) {
	o := &options{}
	fs := pflag.NewFlagSet("tinysse", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	v := addFlags(fs, o)

	fs.VisitAll(func(f *pflag.Flag) {
		if !noEnv[f.Name] {
			f.Usage += fmt.Sprintf(" [env %s]", envName(f.Name))
		}
	})

	if err := fs.Parse(args); err != nil {
		return nil, oneLine(err)
	}
	if o.help {
		fmt.Fprintf(usage, "tinysse %s: a programmable Server-Sent Events server\n\nUsage: tinysse [OPTIONS]\n\nOptions:\n%s", version, fs.FlagUsages())
		return o, nil
	}
	config := o.config
	if !fs.Changed("config") {
		config = getenv(envName("config"))
	}
	if strings.HasSuffix(o.check, ".toml") {
		config, o.checkConfig = o.check, true // --check FILE.toml checks it as the config
	}
	origin := make(map[string]string) // flag name -> the file:line or variable its value came from
	if config != "" {
		if err := loadConfig(fs, config, getenv, origin); err != nil {
			return nil, err
		}
	}
	if err := readEnv(fs, getenv, origin); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := checkOptions(o, v); err != nil {
		return nil, fromOrigin(err, origin)
	}
	if err := v.finish(o); err != nil {
		return nil, fromOrigin(err, origin)
	}
	return o, nil
}

// flagValues holds the flags that parse into a type of their own
// (durations, sizes, the log level) until finish moves them into options.
type flagValues struct {
	level           levelValue
	keepAlive       durationValue
	timeout         durationValue
	timeoutRetry    durationValue
	tick            durationValue
	body            sizeValue
	maxAge          durationValue // --cors-max-age
	writeTimeout    durationValue
	writeCoalesce   coalesceValue
	readTimeout     durationValue
	shutdownTimeout durationValue
	vms             vmsValue
	scriptTimeout   durationValue
	scriptMemory    sizeValue
	maxHistory      sizeValue
	natsMaxAge      durationValue
	store           *storeFlags
}

// addFlags declares every option on fs, in --help's order, with its
// default.
func addFlags(fs *pflag.FlagSet, o *options) *flagValues {
	v := &flagValues{
		level:           levelValue(slog.LevelInfo),
		keepAlive:       durationValue(60 * time.Second),
		timeout:         durationValue(5 * time.Minute),
		tick:            durationValue(500 * time.Millisecond),
		body:            sizeValue(64 << 10),
		writeTimeout:    durationValue(30 * time.Second),
		readTimeout:     durationValue(10 * time.Second),
		shutdownTimeout: durationValue(10 * time.Second),
		vms:             vmsValue(1),
		scriptTimeout:   durationValue(5 * time.Second),
		scriptMemory:    sizeValue(256 << 20),
		maxHistory:      sizeValue(256 << 20),
	}
	fs.StringVarP(&o.listen, "listen", "l", "127.0.0.1:1983", "where to listen (ADDR:PORT)")
	fs.VarP(&v.level, "log-level", "L", "log level: ERROR, WARN, INFO, DEBUG, TRACE")
	fs.VarP(&v.keepAlive, "keep-alive", "k", "interval of keep-alive comments to each subscriber")
	fs.StringVarP(&o.keepAliveText, "keep-alive-text", "K", "keep-alive", "text of the keep-alive comment")
	fs.VarP(&v.timeout, "timeout", "t", "a subscriber connected this long is closed (0 = never)")
	fs.VarP(&v.timeoutRetry, "timeout-retry", "r", "retry hint sent at timeout and on lag")
	fs.IntVarP(&o.capacity, "capacity", "c", 256, "messages kept per topic (ring size, rounded up to a power of two)")
	fs.StringVarP(&o.script, "script", "s", "", "Lua script with hooks")
	fs.StringVar(&o.scriptData, "script-data", "", "handed to the script as cli.script_data in startup")
	fs.Var(&v.tick, "script-tick", "interval of the tick hook")
	fs.BoolVar(&o.unsafeScript, "unsafe-script", false, "let the script reach the host (os, io, module loading, any file through sqlite and template)")
	fs.StringVar(&o.dataDir, "data-dir", ".", "without --unsafe-script, the only directory whose files sqlite and template may reach")
	fs.VarP(&v.body, "max-body-size", "m", "largest publish body accepted (65536, 64KB, 1MB)")
	fs.StringVarP(&o.pubPath, "pub-path", "P", "/sse", "URL path for POST (publish)")
	fs.StringVarP(&o.subPath, "sub-path", "S", "/sse", "URL path for GET (subscribe)")
	fs.StringVarP(&o.staticDir, "serve-static-dir", "D", "", "serve files from DIR")
	fs.StringVarP(&o.staticPath, "serve-static-path", "U", "/", "URL path of the static files")
	fs.StringVar(&o.corsOrigin, "cors-allow-origin", "*", "Access-Control-Allow-Origin (comma-separated origins, or *)")
	fs.StringVar(&o.corsMethods, "cors-allow-methods", "GET, HEAD, POST", "Access-Control-Allow-Methods")
	fs.StringVar(&o.corsHeaders, "cors-allow-headers", "*", "Access-Control-Allow-Headers")
	fs.BoolVar(&o.corsCredentials, "cors-allow-credentials", false, "send Access-Control-Allow-Credentials: true")
	fs.Var(&v.maxAge, "cors-max-age", "Access-Control-Max-Age")
	fs.BoolVar(&o.autoID, "auto-id", false, "give messages published without an id an increasing server id")
	fs.Var(&v.writeTimeout, "write-timeout", "close a subscriber whose socket accepts nothing for this long")
	fs.Var(&v.writeCoalesce, "write-coalesce", "hold each delivery pass this long so that messages published meanwhile share one write per subscriber (0 = adaptive: a busy shard's passes start 1-2ms apart, one message at a time is never held; off = never; at most 1s)")
	fs.Var(&v.readTimeout, "read-timeout", "cut off a client that takes longer than this to send its request")
	fs.Var(&v.shutdownTimeout, "shutdown-timeout", "on SIGINT/SIGTERM, exit within this long")
	fs.IntVar(&o.shards, "shards", 0, "delivery shards (0 = one per CPU less one, at least one)")
	fs.Var(&v.vms, "lua-vms", "Lua states: N, or auto for one per shard (globals are per VM)")
	fs.Var(&v.scriptTimeout, "script-timeout", "stop a hook that runs longer than this (0 = never)")
	fs.Var(&v.scriptMemory, "script-memory", "stop a hook while the heap has grown by more than this since it began (0 = never)")
	fs.IntVar(&o.maxSubscribers, "max-subscribers", 0, "streams open at once; beyond it a subscribe gets 503 (0 = no bound but the connection limit)")
	fs.IntVar(&o.maxConnsPerIP, "max-conns-per-ip", 0, "open connections per client address; beyond it 429 (0 = no bound)")
	fs.BoolVar(&o.noH2C, "no-h2c", false, "do not serve cleartext HTTP/2 (prior knowledge) on a plain listener")
	fs.IntVar(&o.h2MaxStreams, "h2-max-streams", 250, "streams one HTTP/2 connection may have open at once")
	fs.IntVar(&o.maxTopics, "max-topics", 10000, "topics the server holds; publishing or subscribing to a new one beyond it gets 503 (0 = no bound)")
	fs.Var(&v.maxHistory, "max-history-bytes", "memory of every topic's history together; past it the oldest messages are dropped, whatever their topic (0 = no bound)")
	addOpsFlags(fs, o)
	addAuthFlags(fs, &o.auth)
	addNATSFlags(fs, &o.nats, &v.natsMaxAge)
	v.store = addStoreFlags(fs, o)
	addScaleFlags(fs, &o.scale)
	fs.StringVar(&o.config, "config", "", "read options from this TOML `FILE`: one key per long option (listen = \"127.0.0.1:1983\"); flags and TINYSSE_* variables win over it")
	fs.BoolVarP(&o.help, "help", "h", false, "print this help")
	fs.BoolVarP(&o.version, "version", "V", false, "print the version")
	return v
}

// addNATSFlags declares the cluster mode's --nats* options (but
// --nats-publish-timeout: addStoreFlags).
func addNATSFlags(fs *pflag.FlagSet, n *natsOptions, maxAge *durationValue) {
	fs.StringVar(&n.url, "nats", "", "cluster mode: NATS server URL(s), comma-separated (absent: single node)")
	fs.StringVar(&n.stream, "nats-stream", "tinysse", "JetStream stream name (and subject prefix)")
	fs.Var(maxAge, "nats-max-age", "how long the stream keeps messages (0 = no limit)")
	fs.Int64Var(&n.maxMsgs, "nats-max-msgs", 0, "how many messages the stream keeps (0 = no limit)")
	fs.IntVar(&n.replicas, "nats-replicas", 1, "stream replicas on a NATS cluster")
	fs.StringVar(&n.creds, "nats-creds", "", "NATS credentials file (JWT and seed)")
	fs.StringVar(&n.token, "nats-token", "", "NATS authentication token")
	fs.StringVar(&n.tlsCA, "nats-tls-ca", "", "CA certificate file to verify the NATS server")
	fs.StringVar(&n.tlsCert, "nats-tls-cert", "", "client certificate file for NATS (with --nats-tls-key)")
	fs.StringVar(&n.tlsKey, "nats-tls-key", "", "client key file for NATS")
}

// readEnv sets every flag not given on the command line (nor in the
// config file) from its TINYSSE_* variable, if set.
func readEnv(fs *pflag.FlagSet, getenv func(string) string, origin map[string]string) error {
	var envErr error
	fs.VisitAll(func(f *pflag.Flag) {
		if envErr != nil || f.Changed || noEnv[f.Name] {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if err := setValue(f, v); err != nil {
				envErr = fmt.Errorf("invalid value for --%s (from %s): %v", f.Name, envName(f.Name), err)
				return
			}
			origin[f.Name] = envName(f.Name)
		}
	})
	return envErr
}

// checkOptions checks the values against each other and their bounds;
// the first one wrong is the error.
func checkOptions(o *options, v *flagValues) error {
	if o.capacity < 1 || o.capacity > 1<<30 {
		return fmt.Errorf("invalid value for --capacity: %d is not between 1 and %d", o.capacity, 1<<30)
	}
	for _, n := range []struct {
		name string
		val  int
	}{{"max-subscribers", o.maxSubscribers}, {"max-conns-per-ip", o.maxConnsPerIP}, {"max-topics", o.maxTopics}} {
		if n.val < 0 {
			return fmt.Errorf("invalid value for --%s: %d is negative", n.name, n.val)
		}
	}
	if o.h2MaxStreams < 1 || o.h2MaxStreams > 1<<20 {
		return fmt.Errorf("invalid value for --h2-max-streams: %d is not between 1 and %d", o.h2MaxStreams, 1<<20)
	}
	if v.body < 1 {
		return errors.New("invalid value for --max-body-size: must be at least 1 byte")
	}
	if v.body > 1<<30 {
		return errors.New("invalid value for --max-body-size: larger than 1GB")
	}
	for _, p := range []struct{ name, val string }{{"pub-path", o.pubPath}, {"sub-path", o.subPath}, {"serve-static-path", o.staticPath}} {
		if !strings.HasPrefix(p.val, "/") {
			return fmt.Errorf("invalid value for --%s: %q must start with /", p.name, p.val)
		}
	}
	if o.corsCredentials && (o.corsOrigin == "*" || o.corsHeaders == "*") {
		return errors.New("invalid value for --cors-allow-credentials: not allowed with a * origin or * headers")
	}
	if err := checkOpsOptions(o); err != nil {
		return err
	}
	if err := checkAuthOptions(o); err != nil {
		return err
	}
	if err := o.nats.check(); err != nil {
		return err
	}
	if err := o.scale.check(); err != nil {
		return err
	}
	return v.store.finish(o)
}

// finish moves the values into o.
func (v *flagValues) finish(o *options) error {
	o.nats.maxAge = time.Duration(v.natsMaxAge)
	o.logLevel = slog.Level(v.level)
	o.keepAlive = time.Duration(v.keepAlive)
	o.timeout = time.Duration(v.timeout)
	o.timeoutRetry = time.Duration(v.timeoutRetry)
	o.scriptTick = time.Duration(v.tick)
	o.maxBodySize = int64(v.body)
	o.corsMaxAge = time.Duration(v.maxAge)
	o.writeTimeout = time.Duration(v.writeTimeout)
	o.writeCoalesce = time.Duration(v.writeCoalesce)
	if o.writeCoalesce > time.Second {
		return fmt.Errorf("invalid value for --write-coalesce: %v is over 1s", o.writeCoalesce)
	}
	o.readTimeout = time.Duration(v.readTimeout)
	o.shutdownTimeout = time.Duration(v.shutdownTimeout)
	o.luaVMs = int(v.vms)
	o.scriptTimeout = time.Duration(v.scriptTimeout)
	o.scriptMemory = int64(v.scriptMemory)
	o.maxHistoryBytes = int64(v.maxHistory)
	return nil
}

// envName is the variable of a flag: TINYSSE_ and the name, upper case,
// dashes as underscores.
func envName(flag string) string {
	return "TINYSSE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// oneLine rewrites pflag's errors to name the option in one line.
func oneLine(err error) error {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return errors.New(strings.TrimSpace(s))
}
