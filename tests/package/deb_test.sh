#!/bin/sh
# The Debian package and the install rules, end to end (ctest -L package).
#   deb_test.sh BUILD_DIR [CMAKE [CPACK]]
# 1. cpack builds the .deb from BUILD_DIR into a scratch directory;
# 2. its control data: Depends (the Debian library packages, no -dev),
#    Recommends, conffiles, maintainer scripts;
# 3. its files: where they go, what must not be there, binaries stripped;
# 4. dpkg -x into a scratch root: the shipped /etc/edgesync/edgesync.toml
#    passes the unpacked `edgesync check`; systemd-analyze verify on the unit,
#    and systemd-analyze security rates its hardening 2.0 or lower;
# 5. cmake --install --prefix into another scratch directory.
# Everything temporary is under one mktemp directory, removed on exit.
set -eu

build=${1:?usage: deb_test.sh BUILD_DIR [CMAKE [CPACK]]}
cmake=${2:-cmake}
cpack=${3:-cpack}

fail() {
  echo "deb_test: FAIL: $*" >&2
  exit 1
}
note() { echo "deb_test: $*"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/edgesync-deb-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

[ -f "$build/CPackConfig.cmake" ] || fail "$build/CPackConfig.cmake missing: configure the build first"
for p in edgesync edgesync-unpack; do
  [ -x "$build/bin/$p" ] || fail "$build/bin/$p missing: build first (cmake --build $build)"
done
for t in dpkg dpkg-deb dpkg-shlibdeps readelf; do
  command -v "$t" >/dev/null 2>&1 || fail "$t not found (dpkg-dev, binutils: run script/bootstrap)"
done

# ---- 1. the package ---------------------------------------------------------
# gzip instead of the package's xz: the same contents, in a third of the time
# for the sanitizer build's large binaries.
if ! "$cpack" -G DEB -D CPACK_DEBIAN_COMPRESSION_TYPE=gzip --config "$build/CPackConfig.cmake" -B "$work/pkg" \
     >"$work/cpack.log" 2>&1; then
  cat "$work/cpack.log" >&2
  fail "cpack -G DEB failed (its output is above)"
fi
deb=
for f in "$work"/pkg/edgesync_*.deb; do
  [ -f "$f" ] || break
  [ -z "$deb" ] || fail "cpack made more than one edgesync_*.deb: $(ls "$work/pkg")"
  deb=$f
done
[ -n "$deb" ] || fail "cpack made no edgesync_*.deb (found: $(ls "$work/pkg"))"
arch=$(dpkg --print-architecture)
case $(basename "$deb") in
  edgesync_*_"$arch".deb) ;;
  *) fail "package file name $(basename "$deb") is not edgesync_<version>_$arch.deb" ;;
esac
note "$(basename "$deb"), $(du -k "$deb" | cut -f1) KiB"

# ---- 2. control data ---------------------------------------------------------
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = edgesync ] || fail "Package is '$(field Package)', not edgesync"
[ "$(field Architecture)" = "$arch" ] || fail "Architecture is '$(field Architecture)', not $arch"
[ "$(field Section)" = net ] || fail "Section is '$(field Section)', not net"
[ -n "$(field Maintainer)" ] || fail "no Maintainer"
[ -n "$(field Version)" ] || fail "no Version"
depends=$(field Depends)
note "Depends: $depends"
# One package name a line, alternatives split, versions dropped.
echo "$depends" | tr ',|' '\n\n' | sed 's/(.*//; s/[[:space:]]//g' | grep -v '^$' >"$work/depends"
for lib in libc6 libstdc++6 libmosquitto1 librdkafka1 libzstd1 libsqlite3-0 libssl3 libfmt9 \
           libspdlog1.10 liblua5.4-0 libre2-9 libsimdjson14; do
  # A prefix: spdlog's shlibs name the virtual package libspdlog1.10-fmt9.
  awk -v lib="$lib" 'index($0, lib) == 1 { found = 1 } END { exit !found }' "$work/depends" ||
    fail "Depends lacks $lib (is CPACK_DEBIAN_PACKAGE_SHLIBDEPS on?): $depends"
done
if grep -- '-dev$' "$work/depends" >"$work/dev"; then
  fail "Depends names development packages: $(tr '\n' ' ' <"$work/dev")"
