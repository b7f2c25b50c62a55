#!/usr/bin/env bash
# The release artifacts, from the committed tree (HEAD), into dist/ (docs/packaging.md):
#   vfio-gen_VERSION_ARCH.deb          dpkg-deb, from contrib/dist/install.sh's layout; lintian
#   vfio-gen-VERSION-1-ARCH.pkg.tar.*  makepkg with contrib/arch/PKGBUILD (its check() runs the tests)
#   vfio-gen-VERSION-1.ARCH.rpm        rpmbuild with contrib/rpm/vfio-gen.spec; rpmlint
#   vfio_gen-vfio_gen-VERSION.tar.gz   ansible-galaxy collection build
#   vfio-gen-VERSION.tar.gz            the source tarball the two package builds start from
#   SHA256SUMS
# The release binary is compiled once, by makepkg's build(); rpmbuild and the .deb use the same
# cargo target directory and find it up to date. contrib/dist/check.sh then checks the packages.
# Needs: cargo, git, dpkg-deb, dpkg-shlibdeps, lintian, makepkg, fakeroot, bsdtar, rpmbuild, rpmlint.
# As root (CI), makepkg runs as an unprivileged uid with no passwd entry (VFIO_GEN_DIST_UID,
# default 64055) in a mount namespace that shows it the root user's Rust toolchain.
#
#   VFIO_GEN_DIST_CACHE   the crates and the cargo target directory kept between runs
#                         (default /var/cache/vfio-gen-dist as root, else target/dist-cache)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
say() { echo "dist: $*"; }
die() { echo "dist: $*" >&2; exit 2; }
t0=$SECONDS

version=$(sed -n '/^\[package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' Cargo.toml)
[ -n "$version" ] || die "Cargo.toml: no version in [package]"
url=$(sed -n '/^\[package\]/,/^\[/s/^repository = "\(.*\)"$/\1/p' Cargo.toml)
summary=$(sed -n '/^\[package\]/,/^\[/s/^description = "\(.*\)"$/\1/p' Cargo.toml)
commit=$(git rev-parse --short HEAD) || die "not a git checkout: the packages are built from HEAD"
[ -z "$(git status --porcelain --untracked-files=no)" ] ||
    echo "dist: warning: uncommitted changes are not in the packages (they are built from HEAD $commit)" >&2
export VFIO_GEN_COMMIT=$commit
export SOURCE_DATE_EPOCH=$(git log -1 --format=%ct HEAD)
release=1
arch_deb=$(dpkg --print-architecture)
arch_uname=$(uname -m)

if [ "$(id -u)" = 0 ]; then
    cache=${VFIO_GEN_DIST_CACHE:-/var/cache/vfio-gen-dist}
else
    cache=${VFIO_GEN_DIST_CACHE:-$repo/target/dist-cache}
fi
dist=$repo/dist
work=$repo/target/dist-work
rm -rf "$dist" "$work"
mkdir -p "$dist" "$work" "$cache/cargo-home" "$cache/target"
export CARGO_HOME=$cache/cargo-home CARGO_TARGET_DIR=$cache/target
bin=$CARGO_TARGET_DIR/release/vfio-gen

# The source tarball, as a forge makes it from a tag: the committed tree under vfio-gen-VERSION/.
src=$work/vfio-gen-$version.tar.gz
git archive --format=tar.gz --prefix="vfio-gen-$version/" -o "$src" HEAD
cp "$src" "$dist/"

# Copies of the package recipes with Cargo.toml's version (the one place it is kept).
stamp() { # FILE PATTERN REPLACEMENT
    sed -e "s|$2|$3|" "$1"
}

