#!/usr/bin/env bash
# Build the real Kubernetes control-plane binaries (kube-apiserver,
# kube-controller-manager, kubectl), etcd and helm from the Go module proxy, the way
# envtest-style projects do, and cache them under
#   ${HEAN_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hean/k8s}/<k8s>-<etcd>-<helm>/bin
# Only missing binaries are built. Prints the bin directory on stdout (last line).
#
# Why a wrapper module: `go install k8s.io/kubernetes/cmd/...@v` fails because the
# kubernetes go.mod replaces every k8s.io/* staging module with a local path. The
# wrapper requires k8s.io/kubernetes and replaces each staging module (listed from
# the release's own go.mod) with the published v0.Y.Z tag.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=/dev/null
source "$here/versions.env"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
cache_root=${HEAN_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hean/k8s}
bin="$cache_root/${KUBERNETES_VERSION}-etcd${ETCD_VERSION}-helm${HELM_VERSION}/bin"
mkdir -p "$bin"
log() { echo "[k8s-bins] $*" >&2; }

k8s_bins=(kube-apiserver kube-controller-manager kubectl)
need_k8s=0
for b in "${k8s_bins[@]}"; do [ -x "$bin/$b" ] || need_k8s=1; done

if [ "$need_k8s" = 1 ]; then
  work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
  log "building Kubernetes ${KUBERNETES_VERSION} (cold build: 10-20 min on 2 cores)"
  modjson=$(cd "$work" && go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}")
  gomod=$(printf '%s' "$modjson" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  staging_ver="v0.${KUBERNETES_VERSION#v1.}"
  {
    echo "module hean.local/k8sbins"
    echo
    echo "go $(sed -n 's/^go \([0-9.]*\).*/\1/p' "$gomod")"
    echo
    echo "require k8s.io/kubernetes ${KUBERNETES_VERSION}"
    echo
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging_ver"'#p' "$gomod"
    echo ")"
  } > "$work/go.mod"
  cat > "$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  (cd "$work" && go mod tidy -e >/dev/null 2>&1 || true)
  (cd "$work" && go get "k8s.io/kubernetes@${KUBERNETES_VERSION}" >/dev/null)
  minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=${KUBERNETES_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor}"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=${date} -X $pkg.gitCommit=module-proxy-build"
  done
  for b in "${k8s_bins[@]}"; do
    [ -x "$bin/$b" ] && continue
    log "go build $b"
    (cd "$work" && go build -trimpath -tags selinux,notest -ldflags "$ld" -o "$bin/$b.tmp" "k8s.io/kubernetes/cmd/$b")
    mv "$bin/$b.tmp" "$bin/$b"
  done
fi

if [ ! -x "$bin/etcd" ]; then
  work=$(mktemp -d)
  log "building etcd ${ETCD_VERSION}"
  cat > "$work/main.go" <<'GO'
// Command etcd: a tiny wrapper around etcdmain.Main, because `go install` of etcd's
// server module fails on its replace directives.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  printf 'module hean.local/etcd\n\ngo 1.24\n' > "$work/go.mod"
  (cd "$work" && go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >/dev/null 2>&1 && go mod tidy >/dev/null 2>&1)
  (cd "$work" && go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=module-proxy-build" -o "$bin/etcd.tmp" .)
  mv "$bin/etcd.tmp" "$bin/etcd"
  rm -rf "$work"
fi

if [ ! -x "$bin/helm" ]; then
  log "building helm ${HELM_VERSION}"
  gobin=$(mktemp -d)
  GOBIN="$gobin" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION} -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
    "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
  mv "$gobin/helm" "$bin/helm"
  rm -rf "$gobin"
fi

log "binaries ready in $bin"
echo "$bin"
