#!/usr/bin/env bash
# Re-vendors uPlot from the npm registry into web/assets/vendor/uplot (see VENDORED.md there).
# Usage: scripts/vendor-uplot.sh [VERSION]   (default: the pinned version)
set -euo pipefail
version="${1:-1.6.32}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/web/assets/vendor/uplot"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
want="$(npm view "uplot@$version" dist.integrity)"
npm pack "uplot@$version" >/dev/null
tarball="uplot-$version.tgz"
got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$got" != "$want" ]; then
  echo "integrity mismatch for $tarball: registry $want, file $got" >&2
  exit 1
fi
tar xzf "$tarball"
cp package/dist/uPlot.iife.min.js package/dist/uPlot.min.css package/LICENSE "$dest/"
echo "uPlot $version vendored into $dest ($want)"