fi
echo "$(field Recommends)" | grep -qw mosquitto || fail "Recommends lacks mosquitto: '$(field Recommends)'"

dpkg-deb -e "$deb" "$work/control"
[ -f "$work/control/conffiles" ] || fail "no conffiles in the control archive"
for c in /etc/edgesync/edgesync.toml /etc/mosquitto/conf.d/edgesync.conf; do
  grep -qx "$c" "$work/control/conffiles" || fail "conffiles lacks $c: $(tr '\n' ' ' <"$work/control/conffiles")"
done
for s in postinst prerm postrm; do
  [ -x "$work/control/$s" ] || fail "no executable $s maintainer script"
  sh -n "$work/control/$s" || fail "$s is not valid sh"
done
if grep -v '^[[:space:]]*#' "$work/control/postinst" |
   grep -E '(systemctl|deb-systemd-helper|deb-systemd-invoke).*[[:space:]](enable|reenable|start|--now)([[:space:]]|$)'; then
  fail "postinst must not enable or start the service (the configuration needs a device_id first)"
fi

# ---- 3. files -----------------------------------------------------------------
dpkg-deb -c "$deb" >"$work/contents"
awk '{ print $6 }' "$work/contents" | sed 's#^\./#/#; s#/$##' >"$work/files"
for f in /usr/bin/edgesync /usr/bin/edgesync-unpack \
         /usr/lib/systemd/system/edgesync.service \
         /usr/lib/sysusers.d/edgesync.conf /usr/lib/tmpfiles.d/edgesync.conf \
         /etc/edgesync/edgesync.toml /etc/edgesync/profiles /etc/mosquitto/conf.d/edgesync.conf \
         /usr/share/edgesync/profiles/payment-terminal.toml /usr/share/edgesync/profiles/ev-charger.toml \
         /usr/share/doc/edgesync/README.md /usr/share/doc/edgesync/FORMAT.md \
         /usr/share/doc/edgesync/docs/operating.md /usr/share/doc/edgesync/docs/configuration.md \
         /usr/share/doc/edgesync/examples/edgesync.toml /usr/share/doc/edgesync/examples/demo.toml \
         /usr/share/doc/edgesync/examples/topic_key.c /usr/include/edgesync/plugin.h; do
  grep -qx "$f" "$work/files" || fail "the package lacks $f"
done
# The broker plugin, when the build made it (EDGESYNC_DEB_BROKER_PLUGIN=1,
# set by tests/package/CMakeLists.txt; the sanitizer builds do not).
if [ "${EDGESYNC_DEB_BROKER_PLUGIN:-1}" = 1 ]; then
  grep -qx /usr/lib/edgesync/edgesync_broker.so "$work/files" ||
    fail "the package lacks /usr/lib/edgesync/edgesync_broker.so"
fi
# Only the two programs: no test, demo or benchmark harness.
extra=$(grep '^/usr/bin/.' "$work/files" | grep -vx -e /usr/bin/edgesync -e /usr/bin/edgesync-unpack || true)
[ -z "$extra" ] || fail "the package has programs it must not ship: $extra"
# The one shared object: the broker plugin mosquitto loads (docs/operating.md).
if grep -e '^/usr/local' -e '^/usr/etc' -e '^/usr/lib/[^/]*-linux-gnu' -e '\.so$' "$work/files" |
     grep -vx /usr/lib/edgesync/edgesync_broker.so; then
  fail "the package has files in the wrong places (above)"
fi
grep -q ' \./etc/edgesync/profiles -> \.\./\.\./usr/share/edgesync/profiles$' "$work/contents" ||
  fail "/etc/edgesync/profiles is not the relative link ../../usr/share/edgesync/profiles"

# ---- 4. unpacked into a scratch root ------------------------------------------
root=$work/root
dpkg -x "$deb" "$root"
for p in edgesync edgesync-unpack; do
  if readelf -S --wide "$root/usr/bin/$p" | grep -q '\.debug_info'; then
    fail "/usr/bin/$p is not stripped (CPACK_STRIP_FILES)"
  fi
done
if ! out=$("$root/usr/bin/edgesync" check "$root/etc/edgesync/edgesync.toml" 2>&1); then
  fail "edgesync check on the shipped /etc/edgesync/edgesync.toml failed: $out"
