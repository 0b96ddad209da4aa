#!/usr/bin/env bash
# Builds, checks and installs the shmkv Debian packages, then uses what was
# installed:
#
#   prefix  `cmake --install` of a Release build (build-inst/) into a
#           temporary prefix; the consumer in examples/consumer/ built
#           against it with find_package (CMAKE_PREFIX_PATH) and with
#           pkg-config (PKG_CONFIG_PATH), and run; the consumer built
#           against the components lib and dev only (no near cache, no
#           hiredis)
#   debs    libshmkv1, libshmkv-dev, libshmkv-upstream1,
#           libshmkv-upstream-dev and shmkv-tools built with CPack in
#           build-deb/ (packaging/CMakeLists.txt, Debian build flags): their
#           files and Depends; lintian reports no errors
#   system  the packages installed with `apt-get install ./build-deb/*.deb`
#           (reinstalled when already there); from the installed files:
#           shmkv --help, create/set/get/destroy on a unique segment,
#           shmkvd --version, the exports of libshmkv and libshmkv_upstream,
#           the consumer built with find_package and pkg-config and run
#
# Prints one line per check and `N passed, N failed`; exits non-zero if any
# check failed. Idempotent: packages already installed are not touched (no
# apt-get update when nothing is missing), the builds are incremental and
# the debs are rebuilt and reinstalled every run.
#
#   bash scripts/package.sh               # all three
#   bash scripts/package.sh --prefix DIR  # only the prefix check, into DIR
#                                         # (new or empty; it is kept)
#
# Runs as root, or as a user with sudo (apt-get install). Environment:
# SHMKV_JOBS (default: nproc).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"

