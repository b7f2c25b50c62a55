//! The GRUB trial (docs/trial.md, "GRUB"): the default menu entry of grub.cfg copied into an
//! owned `/etc/grub.d` script with the trial options on its `linux` line, armed by
//! `next_entry` in the environment block, and the refusal where GRUB cannot clear
//! `next_entry` at boot. The parsing and the bytes are pure; `arm`, `disarm`, `armed` and
//! `storage` touch the root.

use crate::cmdline::{self, Opt};
use crate::root::{Files, Root};
use anyhow::{Result, bail};

/// The owned script: after 10_linux and 41_custom, so `GRUB_DEFAULT=0` never picks it
/// (grub-mkconfig runs /etc/grub.d/* in the order of their names; docs/trial.md).
pub const SCRIPT: &str = "/etc/grub.d/42_vfio-gen-trial";
/// The menu entry's `--id`, which `next_entry` names.
pub const ENTRY_ID: &str = "vfio-gen-trial";
/// The environment block's signature line (grub-core/lib/envblk.c, GRUB_ENVBLK_SIGNATURE).
pub const ENV_SIGNATURE: &str = "# GRUB Environment Block\n";
/// The size grub-editenv gives a new block (docs/grub.texi, "Environment block": 1024 bytes).
pub const ENV_SIZE: usize = 1024;
/// The here-document's end: a line no menu entry of grub-mkconfig holds.
const EOF: &str = "VFIO_GEN_TRIAL_EOF";

/// The mode of the owned files that must be executable: grub-mkconfig runs only the
/// executable scripts of /etc/grub.d.
pub fn mode(path: &str) -> Option<u32> {
    (path == SCRIPT).then_some(0o755)
}

/// The grub.cfg under the root and its environment block beside it.
pub fn cfg_path(files: &dyn Files) -> Option<&'static str> {
    crate::targets::grub::GRUB_CFGS
        .iter()
        .copied()
        .find(|p| files.exists(p))
}

pub fn env_path(cfg: &str) -> String {
    format!(
        "{}/grubenv",
        cfg.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
    )
}

/// One top-level item of grub.cfg's menu: a `menuentry` or a `submenu`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub submenu: bool,
    pub title: String,
    pub id: Option<String>,
    /// The lines between the opening line and the closing `}`, as they are.
    pub body: String,
    /// The line of grub.cfg the item starts on (1-based).
    pub line: usize,
}

/// The words of a GRUB script line: quotes ('...', "...") and backslashes as GRUB's lexer
/// reads them for the plain words grub-mkconfig writes.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut any = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            '\'' => {
                any = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    cur.push(d);
                }
            }
            '"' => {
                any = true;
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '\\' => {
                            if let Some(e) = chars.next() {
                                cur.push(e);
                            }
                        }
                        _ => cur.push(d),
                    }
                }
            }
            '\\' => {
                any = true;
                if let Some(e) = chars.next() {
                    cur.push(e);
                }
            }
            '#' if !any => break,
            _ => {
                any = true;
                cur.push(c);
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// The top-level menu of a grub.cfg as grub-mkconfig writes it: each `menuentry` or
/// `submenu` line ends with `{`, its block with a line that is `}` alone; `function` blocks
/// (00_header's `load_video`) are skipped. Anything else is refused.
pub fn menu(cfg: &str, path: &str) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut open: Option<Item> = None;
    for (n, line) in cfg.lines().enumerate() {
        let w = words(line);
        let first = w.first().map(String::as_str);
        let opens = w.last().map(String::as_str) == Some("{")
            && matches!(first, Some("menuentry" | "submenu" | "function"));
        if opens {
            if depth == 0 && first != Some("function") {
                let id = w
                    .windows(2)
                    .find(|p| p[0] == "--id" || p[0] == "$menuentry_id_option")
                    .map(|p| p[1].clone());
                open = Some(Item {
                    submenu: first == Some("submenu"),
                    title: w.get(1).cloned().unwrap_or_default(),
                    id,
                    body: String::new(),
                    line: n + 1,
                });
            } else if let Some(item) = open.as_mut() {
                item.body.push_str(line);
                item.body.push('\n');
            }
            depth += 1;
            continue;
        }
        if line.trim() == "}" {
            if depth == 0 {
                bail!(
                    "{path}:{}: a `}}` that closes nothing; grub.cfg is not as grub-mkconfig writes it: run update-grub (or grub-mkconfig -o {path}), then `vfio-gen apply --trial` again",
                    n + 1
                );
            }
            depth -= 1;
            if depth == 0 {
                if let Some(item) = open.take() {
                    items.push(item);
                }
                continue;
            }
        }
        if let Some(item) = open.as_mut() {
            item.body.push_str(line);
            item.body.push('\n');
        }
    }
    if let Some(item) = open {
        bail!(
            "{path}:{}: the {} '{}' is never closed; grub.cfg is not as grub-mkconfig writes it: run update-grub (or grub-mkconfig -o {path}), then `vfio-gen apply --trial` again",
            item.line,
            if item.submenu { "submenu" } else { "menuentry" },
            item.title
        );
    }
    Ok(items)
}