fi
case $out in
  *": ok "*"profile "*) note "$out" ;;
  *) fail "edgesync check did not print ok with the profile: $out" ;;
esac
"$root/usr/bin/edgesync-unpack" --help >/dev/null 2>&1 || fail "the unpacked edgesync-unpack --help failed"

# Not optional: without it the unit is not checked at all, and the test
# must not pass as if it were. script/bootstrap installs it (Debian: systemd).
command -v systemd-analyze >/dev/null 2>&1 ||
  fail "systemd-analyze not found: the unit cannot be verified (install Debian's systemd package; script/bootstrap does)"
mkdir "$work/units"
sed "s#^ExecStart=/usr/bin/edgesync #ExecStart=$root/usr/bin/edgesync #" \
  "$root/usr/lib/systemd/system/edgesync.service" >"$work/units/edgesync.service"
grep -q "^ExecStart=$root/usr/bin/edgesync " "$work/units/edgesync.service" ||
  fail "the unit has no 'ExecStart=/usr/bin/edgesync ' line"
# It exits 0 on lines it ignores ("Failed to parse ..., ignoring"): those
# fail too. Complaints about other units on this machine do not.
if ! systemd-analyze verify --man=no "$work/units/edgesync.service" >"$work/verify.log" 2>&1 ||
   grep -q 'edgesync\.service' "$work/verify.log"; then
  cat "$work/verify.log" >&2
  fail "systemd-analyze verify edgesync.service complained (above)"
fi
note "systemd-analyze verify: ok"
# The hardening: an exposure of 2.0 or lower ("OK"). --offline reads the
# unit file alone, not the running system's state.
if ! systemd-analyze security --offline=yes --man=no "$work/units/edgesync.service" >"$work/security.log" 2>&1; then
  cat "$work/security.log" >&2
  fail "systemd-analyze security could not rate edgesync.service (above)"
fi
exposure=$(sed -n 's/.*Overall exposure level for edgesync\.service: \([0-9.]*\).*/\1/p' "$work/security.log")
[ -n "$exposure" ] || { cat "$work/security.log" >&2; fail "no overall exposure level in systemd-analyze security's output"; }
awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' ||
  { grep '✗' "$work/security.log" >&2 || true; fail "systemd-analyze security rates edgesync.service $exposure, above 2.0"; }
note "systemd-analyze security: exposure $exposure (OK is 2.0 or lower)"

# ---- 5. cmake --install into a scratch prefix ---------------------------------
prefix=$work/prefix
if ! "$cmake" --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1; then
  cat "$work/install.log" >&2
  fail "cmake --install $build --prefix <scratch> failed (above)"
fi
if grep -e 'Installing: /etc' -e 'Installing: /usr' "$work/install.log"; then
  fail "cmake --install --prefix <scratch> wrote outside the prefix (above)"
fi
for f in bin/edgesync bin/edgesync-unpack lib/systemd/system/edgesync.service \
         lib/sysusers.d/edgesync.conf lib/tmpfiles.d/edgesync.conf \
         etc/edgesync/edgesync.toml etc/mosquitto/conf.d/edgesync.conf \
         etc/edgesync/profiles/payment-terminal.toml share/edgesync/profiles/payment-terminal.toml \
         share/doc/edgesync/README.md share/doc/edgesync/docs/operating.md \
         share/doc/edgesync/examples/edgesync.toml include/edgesync/plugin.h; do
  [ -f "$prefix/$f" ] || fail "cmake --install --prefix <scratch> did not install <scratch>/$f"
done
extra=$(ls "$prefix/bin" | grep -vx -e edgesync -e edgesync-unpack || true)
[ -z "$extra" ] || fail "cmake --install installs programs it must not: $extra"
grep -q "^ExecStart=$prefix/bin/edgesync run --config $prefix/etc/edgesync/edgesync.toml\$" \
  "$prefix/lib/systemd/system/edgesync.service" ||
  fail "the installed unit's ExecStart does not name <scratch>/bin/edgesync and <scratch>/etc/edgesync: $(grep ^ExecStart "$prefix/lib/systemd/system/edgesync.service")"
out=$("$prefix/bin/edgesync" check "$prefix/etc/edgesync/edgesync.toml" 2>&1) ||
  fail "edgesync check on <scratch>/etc/edgesync/edgesync.toml failed: $out"
note "cmake --install --prefix: ok"
note "PASS"
