#!/usr/bin/env bash
# The checks of the packages contrib/dist/build.sh put in dist/ (docs/packaging.md). Root only
# (pacman -U, chroot). Fails on any difference.
#   1. The three file lists (dpkg-deb -c, bsdtar -tf, rpm -qlp), normalised, are the same.
#   2. The Arch package installs into a temporary root with pacman -U --root --dbpath
#      (-dd: its dependencies, glibc and gcc-libs, are not checked: Debian's pacman has no Arch
#      database), and the binary it installed runs.
#   3. The .deb installs with dpkg -i into a throwaway Debian bookworm root; there
#      `vfio-gen --version`, `man vfio-gen` (man-db) and bash completion of `vfio-gen pl<TAB>`
#      from the installed completion file.
# The Debian root is kept in VFIO_GEN_DIST_CACHE (default /var/cache/vfio-gen-dist), made once:
# from a copy of the lab's debootstrap root when there is one, else by debootstrap --variant=minbase.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
say() { echo "dist-check: $*"; }
die() { echo "dist-check: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run it as root (pacman -U and chroot)"
t0=$SECONDS
dist=$repo/dist
cache=${VFIO_GEN_DIST_CACHE:-/var/cache/vfio-gen-dist}
deb=$(ls "$dist"/vfio-gen_*.deb)
pkg=$(ls "$dist"/vfio-gen-*.pkg.tar.*)
rpm=$(ls "$dist"/vfio-gen-*.rpm)
tmp=$(mktemp -d)
mounts=()
cleanup() {
    for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT

# --- 1. File lists ----------------------------------------------------------------------------
# Regular files and symbolic links only (directories are listed by some formats and not others).
# Each distribution's own places, taken out before the comparison:
#   .deb: usr/share/doc/vfio-gen/copyright and changelog.gz (Debian policy 12.5 and 12.7: the
#         licenses and the Debian changelog), and zsh's vendor-completions, where Debian's zsh
#         looks, compared as site-functions;
#   Arch: .PKGINFO, .BUILDINFO, .MTREE (package metadata), usr/share/licenses/vfio-gen/;
#   RPM:  usr/share/licenses/vfio-gen/ (%license), usr/lib/.build-id/ (rpm's debuginfo links).
lists=$repo/target/dist-work
mkdir -p "$lists"
say "file lists (raw: $lists/filelist.*.txt)"
dpkg-deb -c "$deb" >"$lists/filelist.deb.txt"
bsdtar -tvf "$pkg" >"$lists/filelist.arch.txt"
rpm -qlvp "$rpm" >"$lists/filelist.rpm.txt"
awk '$1 ~ /^[-l]/ { p = $6; sub(/^\.\//, "", p); print p }' "$lists/filelist.deb.txt" |
    grep -vxE 'usr/share/doc/vfio-gen/(copyright|changelog\.gz)' |
    sed 's|^usr/share/zsh/vendor-completions/|usr/share/zsh/site-functions/|' | LC_ALL=C sort >"$tmp/deb"
awk '$1 ~ /^[-l]/ { print $9 }' "$lists/filelist.arch.txt" |
    grep -vE '^\.(PKGINFO|BUILDINFO|MTREE|INSTALL)$|^usr/share/licenses/vfio-gen/' | LC_ALL=C sort >"$tmp/arch"
awk '$1 ~ /^[-l]/ { p = $9; sub(/^\//, "", p); print p }' "$lists/filelist.rpm.txt" |
    grep -vE '^usr/share/licenses/vfio-gen/|^usr/lib/\.build-id/' | LC_ALL=C sort >"$tmp/rpm"
for f in deb arch rpm; do say "  $f: $(wc -l <"$tmp/$f") files"; done
diff -u "$tmp/deb" "$tmp/arch" || die "the .deb and the Arch package install different files (above)"
diff -u "$tmp/deb" "$tmp/rpm" || die "the .deb and the RPM install different files (above)"
for want in usr/bin/vfio-gen usr/share/man/man1/vfio-gen.1.gz usr/share/man/man5/vfio-gen.toml.5.gz \
    usr/share/bash-completion/completions/vfio-gen usr/share/zsh/site-functions/_vfio-gen \
    usr/share/fish/vendor_completions.d/vfio-gen.fish usr/share/doc/vfio-gen/README.md; do
    grep -qx "$want" "$tmp/deb" || die "the packages lack $want"
done
! grep -q '^etc/' "$tmp/deb" || die "the packages own files under /etc"
say "  the three lists agree: $(wc -l <"$tmp/deb") files"

# --- 2. Arch: pacman -U into a temporary root ---------------------------------------------------
say "pacman -U --root (dependencies not checked: -dd)"
ar=$tmp/arch-root
mkdir -p "$ar/db" "$ar/cache"
# The package is not signed (a repository signs it, not makepkg): no signature is asked for.
printf '[options]\nArchitecture = auto\nSigLevel = Never\nLocalFileSigLevel = Never\n' >"$tmp/pacman.conf"
pacman -U --config "$tmp/pacman.conf" --root "$ar" --dbpath "$ar/db" --cachedir "$ar/cache" --noconfirm -dd "$pkg" >"$tmp/pacman.log" 2>&1 ||
    { cat "$tmp/pacman.log" >&2; die "pacman -U failed"; }
pacman -Q --config "$tmp/pacman.conf" --root "$ar" --dbpath "$ar/db" vfio-gen
"$ar/usr/bin/vfio-gen" --version || die "the binary from the Arch package does not run"

# --- 3. Debian: dpkg -i in a bookworm root ------------------------------------------------------
base=$cache/debian-bookworm-man
if [ ! -d "$base" ]; then
    rm -rf --one-file-system "$base.tmp"
    lab=$(ls -d "${VFIO_GEN_LAB_CACHE:-/var/cache/vfio-gen-lab}"/roots/initramfs-tools-* 2>/dev/null | grep -v '\.tmp$' | head -1 || true)
    if [ -n "$lab" ]; then
        say "Debian root: a copy of the lab's $lab, with man-db"
        cp -a "$lab" "$base.tmp"
        cp /etc/resolv.conf "$base.tmp/etc/resolv.conf"
        mount -t proc proc "$base.tmp/proc"
        { chroot "$base.tmp" apt-get update && DEBIAN_FRONTEND=noninteractive chroot "$base.tmp" \
            apt-get install -y --no-install-recommends man-db && chroot "$base.tmp" apt-get clean; } >"$tmp/root.log" 2>&1 ||
            { umount "$base.tmp/proc"; cat "$tmp/root.log" >&2; die "installing man-db in the copy of the lab root failed"; }
        umount "$base.tmp/proc"
    else
        say "Debian root: debootstrap --variant=minbase --include=man-db bookworm (kept in $base)"
        mkdir -p "$cache"
        debootstrap --variant=minbase --include=man-db bookworm "$base.tmp" \
            "${VFIO_GEN_LAB_MIRROR:-http://deb.debian.org/debian}" >"$tmp/root.log" 2>&1 ||
            { tail -30 "$tmp/root.log" >&2; die "debootstrap failed"; }
        chroot "$base.tmp" apt-get clean
    fi
    mv "$base.tmp" "$base"
fi
dr=$tmp/debian-root
cp -a "$base" "$dr"
mount -t proc proc "$dr/proc" && mounts+=("$dr/proc")
cp "$deb" "$dr/tmp/vfio-gen.deb"
say "dpkg -i $(basename "$deb")"
chroot "$dr" dpkg -i /tmp/vfio-gen.deb || die "dpkg -i failed"
in_root() { chroot "$dr" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
version=$(in_root vfio-gen --version) || die "vfio-gen --version failed in the Debian root"
say "  vfio-gen --version: $version"
want_version=$(sed -n '/^\[package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' Cargo.toml)
case "$version" in "vfio-gen $want_version"*) ;; *) die "--version says '$version', Cargo.toml $want_version" ;; esac
in_root man vfio-gen >"$tmp/man.txt" 2>"$tmp/man.err" || { cat "$tmp/man.err" >&2; die "man vfio-gen failed"; }
grep -q '^SYNOPSIS' "$tmp/man.txt" && grep -q 'vfio-gen' "$tmp/man.txt" ||
    { head -20 "$tmp/man.txt" >&2; die "man vfio-gen shows no page with a SYNOPSIS"; }
say "  man vfio-gen: $(wc -l <"$tmp/man.txt") lines, $(grep -m1 -A1 '^NAME' "$tmp/man.txt" | tail -1 | sed 's/^ *//')"
# Programmable completion as readline calls it: the function `complete -p vfio-gen` names, with
# the command, the word being completed and the word before it (bash manual 8.6, complete -F).
completions=$(in_root bash -c '
    source /usr/share/bash-completion/completions/vfio-gen
    f=$(complete -p vfio-gen | sed -n "s/.*-F \([^ ]*\).*/\1/p")
    COMP_WORDS=(vfio-gen pl); COMP_CWORD=1; COMP_LINE="vfio-gen pl"; COMP_POINT=${#COMP_LINE}
    "$f" vfio-gen pl vfio-gen
    printf "%s\n" "${COMPREPLY[@]}"') || die "bash completion failed in the Debian root"
say "  vfio-gen pl<TAB>: $(echo $completions)"
grep -qx plan <<<"$completions" || die "bash completion of 'vfio-gen pl' does not offer plan"
say "all checks passed in $((SECONDS - t0)) s"
