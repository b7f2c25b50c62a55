//! `/etc/modprobe.d`: the `vfio-pci` options and softdeps (and, with `[vfio] devices`, the
//! `install vfio-pci` line that binds by address), and one blacklist file per module.

use super::render;
use crate::profile::Profile;
use anyhow::Result;
use minijinja::context;

pub const VFIO_CONF: &str = "/etc/modprobe.d/vfio.conf";

/// Drivers that take `modeset=0`, which keeps them from driving a console on the GPU.
const MODESET: &[&str] = &["nouveau", "radeon", "amdgpu"];

pub fn blacklist_path(module: &str) -> String {
    format!("/etc/modprobe.d/blacklist-{module}.conf")
}

/// The owned modprobe.d files and their contents, in path order.
pub fn files(profile: &Profile) -> Result<Vec<(String, String)>> {
    let mut out = vec![(
        VFIO_CONF.to_string(),
        render(
            "modprobe-vfio.conf.j2",
            context! {
                ids => profile.ids.clone(),
                disable_vga => profile.disable_vga,
                softdep => profile.softdep.clone(),
                install => (!profile.devices.is_empty()).then(super::address_bind::install_line),
            },
        )?,
    )];
    for module in &profile.blacklist {
        let modeset = MODESET.contains(&module.replace('-', "_").as_str());
        out.push((
            blacklist_path(module),
            render("modprobe-blacklist.conf.j2", context! { module, modeset })?,
        ));
    }
    out.sort();
    Ok(out)
}

/// Lines in a modprobe.d file that set `ids` for vfio-pci: (line number, text).
pub fn vfio_ids_lines(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let mut words = l.split_whitespace();
            let is = words.next() == Some("options")
                && words.next().map(|m| m.replace('-', "_")) == Some("vfio_pci".into())
                && words.any(|w| w.starts_with("ids="));
            is.then(|| (i + 1, l.trim().to_string()))
        })
        .collect()
}
