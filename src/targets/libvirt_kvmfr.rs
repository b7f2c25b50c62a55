//! libvirt's side of Looking Glass's /dev/kvmfr0 (docs/resources.md, "AppArmor and libvirt's
//! cgroup_device_acl"): `cgroup_device_acl` in /etc/libvirt/qemu.conf and the AppArmor rule
//! QEMU needs, when libvirt is installed under the root. Both files are someone else's:
//! vfio-gen adds only lines between its own two marks, planned as edits (so `apply` keeps a
//! backup, and `rollback` and `--revert` give back the bytes from before). A qemu.conf that
//! already sets `cgroup_device_acl` keeps its list: plan warns with the line to add.

use super::Out;
use crate::resources::{KVMFR_APPARMOR_FILE, KVMFR_APPARMOR_LINE};
use anyhow::Result;

pub const QEMU_CONF: &str = "/etc/libvirt/qemu.conf";
/// libvirt's AppArmor abstraction for QEMU; it includes one of the two files below.
pub const AA_ABSTRACTION: &str = "/etc/apparmor.d/abstractions/libvirt-qemu";
/// The drop-in directory newer abstractions include (`include if exists
/// <abstractions/libvirt-qemu.d>`), where the local file is deprecated.
pub const AA_DROP_IN: &str = "/etc/apparmor.d/abstractions/libvirt-qemu.d/kvmfr";

const BEGIN: &str = "# vfio-gen: begin";
const END: &str = "# vfio-gen: end";
const KVMFR: &str = "/dev/kvmfr0";

/// libvirt's built-in list (src/qemu/qemu.conf.in, the commented `cgroup_device_acl`), used
/// when the installed qemu.conf has no commented list to start from.
pub const LIBVIRT_DEFAULT_ACL: &[&str] = &[
    "/dev/null",
    "/dev/full",
    "/dev/zero",
    "/dev/random",
    "/dev/urandom",
    "/dev/ptmx",
    "/dev/kvm",
    "/dev/userfaultfd",
];

/// Plans both files: vfio-gen's lines in them when `want` (the profile has `[looking-glass]`
/// and this is not a revert), else none.
pub fn plan(out: &mut dyn Out, want: bool) -> Result<()> {
    if !out.files().exists(QEMU_CONF) {
        return Ok(());
    }
    let old = out.files().read(QEMU_CONF)?;
    let text = String::from_utf8_lossy(old.as_deref().unwrap_or_default()).into_owned();
    let (new, warning) = qemu_conf(&text, want);
    if let Some(w) = warning {
        out.warn(w);
    }
    if want && new != text {
        out.note(format!("{QEMU_CONF} changes: restart libvirt's QEMU daemon (`sudo systemctl restart libvirtd`, or virtqemud) before starting the VM"));
    }
    let new = (new != text).then(|| new.into_bytes()).or(old.clone());
    out.edited(QEMU_CONF, old, new)?;
    apparmor(out, want)
}

/// The AppArmor rule, in whichever file the installed abstraction includes.
fn apparmor(out: &mut dyn Out, want: bool) -> Result<()> {
    let Some(abstraction) = out.files().read(AA_ABSTRACTION)? else {
        return Ok(());
    };
    let abstraction = String::from_utf8_lossy(&abstraction).into_owned();
    let includes = |what: &str| {
        abstraction
            .lines()
            .any(|l| l.trim_start().starts_with("include") && l.contains(what))
    };
    let target = if includes("<abstractions/libvirt-qemu.d>") {
        Some(AA_DROP_IN)
    } else if includes("<local/abstractions/libvirt-qemu>") {
        Some(KVMFR_APPARMOR_FILE)
    } else {
        if want {
            out.warn(format!("{AA_ABSTRACTION} includes neither <abstractions/libvirt-qemu.d> nor <local/abstractions/libvirt-qemu>: vfio-gen cannot add `{KVMFR_APPARMOR_LINE}` for QEMU; add it to the libvirt-qemu abstraction by hand"));
        }
        None
    };
    for path in [AA_DROP_IN, KVMFR_APPARMOR_FILE] {
        let old = out.files().read(path)?;
        if old.is_none() && Some(path) != target {
            continue;
        }
        let text = String::from_utf8_lossy(old.as_deref().unwrap_or_default()).into_owned();
        let new = apparmor_rules(&text, want && Some(path) == target);
        let new = match (&old, new.is_empty()) {
            // vfio-gen would create an empty file: no file.
            (None, true) => None,
            _ if new == text => old.clone(),
            _ => Some(new.into_bytes()),
        };
        out.edited(path, old, new)?;
    }
    Ok(())
}