/// What grub.cfg boots when `next_entry` is empty: the last `set default="..."` that is not
/// 00_header's `${next_entry}` branch (its `else`), `0` when there is none.
pub fn default_setting(cfg: &str) -> String {
    let mut out = "0".to_string();
    for line in cfg.lines() {
        let w = words(line);
        if w.len() == 2
            && w[0] == "set"
            && let Some(v) = w[1].strip_prefix("default=")
            && v != "${next_entry}"
        {
            out = v.to_string();
        }
    }
    out
}

/// The entry `GRUB_DEFAULT` boots: grub.cfg's `default` (with `saved`, the block's
/// `saved_entry`, `0` when unset): a number counts the top-level items, anything else is an
/// entry's id or title. A submenu or a `>` path is refused: the trial copies a top-level entry.
pub fn default_entry(cfg: &str, path: &str, env: Option<&[u8]>) -> Result<Item> {
    let items: Vec<Item> = menu(cfg, path)?
        .into_iter()
        .filter(|i| i.id.as_deref() != Some(ENTRY_ID))
        .collect();
    let setting = default_setting(cfg);
    let mut value = setting.clone();
    if setting == "${saved_entry}" {
        value = env
            .and_then(|b| env_get(b, "saved_entry"))
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "0".into());
    }
    let fix = "set GRUB_DEFAULT=0 (or the id of a top-level menuentry) in /etc/default/grub and run update-grub, or try on a systemd-boot host";
    if value.contains('>') {
        bail!(
            "{path}: the default entry is {value:?}, an entry inside a submenu; --trial copies a top-level menuentry: {fix}"
        );
    }
    let found = if let Ok(n) = value.parse::<usize>() {
        items.get(n).cloned()
    } else {
        items
            .iter()
            .find(|i| i.id.as_deref() == Some(value.as_str()) || i.title == value)
            .cloned()
    };
    let Some(item) = found else {
        if items.is_empty() {
            bail!(
                "{path}: no menuentry to try the configuration beside; run update-grub (or grub-mkconfig -o {path}), then `vfio-gen apply --trial` again"
            );
        }
        bail!(
            "{path}: the default entry {value:?} (from `set default=\"{setting}\"`) is none of its top-level menu entries; {fix}"
        );
    };
    if item.submenu {
        bail!(
            "{path}:{}: the default entry {value:?} is the submenu '{}'; --trial copies a top-level menuentry: {fix}",
            item.line,
            item.title
        );
    }
    Ok(item)
}

/// A word GRUB reads as itself, unquoted.
fn plain(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._,:=/+@%-".contains(&b))
}

