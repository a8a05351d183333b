#!/usr/bin/env bash
# Builds packaging/out/dlogd_VERSION_amd64.deb: a release build with the Swift runtime linked statically (so
# the package depends only on Debian libraries), staged next to packaging/debian and built by debhelper, then
# checked by lintian (warnings and errors fail; overrides are in debian/dlogd.lintian-overrides, each with its
# reason).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/packaging/out
version=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
stage=$out/dlogd-$version

echo "deb: release build (static Swift runtime)"
flags=$(sed '/^#/d' packaging/release-flags)  # as `make release`: one build folder serves both
swift build $flags
bin=$(swift build $flags --show-bin-path)

for b in dlogd dlogctl dlog-bench; do
	if ldd "$bin/$b" | grep -q 'libswift\|libFoundation\|lib_FoundationICU'; then
		echo "deb: $bin/$b still links the Swift runtime dynamically:" >&2
		ldd "$bin/$b" >&2
		exit 1
	fi
done

rm -rf "$stage" "$out"/dlogd_* "$out"/dlogd-dbgsym_*
mkdir -p "$stage/bin" "$stage/etc" "$stage/generator"
cp -r packaging/debian "$stage/debian"
cp "$bin/dlogd" "$bin/dlogctl" "$bin/dlog-bench" "$stage/bin/"
cp etc/*.conf "$stage/etc/"
cp packaging/generator/dlogd-generator "$stage/generator/"
cp README.md "$stage/"
cp packaging/grafana/dlogd-dashboard.json "$stage/"
cp -r packaging/man "$stage/man"
# debhelper's names for the files it installs and wires into the maintainer scripts.
cp systemd/dlogd@.service "$stage/debian/dlogd@.service"
cp systemd/dlog.sysusers "$stage/debian/dlogd.sysusers"
cp systemd/dlog.tmpfiles "$stage/debian/dlogd.tmpfiles"

echo "deb: dpkg-buildpackage"
(cd "$stage" && dpkg-buildpackage -b -uc -us --no-sign >"$out/build.log" 2>&1) || {
	tail -40 "$out/build.log" >&2
	exit 1
}
deb=$(ls "$out"/dlogd_"$version"_*.deb)
echo "deb: lintian"
lintian --fail-on error,warning --info "$deb"
echo "deb: built $deb ($(du -h "$deb" | cut -f1)), Depends: $(dpkg-deb -f "$deb" Depends)"
