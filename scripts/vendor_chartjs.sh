#!/usr/bin/env bash
# Refresh the vendored Chart.js from the npm registry: scripts/vendor_chartjs.sh 4.6.2
# Then update static/vendor/chartjs/SOURCE.md (version, integrity, sha256) by hand.
set -euo pipefail
version="${1:?usage: $0 <version>}"
here="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
curl -fsSL -o "$work/chart.tgz" "https://registry.npmjs.org/chart.js/-/chart.js-${version}.tgz"
tar -xzf "$work/chart.tgz" -C "$work"
cp "$work/package/dist/chart.umd.min.js" "$work/package/LICENSE.md" "$here/static/vendor/chartjs/"
echo "integrity: sha512-$(openssl dgst -sha512 -binary "$work/chart.tgz" | base64 -w0)"
sha256sum "$here/static/vendor/chartjs/chart.umd.min.js"
