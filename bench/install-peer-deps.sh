#!/usr/bin/env bash
# What building the peers needs on Debian: libclang for RocksDB's bindings (bindgen),
# a C++ compiler for RocksDB itself (already on the machine). Run as root.
set -euo pipefail
apt-get install -y -q libclang-dev clang