/// `text` without vfio-gen's marked block, and where it was (the line index), if anywhere.
fn without_block(text: &str) -> (Vec<&str>, Option<usize>) {
    let mut out = Vec::new();
    let mut at = None;
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        if !inside && line.starts_with(BEGIN) {
            inside = true;
            at.get_or_insert(out.len());
            continue;
        }
        if inside {
            if line.starts_with(END) {
                inside = false;
            }
            continue;
        }
        out.push(line);
    }
    (out, at)
}

/// `lines` with `block` (whole lines) at `at`, or appended.
fn with_block(mut lines: Vec<&str>, at: Option<usize>, block: &str) -> String {
    let mut fixed_last = String::new();
    if at.is_none()
        && let Some(last) = lines.last()
        && !last.ends_with('\n')
    {
        fixed_last = format!("{last}\n");
        lines.pop();
    }
    let at = at.unwrap_or(lines.len() + usize::from(!fixed_last.is_empty()));
    let mut out = String::new();
    let mut put = false;
    for (i, l) in lines.iter().enumerate() {
        if i == at {
            out.push_str(block);
            put = true;
        }
        out.push_str(l);
    }
    out.push_str(&fixed_last);
    if !put {
        out.push_str(block);
    }
    out
}

/// The quoted strings of a list's text.
fn quoted(text: &str) -> Vec<String> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// An assignment to `cgroup_device_acl` on `line` (uncommented, or after `#` when
/// `commented`): the text after `=`.
fn acl_value(line: &str, commented: bool) -> Option<&str> {
    let mut l = line.trim_start();
    if commented {
        l = l.strip_prefix('#')?.trim_start();
    }
    let rest = l.strip_prefix("cgroup_device_acl")?.trim_start();
    rest.strip_prefix('=')
}

/// A list starting on `lines[i]` (its value `first`), up to its `]`: its text.
fn list_text(lines: &[&str], i: usize, first: &str, commented: bool) -> String {
    let mut text = first.to_string();
    let mut j = i + 1;
    while !text.contains(']') && j < lines.len() {
        let l = lines[j].trim_start();
        let l = if commented {
            match l.strip_prefix('#') {
                Some(l) => l,
                None => break,
            }
        } else {
            l
        };
        text.push_str(l);
        j += 1;
    }
    text
}

/// qemu.conf with vfio-gen's `cgroup_device_acl` (when `want` and the user sets none), and a
/// warning when the user's own list lacks /dev/kvmfr0.
pub fn qemu_conf(text: &str, want: bool) -> (String, Option<String>) {
    let (lines, at) = without_block(text);
    let theirs = lines.concat();
    if !want {
        return (theirs, None);
    }
    // The line numbers of the user's file as it is now, our block included.
    let numbered: Vec<&str> = text.split_inclusive('\n').collect();
    let own = numbered
        .iter()
        .enumerate()
        .find(|(i, l)| acl_value(l, false).is_some() && without_block_index(&numbered, *i));
    if let Some((i, l)) = own {
        let list = list_text(&numbered, i, acl_value(l, false).unwrap_or(""), false);
        let warning = (!quoted(&list).iter().any(|d| d == KVMFR)).then(|| {
            format!("{QEMU_CONF}:{}: cgroup_device_acl is set there, so vfio-gen leaves it alone: add `\"{KVMFR}\",` to that list for Looking Glass, then restart libvirtd", i + 1)
        });
        return (theirs, warning);
    }
    let commented = lines
        .iter()
        .enumerate()
        .find_map(|(i, l)| acl_value(l, true).map(|v| quoted(&list_text(&lines, i, v, true))))
        .filter(|l| !l.is_empty());
    let mut acl: Vec<String> =
        commented.unwrap_or_else(|| LIBVIRT_DEFAULT_ACL.iter().map(|s| s.to_string()).collect());
    // QEMU opens /dev/kvm for every KVM guest, whatever the comment lists.
    for dev in ["/dev/kvm", KVMFR] {
        if !acl.iter().any(|d| d == dev) {
            acl.push(dev.to_string());
        }
    }
    let items: Vec<String> = acl.iter().map(|d| format!("    \"{d}\"")).collect();
    let block = format!(
        "{BEGIN}: Looking Glass's {KVMFR} for QEMU ([looking-glass]); libvirt's list, from the comment above, and it. `vfio-gen apply --revert` takes these lines out.\ncgroup_device_acl = [\n{}\n]\n{END}\n",
        items.join(",\n")
    );
    (with_block(lines, at, &block), None)
}

/// Whether line `i` of the file is outside vfio-gen's block.
fn without_block_index(lines: &[&str], i: usize) -> bool {
    let mut inside = false;
    for (j, l) in lines.iter().enumerate() {
        if !inside && l.starts_with(BEGIN) {
            inside = true;
        } else if inside && l.starts_with(END) {
            if j == i {
                return false;
            }
            inside = false;
            continue;
        }
        if j == i {
            return !inside;
        }
    }
    true
}

