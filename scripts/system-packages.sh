#!/usr/bin/env bash
# Installs the Debian packages iaemu's test suite needs: gfortran and liblapack-dev (CosmoSIS
# builds from source) and OpenMPI (the MPI generation test). Idempotent: does nothing when present.
set -euo pipefail
needed=(gfortran liblapack-dev libopenmpi-dev openmpi-bin)
missing=()
for pkg in "${needed[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-packages: please install ${missing[*]} with your system's package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "system-packages: not root and no sudo: ask an administrator to run" >&2
    echo "  apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
echo "system-packages: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
