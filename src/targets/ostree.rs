//! Image-based Fedora (Silverblue, Kinoite, Bazzite, Bluefin; `/run/ostree-booted`): the boot
//! entries belong to the deployment and are written by ostree, so kernel options change only
//! through `rpm-ostree kargs`, which stages a new deployment; files under `/etc` reach the
//! initramfs only once `rpm-ostree initramfs-etc --track` names them (docs/distributions.md,
//! "Image-based Fedora").
//!
//! How this fits the plan (files and hooks): the options vfio-gen manages there are recorded
//! in a file it owns, [`STATE`], one per line. A change of that file is the input of the hook
//! `rpm-ostree kargs --append-if-missing=... --delete-if-present=...`, computed from the file's
//! old and new lines; `--revert` removes the file, so the hook deletes what it had added.
//! Both flags are idempotent, so running the hook again is harmless.

use crate::cmdline::{Opt, same_setting};
use crate::profile::Profile;
use anyhow::{Result, bail};

/// Written by ostree-prepare-root / ostree's boot on every ostree-booted system.
pub const MARK: &str = "/run/ostree-booted";
/// The options vfio-gen asked rpm-ostree for (owned, generated).
pub const STATE: &str = "/etc/vfio-gen/rpm-ostree-kargs";

/// The options to ask rpm-ostree for: the profile's, plus `vfio-pci.ids=` (the initramfs is
/// the image's, so the ids also go on the command line, where vfio-pci reads them however it
/// is loaded).
pub fn kargs(profile: &Profile, options: &[Opt]) -> Vec<String> {
    let mut out: Vec<String> = options.iter().map(|o| o.text()).collect();
    if !profile.ids.is_empty() && !options.iter().any(|o| o.key() == "vfio_pci.ids") {
        out.push(format!("vfio-pci.ids={}", profile.ids.join(",")));
    }
    out
}

/// The state file's bytes for a list of options.
pub fn state(kargs: &[String]) -> Vec<u8> {
    let mut out = format!(
        "{} for rpm-ostree: the kernel options `vfio-gen apply` asked `rpm-ostree kargs` for.\n# `vfio-gen apply --revert` removes this file and deletes them again.\n",
        crate::targets::HEADER_MARK
    );
    for k in kargs {
        out.push_str(k);
        out.push('\n');
    }
    out.into_bytes()
}

/// The options a state file lists.
pub fn listed(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The `rpm-ostree kargs` commands that take the kernel from the state `old` to `new`, given
/// the booted command line: first one that deletes (options vfio-gen no longer wants, and a
/// conflicting value of a wanted one, `iommu=soft` for `iommu=pt`), then one that appends.
/// Two calls, because each edits the pending deployment in turn, so the order is certain
/// whatever order rpm-ostree applies one call's flags in. Empty when nothing changes.
pub fn kargs_commands(old: &[String], new: &[String], booted: &str) -> Vec<Vec<String>> {
    let base = || vec!["rpm-ostree".to_string(), "kargs".to_string()];
    let mut delete = base();
    for o in old.iter().filter(|o| !new.contains(o)) {
        delete.push(format!("--delete-if-present={o}"));
    }
    let mut append = base();
    for n in new {
        let want = Opt::parse(n);
        for t in booted.split_whitespace() {
            let have = Opt::parse(t);
            let arg = format!("--delete-if-present={t}");
            if same_setting(&have, &want)
                && have != want
                && !crate::cmdline::holds(&have, &want)
                && !delete.contains(&arg)
            {
                delete.push(arg);
            }
        }
        append.push(format!("--append-if-missing={n}"));
    }
    [delete, append]
        .into_iter()
        .filter(|c| c.len() > 2)
        .collect()
}

/// `rpm-ostree initramfs-etc` for the modprobe.d files: `--track` what exists after the
/// change, `--untrack` what the change removes. `None` when there is nothing to say.
pub fn initramfs_etc(tracked: &[String], untracked: &[String]) -> Option<Vec<String>> {
    let mut cmd = vec!["rpm-ostree".to_string(), "initramfs-etc".to_string()];
    cmd.extend(tracked.iter().map(|p| format!("--track={p}")));
    cmd.extend(untracked.iter().map(|p| format!("--untrack={p}")));
    (cmd.len() > 2).then_some(cmd)
}

/// `render`'s bootc drop-in: `/usr/lib/bootc/kargs.d/vfio-gen.toml` with `kargs = [...]`.
pub const BOOTC_KARGS: &str = "/usr/lib/bootc/kargs.d/vfio-gen.toml";

pub fn bootc_kargs(kargs: &[String]) -> Result<Vec<u8>> {
    let mut out = format!(
        "{} for bootc image builds: kernel options bootc applies from this image.\nkargs = [",
        crate::targets::HEADER_MARK
    );
    for (i, k) in kargs.iter().enumerate() {
        if k.contains(['"', '\\']) || k.chars().any(char::is_control) {
            bail!("the kernel option {k:?} cannot go into {BOOTC_KARGS}");
        }
        if i > 0 {
            out.push_str(", ");
        }
        out.push('"');
        out.push_str(k);
        out.push('"');
    }
    out.push_str("]\n");
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn the_command_goes_from_old_to_new() {
        let new = s(&["intel_iommu=on", "iommu=pt"]);
        assert_eq!(
            kargs_commands(
                &[],
                &new,
                "rhgb quiet ostree=/ostree/boot.1/fedora/x/0 iommu=soft"
            ),
            [
                s(&["rpm-ostree", "kargs", "--delete-if-present=iommu=soft"]),
                s(&[
                    "rpm-ostree",
                    "kargs",
                    "--append-if-missing=intel_iommu=on",
                    "--append-if-missing=iommu=pt"
                ])
            ]
        );
        assert_eq!(
            kargs_commands(&new, &[], "intel_iommu=on iommu=pt"),
            [s(&[
                "rpm-ostree",
                "kargs",
                "--delete-if-present=intel_iommu=on",
                "--delete-if-present=iommu=pt"
            ])]
        );
        assert!(kargs_commands(&[], &[], "quiet").is_empty());
        assert_eq!(listed(&state(&new)), new);
    }

    #[test]
    fn bootc_drop_in_is_toml() {
        let text =
            String::from_utf8(bootc_kargs(&s(&["iommu=pt", "vfio-pci.ids=10de:2504"])).unwrap())
                .unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(
            v["kargs"],
            toml::Value::Array(vec!["iommu=pt".into(), "vfio-pci.ids=10de:2504".into()])
        );
        assert!(bootc_kargs(&s(&["a\"b"])).is_err());
    }
}
