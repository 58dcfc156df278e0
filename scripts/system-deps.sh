#!/usr/bin/env bash
# Installs the Debian packages biasvar's commands and tests use, when it can (root + apt-get);
# otherwise says what to install. Usage: scripts/system-deps.sh PACKAGE...
#   dataset-fashion-mnist  the default dataset (IDX .gz files in /usr/share/datasets/fashion-mnist/)
#   chromium               headless browser for the HTML report tests
#   postgresql             a PostgreSQL server for the many-worker Optuna tests (tests start a throw-away cluster)
set -u
missing=()
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null \
    || { echo "apt-get install ${missing[*]} failed" >&2; exit 1; }
else
  echo "biasvar: please install these packages: ${missing[*]}" >&2
  echo "  Debian/Ubuntu: sudo apt-get install ${missing[*]}" >&2
  echo "  elsewhere: put the Fashion-MNIST IDX files (train-images-idx3-ubyte.gz, ...) in" >&2
  echo "  ./data/FashionMNIST/raw/ and install Chromium for the report tests." >&2
  exit 1
fi
