//! mkinitcpio (Arch and derivatives): an owned drop-in in `/etc/mkinitcpio.conf.d` that puts
//! the VFIO modules first in `MODULES`; the checks of mkinitcpio.conf, later drop-ins and the
//! presets that could keep it out of the image.

use super::{GPU_DRIVERS, Generator, Input, owned};
use crate::root::Files;
use crate::targets::{Out, render};
use anyhow::Result;
use minijinja::context;

pub const MKINITCPIO_DROP_IN: &str = "/etc/mkinitcpio.conf.d/vfio.conf";

pub struct Mkinitcpio;

impl Generator for Mkinitcpio {
    fn name(&self) -> &'static str {
        "mkinitcpio"
    }
    fn config(&self) -> &'static str {
        MKINITCPIO_DROP_IN
    }
    fn owns_config(&self) -> bool {
        true
    }
    fn hook(&self) -> &'static [&'static str] {
        &["mkinitcpio", "-P"]
    }
    fn embeds_cmdline(&self) -> bool {
        true
    }
    fn detect(&self, files: &dyn Files) -> Option<String> {
        files
            .exists("/etc/mkinitcpio.conf")
            .then(|| "/etc/mkinitcpio.conf".into())
    }
    fn plan(&self, out: &mut dyn Out, input: &Input) -> Result<()> {
        out.owned(
            MKINITCPIO_DROP_IN,
            Some(drop_in(input.modules, input.in_image)?.into_bytes()),
        )?;
        checks(out)
    }
}

/// `files`: more files for the image (`FILES+=`), the bind-by-address script.
pub fn drop_in(modules: &[&str], files: &[String]) -> Result<String> {
    render(
        "mkinitcpio.conf.j2",
        context! { modules => owned(modules), files_extra => files.to_vec() },
    )
}

fn checks(out: &mut dyn Out) -> Result<()> {
    if let Some(conf) = out.files().read("/etc/mkinitcpio.conf")? {
        let conf = String::from_utf8_lossy(&conf);
        if let Some((line, hooks)) = shell_list(&conf, "HOOKS")
            && !hooks.iter().any(|h| h == "modconf")
        {
            out.warn(format!(
                "/etc/mkinitcpio.conf:{line}: HOOKS has no modconf, so /etc/modprobe.d (and the vfio-pci ids) never reach the image: add modconf to HOOKS"
            ));
        }
        if let Some((line, modules)) = shell_list(&conf, "MODULES") {
            let gpu: Vec<&String> = modules
                .iter()
                .filter(|m| GPU_DRIVERS.contains(&m.trim_end_matches('?')))
                .collect();
            if !gpu.is_empty() {
                out.note(format!(
                    "/etc/mkinitcpio.conf:{line}: MODULES lists {}; vfio-gen's drop-in puts the VFIO modules before them",
                    gpu.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    for name in out.files().list("/etc/mkinitcpio.conf.d")? {
        let path = format!("/etc/mkinitcpio.conf.d/{name}");
        if !name.ends_with(".conf") || name.as_str() <= "vfio.conf" {
            continue;
        }
        let Some(bytes) = out.files().read(&path)? else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for (i, l) in text.lines().enumerate() {
            if l.trim_start().starts_with("MODULES=") {
                out.warn(format!(
                    "{path}:{}: sets MODULES= after vfio-gen's drop-in and drops the VFIO modules: append with MODULES+=(...) instead",
                    i + 1
                ));
            }
        }
    }
    for (path, line, text) in preset_configs(out.files())? {
        out.warn(format!(
            "{path}:{line}: `{text}` makes mkinitcpio use that file alone and skip /etc/mkinitcpio.conf.d, where vfio-gen's drop-in lives (apply refuses it without --force): comment the line out"
        ));
    }
    Ok(())
}

/// The lines of mkinitcpio presets that set `ALL_config` or `<preset>_config`: with one,
/// mkinitcpio runs with `-c FILE` and ignores /etc/mkinitcpio.conf.d (docs/mkinitcpio.md).
/// (path, line number, the line).
pub fn preset_configs(files: &dyn Files) -> Result<Vec<(String, usize, String)>> {
    let mut out = Vec::new();
    for name in files.list("/etc/mkinitcpio.d")? {
        let path = format!("/etc/mkinitcpio.d/{name}");
        if !name.ends_with(".preset") {
            continue;
        }
        let Some(bytes) = files.read(&path)? else {
            continue;
        };
        for (i, l) in String::from_utf8_lossy(&bytes).lines().enumerate() {
            let l = l.trim_start();
            if !l.starts_with('#')
                && l.split_once('=')
                    .is_some_and(|(k, _)| k.ends_with("_config"))
            {
                out.push((path.clone(), i + 1, l.to_string()));
            }
        }
    }
    Ok(out)
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
