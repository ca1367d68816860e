#!/usr/bin/env bash
# Installs what the `ringkv serve` tests talk to besides the redis crate: redis-cli and
# redis-benchmark (Debian's redis-tools), redis-server (the side-by-side benchmark in
# tools/RESULTS.md) and twemproxy (Debian's nutcracker). Idempotent; needs root or sudo.
set -euo pipefail

packages=(redis-tools redis-server nutcracker)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-test-deps: ${packages[*]} already installed"
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The packaged redis-server starts a system service on port 6379 where there is an init
# system; the tests and benchmarks start their own servers and need none of it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
    $sudo systemctl stop redis-server || true
    $sudo systemctl disable redis-server || true
fi
echo "install-test-deps: installed ${missing[*]}"