/// GRUB's single quotes for a title (`'` as `'\''`, as grub-mkconfig_lib's grub_quote).
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The trial's `menuentry`: the default entry's body with the trial options on its `linux`
/// line (an option of the same name replaced where it stands, as on a loader entry).
pub fn menuentry(default: &Item, cfg_path: &str, opts: &[Opt]) -> Result<String> {
    for o in opts {
        if !plain(&o.text()) {
            bail!(
                "the option {:?} has characters GRUB's script would read specially (quotes, $, ;, spaces); --trial writes options into a grub.cfg menuentry as plain words: take it out of the profile or quote-free it, then run `vfio-gen apply --trial` again",
                o.text()
            );
        }
    }
    let mut body = String::new();
    let mut edited = false;
    for line in default.body.split_inclusive('\n') {
        let w = words(line);
        if !edited && matches!(w.first().map(String::as_str), Some("linux" | "linuxefi")) {
            // The command and the kernel stay as they are; the rest is the command line.
            // The bytes up to the command line stay as they are (indent, command, kernel).
            let text = line.trim_end_matches('\n');
            let mut at = text.len() - text.trim_start().len();
            for _ in 0..2 {
                at += text[at..].find([' ', '\t']).unwrap_or(text.len() - at);
                at += text[at..].len() - text[at..].trim_start().len();
            }
            let (head, args) = text.split_at(at);
            let sep = if head.ends_with([' ', '\t']) { "" } else { " " };
            let args = cmdline::edit_plain(args, opts, false).map_err(|e| {
                anyhow::anyhow!(
                    "{cfg_path}:{}: the default entry's linux line cannot take the trial options ({e:?}); run update-grub, then `vfio-gen apply --trial` again",
                    default.line
                )
            })?;
            body.push_str(&format!("{head}{sep}{}\n", args.trim_start()));
            edited = true;
        } else {
            body.push_str(line);
        }
    }
    if !edited {
        bail!(
            "{cfg_path}:{}: the default entry '{}' has no `linux` line to carry the trial options; --trial tries a Linux entry: set GRUB_DEFAULT to one in /etc/default/grub and run update-grub",
            default.line,
            default.title
        );
    }
    if body.lines().any(|l| l == EOF) {
        bail!(
            "{cfg_path}:{}: the default entry holds the line {EOF}, which ends vfio-gen's here-document; remove it from the entry",
            default.line
        );
    }
    Ok(format!(
        "menuentry {} --id {ENTRY_ID} {{\n{body}}}\n",
        quote(&format!("{} (vfio-gen trial)", default.title))
    ))
}

/// The digest of the default entry a trial was copied from, kept in the script: when the
/// default entry changes (a kernel update and update-grub), the trial is stale.
pub fn body_digest(default: &Item) -> String {
    crate::digest::sha256(default.body.as_bytes())
}

const DIGEST_MARK: &str = "# vfio-gen trial: copied from the default entry with sha256 ";

/// The /etc/grub.d script that prints the trial's menu entry.
pub fn script(default: &Item, cfg_path: &str, opts: &[Opt]) -> Result<Vec<u8>> {
    let entry = menuentry(default, cfg_path, opts)?;
    Ok(format!(
        "#!/bin/sh\n{} from {cfg_path}'s default entry '{}'; do not edit.\n# A trial boot, used once (next_entry={ENTRY_ID} in grubenv): `vfio-gen trial commit` makes it permanent, `vfio-gen trial abort` removes it.\n{DIGEST_MARK}{}\nexec cat <<'{EOF}'\n{entry}{EOF}\n",
        crate::targets::HEADER_MARK,
        default.title.replace('\n', " "),
        body_digest(default)
    )
    .into_bytes())
}

/// The default entry's digest a script was made from.
pub fn script_digest(script: &[u8]) -> Option<String> {
    String::from_utf8_lossy(script)
        .lines()
        .find_map(|l| l.strip_prefix(DIGEST_MARK).map(str::to_string))
}

/// Whether the script was made from a default entry other than grub.cfg's now.
pub fn stale(script: &[u8], cfg: &str, cfg_path: &str, env: Option<&[u8]>) -> Option<String> {
    let now = default_entry(cfg, cfg_path, env).ok()?;
    let then = script_digest(script)?;
    (then != body_digest(&now)).then(|| {
        format!(
            "stale: {cfg_path}'s default entry '{}' changed since the trial was installed (a kernel update?); the trial entry still boots the old kernel: `sudo vfio-gen trial abort`, then `sudo vfio-gen apply --trial` again",
            now.title
        )
    })
}

// ---------------------------------------------------------------- the environment block

