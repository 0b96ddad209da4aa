# shellcheck shell=bash
# Debian packages for the scripts of this repository, sourced by
# scripts/setup.sh, bench.sh, bench_php.sh and package.sh.
#
#   source scripts/lib/packages.sh
#   ensure_packages TAG PACKAGE...
#
# Installs the packages that are missing (apt-get update only then, once),
# as root, through sudo, or, for a user with neither, prints the apt-get
# line to run and exits 1. TAG prefixes the messages. Afterwards:
#   as_root          the command prefix for root: () or (sudo) or (false)
#   packages_added   1 if this call installed something, else 0
# APT_INSTALL_OPTS (an array, optional) adds options to apt-get install.

if ((EUID == 0)); then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  as_root=(false)
fi
packages_added=0  # read by the sourcing script
# shellcheck disable=SC2034  # as_root and packages_added are read by the caller

ensure_packages() {
  local tag="$1"
  shift
  local pkg status missing=()
  for pkg in "$@"; do
    status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == ii* ]] || missing+=("$pkg")
  done
  packages_added=0
  if ((${#missing[@]} == 0)); then
    echo "$tag: all $# packages already installed"
    return 0
  fi
  echo "$tag: missing packages: ${missing[*]}"
  if [[ "${as_root[*]}" == false ]]; then
    echo "$tag: not root and no sudo; as root, run:" >&2
    echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update
  "${as_root[@]}" apt-get install -y ${APT_INSTALL_OPTS[@]+"${APT_INSTALL_OPTS[@]}"} "${missing[@]}"
  packages_added=1
}
