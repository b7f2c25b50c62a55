//! Looking Glass's kvmfr device, host half (docs/resources.md, "Looking Glass: kvmfr"): its
//! size in modprobe.d, the module loaded at boot (modules-load.d), and a udev rule that gives
//! the kvm group and the user at the seat the device in a way systemd 258 honours. All three
//! are owned files.

use super::render;
use crate::profile::Profile;
use crate::resources::KVMFR_TEMPLATES;
use anyhow::Result;
use minijinja::context;

/// The kvmfr files for the profile's `[looking-glass]`: (path, content); none without it.
pub fn files(profile: &Profile) -> Result<Vec<(String, String)>> {
    let Some(lg) = &profile.looking_glass else {
        return Ok(Vec::new());
    };
    let user = lg
        .user
        .clone()
        .unwrap_or_else(|| "the user at the seat".into());
    let mut out = Vec::new();
    for (template, path) in KVMFR_TEMPLATES {
        let text = render(
            template,
            context! { size_mb => lg.size_mb, reason => lg.reason.clone(), user => user.clone() },
        )?;
        out.push((path.to_string(), text));
    }
    Ok(out)
}

/// Every path [`files`] may write, for the scan of files an earlier profile left.
pub fn paths() -> impl Iterator<Item = &'static str> {
    KVMFR_TEMPLATES.iter().map(|(_, p)| *p)
}