/// The block's `name=value` lines after the signature, as GRUB reads them
/// (`grub_envblk_iterate`): lines starting with `#` are skipped; `\` escapes the next byte.
fn env_vars(block: &[u8]) -> Vec<(usize, usize, String, String)> {
    let mut out = Vec::new();
    let mut p = ENV_SIGNATURE.len().min(block.len());
    while p < block.len() {
        let start = p;
        let mut end = p;
        while end < block.len() && block[end] != b'\n' {
            end += if block[end] == b'\\' { 2 } else { 1 };
        }
        let end = end.min(block.len());
        if block[start] != b'#' {
            let line = &block[start..end];
            if let Some(eq) = line.iter().position(|b| *b == b'=') {
                let name = String::from_utf8_lossy(&line[..eq]).into_owned();
                let mut value = Vec::new();
                let mut i = eq + 1;
                while i < line.len() {
                    if line[i] == b'\\' && i + 1 < line.len() {
                        i += 1;
                    }
                    value.push(line[i]);
                    i += 1;
                }
                out.push((
                    start,
                    (end + 1).min(block.len()),
                    name,
                    String::from_utf8_lossy(&value).into_owned(),
                ));
            }
        }
        p = end + 1;
    }
    out
}

/// Whether the bytes are an environment block (the signature first, as `grub_envblk_open`).
pub fn env_valid(block: &[u8]) -> bool {
    block.starts_with(ENV_SIGNATURE.as_bytes())
}

pub fn env_get(block: &[u8], name: &str) -> Option<String> {
    if !env_valid(block) {
        return None;
    }
    env_vars(block)
        .into_iter()
        .find(|(_, _, n, _)| n == name)
        .map(|(_, _, _, v)| v)
}

/// A new block: the signature and `#` up to 1024 bytes (what `grub-editenv create` writes,
/// less its warning comment).
pub fn env_new() -> Vec<u8> {
    let mut b = ENV_SIGNATURE.as_bytes().to_vec();
    b.resize(ENV_SIZE, b'#');
    b
}

/// The block without the variable: its line taken out, `#` added at the end so the size
/// stays (`grub_envblk_delete`).
pub fn env_unset(block: &[u8], name: &str) -> Vec<u8> {
    let mut out = block.to_vec();
    if let Some((start, end, _, _)) = env_vars(block).into_iter().find(|(_, _, n, _)| n == name) {
        out.drain(start..end);
        out.resize(block.len(), b'#');
    }
    out
}

/// The block with `name=value`: an existing line replaced where it stands, else a new line
/// after the last variable, in the `#` padding; the size stays (`grub_envblk_set`).
pub fn env_set(block: &[u8], name: &str, value: &str, path: &str) -> Result<Vec<u8>> {
    if !env_valid(block) {
        bail!(
            "{path}: not a GRUB environment block (it does not start with {:?}); `grub-editenv {path} create` makes a new one",
            ENV_SIGNATURE.trim_end()
        );
    }
    let size = block.len();
    let mut escaped = String::new();
    for c in value.chars() {
        if c == '\\' || c == '\n' {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    let line = format!("{name}={escaped}\n");
    let mut out = env_unset(block, name);
    // The free space: the `#` run at the end, after the last newline.
    let free_from = out
        .iter()
        .rposition(|b| *b != b'#')
        .map(|i| i + 1)
        .unwrap_or(0);
    if free_from == 0 || out[free_from - 1] != b'\n' {
        bail!(
            "{path}: the environment block is damaged (no newline before its padding); `grub-editenv {path} list` says what GRUB reads"
        );
    }
    if size - free_from < line.len() {
        bail!(
            "{path}: no room for {name}= in the {size}-byte environment block; `grub-editenv {path} list` shows what fills it"
        );
    }
    // Where the variable was, if it was: put it back there, else at the start of the padding.
    let at = env_vars(block)
        .into_iter()
        .find(|(_, _, n, _)| n == name)
        .map(|(s, _, _, _)| s)
        .unwrap_or(free_from);
    out.splice(at..at, line.bytes());
    out.truncate(size);
    Ok(out)
}

// ---------------------------------------------------------------- where the block lives

/// The abstractions and file systems on which GRUB cannot rewrite the block at boot
/// (docs/trial.md): then `next_entry` would never be cleared.
fn refuse_abstraction(abstraction: &str) -> Option<&'static str> {
    let a = abstraction.trim();
    if a.is_empty() {
        return None;
    }
    Some(
        "GRUB reaches it through its disk filter (LVM, RAID, encryption), whose writes are not implemented",
    )
}

fn refuse_fs(fs: &str) -> Option<&'static str> {
    match fs.trim() {
        "btrfs" => Some(
            "on btrfs GRUB does not write the file's blocks (a copy-on-write, checksummed file system)",
        ),
        "zfs" => Some("on ZFS (a checksumming file system) GRUB does not write the block"),
        _ => None,
    }
}

