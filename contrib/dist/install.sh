#!/usr/bin/env bash
# The files every package installs, in one place (docs/packaging.md): the .deb (build.sh), the
# Arch package (contrib/arch/PKGBUILD, package()) and the RPM (contrib/rpm/vfio-gen.spec,
# %install) all call this script, so their layouts cannot drift apart.
#
#   contrib/dist/install.sh DESTDIR BINARY [ZSH_DIR]
#
# Runs from the top of a source tree. BINARY must run on this machine: the man pages and the
# completions are its own output. ZSH_DIR is where zsh finds completions, under /usr/share/zsh:
# site-functions (Arch, Fedora; the default) or vendor-completions (Debian's zsh searches that,
# not site-functions). Licenses are each distribution's business: the callers put them there.
# Nothing goes under /etc: the files vfio-gen writes there belong to the user's profile.
set -euo pipefail
dest=${1:?usage: install.sh DESTDIR BINARY [ZSH_DIR]}
bin=${2:?usage: install.sh DESTDIR BINARY [ZSH_DIR]}
zsh_dir=${3:-site-functions}
[ -f Cargo.toml ] && [ -d profiles ] || { echo "install.sh: run it from the top of the vfio-gen source tree" >&2; exit 2; }
umask 022

install -Dm755 "$bin" "$dest/usr/bin/vfio-gen"

# Man pages: every page `vfio-gen man --dir` writes, by its section (NAME.N goes to manN),
# compressed the way Debian policy 12.1 asks (gzip -9n: no name or time stamp in the header).
pages=$(mktemp -d)
trap 'rm -rf "$pages"' EXIT
"$bin" man --dir "$pages"
for page in "$pages"/*.[1-8]; do
    section=${page##*.}
    install -Dm644 "$page" "$dest/usr/share/man/man$section/${page##*/}"
    gzip -9nf "$dest/usr/share/man/man$section/${page##*/}"
done

"$bin" completions bash >"$pages/bash"
"$bin" completions zsh >"$pages/zsh"
"$bin" completions fish >"$pages/fish"
install -Dm644 "$pages/bash" "$dest/usr/share/bash-completion/completions/vfio-gen"
install -Dm644 "$pages/zsh" "$dest/usr/share/zsh/$zsh_dir/_vfio-gen"
install -Dm644 "$pages/fish" "$dest/usr/share/fish/vendor_completions.d/vfio-gen.fish"

doc=$dest/usr/share/doc/vfio-gen
install -Dm644 -t "$doc" README.md CHANGELOG.md
install -Dm644 -t "$doc/docs" docs/*.md
install -Dm644 -t "$doc/examples" profiles/*.toml
