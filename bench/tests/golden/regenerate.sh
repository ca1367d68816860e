#!/usr/bin/env bash
# Regenerates the golden .hgrm files from the checked-in encoded histograms with
# HdrHistogram's reference implementation (Java, Debian's libhdrhistogram-java 2.1.11).
# Not part of CI: the outputs are checked in, and tests/golden.rs compares ours to them.
# To change the inputs: cargo test -p ringkv-bench --test golden -- --ignored, then this.
set -euo pipefail
cd "$(dirname "$0")"
command -v javac >/dev/null || apt-get install -y -q default-jdk-headless
test -f /usr/share/java/hdrhistogram.jar || apt-get install -y -q libhdrhistogram-java
build=$(mktemp -d)
javac -d "$build" -cp /usr/share/java/hdrhistogram.jar Golden.java
java -cp "$build:/usr/share/java/hdrhistogram.jar" Golden latency two-digits one-value
rm -r "$build"