/// What grub-probe says of the block's directory, and the refusal it implies.
pub fn probe_refusal(dir: &str, abstraction: &str, fs: &str) -> Option<String> {
    let why = refuse_abstraction(abstraction)
        .map(|w| {
            format!(
                "`grub-probe --target=abstraction {dir}` says {:?}: {w}",
                abstraction.trim()
            )
        })
        .or_else(|| {
            refuse_fs(fs)
                .map(|w| format!("`grub-probe --target=fs {dir}` says {:?}: {w}", fs.trim()))
        })?;
    Some(refusal_text(dir, &why))
}

fn refusal_text(dir: &str, why: &str) -> String {
    format!(
        "--trial with GRUB needs an environment block GRUB can rewrite at boot, and {dir}'s cannot: {why} (GRUB manual, \"Environment block\"; docs/trial.md); next_entry would never be cleared and every boot, a panic's reboot included, would try the trial again: run `vfio-gen apply` without --trial, or move /boot to a plain partition"
    )
}

/// The fstab entry for /boot (else /) and what it says of the block's storage: a refusal, or
/// a note saying what could not be checked.
pub fn fstab_refusal(fstab: &str, dir: &str) -> (Option<String>, Option<String>) {
    let mut boot = None;
    let mut slash = None;
    for (n, line) in fstab.lines().enumerate() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.first().is_none_or(|f| f.starts_with('#')) || w.len() < 3 {
            continue;
        }
        match w[1] {
            "/boot" => boot = Some((n + 1, w[0].to_string(), w[2].to_string())),
            "/" => slash = Some((n + 1, w[0].to_string(), w[2].to_string())),
            _ => {}
        }
    }
    let Some((line, dev, fs)) = boot.or(slash) else {
        return (
            None,
            Some(format!(
                "/etc/fstab has no entry for /boot or /: whether GRUB can rewrite {dir}/grubenv at boot (not on LVM, RAID, btrfs, ZFS) was not checked"
            )),
        );
    };
    let at = format!("/etc/fstab:{line}");
    let why = if dev.starts_with("/dev/mapper/") {
        Some(format!(
            "{at} mounts it from {dev}, a device-mapper device (LVM or encryption): GRUB reaches it through its disk filter, whose writes are not implemented"
        ))
    } else if dev.starts_with("/dev/md") {
        Some(format!(
            "{at} mounts it from {dev}, a software RAID: GRUB reaches it through its disk filter, whose writes are not implemented"
        ))
    } else {
        refuse_fs(&fs).map(|w| format!("{at} mounts it as {fs}: {w}"))
    };
    match why {
        Some(w) => (Some(refusal_text(dir, &w)), None),
        None => (
            None,
            Some(format!(
                "{at}: {dev} ({fs}); whether that device is a plain partition (not LVM or RAID behind a UUID or label) was not checked: with --root, grub-probe cannot look at it"
            )),
        ),
    }
}

/// Whether GRUB can rewrite the block at boot: grub-probe on this machine, else the root's
/// fstab. `Err`: the refusal; `Ok(note)`: what could not be checked.
pub fn storage(root: &Root, cfg: &str) -> Result<Option<String>> {
    let dir = cfg.rsplit_once('/').map(|(d, _)| d).unwrap_or("/boot/grub");
    if root.is_host()
        && let Some(probe) = super::on_path("grub-probe")
    {
        let run = |target: &str| -> Result<String> {
            super::run_tool(
                &probe,
                &[&format!("--target={target}"), dir],
                "--trial with GRUB needs to know where the environment block lives: fix the cause, or run `vfio-gen apply` without --trial; nothing was written",
            )
        };
        let abstraction = run("abstraction")?;
        let fs = run("fs")?;
        if let Some(why) = probe_refusal(dir, &abstraction, &fs) {
            bail!("{why}; nothing was written");
        }
        return Ok(None);
    }
    let fstab = root.read("/etc/fstab")?;
    let (refusal, note) = fstab_refusal(
        &String::from_utf8_lossy(fstab.as_deref().unwrap_or_default()),
        dir,
    );
    if let Some(why) = refusal {
        bail!("{why}; nothing was written");
    }
    Ok(note.map(|n| {
        if root.is_host() {
            format!("{n} (grub-probe is not on PATH)")
        } else {
            n
        }
    }))
}

