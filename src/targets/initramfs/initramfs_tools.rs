//! initramfs-tools (Debian, Ubuntu): a marked block of the VFIO modules in
//! `/etc/initramfs-tools/modules`, before every module line; a warning for a `vfio_pci` line
//! of the user's whose options would be ignored.

use super::{Generator, Input, owned};
use crate::root::Files;
use crate::targets::{Out, address_bind, render};
use anyhow::Result;
use minijinja::context;

pub const INITRAMFS_TOOLS_MODULES: &str = "/etc/initramfs-tools/modules";

pub struct InitramfsTools;

impl Generator for InitramfsTools {
    fn name(&self) -> &'static str {
        "initramfs-tools"
    }
    fn config(&self) -> &'static str {
        INITRAMFS_TOOLS_MODULES
    }
    fn owns_config(&self) -> bool {
        false
    }
    fn hook(&self) -> &'static [&'static str] {
        &["update-initramfs", "-u", "-k", "all"]
    }
    fn detect(&self, files: &dyn Files) -> Option<String> {
        files
            .exists("/etc/initramfs-tools")
            .then(|| "/etc/initramfs-tools".into())
    }
    fn plan(&self, out: &mut dyn Out, input: &Input) -> Result<()> {
        let cur = out.files().read(INITRAMFS_TOOLS_MODULES)?;
        for (i, line) in String::from_utf8_lossy(cur.as_deref().unwrap_or_default())
            .lines()
            .enumerate()
        {
            let mut words = line.split_whitespace();
            if words
                .next()
                .is_some_and(|w| crate::cmdline::normalize(w) == "vfio_pci")
                && words.next().is_some()
            {
                out.warn(format!(
                    "{}:{}: `{}` comes after vfio-gen's vfio_pci line, so its options are never used: put the ids in the profile and remove the line",
                    INITRAMFS_TOOLS_MODULES,
                    i + 1,
                    line.trim()
                ));
            }
        }
        let new = edit(cur.as_deref(), input.modules, out.revert())?;
        out.edited(INITRAMFS_TOOLS_MODULES, cur, new)?;
        // The hook that copies the bind-by-address script into the image
        // (docs/binding-at-boot.md).
        if !input.in_image.is_empty() {
            out.owned(
                address_bind::INITRAMFS_TOOLS_HOOK,
                Some(address_bind::initramfs_tools_hook()?.into_bytes()),
            )?;
        }
        Ok(())
    }
}

const BEGIN: &str = "# BEGIN vfio-gen";
const END: &str = "# END vfio-gen";

/// `/etc/initramfs-tools/modules` with vfio-gen's block placed before every module line
/// (or, with `revert`, without it; `None` when nothing else is left).
pub fn edit(current: Option<&[u8]>, modules: &[&str], revert: bool) -> Result<Option<Vec<u8>>> {
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

#[cfg(test)]
mod tests {
    use super::super::modules;
    use super::*;

    #[test]
    fn initramfs_tools_block_goes_before_modules_and_comes_out_again() {
        let before = "# List of modules\n#\n# raid1\namdgpu\n";
        let after = edit(Some(before.as_bytes()), &modules(false), false)
            .unwrap()
            .unwrap();
        let after = String::from_utf8(after).unwrap();
        assert!(
            after.starts_with("# List of modules\n#\n# raid1\n# BEGIN vfio-gen"),
            "{after}"
        );
        assert!(after.ends_with("# END vfio-gen\namdgpu\n"), "{after}");
        let again = edit(Some(after.as_bytes()), &modules(false), false)
            .unwrap()
            .unwrap();
        assert_eq!(again, after.as_bytes());
        let back = edit(Some(after.as_bytes()), &modules(false), true)
            .unwrap()
            .unwrap();
        assert_eq!(back, before.as_bytes());
    }
}
