//! NixOS (`/etc/NIXOS`): `/etc` is generated from the system configuration by
//! `nixos-rebuild`, so vfio-gen writes nothing there; `render --format nix` prints a NixOS
//! module to import instead (docs/distributions.md, "NixOS"). The module is built here value
//! by value rather than from a template, because every string needs Nix's own quoting.

use crate::cmdline::Opt;
use crate::profile::Profile;
use anyhow::{Result, bail};

/// The file NixOS's activation script creates on every NixOS system.
pub const MARK: &str = "/etc/NIXOS";

/// A Nix double-quoted string: `\`, `"` and `${` escaped (the Nix manual, "String literals").
pub fn string(s: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One line of a Nix indented string (`''...''`): `''` becomes `'''`, `${` becomes `''${`.
fn indented_line(s: &str) -> String {
    s.replace("''", "'''").replace("${", "''${")
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "[ ]".to_string();
    }
    let quoted: Vec<String> = items.iter().map(|s| string(s)).collect();
    format!("[ {} ]", quoted.join(" "))
}

/// The module for a profile: its kernel options (with `vfio-pci.ids=`, which reaches
/// vfio-pci in either of NixOS's initrds), the VFIO modules in the initrd, the modprobe.d
/// lines, the blacklist. `modprobe_files` are the owned modprobe.d files the profile renders.
/// What `[looking-glass]` adds to the module (docs/resources.md, "NixOS"): modules loaded in
/// stage 2 (`boot.kernelModules`) and udev rules (`services.udev.extraRules`).
#[derive(Debug, Clone, Default)]
pub struct NixShare {
    pub kernel_modules: Vec<String>,
    pub udev_rules: Vec<String>,
}

pub fn module(
    profile: &Profile,
    options: &[Opt],
    initrd_modules: &[&str],
    modprobe_files: &[(String, String)],
    share: &NixShare,
    source: &str,
) -> Result<String> {
    if !profile.devices.is_empty() {
        bail!(
            "[vfio] devices binds by address through a script in /etc/vfio-gen, which NixOS does not keep: list the cards in [vfio] ids for the NixOS module"
        );
    }
    let mut params: Vec<String> = options.iter().map(|o| o.text()).collect();
    if !profile.ids.is_empty() && !options.iter().any(|o| o.key() == "vfio_pci.ids") {
        params.push(format!("vfio-pci.ids={}", profile.ids.join(",")));
    }
    let mut modprobe = Vec::new();
    for (_, text) in modprobe_files {
        for line in text.lines() {
            let t = line.trim();
            // Comments stay out (the file is one generated nixos.conf); blacklists have their
            // own option.
            if t.is_empty() || t.starts_with('#') || t.starts_with("blacklist ") {
                continue;
            }
            modprobe.push(t.to_string());
        }
    }
    let modules: Vec<String> = initrd_modules.iter().map(|m| m.to_string()).collect();
    let mut out = String::new();
    out.push_str(crate::targets::HEADER_MARK);
    out.push_str(&format!(
        " from {}: a NixOS module.\n# Save it as /etc/nixos/vfio-gen.nix, add ./vfio-gen.nix to imports in configuration.nix,\n# then run `nixos-rebuild boot` and reboot.\n",
        source.replace('\n', " ")
    ));
    out.push_str("{ ... }:\n{\n");
    out.push_str(&format!("  boot.kernelParams = {};\n", list(&params)));
    out.push_str(&format!(
        "  boot.initrd.kernelModules = {};\n",
        list(&modules)
    ));
    out.push_str(&format!(
        "  boot.blacklistedKernelModules = {};\n",
        list(&profile.blacklist)
    ));
    if modprobe.is_empty() {
        out.push_str("  boot.extraModprobeConfig = \"\";\n");
    } else {
        out.push_str("  boot.extraModprobeConfig = ''\n");
        for l in &modprobe {
            out.push_str(&format!("    {}\n", indented_line(l)));
        }
        out.push_str("  '';\n");
    }
    if !share.kernel_modules.is_empty() {
        out.push_str("  # Looking Glass's kvmfr is out of tree: its package is yours to add, for example\n  # boot.extraModulePackages = [ config.boot.kernelPackages.kvmfr ];\n");
        out.push_str(&format!(
            "  boot.kernelModules = {};\n",
            list(&share.kernel_modules)
        ));
    }
    if !share.udev_rules.is_empty() {
        out.push_str("  services.udev.extraRules = ''\n");
        for l in &share.udev_rules {
            out.push_str(&format!("    {}\n", indented_line(l)));
        }
        out.push_str("  '';\n");
    }
    out.push_str("}\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_for_nix() {
        assert_eq!(string("iommu=pt"), "\"iommu=pt\"");
        assert_eq!(string(r#"a"b\c${d}$e"#), r#""a\"b\\c\${d}$e""#);
        assert_eq!(indented_line("x ''${y} ''"), "x '''''${y} '''");
    }
}
