//! dracut (Fedora, openSUSE, EndeavourOS...): an owned drop-in in `/etc/dracut.conf.d` that
//! forces the VFIO modules and installs the modprobe.d files; the check of `force_drivers`
//! lines read before it.

use super::{GPU_DRIVERS, Generator, Input, owned};
use crate::root::Files;
use crate::targets::{Out, render};
use anyhow::Result;
use minijinja::context;

pub const DRACUT_DROP_IN: &str = "/etc/dracut.conf.d/vfio.conf";

pub struct Dracut;

impl Generator for Dracut {
    fn name(&self) -> &'static str {
        "dracut"
    }
    fn config(&self) -> &'static str {
        DRACUT_DROP_IN
    }
    fn owns_config(&self) -> bool {
        true
    }
    fn hook(&self) -> &'static [&'static str] {
        &["dracut", "-f", "--regenerate-all"]
    }
    fn embeds_cmdline(&self) -> bool {
        true
    }
    fn detect(&self, files: &dyn Files) -> Option<String> {
        let found = files.exists("/etc/dracut.conf")
            || files
                .list("/etc/dracut.conf.d")
                .map(|l| !l.is_empty())
                .unwrap_or(false);
        found.then(|| "/etc/dracut.conf(.d)".into())
    }
    fn plan(&self, out: &mut dyn Out, input: &Input) -> Result<()> {
        let mut included = input.modprobe_files.to_vec();
        included.extend(input.in_image.iter().cloned());
        out.owned(
            DRACUT_DROP_IN,
            Some(drop_in(input.modules, &included)?.into_bytes()),
        )?;
        checks(out)
    }
}

pub fn drop_in(modules: &[&str], files: &[String]) -> Result<String> {
    render(
        "dracut.conf.j2",
        context! { modules => owned(modules), files => files.to_vec() },
    )
}

/// dracut loads `force_drivers` in the order the files add them: a GPU driver forced by
/// dracut.conf or a drop-in read before vfio.conf would load first.
fn checks(out: &mut dyn Out) -> Result<()> {
    let mut sources = vec!["/etc/dracut.conf".to_string()];
    for name in out.files().list("/etc/dracut.conf.d")? {
        if name.ends_with(".conf") && name.as_str() < "vfio.conf" {
            sources.push(format!("/etc/dracut.conf.d/{name}"));
        }
    }
    for path in sources {
        let Some(bytes) = out.files().read(&path)? else {
            continue;
        };
        for (i, line) in String::from_utf8_lossy(&bytes).lines().enumerate() {
            let l = line.trim_start();
            if l.starts_with('#') || !l.starts_with("force_drivers") {
                continue;
            }
            let gpu: Vec<&str> = GPU_DRIVERS
                .iter()
                .copied()
                .filter(|g| {
                    l.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                        .any(|w| w == *g)
                })
                .collect();
            if !gpu.is_empty() {
                out.warn(format!(
                    "{path}:{}: force_drivers loads {} before vfio-gen's drop-in loads vfio-pci, so it can grab the passthrough GPU: move it to add_drivers, or to a drop-in named after vfio.conf",
                    i + 1,
                    gpu.join(", ")
                ));
            }
        }
    }
    Ok(())
}
