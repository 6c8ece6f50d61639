#!/usr/bin/env bash
# Upgrade hean's CustomResourceDefinitions. Helm installs the chart's crds/ folder
# on the first install only and never upgrades or deletes CRDs, so run this BEFORE
# `helm upgrade` whenever a chart version changes a CRD:
#
#   helm/upgrade-crds.sh [--dry-run] [kubectl args, e.g. --context prod]
#
# Server-side apply (field manager hean-crds, taking over the fields Helm set at
# install), then waits until every CRD is Established. --dry-run validates against
# the API server without changing anything. CRDs are only ever added to or changed,
# never deleted (deleting a CRD deletes every object of that kind).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
crds=$(cd "$here/hean/crds" 2>/dev/null && pwd -P) || { echo "upgrade-crds: no CRDs at $here/hean/crds" >&2; exit 1; }
kubectl=${KUBECTL:-kubectl}
dry=()
if [ "${1:-}" = "--dry-run" ]; then dry=(--dry-run=server); shift; fi
"$kubectl" "$@" apply --server-side --force-conflicts --field-manager=hean-crds "${dry[@]}" -f "$crds"
if [ ${#dry[@]} -eq 0 ]; then
  for f in "$crds"/*.yaml; do
    name=$(sed -n 's/^  name: \(.*\)$/\1/p' "$f" | head -1)
    "$kubectl" "$@" wait --for=condition=Established --timeout=60s "crd/$name"
  done
fi
