#!/usr/bin/env bash
# install-deps.sh [build|test] - installs the Debian 12 packages ember needs,
# skipping those already present.  Needs root (apt-get).
#
#   build (default)  what building and running ember need: the compiler,
#                    CMake and the libraries ember links.
#   test             build's packages plus everything the test suite uses:
#                    clang and its sanitizer/libFuzzer runtime, the NumPy,
#                    jinja2 and tokenizer (python3-regex) references, node
#                    and npm (the end-to-end suite of `ember serve` and
#                    bench/serve), chromium (the eval
#                    report's browser check), the aarch64 cross compiler and
#                    qemu-user (the NEON kernels under emulation), and
#                    postgresql (the router's PostgreSQL ledger tests start
#                    their own server).
set -euo pipefail
mode=${1:-build}
build_pkgs=(build-essential cmake pkg-config libpcre2-dev libjansson-dev libcurl4-openssl-dev
            libsodium-dev libmicrohttpd-dev libyaml-dev libsqlite3-dev libpq-dev)
test_pkgs=(clang libclang-rt-14-dev python3-numpy python3-jinja2 python3-regex nodejs npm chromium
           gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user postgresql)
case "$mode" in
  build) pkgs=("${build_pkgs[@]}") ;;
  test) pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  *) echo "usage: $0 [build|test]" >&2; exit 2 ;;
esac
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
