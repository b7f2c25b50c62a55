//! The initramfs generators: what each needs so the VFIO modules load first and the
//! `vfio-pci` options reach the image. mkinitcpio and dracut get an owned drop-in;
//! initramfs-tools gets a marked block in `/etc/initramfs-tools/modules`; booster gets its
//! modules in `modules_force_load` of `/etc/booster.yaml`.

use super::render;
use anyhow::Result;
use minijinja::context;

pub const MKINITCPIO_DROP_IN: &str = "/etc/mkinitcpio.conf.d/vfio.conf";
pub const DRACUT_DROP_IN: &str = "/etc/dracut.conf.d/vfio.conf";
pub const INITRAMFS_TOOLS_MODULES: &str = "/etc/initramfs-tools/modules";
pub const BOOSTER_YAML: &str = "/etc/booster.yaml";

/// GPU drivers that would grab the card if they loaded before vfio-pci.
pub const GPU_DRIVERS: &[&str] = &[
    "nvidia",
    "nvidia_modeset",
    "nvidia_uvm",
    "nvidia_drm",
    "nouveau",
    "amdgpu",
    "radeon",
    "i915",
    "xe",
];

/// The VFIO modules, in load order; `vfio_virqfd` only for kernels before 6.2.
pub fn modules(virqfd: bool) -> Vec<&'static str> {
    let mut m = vec!["vfio_pci", "vfio", "vfio_iommu_type1"];
    if virqfd {
        m.push("vfio_virqfd");
    }
    m
}

fn owned(modules: &[&str]) -> Vec<String> {
    modules.iter().map(|m| m.to_string()).collect()
}

/// `files`: more files for the image (`FILES+=`), the bind-by-address script.
pub fn mkinitcpio(modules: &[&str], files: &[String]) -> Result<String> {
    render(
        "mkinitcpio.conf.j2",
        context! { modules => owned(modules), files_extra => files.to_vec() },
    )
}

pub fn dracut(modules: &[&str], files: &[String]) -> Result<String> {
    render(
        "dracut.conf.j2",
        context! { modules => owned(modules), files => files.to_vec() },
    )
}

const BEGIN: &str = "# BEGIN vfio-gen";
const END: &str = "# END vfio-gen";