prefix_only=""
while (($# > 0)); do
  case "$1" in
    --prefix)
      prefix_only="${2:?--prefix needs a directory}"
      if [[ -e "$prefix_only" && -n "$(ls -A "$prefix_only")" ]]; then
        echo "package: --prefix $prefix_only: not empty (give a new or empty directory)" >&2
        exit 2
      fi
      shift 2
      ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "package: unknown argument $1 (see --help)" >&2
      exit 2
      ;;
  esac
done

# What the packages are built and checked with (the library's own build
# dependencies are those of scripts/setup.sh).
#   dpkg-dev fakeroot file  dpkg-shlibdeps and dpkg-deb (CPack DEB)
#   lintian                 package checks
#   help2man                man pages of shmkv and shmkvd
#   make                    the pkg-config build of examples/consumer
#   libhiredis-dev          the near cache (libshmkv-upstream1) and shmkvd
#                           --upstream, built only with it
#   php8.2-dev php8.2-cli   the PHP extension (php8.2-shmkv: php-config) and
#                           its check with the installed package
PACKAGES=(
  build-essential cmake ninja-build pkg-config make
  libboost-dev libboost-program-options-dev libxxhash-dev nlohmann-json3-dev
  libncurses-dev libsystemd-dev libhiredis-dev
  dpkg-dev fakeroot file lintian help2man
  php8.2-dev php8.2-cli
)

# shellcheck source=scripts/lib/packages.sh
source scripts/lib/packages.sh
ensure_packages package "${PACKAGES[@]}"

jobs="${SHMKV_JOBS:-$(nproc)}"
version="$(sed -n 's/^project(shmkv VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)"
# The Debian version: <version>-<SHMKV_DEB_RELEASE of packaging/>.
deb_version="$version-$(sed -n 's/^set(SHMKV_DEB_RELEASE \([0-9]*\))$/\1/p' packaging/CMakeLists.txt)"
php_version="$(php-config --version | cut -d. -f1,2)"
php_ext_dir="$(php-config --extension-dir)"
deb_packages=(libshmkv1 libshmkv-dev libshmkv-upstream1 libshmkv-upstream-dev shmkv-tools
  "php$php_version-shmkv")
segment="pkgtest-$$-$RANDOM"
tmp="$(mktemp -d)"
cleanup() {
  for cli in /usr/bin/shmkv "$tmp/prefix/bin/shmkv"; do
    if [[ -x "$cli" ]]; then "$cli" destroy --yes "$segment" >/dev/null 2>&1 || true; fi
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

passed=0
failed=0
# run_check <name> <command...>: runs the command with its output in a log
# that is shown only when it fails. `check` goes on after a failure;
# `require ... || return 0` ends the phase, whose later checks need it.
run_check() {
  local name="$1" log="$tmp/log"
  shift
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "ok    $name"
  else
    failed=$((failed + 1))
    echo "FAIL  $name"
    sed 's/^/      /' "$log" | tail -n 40
    return 1
  fi
}
check() { run_check "$@" || true; }
require() { run_check "$@"; }

# Output of <command...> contains <text>.
output_has() {  # <text> <command...>
  local text="$1" out
  shift
  out="$("$@" 2>&1)" || {
    echo "$out"
    return 1
  }
  echo "$out"
  [[ "$out" == *"$text"* ]] || {
    echo "(no '$text' in the output)"
    return 1
  }
}

files_exist() {
  local f rc=0
  for f in "$@"; do
    [[ -e "$f" ]] || {
      echo "missing: $f"
      rc=1
    }
  done
  return $rc
}

# examples/consumer against an installed package: with CMake (find_package)
# into $tmp/<tag>-cmake, with make (pkg-config) into $tmp/<tag>-pc.
consumer_cmake_build() {  # <tag> [cmake args...]
  local tag="$1"
  shift
  cmake -S examples/consumer -B "$tmp/$tag-cmake" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" &&
    cmake --build "$tmp/$tag-cmake"
}
consumer_pc_build() {  # <tag> [PKG_CONFIG_PATH]
  mkdir -p "$tmp/$1-pc"
  (
    [[ -z "${2:-}" ]] || export PKG_CONFIG_PATH="$2"
    make -C "$tmp/$1-pc" -f "$root/examples/consumer/Makefile" all
  )
}
# The four programs (C, C++, static C, near cache) on the test segment:
# the first creates it; consumer_near finds it is not a near cache.
consumer_run() {  # <dir> [LD_LIBRARY_PATH]
  (
    [[ -z "${2:-}" ]] || export LD_LIBRARY_PATH="$2"
    "$1/consumer_c" "$segment" && "$1/consumer_cc" "$segment" &&
      "$1/consumer_c_static" "$segment" && "$1/consumer_near" "$segment"
  )
}
# The shared-library consumers of <tag> load libshmkv.so.1 (and
# consumer_near libshmkv_upstream.so.1) from <libdir>; only consumer_near
# loads libhiredis.
consumers_load() {  # <tag> <libdir> [LD_LIBRARY_PATH of the pkg-config build]
  local prog out lib path
  for prog in "$tmp/$1-cmake/consumer_c" "$tmp/$1-cmake/consumer_cc" \
    "$tmp/$1-cmake/consumer_near" "$tmp/$1-pc/consumer_c" "$tmp/$1-pc/consumer_cc" \
    "$tmp/$1-pc/consumer_near"; do
    if [[ "$prog" == */"$1"-pc/* && -n "${3:-}" ]]; then
      out="$(LD_LIBRARY_PATH="$3" ldd "$prog")"
    else
      out="$(ldd "$prog")"
    fi
    for lib in libshmkv.so.1 libshmkv_upstream.so.1; do
      [[ "$lib" == libshmkv.so.1 || "$prog" == */consumer_near ]] || continue
      path="$(sed -n "s/^\s*${lib//./\\.} => \(\S*\) .*/\1/p" <<<"$out")"
      echo "$prog: $lib => $path"
      # realpath: /lib is /usr/lib on a merged-/usr system.
      [[ -n "$path" && "$(realpath "$path")" == "$(realpath "$2/$lib")" ]] || return 1
    done
    if [[ "$prog" != */consumer_near ]] && grep libhiredis <<<"$out"; then
      echo "$prog: loads libhiredis"
      return 1
    fi
  done
}

# Without the near cache (components lib and dev only, into $tmp/core): no
# near-cache file, hiredis in no CMake or pkg-config file (but comments),
# and the consumer builds with find_package, without consumer_near.
consumer_core_only() {
  local out
  cmake --install build-inst --prefix "$tmp/core" --component lib &&
    cmake --install build-inst --prefix "$tmp/core" --component dev || return 1
  out="$(find "$tmp/core" -name '*upstream*' -o -name near_cache.h)"
  [[ -z "$out" ]] || {
    echo "near-cache files installed: $out"
    return 1
  }
  out="$(grep -rn --include='*.cmake' --include='*.pc' hiredis "$tmp/core" |
    grep -v -E '^[^:]*:[0-9]+:\s*#')" || true
  [[ -z "$out" ]] || {
    echo "hiredis named: $out"
    return 1
  }
  consumer_cmake_build core "-DCMAKE_PREFIX_PATH=$tmp/core" || return 1
  [[ -x "$tmp/core-cmake/consumer_cc" && ! -e "$tmp/core-cmake/consumer_near" ]] || {
    echo "expected consumer_cc and no consumer_near in $tmp/core-cmake"
    return 1
  }
}

# libshmkv_upstream exports shmkv::NearCache and nothing else of its own
# (as tests/abi/check_exports.cmake does for libshmkv): no shmkv_* C
# functions, no shmkv::Cache (both libshmkv's), no internals of the Redis
# connection. Vague-linkage instantiations of standard templates carry
# default visibility from the standard headers.
exports_only_near_cache() {  # <library>
  local syms bad
  syms="$(nm -D --defined-only -C "$1")" || return 1
  grep -q ' T shmkv::NearCache::Open(' <<<"$syms" || {
    echo "$1: shmkv::NearCache::Open not exported"
    return 1
  }
  bad="$(sed -n 's/^[0-9a-f]* [TDBRVW] //p' <<<"$syms" | grep -v -E \
    -e '^shmkv::NearCache::' -e '^(std|__gnu_cxx)::' -e '^void std::' \
    -e '^(typeinfo|typeinfo name|vtable|guard variable) for (shmkv::NearCache|std::|__gnu_cxx::)')" ||
    true
  if [[ -n "$bad" ]]; then
    echo "$1: non-API symbols exported:"
    echo "$bad"
    return 1
  fi
  echo "$1: $(grep -c ' T shmkv::NearCache::' <<<"$syms") functions of shmkv::NearCache exported"
}

# The files of <deb> outside usr/share/, directories left out, are exactly
# <path...> (relative to /).
deb_holds_only() {  # <deb> <path...>
  local deb="$1" want got
  shift
  got="$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./||' | grep -v -e '/$' -e '^usr/share/' |
    sort)"
  want="$(printf '%s\n' "$@" | sort)"
  echo "$got"
  [[ "$got" == "$want" ]] || {
    echo "(expected:"
    echo "$want)"
    return 1
  }
}

phase_prefix() {  # <prefix>
  local p="$1"
  echo "--- prefix: cmake --install into $p"
  require "prefix: configure build-inst/ (Release)" \
    cmake -S . -B build-inst -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr/local \
    -DSHMKV_BUILD_TESTS=OFF -DSHMKV_BUILD_BENCH=OFF -DSHMKV_BUILD_EXAMPLES=OFF \
    -DSHMKV_SANITIZE= || return 0
  require "prefix: build" cmake --build build-inst --parallel "$jobs" || return 0
  require "prefix: cmake --install build-inst --prefix $p" cmake --install build-inst --prefix "$p" ||
    return 0
  local lib
  lib="$p/$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' build-inst/CMakeCache.txt)"
  check "prefix: headers, libraries, CMake package, pkg-config files, tools" files_exist \
    "$p/include/shmkv/shmkv.h" "$p/include/shmkv/cache.h" "$p/include/shmkv/near_cache.h" \
    "$lib/libshmkv.so.$version" "$lib/libshmkv.so.1" "$lib/libshmkv.so" "$lib/libshmkv.a" \
    "$lib/libshmkv_upstream.so.$version" "$lib/libshmkv_upstream.so.1" \
    "$lib/libshmkv_upstream.so" "$lib/cmake/shmkv/shmkvConfig.cmake" \
    "$lib/cmake/shmkv/shmkvConfigVersion.cmake" "$lib/cmake/shmkv/shmkvTargets.cmake" \
    "$lib/cmake/shmkv/shmkvUpstreamTargets.cmake" "$lib/pkgconfig/shmkv.pc" \
    "$lib/pkgconfig/shmkv-upstream.pc" "$p/bin/shmkv" "$p/sbin/shmkvd"
  check "prefix: soname libshmkv.so.1" output_has "Library soname: [libshmkv.so.1]" \
    readelf -d "$lib/libshmkv.so.$version"
  check "prefix: soname libshmkv_upstream.so.1" output_has \
    "Library soname: [libshmkv_upstream.so.1]" readelf -d "$lib/libshmkv_upstream.so.$version"
  check "prefix: consumer with find_package (CMAKE_PREFIX_PATH)" \
    consumer_cmake_build prefix "-DCMAKE_PREFIX_PATH=$p"
  check "prefix: consumer with pkg-config (PKG_CONFIG_PATH)" \
    consumer_pc_build prefix "$lib/pkgconfig"
  check "prefix: find_package consumer runs (C, C++, static C, near cache)" \
    consumer_run "$tmp/prefix-cmake"
  check "prefix: pkg-config consumer runs (C, C++, static C, near cache)" \
    consumer_run "$tmp/prefix-pc" "$lib"
  check "prefix: consumers load $lib/libshmkv.so.1, libshmkv_upstream.so.1" \
    consumers_load prefix "$lib" "$lib"
  check "prefix: installed shmkv reads what the consumers wrote" \
    output_has "hello from C++" "$p/bin/shmkv" get "$segment" consumer:cc
  "$p/bin/shmkv" destroy --yes "$segment" >/dev/null 2>&1 || true
  check "prefix: components lib and dev only: no hiredis, consumer with find_package" \
    consumer_core_only
}

debs=()
phase_debs() {
  echo "--- debs: CPack in build-deb/"
  # Debian's build flags (hardening) without -g: no -dbgsym packages here.
  local cflags cxxflags cppflags ldflags
  cflags="$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CFLAGS)"
  cxxflags="$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CXXFLAGS)"
  cppflags="$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CPPFLAGS)"
  ldflags="$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get LDFLAGS)"
  cflags="${cflags//-g /}"
  cxxflags="${cxxflags//-g /}"
  require "debs: configure build-deb/ (Release, prefix /usr)" \
    cmake -S . -B build-deb -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
    -DSHMKVD_UNIT_DIR=/lib/systemd/system -DCMAKE_INSTALL_DOCDIR=share/doc/shmkv-tools \
    -DSHMKV_BUILD_MANPAGES=ON -DSHMKV_BUILD_TESTS=OFF -DSHMKV_BUILD_BENCH=OFF \
    -DSHMKV_BUILD_EXAMPLES=OFF -DSHMKV_SANITIZE= \
    "-DCMAKE_C_FLAGS=$cppflags $cflags" "-DCMAKE_CXX_FLAGS=$cppflags $cxxflags" \
    "-DCMAKE_EXE_LINKER_FLAGS=$ldflags" "-DCMAKE_SHARED_LINKER_FLAGS=$ldflags" || return 0
  require "debs: build" cmake --build build-deb --parallel "$jobs" || return 0
  rm -f build-deb/*.deb
  require "debs: cpack -G DEB" bash -c "cd build-deb && cpack -G DEB" || return 0
  local pkg deb
  for pkg in "${deb_packages[@]}"; do
    deb="build-deb/${pkg}_${deb_version}_$(dpkg --print-architecture).deb"
    require "debs: $deb" files_exist "$deb" && debs+=("$deb")
  done
  local libdir
  libdir="usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)"
  check "debs: libshmkv1 holds the shared library only" deb_holds_only \
    build-deb/libshmkv1_*.deb "$libdir/libshmkv.so.1" "$libdir/libshmkv.so.$version"
  check "debs: libshmkv-upstream1 holds the near-cache library only" deb_holds_only \
    build-deb/libshmkv-upstream1_*.deb "$libdir/libshmkv_upstream.so.1" \
    "$libdir/libshmkv_upstream.so.$version"
  check "debs: libshmkv-dev holds headers, .so, .a, CMake package, shmkv.pc (no near cache)" \
    bash -c "
    c=\$(dpkg-deb -c build-deb/libshmkv-dev_*.deb) &&
    for f in usr/include/shmkv/shmkv.h $libdir/libshmkv.so $libdir/libshmkv.a \
             $libdir/cmake/shmkv/shmkvConfig.cmake $libdir/pkgconfig/shmkv.pc; do
      grep -q \" ./\$f\" <<<\"\$c\" || { echo missing \$f; exit 1; }
    done &&
    if grep -e near_cache -e upstream <<<\"\$c\"; then echo 'near-cache files above'; exit 1; fi"
  check "debs: libshmkv-upstream-dev holds near_cache.h, .so, CMake targets, shmkv-upstream.pc" \
    deb_holds_only build-deb/libshmkv-upstream-dev_*.deb usr/include/shmkv/near_cache.h \
    "$libdir/libshmkv_upstream.so" "$libdir/cmake/shmkv/shmkvUpstreamTargets.cmake" \
    "$libdir/cmake/shmkv/shmkvUpstreamTargets-release.cmake" \
    "$libdir/pkgconfig/shmkv-upstream.pc"
  check "debs: shmkv-tools holds the CLI, daemon, unit, sysusers, man pages" bash -c "
    c=\$(dpkg-deb -c build-deb/shmkv-tools_*.deb) &&
    for f in usr/bin/shmkv usr/sbin/shmkvd lib/systemd/system/shmkvd@.service \
             usr/lib/sysusers.d/shmkvd.conf usr/share/man/man1/shmkv.1.gz \
             usr/share/man/man8/shmkvd.8.gz usr/share/doc/shmkv-tools/copyright; do
      grep -q \" ./\$f\" <<<\"\$c\" || { echo missing \$f; exit 1; }
    done"
  check "debs: php$php_version-shmkv holds shmkv.so in $php_ext_dir and its ini" deb_holds_only \
    "build-deb/php$php_version-shmkv_${deb_version}_$(dpkg --print-architecture).deb" \
    "${php_ext_dir#/}/shmkv.so" "etc/php/$php_version/mods-available/shmkv.ini"
  check "debs: php$php_version-shmkv depends on libshmkv1 (= $deb_version) and PHP's API" bash -c "
    d=\$(dpkg-deb -f build-deb/php$php_version-shmkv_*.deb Depends) && echo \"\$d\" &&
    [[ \$d == *'libshmkv1 (= $deb_version)'* && \$d == *phpapi-$(php-config --phpapi)* ]]"
  check "debs: libshmkv-dev depends on libshmkv1 (= $deb_version)" output_has \
    "libshmkv1 (= $deb_version)" dpkg-deb -f build-deb/libshmkv-dev_*.deb Depends
  check "debs: libshmkv1 does not depend on hiredis" bash -c "
    d=\$(dpkg-deb -f build-deb/libshmkv1_*.deb Depends) && echo \"\$d\" && [[ \$d != *hiredis* ]]"
  check "debs: libshmkv-upstream1 depends on libshmkv1 (= $deb_version), libhiredis0.14" bash -c "
    d=\$(dpkg-deb -f build-deb/libshmkv-upstream1_*.deb Depends) && echo \"\$d\" &&
    [[ \$d == *'libshmkv1 (= $deb_version)'* && \$d == *libhiredis0.14* ]]"
  check "debs: libshmkv-upstream-dev depends on libshmkv-upstream1, libshmkv-dev (= $deb_version)" \
    bash -c "
    d=\$(dpkg-deb -f build-deb/libshmkv-upstream-dev_*.deb Depends) && echo \"\$d\" &&
    [[ \$d == *'libshmkv-upstream1 (= $deb_version)'* && \$d == *'libshmkv-dev (= $deb_version)'* ]]"
  check "debs: shmkv-tools depends on libhiredis0.14 (shmkvd, dpkg-shlibdeps)" output_has \
    "libhiredis0.14" dpkg-deb -f build-deb/shmkv-tools_*.deb Depends
  # Exit status 2 on any error (--fail-on error). Shown: warnings, info
  # and the overridden tags (O:, packaging/debian/*/lintian-overrides, each
  # with its reason there).
  ((${#debs[@]} == ${#deb_packages[@]})) || return 0
  echo "--- lintian $(lintian --print-version)"
  local out rc=0
  out="$(lintian --fail-on error --display-info --show-overrides "${debs[@]}" 2>&1)" || rc=$?
  grep -v 'running with root privileges' <<<"$out" | sed 's/^/      /' || true
  check "debs: lintian reports no errors" test "$rc" -eq 0
}

phase_system() {
  echo "--- system: apt-get install ./build-deb/*.deb"
  ((${#debs[@]} == ${#deb_packages[@]})) || {
    check "system: ${#deb_packages[@]} debs to install" false
    return 0
  }
  local paths=() d
  for d in "${debs[@]}"; do paths+=("./$d"); done
  require "system: apt-get install (reinstall)" \
    env DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y --reinstall \
    --allow-downgrades "${paths[@]}" || return 0
  check "system: dpkg says installed $deb_version" bash -c "
    for p in ${deb_packages[*]}; do
      v=\$(dpkg-query -W -f='\${db:Status-Abbrev} \${Version}' \$p) && [[ \$v == 'ii  $deb_version' ]] ||
        { echo \"\$p: \$v\"; exit 1; }
    done"
  check "system: shmkv is /usr/bin/shmkv" test "$(command -v shmkv)" = /usr/bin/shmkv
  check "system: shmkv --help" output_has "Commands:" /usr/bin/shmkv --help
  check "system: shmkv --version" output_has "shmkv $version" /usr/bin/shmkv --version
  check "system: shmkvd --version" output_has "shmkvd $version" /usr/sbin/shmkvd --version
  check "system: shmkvd --help" output_has "--sweep-period" /usr/sbin/shmkvd --help
  check "system: man pages" bash -c "man -w shmkv && man -w 8 shmkvd"
  if command -v systemd-sysusers >/dev/null 2>&1; then
    check "system: postinst created the shmkv system user" getent passwd shmkv
  fi
  check "system: shmkv create" /usr/bin/shmkv create "$segment" --memory 4M
  check "system: shmkv set" /usr/bin/shmkv set "$segment" greeting "hello from shmkv-tools"
  check "system: shmkv get" output_has "hello from shmkv-tools" /usr/bin/shmkv get "$segment" greeting
  check "system: libshmkv.so.1 exports only the C and C++ APIs (tests/abi)" \
    cmake -DNM=nm "-DLIB=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/libshmkv.so.1" \
    -P tests/abi/check_exports.cmake
  local libdir
  libdir="/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)"
  check "system: libshmkv_upstream.so.1 exports only shmkv::NearCache" \
    exports_only_near_cache "$libdir/libshmkv_upstream.so.1"
  check "system: consumer with find_package" consumer_cmake_build system
  check "system: consumer with pkg-config" consumer_pc_build system
  check "system: find_package consumer runs (C, C++, static C, near cache)" \
    consumer_run "$tmp/system-cmake"
  check "system: pkg-config consumer runs (C, C++, static C, near cache)" \
    consumer_run "$tmp/system-pc"
  check "system: consumers load $libdir/libshmkv.so.1, libshmkv_upstream.so.1" \
    consumers_load system "$libdir"
  check "system: shmkv get reads what the consumer wrote" \
    output_has "hello from C" /usr/bin/shmkv get "$segment" consumer:c
  check "system: shmkv destroy" /usr/bin/shmkv destroy --yes "$segment"
  # The PHP extension, enabled by postinst (phpenmod): plain `php` has it.
  check "system: php -m lists shmkv (postinst ran phpenmod)" bash -c "php -m | grep -x shmkv"
  check "system: the PHP test passes on the installed extension" \
    output_has "testing the native extension" php tests/php/wrapper_test.php
}

if [[ -n "$prefix_only" ]]; then
  mkdir -p "$prefix_only"
  phase_prefix "$(cd "$prefix_only" && pwd)"
else
  phase_prefix "$tmp/prefix"
  phase_debs
  if [[ "${as_root[*]}" == false ]]; then
    check "system: root or sudo to install the packages" false
  else
    phase_system
  fi
fi

echo
echo "package: $passed passed, $failed failed"
((failed == 0))