# --- Arch: makepkg -------------------------------------------------------------------------
say "makepkg (build, check: the tests, package)"
arch=$work/arch
mkdir -p "$arch"
stamp contrib/arch/PKGBUILD '^pkgver=.*' "pkgver=$version" >"$arch/PKGBUILD"
cp "$src" "$arch/"
# makepkg -d: pacman's database here is not Arch's (dependencies are not checked);
# the sources are unpacked here with the current time, so cargo rebuilds vfio-gen itself and
# only the dependencies come from the cache.
mkdir -p "$arch/src"
tar -xzf "$src" -C "$arch/src" --touch
makepkg_env=(PKGDEST="$arch" SRCDEST="$arch" BUILDDIR="$work/arch-build" PKGEXT=.pkg.tar.zst
    CARGO_HOME="$CARGO_HOME" CARGO_TARGET_DIR="$CARGO_TARGET_DIR" VFIO_GEN_COMMIT="$commit"
    SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH")
mkdir -p "$work/arch-build/vfio-gen"
mv "$arch/src" "$work/arch-build/vfio-gen/src"
# makepkg --noextract skips prepare() too: its `cargo fetch` is done here, into the cache.
cargo fetch --locked --manifest-path "$work/arch-build/vfio-gen/src/vfio-gen-$version/Cargo.toml"
run_makepkg() {
    if [ "$(id -u)" != 0 ]; then
        (cd "$arch" && env "${makepkg_env[@]}" makepkg --noextract --nodeps --noconfirm)
        return
    fi
    local uid=${VFIO_GEN_DIST_UID:-64055} sysroot
    sysroot=$(rustc --print sysroot)
    mkdir -p "$cache/toolchain" "$cache/home"
    chown -R "$uid:$uid" "$cache/cargo-home" "$cache/target" "$cache/home" "$work"
    # The toolchain lives under /root (mode 700): a private mount namespace binds it where the
    # unprivileged uid can reach it; nothing changes outside this command.
    unshare --mount --propagation private -- bash -c '
        mount --bind -o ro "$1" "$2/toolchain" && uid=$3 && shift 3 &&
        exec setpriv --reuid "$uid" --regid "$uid" --clear-groups --reset-env "$@"
    ' _ "$sysroot" "$cache" "$uid" env "${makepkg_env[@]}" HOME="$cache/home" \
        PATH="$cache/toolchain/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
        bash -c 'cd "$0" && makepkg --noextract --nodeps --noconfirm' "$arch"
}
run_makepkg 2>&1 | tee "$work/makepkg.log" || die "makepkg failed (log: $work/makepkg.log)"
cp "$arch"/vfio-gen-"$version"-"$release"-"$arch_uname".pkg.tar.zst "$dist/"

# --- RPM: rpmbuild ---------------------------------------------------------------------------
say "rpmbuild"
top=$work/rpmbuild
mkdir -p "$top/SOURCES" "$top/SPECS"
cp "$src" "$top/SOURCES/"
stamp contrib/rpm/vfio-gen.spec '^Version: .*' "Version:        $version" >"$top/SPECS/vfio-gen.spec"
# --nodeps: rpm's database here is not Fedora's (BuildRequires are not checked). --nocheck: the
# tests of this very source ran in makepkg's check() above, on the same build.
rpmbuild -bb --nodeps --nocheck --define "_topdir $top" "$top/SPECS/vfio-gen.spec" \
    >"$work/rpmbuild.log" 2>&1 || { tail -40 "$work/rpmbuild.log" >&2; die "rpmbuild failed (log: $work/rpmbuild.log)"; }
grep -E '^(Wrote|Processing files)' "$work/rpmbuild.log" || true
cp "$top"/RPMS/*/vfio-gen-"$version"-"$release".*.rpm "$dist/"

# --- Debian: dpkg-deb -------------------------------------------------------------------------
# dpkg-deb with a control file written here rather than cargo-deb: no tool to compile (cargo
# install cargo-deb takes minutes on CI), the layout is install.sh's like the other two, and
# every field lintian checks is in sight below.
say "dpkg-deb"
deb=$work/deb
debian_date=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
maintainer=${VFIO_GEN_DEB_MAINTAINER:-the vfio-gen authors <vfio-gen@users.noreply.github.com>}
# Debian's zsh looks in vendor-completions, not site-functions (its $fpath).
contrib/dist/install.sh "$deb" "$bin" vendor-completions
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$deb/usr/bin/vfio-gen"
doc=$deb/usr/share/doc/vfio-gen
# The years of the history (Debian wants them in the notice): first commit to HEAD.
years=$(git log --format=%cd --date=format:%Y HEAD | sort -u | sed -n '1p;$p' | paste -sd- | sed 's/^\([0-9]*\)-\1$/\1/')
# Debian policy 12.5: the copyright file, machine-readable (DEP-5), with the MIT text in full;
# the Apache license is in /usr/share/common-licenses.
{
    cat <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: vfio-gen
Source: $url

Files: *
Copyright: $years the vfio-gen authors
License: MIT or Apache-2.0

License: MIT
COPYRIGHT
    sed -e 's/^$/./' -e 's/^/ /' LICENSE-MIT
    cat <<'COPYRIGHT'

License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
} >"$doc/copyright"
# Debian policy 12.7: a native package's changelog.gz, in the Debian changelog format; what the
# version brings is CHANGELOG.md beside it.
cat >"$work/changelog" <<CHANGELOG
vfio-gen ($version) unstable; urgency=medium

  * Release $version (commit $commit); what it brings is in
    /usr/share/doc/vfio-gen/CHANGELOG.md.

 -- $maintainer  $debian_date
CHANGELOG
gzip -9nc "$work/changelog" >"$doc/changelog.gz"
chmod 644 "$doc/copyright" "$doc/changelog.gz"
mkdir -p "$deb/DEBIAN" "$work/shlibs/debian"
printf 'Source: vfio-gen\n\nPackage: vfio-gen\nArchitecture: any\n' >"$work/shlibs/debian/control"
depends=$(cd "$work/shlibs" && dpkg-shlibdeps -O "$deb/usr/bin/vfio-gen" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || die "dpkg-shlibdeps found no library dependencies of $deb/usr/bin/vfio-gen"
cat >"$deb/DEBIAN/control" <<CONTROL
Package: vfio-gen
Version: $version
Architecture: $arch_deb
Maintainer: $maintainer
Installed-Size: $(du -sk --exclude=DEBIAN "$deb" | cut -f1)
Depends: $depends
Section: admin
Priority: optional
Homepage: $url
Description: $summary
 vfio-gen turns a TOML host profile into the kernel command line, modprobe.d
 and initramfs files that VFIO GPU passthrough needs (GRUB, systemd-boot,
 kernel-install, mkinitcpio, dracut, initramfs-tools, booster), shows the
 diff before anything changes, and installs it atomically with a way back.
 .
 Example profiles are in /usr/share/doc/vfio-gen/examples.
CONTROL
(cd "$deb" && find usr -type f -printf '%P\n' | LC_ALL=C sort | sed 's|^|usr/|' | xargs md5sum) >"$deb/DEBIAN/md5sums"
find "$deb" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
debfile=$dist/vfio-gen_${version}_${arch_deb}.deb  # a native package: no Debian revision
dpkg-deb --root-owner-group -Zxz --build "$deb" "$debfile" >/dev/null
say "lintian $(basename "$debfile")"
# Errors fail the build; warnings and the rest are printed.
lintian --fail-on error --info "$debfile" | tee "$work/lintian.log"

# --- RPM lint ---------------------------------------------------------------------------------
if command -v rpmlint >/dev/null 2>&1; then
    say "rpmlint"
    rpmlint -c contrib/rpm/rpmlint.toml "$dist"/vfio-gen-"$version"-"$release".*.rpm | tee "$work/rpmlint.log" ||
        die "rpmlint found errors"
else
    say "rpmlint: not installed, the RPM is not linted"
fi

# --- Ansible collection -----------------------------------------------------------------------
say "ansible-galaxy collection build"
venv=$(contrib/ansible/tests/venv.sh)
coll=$work/collection
mkdir -p "$coll"
tar -xzf "$src" -C "$work" "vfio-gen-$version/contrib/ansible/ansible_collections/vfio_gen/vfio_gen"
cp -a "$work/vfio-gen-$version/contrib/ansible/ansible_collections/vfio_gen/vfio_gen/." "$coll/"
cp LICENSE-MIT LICENSE-APACHE "$coll/"
sed -i "s|^version: .*|version: $version|" "$coll/galaxy.yml"
"$venv/bin/ansible-galaxy" collection build "$coll" --output-path "$dist" --force

# --- Checksums --------------------------------------------------------------------------------
(cd "$dist" && sha256sum -- * | grep -v ' SHA256SUMS$' >SHA256SUMS)
say "done in $((SECONDS - t0)) s:"
(cd "$dist" && ls -l)