/// `/etc/initramfs-tools/modules` with vfio-gen's block placed before every module line
/// (or, with `revert`, without it; `None` when nothing else is left).
pub fn initramfs_tools(
    current: Option<&[u8]>,
    modules: &[&str],
    revert: bool,
) -> Result<Option<Vec<u8>>> {
    let text = String::from_utf8_lossy(current.unwrap_or_default()).into_owned();
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    if let Some(b) = lines.iter().position(|l| l.starts_with(BEGIN)) {
        let e = lines[b..]
            .iter()
            .position(|l| l.starts_with(END))
            .map(|e| b + e)
            .unwrap_or(b);
        lines.drain(b..=e);
    }
    if revert {
        let rest = lines.concat();
        return Ok(if rest.is_empty() && current.is_none() {
            None
        } else {
            Some(rest.into_bytes())
        });
    }
    if let Some(last) = lines.last_mut()
        && !last.ends_with('\n')
    {
        last.push('\n');
    }
    let block = render(
        "initramfs-tools-modules.j2",
        context! { modules => owned(modules) },
    )?;
    let at = lines
        .iter()
        .position(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .unwrap_or(lines.len());
    let mut out = String::new();
    for l in &lines[..at] {
        out.push_str(l);
    }
    out.push_str(&block);
    for l in &lines[at..] {
        out.push_str(l);
    }
    Ok(Some(out.into_bytes()))
}

const BOOSTER_MARK: &str = "# vfio-gen: the VFIO modules load first";

/// `/etc/booster.yaml` with the VFIO modules first in `modules_force_load` (or taken out).
pub fn booster(current: Option<&[u8]>, modules: &[&str], revert: bool) -> Result<Option<Vec<u8>>> {
    let text = String::from_utf8_lossy(current.unwrap_or_default()).into_owned();
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let key = "modules_force_load:";
    let found = lines.iter().position(|l| l.starts_with(key));
    if let Some(i) = found
        && lines[i][key.len()..].trim().is_empty()
    {
        anyhow::bail!(
            "{BOOSTER_YAML}: line {}: modules_force_load is not a comma-separated string (booster reads `modules_force_load: a,b,c`); write it on one line, then run vfio-gen again",
            i + 1
        );
    }
    let list_of = |l: &str| -> Vec<String> {
        l[key.len()..]
            .trim()
            .trim_matches(|c| c == '"' || c == '\'')
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let theirs: Vec<String> = found
        .map(|i| list_of(&lines[i]))
        .unwrap_or_default()
        .into_iter()
        .filter(|m| !modules.contains(&m.as_str()))
        .collect();
    let mut list: Vec<String> = if revert {
        Vec::new()
    } else {
        modules.iter().map(|m| m.to_string()).collect()
    };
    list.extend(theirs);
    let new_line = format!("{key} {}\n", list.join(","));
    match found {
        Some(i) if list.is_empty() => {
            lines.remove(i);
            if i > 0 && lines[i - 1].starts_with(BOOSTER_MARK) {
                lines.remove(i - 1);
            }
        }
        Some(i) if list_of(&lines[i]) != list => lines[i] = new_line,
        Some(_) => {}
        None if !revert => {
            if let Some(last) = lines.last_mut()
                && !last.ends_with('\n')
            {
                last.push('\n');
            }
            lines.push(format!(
                "{BOOSTER_MARK}; `vfio-gen apply --revert` removes them\n"
            ));
            lines.push(new_line);
        }
        None => {}
    }
    // The file stays even when empty: it may have been there before vfio-gen (a revert with
    // history puts back exactly what was there).
    Ok(Some(lines.concat().into_bytes()))
}

/// Extracts the words of a shell array or string assigned to `name` (last assignment wins;
/// `+=` appends), for reading mkinitcpio.conf. Returns the line of the last assignment.
pub fn shell_list(text: &str, name: &str) -> Option<(usize, Vec<String>)> {
    let mut result: Option<(usize, Vec<String>)> = None;
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim_start();
        let (append, rest) = if let Some(r) = l.strip_prefix(&format!("{name}+=")) {
            (true, r)
        } else if let Some(r) = l.strip_prefix(&format!("{name}=")) {
            (false, r)
        } else {
            i += 1;
            continue;
        };
        let start = i;
        let mut body = rest.to_string();
        if body.starts_with('(') {
            let mut closed = strip_comment(rest).contains(')');
            while !closed && i + 1 < lines.len() {
                closed = strip_comment(lines[i + 1]).contains(')');
                i += 1;
                body.push('\n');
                body.push_str(lines[i]);
            }
        } else if let Some(q) = body.chars().next().filter(|c| *c == '"' || *c == '\'') {
            while body.matches(q).count() < 2 && i + 1 < lines.len() {
                i += 1;
                body.push('\n');
                body.push_str(lines[i]);
            }
        }
        let words: Vec<String> = body
            .lines()
            .map(strip_comment)
            .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .map(|w| {
                w.trim_matches(|c| matches!(c, '(' | ')' | '"' | '\''))
                    .to_string()
            })
            .filter(|w| !w.is_empty())
            .collect();
        match (&mut result, append) {
            (Some((line, list)), true) => {
                *line = start + 1;
                list.extend(words);
            }
            _ => result = Some((start + 1, words)),
        }
        i += 1;
    }
    result
}

fn strip_comment(l: &str) -> &str {
    match l
        .find(" #")
        .or(if l.starts_with('#') { Some(0) } else { None })
    {
        Some(i) => &l[..i],
        None => l,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initramfs_tools_block_goes_before_modules_and_comes_out_again() {
        let before = "# List of modules\n#\n# raid1\namdgpu\n";
        let after = initramfs_tools(Some(before.as_bytes()), &modules(false), false)
            .unwrap()
            .unwrap();
        let after = String::from_utf8(after).unwrap();
        assert!(
            after.starts_with("# List of modules\n#\n# raid1\n# BEGIN vfio-gen"),
            "{after}"
        );
        assert!(after.ends_with("# END vfio-gen\namdgpu\n"), "{after}");
        let again = initramfs_tools(Some(after.as_bytes()), &modules(false), false)
            .unwrap()
            .unwrap();
        assert_eq!(again, after.as_bytes());
        let back = initramfs_tools(Some(after.as_bytes()), &modules(false), true)
            .unwrap()
            .unwrap();
        assert_eq!(back, before.as_bytes());
    }

    #[test]
    fn booster_list_keeps_the_users_modules() {
        let before = "compression: zstd\nmodules_force_load: nvme,btrfs\n";
        let after = booster(Some(before.as_bytes()), &modules(false), false)
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&after),
            "compression: zstd\nmodules_force_load: vfio_pci,vfio,vfio_iommu_type1,nvme,btrfs\n"
        );
        let back = booster(Some(&after), &modules(false), true)
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&back),
            "compression: zstd\nmodules_force_load: nvme,btrfs\n"
        );
        let fresh = booster(Some(b"universal: false"), &modules(false), false)
            .unwrap()
            .unwrap();
        let back = booster(Some(&fresh), &modules(false), true)
            .unwrap()
            .unwrap();
        assert_eq!(back, b"universal: false\n");
    }

    #[test]
    fn shell_lists_in_both_forms() {
        assert_eq!(
            shell_list("MODULES=(amdgpu nvme)\n", "MODULES").unwrap().1,
            ["amdgpu", "nvme"]
        );
        assert_eq!(
            shell_list("MODULES=\"i915 ext4\"\n", "MODULES").unwrap().1,
            ["i915", "ext4"]
        );
        assert_eq!(
            shell_list(
                "HOOKS=(base\n  udev # x\n  modconf)\nHOOKS+=(fsck)\n",
                "HOOKS"
            )
            .unwrap()
            .1,
            ["base", "udev", "modconf", "fsck"]
        );
        assert!(shell_list("#MODULES=(x)\n", "MODULES").is_none());
    }
}