// ---------------------------------------------------------------- arming

/// Sets `next_entry`: `grub-reboot` on this machine, else the block written directly
/// (created when there is none). Returns how.
pub fn arm(root: &Root, cfg: &str) -> Result<String> {
    if root.is_host()
        && let Some(reboot) = super::on_path("grub-reboot")
    {
        super::run_tool(
            &reboot,
            &[ENTRY_ID],
            "the trial is installed but not armed: fix the cause, then run `sudo vfio-gen trial arm`",
        )?;
        return Ok("grub-reboot".into());
    }
    let path = env_path(cfg);
    let old = root.read(&path)?.unwrap_or_else(env_new);
    let new = env_set(&old, "next_entry", ENTRY_ID, &path)?;
    write_env(root, &path, &new)?;
    Ok(format!("grubenv {path}"))
}

fn write_env(root: &Root, path: &str, bytes: &[u8]) -> Result<()> {
    let target = root.join(path)?;
    let meta = std::fs::metadata(&target)
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.mode() & 0o7777, m.uid(), m.gid())
        })
        .unwrap_or((0o644, 0, 0));
    crate::install::write_atomic(&target, bytes, meta)
}

/// Whether grub.cfg holds the trial's menu entry (the GRUB hook ran after the script was
/// installed): only then can `next_entry` name it.
pub fn has_entry(files: &dyn Files, cfg: &str) -> Result<bool> {
    let text = files.read(cfg)?.unwrap_or_default();
    Ok(menu(&String::from_utf8_lossy(&text), cfg)?
        .iter()
        .any(|i| !i.submenu && i.id.as_deref() == Some(ENTRY_ID)))
}

/// Whether `next_entry` still names the trial (the boot that arms it has not come yet).
pub fn armed(files: &dyn Files, cfg: &str) -> Result<bool> {
    Ok(files
        .read(&env_path(cfg))?
        .as_deref()
        .and_then(|b| env_get(b, "next_entry"))
        .is_some_and(|v| v == ENTRY_ID))
}

