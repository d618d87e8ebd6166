#!/usr/bin/env bash
# Debian packages the tests need: Chromium (browser tests), LibriVox speech, espeak-ng, sox,
# prometheus (scrapes the running agent and answers the Grafana dashboards' queries).
set -euo pipefail
packages=(chromium pocketsphinx-testdata espeak-ng sox iproute2 util-linux prometheus)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "error: missing Debian packages: ${missing[*]} (run as root or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
