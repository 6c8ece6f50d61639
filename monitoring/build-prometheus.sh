#!/usr/bin/env bash
# Build a Prometheus server WITH Kubernetes service discovery from the Go module
# proxy and cache it under ${HEAN_PROMETHEUS_CACHE:-$HOME/.cache/hean/prometheus}/<version>/.
# Prints the binary's path (last line).
#
# Why: Debian's `prometheus` package (2.42, bookworm) is built without
# kubernetes_sd_configs. tests/e2e/test_obs_prometheus.py uses this binary when it
# exists (else Debian's, with an http_sd stand-in for the pod discovery).
# `go install github.com/prometheus/prometheus/cmd/prometheus@v` refuses the module's
# replace directives, so a wrapper module requires it and builds the command; only
# the Kubernetes discovery is compiled in (build tags remove_all_sd,enable_kubernetes_sd).
set -euo pipefail
version=${HEAN_PROMETHEUS_MODULE_VERSION:-v0.54.1}   # = Prometheus 2.54.1
out=${HEAN_PROMETHEUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hean/prometheus}/$version
if [ -x "$out/prometheus" ]; then echo "$out/prometheus"; exit 0; fi
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
# The module's own replace directives (klog -> klog-gokit) apply only when it is the
# main module: copy them (versioned targets only) into the wrapper.
gomod=$(cd "$work" && go mod download -json "github.com/prometheus/prometheus@$version" |
  sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
{
  echo "module hean.local/prombin"
  echo
  echo "go 1.22"
  echo
  echo "require github.com/prometheus/prometheus $version"
  echo
  echo "replace ("
  sed -n 's#^[[:space:]]*\([^ ]*\) => \([^ .][^ ]*\) \(v[^ ]*\)$#\t\1 => \2 \3#p' "$gomod"
  echo ")"
} > "$work/go.mod"
cat > "$work/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/prometheus/prometheus/cmd/prometheus"
GO
echo "[prometheus] building github.com/prometheus/prometheus $version (Kubernetes SD only)" >&2
(cd "$work" && go get "github.com/prometheus/prometheus@$version" >/dev/null 2>&1 && go mod tidy -e >/dev/null 2>&1 || true)
(cd "$work" && go build -trimpath -tags remove_all_sd,enable_kubernetes_sd -ldflags "-s -w" \
  -o "$out/prometheus.tmp" github.com/prometheus/prometheus/cmd/prometheus)
(cd "$work" && go build -trimpath -tags remove_all_sd,enable_kubernetes_sd -ldflags "-s -w" \
  -o "$out/promtool.tmp" github.com/prometheus/prometheus/cmd/promtool)
mv "$out/prometheus.tmp" "$out/prometheus"; mv "$out/promtool.tmp" "$out/promtool"
echo "$out/prometheus"
