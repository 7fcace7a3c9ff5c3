#!/usr/bin/env bash
# Installs the Debian 12 packages ember builds and tests with, skipping
# those already present.  Needs root (apt-get).
set -euo pipefail
# libyaml-dev, libcurl4-openssl-dev and libsqlite3-dev: the router (config, remote
# backends, ledger).
# python3-jinja2 is test-only: the chat-template exactness check (tests/ref/test_templates.sh).
# nodejs and npm are test-only: the end-to-end suite of ember serve (tests/e2e) and its load generator (bench/serve).
pkgs=(build-essential cmake pkg-config clang libclang-rt-14-dev libpcre2-dev libjansson-dev libmicrohttpd-dev libyaml-dev libcurl4-openssl-dev libsqlite3-dev python3-numpy python3-jinja2 chromium nodejs npm gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm may come from outside Debian on some machines: a working
# binary counts as present.
filtered=()
for p in "${missing[@]}"; do
  case "$p" in
    nodejs) command -v node >/dev/null || filtered+=("$p") ;;
    npm) command -v npm >/dev/null || filtered+=("$p") ;;
    *) filtered+=("$p") ;;
  esac
done
if [ ${#filtered[@]} -gt 0 ]; then
  echo "installing: ${filtered[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${filtered[@]}"
fi