/// Takes `next_entry` out of the block when it still names the trial.
pub fn disarm(root: &Root, cfg: &str) -> Result<()> {
    if !armed(root, cfg)? {
        return Ok(());
    }
    let path = env_path(cfg);
    if let Some(old) = root.read(&path)? {
        write_env(root, &path, &env_unset(&old, "next_entry"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "### BEGIN /etc/grub.d/00_header ###
if [ -s $prefix/grubenv ]; then
  load_env
fi
if [ \"${next_entry}\" ] ; then
   set default=\"${next_entry}\"
   set next_entry=
   save_env next_entry
   set boot_once=true
else
   set default=\"0\"
fi
function load_video {
  insmod all_video
}
### BEGIN /etc/grub.d/10_linux ###
menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class os $menuentry_id_option 'gnulinux-simple-0f6d' {
\tload_video
\tinsmod ext2
\tsearch --no-floppy --fs-uuid --set=root 0f6d
\techo\t'Loading Linux 6.1.0-27-amd64 ...'
\tlinux\t/boot/vmlinuz-6.1.0-27-amd64 root=UUID=0f6d ro  quiet
\tinitrd\t/boot/initrd.img-6.1.0-27-amd64
}
submenu 'Advanced options for Debian GNU/Linux' $menuentry_id_option 'gnulinux-advanced-0f6d' {
\tmenuentry 'Debian GNU/Linux, with Linux 6.1.0-27-amd64' --class debian $menuentry_id_option 'gnulinux-6.1.0-27-amd64-advanced-0f6d' {
\t\tlinux\t/boot/vmlinuz-6.1.0-27-amd64 root=UUID=0f6d ro single
\t}
}
### END /etc/grub.d/10_linux ###
";

    #[test]
    fn the_menu_is_the_top_level_entries_and_submenus() {
        let m = menu(CFG, "/boot/grub/grub.cfg").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].title, "Debian GNU/Linux");
        assert_eq!(m[0].id.as_deref(), Some("gnulinux-simple-0f6d"));
        assert!(m[1].submenu);
        assert!(m[0].body.contains("\tlinux\t/boot/vmlinuz-6.1.0-27-amd64"));
        assert_eq!(default_setting(CFG), "0");
    }

    #[test]
    fn the_default_is_resolved_by_number_id_title_or_saved_entry() {
        let p = "/boot/grub/grub.cfg";
        assert_eq!(
            default_entry(CFG, p, None).unwrap().title,
            "Debian GNU/Linux"
        );
        let by_id = CFG.replace("set default=\"0\"", "set default=\"gnulinux-simple-0f6d\"");
        assert_eq!(default_entry(&by_id, p, None).unwrap().line, 17);
        let saved = CFG.replace("set default=\"0\"", "set default=\"${saved_entry}\"");
        assert_eq!(
            default_entry(&saved, p, None).unwrap().title,
            "Debian GNU/Linux"
        );
        let env = env_set(&env_new(), "saved_entry", "1", "e").unwrap();
        let err = default_entry(&saved, p, Some(&env))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is the submenu"), "{err}");
        let path = CFG.replace("set default=\"0\"", "set default=\"1>0\"");
        let err = default_entry(&path, p, None).unwrap_err().to_string();
        assert!(err.contains("inside a submenu"), "{err}");
    }

    #[test]
    fn the_trial_entry_carries_the_options_on_the_linux_line() {
        let d = default_entry(CFG, "/boot/grub/grub.cfg", None).unwrap();
        let opts: Vec<Opt> = [
            "amd_iommu=on",
            "root=LABEL=x",
            "panic=10",
            "vfio_gen.trial=1",
        ]
        .iter()
        .map(|o| Opt::parse(o))
        .collect();
        let e = menuentry(&d, "/boot/grub/grub.cfg", &opts).unwrap();
        assert!(
            e.starts_with("menuentry 'Debian GNU/Linux (vfio-gen trial)' --id vfio-gen-trial {\n"),
            "{e}"
        );
        assert!(
            e.contains("\tlinux\t/boot/vmlinuz-6.1.0-27-amd64 root=LABEL=x ro  quiet amd_iommu=on panic=10 vfio_gen.trial=1\n"),
            "{e}"
        );
        let bad = [Opt::parse("x=$(reboot)")];
        assert!(menuentry(&d, "c", &bad).is_err());
    }

    #[test]
    fn the_block_keeps_its_size_and_other_variables() {
        let b = env_set(&env_new(), "saved_entry", "gnulinux-simple-0f6d", "e").unwrap();
        let armed = env_set(&b, "next_entry", ENTRY_ID, "e").unwrap();
        assert_eq!(armed.len(), ENV_SIZE);
        assert_eq!(
            env_get(&armed, "saved_entry").as_deref(),
            Some("gnulinux-simple-0f6d")
        );
        assert_eq!(env_get(&armed, "next_entry").as_deref(), Some(ENTRY_ID));
        assert_eq!(
            env_unset(&armed, "next_entry"),
            b,
            "unset restores the bytes"
        );
        let again = env_set(&armed, "next_entry", "x", "e").unwrap();
        assert_eq!(env_get(&again, "next_entry").as_deref(), Some("x"));
        assert_eq!(again.len(), ENV_SIZE);
        assert!(env_set(b"nonsense", "a", "b", "e").is_err());
    }

    #[test]
    fn storage_refusals_name_the_reason() {
        assert!(
            probe_refusal("/boot/grub", "lvm\n", "ext2")
                .unwrap()
                .contains("\"lvm\"")
        );
        assert!(
            probe_refusal("/boot/grub", "", "btrfs\n")
                .unwrap()
                .contains("btrfs")
        );
        assert!(probe_refusal("/boot/grub", "", "ext2\n").is_none());
        let (r, _) = fstab_refusal("/dev/mapper/vg-root / ext4 defaults 0 1\n", "/boot/grub");
        assert!(r.unwrap().contains("/etc/fstab:1"));
        let (r, _) = fstab_refusal(
            "UUID=1 / ext4 defaults 0 1\n/dev/md0 /boot ext4 defaults 0 2\n",
            "/boot/grub",
        );
        assert!(r.unwrap().contains("software RAID"));
        let (r, n) = fstab_refusal("LABEL=r / ext4 defaults 0 1\n", "/boot/grub");
        assert!(r.is_none());
        assert!(n.unwrap().contains("was not checked"));
    }
}