/// The AppArmor file with vfio-gen's rule (when `want` and the file has none of its own).
pub fn apparmor_rules(text: &str, want: bool) -> String {
    let (lines, at) = without_block(text);
    let has_own = lines.iter().any(|l| l.trim() == KVMFR_APPARMOR_LINE);
    if !want || has_own {
        return lines.concat();
    }
    let block = format!(
        "{BEGIN}: Looking Glass's {KVMFR} for QEMU ([looking-glass]); `vfio-gen apply --revert` takes these lines out.\n{KVMFR_APPARMOR_LINE}\n{END}\n"
    );
    with_block(lines, at, &block)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = "# Master configuration file for the QEMU driver.\n#user = \"root\"\n\n# This is the basic set of devices allowed / required by\n# all virtual machines.\n#\n#cgroup_device_acl = [\n#    \"/dev/null\", \"/dev/full\", \"/dev/zero\",\n#    \"/dev/random\", \"/dev/urandom\",\n#    \"/dev/ptmx\", \"/dev/kvm\",\n#    \"/dev/userfaultfd\"\n#]\n#\n#save_image_format = \"raw\"\n";

    #[test]
    fn the_list_starts_from_the_comment_and_reverts_to_the_bytes() {
        let (new, warning) = qemu_conf(DEBIAN, true);
        assert!(warning.is_none());
        assert!(new.starts_with(DEBIAN), "{new}");
        assert!(new.ends_with("cgroup_device_acl = [\n    \"/dev/null\",\n    \"/dev/full\",\n    \"/dev/zero\",\n    \"/dev/random\",\n    \"/dev/urandom\",\n    \"/dev/ptmx\",\n    \"/dev/kvm\",\n    \"/dev/userfaultfd\",\n    \"/dev/kvmfr0\"\n]\n# vfio-gen: end\n"), "{new}");
        // Idempotent, and the block comes out whole.
        assert_eq!(qemu_conf(&new, true).0, new);
        assert_eq!(qemu_conf(&new, false).0, DEBIAN);
    }

    #[test]
    fn a_list_without_kvm_gets_it_and_no_comment_gives_libvirt_s_list() {
        let fedora = DEBIAN.replace("\"/dev/ptmx\", \"/dev/kvm\",", "\"/dev/ptmx\",");
        let (new, _) = qemu_conf(&fedora, true);
        assert!(
            new.contains("    \"/dev/userfaultfd\",\n    \"/dev/kvm\",\n    \"/dev/kvmfr0\"\n]"),
            "{new}"
        );
        let (new, _) = qemu_conf("#user = \"root\"", true);
        assert!(
            new.starts_with("#user = \"root\"\n# vfio-gen: begin"),
            "{new}"
        );
        assert!(
            new.contains("\"/dev/userfaultfd\",\n    \"/dev/kvmfr0\""),
            "{new}"
        );
    }

    #[test]
    fn the_user_s_own_list_is_left_with_a_warning_naming_its_line() {
        let own = format!(
            "{DEBIAN}cgroup_device_acl = [\n    \"/dev/null\", \"/dev/kvm\",\n    \"/dev/input/by-id/kbd\"\n]\n"
        );
        let (new, warning) = qemu_conf(&own, true);
        assert_eq!(new, own);
        let w = warning.unwrap();
        assert!(
            w.starts_with("/etc/libvirt/qemu.conf:15: cgroup_device_acl is set there"),
            "{w}"
        );
        assert!(w.contains("`\"/dev/kvmfr0\",`"));
        let listed = own.replace("\"/dev/input/by-id/kbd\"", "\"/dev/kvmfr0\"");
        assert_eq!(qemu_conf(&listed, true), (listed.clone(), None));
        // Set by the user after vfio-gen's block: the block goes, the user's list stays.
        let (with_ours, _) = qemu_conf(DEBIAN, true);
        let both = format!("{with_ours}{}", &own[DEBIAN.len()..]);
        assert_eq!(qemu_conf(&both, true).0, own);
    }

    #[test]
    fn the_apparmor_rule_is_added_once_and_taken_out_exactly() {
        let local = "# Site-specific additions and overrides for 'abstractions/libvirt-qemu'\n/dev/input/* rw,";
        let new = apparmor_rules(local, true);
        assert_eq!(
            new,
            format!(
                "{local}\n# vfio-gen: begin: Looking Glass's /dev/kvmfr0 for QEMU ([looking-glass]); `vfio-gen apply --revert` takes these lines out.\n/dev/kvmfr0 rw,\n# vfio-gen: end\n"
            )
        );
        assert_eq!(apparmor_rules(&new, true), new);
        assert_eq!(apparmor_rules(&new, false), format!("{local}\n"));
        let theirs = "/dev/kvmfr0 rw,\n";
        assert_eq!(apparmor_rules(theirs, true), theirs);
        assert_eq!(apparmor_rules("", false), "");
    }
}
