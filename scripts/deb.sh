#!/usr/bin/env bash
# scripts/deb.sh - build vnum's Debian package (make deb).
#
# Builds, into DEB_BUILD: the binary (the Makefile's version and commit),
# the manual pages from the command tree (`vnum man`, gzipped), the
# packaged configuration (vnum.example.yaml with the store, its spool and
# any recordings under /var/lib/vnum: /etc is read-only to the service), and
# nfpm itself from the version pinned in scripts/nfpm/go.mod, a module of
# its own so that vnum's go.mod does not carry a packager's dependencies.
# Then nfpm packs deploy/debian/nfpm.yaml into DEB_OUT. It needs only go
# and git: CI installs nothing for it.
#
# Knobs (environment):
#   GO          the go command                               (go)
#   VERSION     what `vnum version` prints  (git describe --tags --always --dirty)
#   COMMIT      the commit it names                          (git rev-parse HEAD)
#   DEB_BUILD   where the parts are built                    (bin/deb)
#   DEB_OUT     the package file      (bin/vnum_<debian version>_<arch>.deb)
#   SOURCE_DATE_EPOCH  the date of the pages and of the files in the
#               package                                     (the commit's time)
# It prints the package's path last.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

GO=${GO:-go}
export GOWORK=off
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || true)}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

# A Debian version starts with a digit and sorts releases after the
# versions before them: v0.5.0 → 0.5.0, v0.5.0-23-gf24778f →
# 0.5.0+git23.gf24778f (after 0.5.0, before 0.5.1), a tree with changes
# adds .dirty, a pre-release sorts before its release (v1.0.0-rc1 →
# 1.0.0~rc1); a checkout without tags is 0.0.0+git.<hash>.
debian_version() {
	local v=${1#v} tail=
	case $v in
	[0-9]*) ;;
	*) v=0.0.0+git.$v ;;
	esac
	v=${v/-dirty/.dirty}
	if [[ $v =~ ^(.*)-([0-9]+)-(g[0-9a-f]+)(.*)$ ]]; then
		v=${BASH_REMATCH[1]}
		tail=+git${BASH_REMATCH[2]}.${BASH_REMATCH[3]}${BASH_REMATCH[4]}
	fi
	v=${v//-/\~}$tail
	printf '%s\n' "${v//[^0-9A-Za-z.+~]/.}"
}

DEB_BUILD=${DEB_BUILD:-$top/bin/deb}
DEB_VERSION=$(debian_version "$VERSION")
DEB_ARCH=$($GO env GOARCH)
DEB_OUT=${DEB_OUT:-$top/bin/vnum_${DEB_VERSION}_${DEB_ARCH}.deb}
export DEB_VERSION DEB_ARCH

rm -rf "$DEB_BUILD"
mkdir -p "$DEB_BUILD/man" "$(dirname "$DEB_OUT")"

$GO build -ldflags "-X main.version=$VERSION -X main.commit=$COMMIT" -o "$DEB_BUILD/vnum" ./cmd/vnum
"$DEB_BUILD/vnum" man "$DEB_BUILD/man"
gzip -9n "$DEB_BUILD"/man/*.1

# The example with the service's paths. Each replaced line must be there:
# an example that moved its keys fails the build rather than ship a store
# the service cannot write.
sed -e 's|^\(  dsn: \)vnum\.db |\1/var/lib/vnum/vnum.db |' \
	-e 's|^\(  dir: \)recordings |\1/var/lib/vnum/recordings |' \
	-e 's|^\(  spool: \)"" |\1/var/lib/vnum |' \
	vnum.example.yaml >"$DEB_BUILD/vnum.yaml"
grep -q '^  dsn: /var/lib/vnum/vnum.db ' "$DEB_BUILD/vnum.yaml" || {
	echo "deb: vnum.example.yaml has no \"  dsn: vnum.db\" line under store: to point at /var/lib/vnum" >&2
	exit 1
}
"$DEB_BUILD/vnum" --config "$DEB_BUILD/vnum.yaml" config show >/dev/null

$GO -C scripts/nfpm build -o "$DEB_BUILD/nfpm" github.com/goreleaser/nfpm/v2/cmd/nfpm
cp deploy/debian/* deploy/grafana/vnum.json deploy/prometheus/vnum-alerts.yml "$DEB_BUILD/"
(cd "$DEB_BUILD" && ./nfpm package --config nfpm.yaml --packager deb --target "$DEB_OUT" >&2)
echo "$DEB_OUT"
