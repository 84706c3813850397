#!/usr/bin/env bash
# Installs what building and testing need, only what is missing: Debian/Ubuntu packages
# through apt-get (as root, or with sudo) and the npm packages of tests/node.
set -eu
cd "$(dirname "$0")/.."
pkgs="build-essential clang libclang-rt-dev libmicrohttpd-dev libjansson-dev libsqlite3-dev
      libcurl4-openssl-dev libssl-dev libpcre2-dev libopenblas-dev zlib1g-dev pkg-config nodejs npm chromium wrk curl"
missing=""
for p in $pkgs; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
# Debian 12 names clang's runtime libclang-rt-14-dev; accept any installed version.
case "$missing" in *libclang-rt-dev*)
    if dpkg -l 'libclang-rt-*-dev' 2>/dev/null | grep -q '^ii'; then missing=${missing/libclang-rt-dev/}; fi;;
esac
# nodejs from another source (e.g. nodesource) brings npm itself.
if command -v node >/dev/null && command -v npm >/dev/null; then missing=${missing/nodejs/}; missing=${missing/npm/}; fi
missing=$(echo $missing)
if [ -n "$missing" ]; then
    echo "setup: installing $missing"
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -q
    # libclang-rt-dev may not exist under that name: fall back to the versioned one.
    if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q $missing; then
        missing=${missing/libclang-rt-dev/libclang-rt-14-dev}
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q $missing
    fi
fi
if [ -f tests/node/package.json ] && [ ! -d tests/node/node_modules ]; then
    echo "setup: npm install in tests/node"
    (cd tests/node && npm install --no-audit --no-fund --loglevel=error)
fi
