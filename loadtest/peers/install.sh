#!/usr/bin/env bash
# Installs the peer servers that BENCHMARKS.md compares tinysse with, as pinned
# Go modules, into loadtest/peers/bin (ignored by git):
#
#   centrifugo  github.com/centrifugal/centrifugo/v6 v6.9.1
#   mercure     github.com/dunglas/mercure/caddy     v0.24.2 (a Caddy build)
#   k6          go.k6.io/k6 v1.8.1 plus k6/x/sse from loadtest/k6/xk6sse (only with "k6")
#
# Usage: loadtest/peers/install.sh [centrifugo] [mercure] [k6]   (default: centrifugo mercure)
#
# The module proxy here answers exact versions only, and sometimes only after
# the version was fetched once: so every module is first fetched with
# `go list -m MOD@VER`, then installed with the local download cache in front
# of the proxy. Mercure cannot be `go install`ed (its module has replace
# directives), so it is built from a throw-away wrapper module in a temp dir;
# nothing of that wrapper (go.mod, go.sum) enters the repository.
set -euo pipefail

CENTRIFUGO_VERSION=v6.9.1
MERCURE_VERSION=v0.24.2
K6_VERSION=v1.8.1
XK6_VERSION=v0.20.1

here=$(cd "$(dirname "$0")" && pwd)
bin="$here/bin"
mkdir -p "$bin"
export GOBIN="$bin"
export GOFLAGS=-buildvcs=false
cache="file://$(go env GOMODCACHE)/cache/download"
proxy="$cache,$(go env GOPROXY)"

fetch() { go list -m "$1" >/dev/null; }

install_centrifugo() {
	if [ -x "$bin/centrifugo" ]; then echo "centrifugo: already in $bin"; return; fi
	echo "centrifugo $CENTRIFUGO_VERSION: fetching and building (a few minutes)"
	fetch "github.com/centrifugal/centrifugo/v6@$CENTRIFUGO_VERSION"
	GOPROXY="$proxy" go install "github.com/centrifugal/centrifugo/v6@$CENTRIFUGO_VERSION"
	"$bin/centrifugo" version
}

install_mercure() {
	if [ -x "$bin/mercure" ]; then echo "mercure: already in $bin"; return; fi
	echo "mercure $MERCURE_VERSION: building a Caddy with the Mercure module (a few minutes)"
	local dir
	dir=$(mktemp -d)
	trap 'rm -rf "$dir"' RETURN
	cat >"$dir/main.go" <<'GO'
// Command mercure is Caddy with the Mercure hub module, as the upstream
// project builds it.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/dunglas/mercure/caddy"
)

func main() { caddycmd.Main() }
GO
	(
		cd "$dir"
		go mod init tinysse.local/mercurebuild >/dev/null 2>&1
		fetch "github.com/dunglas/mercure/caddy@$MERCURE_VERSION"
		fetch "github.com/dunglas/mercure@$MERCURE_VERSION"
		GOPROXY="$proxy" go get "github.com/dunglas/mercure/caddy@$MERCURE_VERSION" \
			"github.com/dunglas/mercure@$MERCURE_VERSION" golang.org/x/crypto/x509roots/fallback@latest
		GOPROXY="$proxy" go mod tidy
		GOPROXY="$proxy" go build -o "$bin/mercure" .
	)
	"$bin/mercure" version
}

install_k6() {
	if [ -x "$bin/k6" ]; then echo "k6: already in $bin"; return; fi
	echo "k6 $K6_VERSION with k6/x/sse: building with xk6 $XK6_VERSION (several minutes)"
	export GONOSUMDB=github.com/szkiba
	fetch "go.k6.io/xk6@$XK6_VERSION"
	GOPROXY="$proxy" go install "go.k6.io/xk6/cmd/xk6@$XK6_VERSION"
	fetch "go.k6.io/k6@$K6_VERSION"
	(
		cd "$here/../k6/xk6sse"
		GOPROXY="$proxy" "$bin/xk6" build "$K6_VERSION" \
			--with "github.com/tinysse/tinysse/loadtest/k6/xk6sse=." \
			--replace "github.com/tinysse/tinysse=../../.." \
			--output "$bin/k6"
	)
	"$bin/k6" version
}

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(centrifugo mercure)
for t in "${targets[@]}"; do
	case "$t" in
	centrifugo) install_centrifugo ;;
	mercure) install_mercure ;;
	k6) install_k6 ;;
	*) echo "unknown peer $t (want centrifugo, mercure or k6)" >&2; exit 2 ;;
	esac
done
