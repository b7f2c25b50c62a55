//! Unified kernel images (docs/uki.md): a UKI carries its kernel command line in its
//! `.cmdline` section, written when the image is built, so vfio-gen edits what the builder
//! reads and the hook rebuilds the images. Three builders:
//!
//! - mkinitcpio presets with `<preset>_uki=`: the line comes from the file a preset passes with
//!   `--cmdline`, else `/etc/cmdline.d/*.conf` (vfio-gen's part in `/etc/cmdline.d/vfio-gen.conf`),
//!   else `/etc/kernel/cmdline` (edited); hook `mkinitcpio -P`.
//! - dracut with `uefi="yes"`: `kernel_cmdline+=` in an owned drop-in read after the user's;
//!   hook `dracut -f --regenerate-all`.
//! - kernel-install with `layout=uki` (ukify): `/etc/kernel/cmdline`; hook `kernel-install add`
//!   for each installed kernel.
//!
//! Each option appears once across the files that build the line; one the user already has is
//! kept where it is, a conflicting one is refused with its file and line. `check` reads the
//! `.cmdline` of every UKI under the ESPs ([`pe`]).

pub mod conf;
pub mod pe;

use super::{Out, render};
use crate::check::{Item, Status};
use crate::cmdline::{self, Opt};
use crate::profile::{Profile, UkiBuilder};
use crate::root::Files;
use crate::targets::lines::{self, Shape};
use anyhow::{Result, bail};
use conf::Value;
use minijinja::context;

/// vfio-gen's part of the command line mkinitcpio reads from `/etc/cmdline.d`.
pub const CMDLINE_D_OWN: &str = "/etc/cmdline.d/vfio-gen.conf";
pub const CMDLINE_D: &str = "/etc/cmdline.d";
/// vfio-gen's dracut drop-in for `kernel_cmdline`, named to sort after the user's drop-ins
/// (dracut sources them in name order, and a plain `kernel_cmdline=` drops what came before).
pub const DRACUT_CMDLINE: &str = "/etc/dracut.conf.d/zz-vfio-gen-cmdline.conf";
pub const KERNEL_CMDLINE: &str = "/etc/kernel/cmdline";
const INSTALL_CONF: [&str; 2] = ["/etc/kernel/install.conf", "/usr/lib/kernel/install.conf"];
const UKI_CONF: [&str; 2] = ["/etc/kernel/uki.conf", "/usr/lib/kernel/uki.conf"];
const PRESETS: &str = "/etc/mkinitcpio.d";
/// Where UKIs are looked for: `EFI/Linux` of each ESP mount point (the Boot Loader
/// Specification's type #2 entries), and what presets name.
const ESPS: [&str; 3] = ["/efi", "/boot", "/boot/efi"];
/// The largest UKI `check` reads.
const MAX_UKI: u64 = 512 << 20;

/// The profile value of a builder.
pub fn name(b: UkiBuilder) -> &'static str {
    match b {
        UkiBuilder::Mkinitcpio => "mkinitcpio",
        UkiBuilder::Dracut => "dracut",
        UkiBuilder::KernelInstall => "kernel-install",
    }
}

/// Every builder the root shows is set up to make UKIs, with the evidence, in the order
/// `detect` prefers them (presets name their images; kernel-install's layout decides for
/// every generator it runs).
pub fn detect(files: &dyn Files) -> Vec<(UkiBuilder, String)> {
    let mut out = Vec::new();
    if let Ok(images) = preset_images(files)
        && let Some(i) = images.first()
    {
        out.push((
            UkiBuilder::Mkinitcpio,
            format!("{}:{}: {}_uki=", i.file, i.line, i.preset),
        ));
    }
    if let Some(place) = install_layout_uki(files) {
        out.push((UkiBuilder::KernelInstall, format!("{place}: layout=uki")));
    }
    if let Ok(d) = dracut_conf(files)
        && let Some(place) = d.uefi_yes
    {
        out.push((UkiBuilder::Dracut, format!("{place}: uefi=\"yes\"")));
    }
    out
}

/// The builder the plan uses: the profile's `[uki] builder`, else the one detected; refused
/// when the root plainly does not build UKIs that way.
pub fn builder(profile: &Profile, files: &dyn Files) -> Result<UkiBuilder> {
    let found = detect(files);
    let hint = match found.first() {
        Some((b, why)) => format!(
            "this root builds them with {} ({why}): set [uki] builder = \"{}\"",
            name(*b),
            name(*b)
        ),
        None => "nothing under the root builds unified kernel images (no mkinitcpio preset with <preset>_uki=, no dracut uefi=\"yes\", no kernel-install layout=uki): set host.bootloader to what boots this machine (`vfio-gen detect` says)".to_string(),
    };
    match profile.uki_builder {
        Some(b) if found.iter().any(|(f, _)| *f == b) => Ok(b),
        Some(b) => bail!(
            "the profile's [uki] builder = \"{}\", but {} is not set up to build unified kernel images here; {hint}",
            name(b),
            name(b)
        ),
        None => match found.first() {
            Some((b, _)) => Ok(*b),
            None => bail!("host.bootloader = \"uki\": {hint}"),
        },
    }
}

/// Plans the files of the profile's UKI builder.
pub fn plan(out: &mut dyn Out, profile: &Profile, wanted: &[Opt]) -> Result<()> {
    let b = builder(profile, out.files())?;
    out.note(format!(
        "the unified kernel images carry their command line inside (.cmdline): {} writes it when it builds them, so the options reach the boot only after the hook rebuilds them. Under Secure Boot systemd-stub ignores a command line passed by the boot loader (systemd-boot's editor, an entry's options) when the UKI has a .cmdline (docs/uki.md)",
        name(b)
    ));
    match b {
        UkiBuilder::Mkinitcpio => plan_mkinitcpio(out, wanted),
        UkiBuilder::Dracut => plan_dracut(out, wanted),
        UkiBuilder::KernelInstall => plan_kernel_install(out, wanted),
    }
}

// ---------------------------------------------------------------- mkinitcpio

/// Where a preset's UKI takes its command line from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// No `--cmdline`: `/etc/cmdline.d/*.conf`, else `/etc/kernel/cmdline`.
    Default,
    File(String),
    /// `--no-cmdline`: the UKI has no `.cmdline`.
    None,
}

/// One image a preset builds as a UKI.
#[derive(Debug, Clone)]
struct PresetImage {
    file: String,
    line: usize,
    preset: String,
    /// The UKI's path, when the preset writes it literally.
    uki: Option<String>,
    source: Source,
    /// The options could not be read (computed in the preset).
    options_unknown: bool,
}

fn preset_images(files: &dyn Files) -> Result<Vec<PresetImage>> {
    let mut out = Vec::new();
    let mut names = files.list(PRESETS)?;
    names.sort();
    for n in names.iter().filter(|n| n.ends_with(".preset")) {
        let path = format!("{PRESETS}/{n}");
        let Some(bytes) = files.read(&path)? else {
            continue;
        };
        let assigns = vec![(
            path.clone(),
            conf::assignments(&String::from_utf8_lossy(&bytes)),
        )];
        let presets = conf::last_value(&assigns, "PRESETS")
            .and_then(|(v, _)| v.words())
            .unwrap_or_default();
        for p in presets {
            let Some((uki, place)) = conf::last_value(&assigns, &format!("{p}_uki")) else {
                continue;
            };
            let uki = match uki {
                Value::Text(t) if t.is_empty() => continue,
                Value::Text(t) => Some(t),
                _ => None,
            };
            let line = place
                .rsplit(':')
                .next()
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            let options = conf::last_value(&assigns, &format!("{p}_options")).map(|(v, _)| v);
            let (source, options_unknown) = match options.as_ref().map(|v| v.words()) {
                None => (Source::Default, false),
                Some(None) => (Source::Default, true),
                Some(Some(words)) => (cmdline_source(&words), false),
            };
            out.push(PresetImage {
                file: path.clone(),
                line,
                preset: p,
                uki,
                source,
                options_unknown,
            });
        }
    }
    Ok(out)
}

/// What mkinitcpio's `--cmdline FILE` / `--no-cmdline` among a preset's options say (the last
/// one wins, as for any option parsed twice; `--no-cmdline` overrides `--cmdline`).
fn cmdline_source(words: &[String]) -> Source {
    let mut src = Source::Default;
    let mut none = false;
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        if w == "--no-cmdline" {
            none = true;
        } else if w == "--cmdline" {
            if let Some(f) = words.get(i + 1) {
                src = Source::File(f.clone());
                i += 1;
            }
        } else if let Some(f) = w.strip_prefix("--cmdline=") {
            src = Source::File(f.to_string());
        }
        i += 1;
    }
    if none { Source::None } else { src }
}

fn plan_mkinitcpio(out: &mut dyn Out, wanted: &[Opt]) -> Result<()> {
    let images = preset_images(out.files())?;
    let mut sources: Vec<String> = Vec::new();
    let mut default_used = false;
    for i in &images {
        if i.options_unknown {
            out.warn(format!(
                "{}: {}_options is computed when the preset runs, so vfio-gen cannot tell whether it passes --cmdline; it assumes it does not",
                i.file, i.preset
            ));
        }
        match &i.source {
            Source::Default => default_used = true,
            Source::File(f) => {
                if !sources.contains(f) {
                    sources.push(f.clone());
                }
            }
            Source::None => out.warn(format!(
                "{}: {}_options passes --no-cmdline: that UKI has no .cmdline and boots with what the boot loader passes; vfio-gen cannot put the options into it, give them to the boot loader (or drop --no-cmdline)",
                i.file, i.preset
            )),
        }
    }
    for f in &sources {
        crate::root::check_system_path(f)
            .map_err(|e| anyhow::anyhow!("a preset's --cmdline {f}: {e}"))?;
        edit_line_file(
            out,
            f,
            wanted,
            "a mkinitcpio preset passes it with --cmdline",
        )?;
    }
    if default_used {
        if out.files().exists(CMDLINE_D) {
            if out.files().exists(KERNEL_CMDLINE) {
                out.note(format!(
                    "{CMDLINE_D} exists, so mkinitcpio builds the UKIs' command line from {CMDLINE_D}/*.conf and not from {KERNEL_CMDLINE}; vfio-gen leaves {KERNEL_CMDLINE} alone"
                ));
            }
            plan_cmdline_d(out, wanted)?;
        } else {
            edit_line_file(
                out,
                KERNEL_CMDLINE,
                wanted,
                "mkinitcpio reads it for the UKIs' command line (there is no /etc/cmdline.d)",
            )?;
        }
    }
    Ok(())
}

/// One option found in a user's file: the option and `file:line`.
type Found = (Opt, String);

fn options_of(path: &str, text: &[u8]) -> Vec<Found> {
    let mut out = Vec::new();
    for (n, l) in String::from_utf8_lossy(text).lines().enumerate() {
        if l.trim_start().starts_with('#') {
            continue;
        }
        let (tokens, _) = cmdline::tokenize(&cmdline::bytes(l.as_bytes()));
        for t in tokens {
            if let Some(o) = t.opt {
                out.push((o, format!("{path}:{}", n + 1)));
            }
        }
    }
    out
}

/// Splits the wanted options into those the user's files already hold (kept there) and the
/// ones vfio-gen must write; refuses a conflicting value in a file vfio-gen does not own.
fn split_held(
    wanted: &[Opt],
    theirs: &[Found],
    revert: bool,
    how: &str,
) -> Result<(Vec<Opt>, Vec<Opt>, Vec<String>)> {
    let (mut held, mut mine, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    let mut conflicts = Vec::new();
    for w in wanted {
        // Any other value of the setting is a conflict, wherever it is: which occurrence the
        // kernel takes depends on the order of files vfio-gen does not own.
        let clash: Vec<&Found> = theirs
            .iter()
            .filter(|(o, _)| cmdline::same_setting(o, w) && !cmdline::holds(o, w))
            .collect();
        for (o, place) in &clash {
            conflicts.push(format!("{place}: {o} conflicts with the profile's {w}"));
        }
        match theirs.iter().find(|(o, _)| cmdline::holds(o, w)) {
            Some((_, place)) if clash.is_empty() => {
                notes.push(format!(
                    "{place} already holds {w}: kept there, not repeated"
                ));
                held.push(w.clone());
            }
            _ => mine.push(w.clone()),
        }
    }
    if !conflicts.is_empty() && !revert {
        bail!(
            "{}; the command line is built from several files and the kernel takes the last occurrence: change it to the profile's value or remove it ({how}), then run vfio-gen again; nothing was written",
            conflicts.join("; ")
        );
    }
    Ok((held, mine, notes))
}

fn plan_cmdline_d(out: &mut dyn Out, wanted: &[Opt]) -> Result<()> {
    let mut names = out.files().list(CMDLINE_D)?;
    names.sort();
    let mut theirs = Vec::new();
    for n in names.iter().filter(|n| n.ends_with(".conf")) {
        let path = format!("{CMDLINE_D}/{n}");
        if path == CMDLINE_D_OWN {
            continue;
        }
        if let Some(b) = out.files().read(&path)? {
            theirs.extend(options_of(&path, &b));
        }
    }
    let (held, mine, notes) = split_held(
        wanted,
        &theirs,
        out.revert(),
        "vfio-gen keeps its options in /etc/cmdline.d/vfio-gen.conf",
    )?;
    for n in notes {
        out.note(n);
    }
    let old = out.files().read(CMDLINE_D_OWN)?;
    let start = old.clone().unwrap_or_default();
    let text = if out.revert() {
        lines::edit(&start, Shape::KernelCmdline, wanted, true, CMDLINE_D_OWN)?.0
    } else {
        let (t, _) = lines::edit(&start, Shape::KernelCmdline, &mine, false, CMDLINE_D_OWN)?;
        lines::edit(&t, Shape::KernelCmdline, &held, true, CMDLINE_D_OWN)?.0
    };
    let new = if lines::line(&text, Shape::KernelCmdline).trim().is_empty() {
        None
    } else {
        Some(text)
    };
    if !out.revert() {
        let mut all: Vec<String> = theirs.iter().map(|(o, _)| o.text()).collect();
        if let Some(n) = &new {
            all.push(lines::line(n, Shape::KernelCmdline));
        }
        if let Some(w) =
            cmdline::length_check(CMDLINE_D, &all.join(" ")).map_err(anyhow::Error::msg)?
        {
            out.warn(w);
        }
    }
    out.edited(CMDLINE_D_OWN, old, new)
}

/// Edits a plain command-line file (`/etc/kernel/cmdline`, a preset's `--cmdline` file).
fn edit_line_file(out: &mut dyn Out, path: &str, wanted: &[Opt], why: &str) -> Result<()> {
    let Some(old) = out.files().read(path)? else {
        if out.revert() {
            return Ok(());
        }
        bail!(
            "{path} does not exist under the root ({why}); create it with the options the system boots with now (see /proc/cmdline, without BOOT_IMAGE= and initrd=), then run vfio-gen again"
        );
    };
    let (new, notes) = lines::edit(&old, Shape::KernelCmdline, wanted, out.revert(), path)?;
    for n in notes {
        out.note(n);
    }
    if !out.revert()
        && let Some(w) = cmdline::length_check(path, &lines::line(&new, Shape::KernelCmdline))
            .map_err(anyhow::Error::msg)?
    {
        out.warn(w);
    }
    out.edited(path, Some(old), Some(new))
}

// ---------------------------------------------------------------- dracut

struct DracutConf {
    /// `file:line` of the assignment that makes `uefi` "yes", if it ends so.
    uefi_yes: Option<String>,
    /// The options of `kernel_cmdline` as the files other than vfio-gen's leave it.
    options: Vec<Found>,
    /// Plain `kernel_cmdline=` assignments in files read after vfio-gen's drop-in.
    later_resets: Vec<String>,
    /// `kernel_cmdline` assignments vfio-gen cannot read.
    computed: Vec<String>,
}

/// dracut.conf, then the drop-ins of `/usr/lib/dracut/dracut.conf.d` and `/etc/dracut.conf.d`
/// by name (a name in /etc hides the same name in /usr/lib), as dracut.sh sources them.
fn dracut_sources(files: &dyn Files) -> Result<Vec<String>> {
    let mut by_name: std::collections::BTreeMap<String, String> = Default::default();
    for dir in ["/usr/lib/dracut/dracut.conf.d", "/etc/dracut.conf.d"] {
        for n in files.list(dir)? {
            if n.ends_with(".conf") {
                by_name.insert(n.clone(), format!("{dir}/{n}"));
            }
        }
    }
    let mut out = vec!["/etc/dracut.conf".to_string()];
    out.extend(by_name.into_values());
    Ok(out)
}

fn dracut_conf(files: &dyn Files) -> Result<DracutConf> {
    let own_name = DRACUT_CMDLINE.rsplit('/').next().unwrap_or_default();
    let mut d = DracutConf {
        uefi_yes: None,
        options: Vec::new(),
        later_resets: Vec::new(),
        computed: Vec::new(),
    };
    let mut uefi: Option<(String, String)> = None;
    for path in dracut_sources(files)? {
        if path == DRACUT_CMDLINE {
            continue;
        }
        let Some(bytes) = files.read(&path)? else {
            continue;
        };
        let after_ours =
            path.rsplit('/').next().unwrap_or_default() > own_name && path != "/etc/dracut.conf";
        for a in conf::assignments(&String::from_utf8_lossy(&bytes)) {
            let place = format!("{path}:{}", a.line);
            match a.name.as_str() {
                "uefi" => {
                    uefi = Some((
                        match &a.value {
                            Value::Text(t) => t.clone(),
                            _ => String::new(),
                        },
                        place,
                    ))
                }
                "kernel_cmdline" => {
                    if !a.append {
                        d.options.clear();
                        if after_ours {
                            d.later_resets.push(place.clone());
                        }
                    }
                    match &a.value {
                        Value::Text(t) => {
                            let (tokens, _) = cmdline::tokenize(&cmdline::bytes(t.as_bytes()));
                            d.options.extend(
                                tokens
                                    .into_iter()
                                    .filter_map(|t| t.opt)
                                    .map(|o| (o, place.clone())),
                            );
                        }
                        _ => d.computed.push(place),
                    }
                }
                _ => {}
            }
        }
    }
    d.uefi_yes = uefi.filter(|(v, _)| v == "yes").map(|(_, p)| p);
    Ok(d)
}

fn plan_dracut(out: &mut dyn Out, wanted: &[Opt]) -> Result<()> {
    let d = dracut_conf(out.files())?;
    if !out.revert() {
        if let Some(place) = d.computed.first() {
            bail!(
                "{place}: kernel_cmdline is computed when dracut runs, so vfio-gen cannot tell which options it holds; write it as a plain string (kernel_cmdline=\"...\"), then run vfio-gen again; nothing was written"
            );
        }
        if let Some(place) = d.later_resets.first() {
            bail!(
                "{place}: kernel_cmdline= is set after vfio-gen's {DRACUT_CMDLINE} is read and would drop its options: append with kernel_cmdline+=\" ... \" there, then run vfio-gen again; nothing was written"
            );
        }
        if d.options.is_empty() {
            bail!(
                "dracut builds the UKIs' .cmdline from kernel_cmdline, which no dracut.conf file sets; without it dracut embeds the host-only command line it generates, and adding vfio-gen's options alone would replace that (root= included): put the full command line the system boots with into kernel_cmdline=\"...\" in a file of /etc/dracut.conf.d (see /proc/cmdline), then run vfio-gen again; nothing was written"
            );
        }
    }
    let (_, mine, notes) = split_held(
        wanted,
        &d.options,
        out.revert(),
        "vfio-gen appends its options in its own drop-in",
    )?;
    for n in notes {
        out.note(n);
    }
    let content = if mine.is_empty() {
        None
    } else {
        let options: Vec<String> = mine.iter().map(|o| o.text()).collect();
        if !out.revert() {
            let mut all: Vec<String> = d.options.iter().map(|(o, _)| o.text()).collect();
            all.extend(options.clone());
            if let Some(w) = cmdline::length_check("dracut's kernel_cmdline", &all.join(" "))
                .map_err(anyhow::Error::msg)?
            {
                out.warn(w);
            }
        }
        Some(
            render(
                "dracut-uki-cmdline.conf.j2",
                context! { options => options },
            )?
            .into_bytes(),
        )
    };
    out.owned(DRACUT_CMDLINE, content)
}

// ---------------------------------------------------------------- kernel-install

/// `file:line` of `layout=uki` in the install.conf kernel-install reads (/etc before /usr/lib).
fn install_layout_uki(files: &dyn Files) -> Option<String> {
    let (path, bytes) = INSTALL_CONF
        .iter()
        .find_map(|p| files.read(p).ok().flatten().map(|b| (*p, b)))?;
    let a = vec![(
        path.to_string(),
        conf::assignments(&String::from_utf8_lossy(&bytes)),
    )];
    match conf::last_value(&a, "layout") {
        Some((Value::Text(v), place)) if v == "uki" => Some(place),
        _ => None,
    }
}

fn plan_kernel_install(out: &mut dyn Out, wanted: &[Opt]) -> Result<()> {
    for p in INSTALL_CONF {
        if let Some(bytes) = out.files().read(p)? {
            let a = vec![(
                p.to_string(),
                conf::assignments(&String::from_utf8_lossy(&bytes)),
            )];
            if let Some((Value::Text(g), place)) = conf::last_value(&a, "uki_generator")
                && g != "ukify"
            {
                out.note(format!("{place}: uki_generator={g}: {g}, not ukify, builds the UKIs; vfio-gen edits {KERNEL_CMDLINE}, which kernel-install passes on"));
            }
            break;
        }
    }
    for p in UKI_CONF {
        if let Some(bytes) = out.files().read(p)? {
            if let Some((line, v)) = uki_conf_cmdline(&String::from_utf8_lossy(&bytes))
                && v.trim() != format!("@{KERNEL_CMDLINE}")
            {
                out.warn(format!(
                    "{p}:{line}: [UKI] Cmdline= is not @{KERNEL_CMDLINE}: kernel-install's 60-ukify.install passes {KERNEL_CMDLINE} and ignores it, but `ukify build` run by hand would use it without vfio-gen's options (docs/uki.md)"
                ));
            }
            break;
        }
    }
    edit_line_file(
        out,
        KERNEL_CMDLINE,
        wanted,
        "kernel-install passes it to ukify for the UKIs' .cmdline",
    )
}

/// The `Cmdline=` of the `[UKI]` section of ukify's configuration: (line, value).
fn uki_conf_cmdline(text: &str) -> Option<(usize, String)> {
    let mut section = String::new();
    let mut found = None;
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.starts_with('[') && l.ends_with(']') {
            section = l[1..l.len() - 1].trim().to_string();
        } else if section == "UKI"
            && let Some((k, v)) = l.split_once('=')
            && k.trim() == "Cmdline"
        {
            found = Some((i + 1, v.trim().to_string()));
        }
    }
    found
}

// ---------------------------------------------------------------- hooks

/// A command that rebuilds the UKIs, and the changed files that make it run (the plan turns
/// it into one of its hooks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub name: String,
    pub command: Vec<String>,
    pub inputs: Vec<String>,
}

/// The hooks that rebuild the UKIs after `changed` were installed. With kernel-install the
/// initrd inside each UKI is rebuilt by `kernel-install add` too, so the generator's inputs
/// (`initramfs_inputs`) make it run as well.
pub fn hooks(
    profile: &Profile,
    files: &dyn Files,
    changed: &[String],
    initramfs_inputs: &dyn Fn(&str) -> bool,
    kernels: &[String],
) -> Vec<Hook> {
    let Ok(b) = builder(profile, files) else {
        return Vec::new();
    };
    let ours = |p: &str| p == CMDLINE_D_OWN || p == DRACUT_CMDLINE || p == KERNEL_CMDLINE;
    let mut inputs: Vec<String> = changed.iter().filter(|p| ours(p)).cloned().collect();
    if b == UkiBuilder::Mkinitcpio {
        // A preset's --cmdline file.
        if let Ok(images) = preset_images(files) {
            for i in images {
                if let Source::File(f) = i.source
                    && changed.contains(&f)
                    && !inputs.contains(&f)
                {
                    inputs.push(f);
                }
            }
        }
    }
    if b == UkiBuilder::KernelInstall {
        inputs.extend(
            changed
                .iter()
                .filter(|p| !ours(p) && initramfs_inputs(p))
                .cloned(),
        );
    }
    if inputs.is_empty() {
        return Vec::new();
    }
    match b {
        UkiBuilder::Mkinitcpio => vec![hook("mkinitcpio", &["mkinitcpio", "-P"], inputs)],
        UkiBuilder::Dracut => vec![hook(
            "dracut",
            &["dracut", "-f", "--regenerate-all"],
            inputs,
        )],
        UkiBuilder::KernelInstall => kernels
            .iter()
            .filter_map(|k| {
                let image = [
                    format!("/usr/lib/modules/{k}/vmlinuz"),
                    format!("/lib/modules/{k}/vmlinuz"),
                    format!("/boot/vmlinuz-{k}"),
                ]
                .into_iter()
                .find(|p| files.exists(p))?;
                Some(hook(
                    "kernel-install",
                    &["kernel-install", "add", k, &image],
                    inputs.clone(),
                ))
            })
            .collect(),
    }
}

fn hook(name: &str, cmd: &[&str], inputs: Vec<String>) -> Hook {
    Hook {
        name: name.into(),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        inputs,
    }
}

// ---------------------------------------------------------------- check

/// Every UKI the loader may boot: `EFI/Linux/*.efi` under the ESP mount points, and what the
/// presets name (when they exist).
pub fn images(files: &dyn Files) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for esp in ESPS {
        let dir = format!("{esp}/EFI/Linux");
        let mut names = files.list(&dir)?;
        names.sort();
        for n in names {
            if n.to_ascii_lowercase().ends_with(".efi") {
                out.push(format!("{dir}/{n}"));
            }
        }
    }
    for i in preset_images(files)? {
        if let Some(u) = i.uki
            && crate::root::check_system_path(&u).is_ok()
            && !out.contains(&u)
            && files.exists(&u)
        {
            out.push(u);
        }
    }
    Ok(out)
}

/// Whether the firmware runs with Secure Boot on, from its `SecureBoot` EFI variable
/// (4 attribute bytes, then the value); `None` when unknown.
pub fn secure_boot(files: &dyn Files) -> Option<bool> {
    let v = files
        .read("/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c")
        .ok()
        .flatten()?;
    v.get(4).map(|b| *b == 1)
}

/// The `uki` items of `check`: for each UKI, whether its `.cmdline` holds the options.
pub fn check_items(files: &dyn Files, wanted: &[Opt]) -> Result<Vec<Item>> {
    let item = |status, message: String, remedy: Option<&str>, path: Option<String>| Item {
        id: "uki",
        status,
        message,
        remedy: remedy.map(str::to_string),
        bdf: None,
        path,
    };
    let mut out = Vec::new();
    let found = images(files)?;
    if found.is_empty() {
        out.push(item(
            Status::Warn,
            "no unified kernel image found in EFI/Linux under /efi, /boot or /boot/efi, nor where the presets write them".into(),
            Some("mount the ESP and run `vfio-gen check` again"),
            None,
        ));
    }
    let want: Vec<String> = wanted.iter().map(|o| o.text()).collect();
    for path in found {
        let too_big = files.metadata(&path)?.is_some_and(|m| m.len > MAX_UKI);
        if too_big {
            out.push(item(
                Status::Warn,
                format!("{path}: larger than {} MiB, not read", MAX_UKI >> 20),
                None,
                Some(path),
            ));
            continue;
        }
        let Some(bytes) = files.read(&path)? else {
            continue;
        };
        match pe::cmdline(&bytes) {
            Err(e) => out.push(item(
                Status::Fail,
                format!("{path}: cannot read it as a unified kernel image: {e}"),
                Some("rebuild the images with the UKI builder's hook (or vfio-gen apply), or remove the file if it is not an image"),
                Some(path),
            )),
            Ok(None) => out.push(item(
                Status::Warn,
                format!("{path}: has no .cmdline section: the kernel gets what the boot loader passes"),
                Some("make sure the boot loader passes the profile's options to it"),
                Some(path),
            )),
            Ok(Some(line)) => {
                let (tokens, _) = cmdline::tokenize(&cmdline::bytes(line.as_bytes()));
                let have: Vec<Opt> = tokens.into_iter().filter_map(|t| t.opt).collect();
                let missing: Vec<String> = wanted
                    .iter()
                    .filter(|w| !have.iter().any(|h| cmdline::holds(h, w)))
                    .map(|w| w.text())
                    .collect();
                if missing.is_empty() {
                    out.push(item(Status::Pass, format!("{path}: its .cmdline holds {}", want.join(" ")), None, Some(path)));
                } else {
                    out.push(item(
                        Status::Fail,
                        format!("{path}: its .cmdline lacks {} ({line:?})", missing.join(" ")),
                        Some("vfio-gen apply, or run its hook to rebuild the images (plan names it)"),
                        Some(path),
                    ));
                }
            }
        }
    }
    if secure_boot(files) == Some(true) {
        out.push(item(
            Status::Warn,
            "Secure Boot is on: systemd-stub ignores a command line passed by the boot loader (systemd-boot's editor, an entry's options) for a UKI with a .cmdline; only the options built into the image count".into(),
            Some("change the options in the files the UKI builder reads (vfio-gen does) and rebuild the images; editing them in the boot menu has no effect"),
            None,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_options_name_the_cmdline_source() {
        let w = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(cmdline_source(&w("--splash /x.bmp")), Source::Default);
        assert_eq!(
            cmdline_source(&w("--cmdline /etc/kernel/cmdline_fallback -S autodetect")),
            Source::File("/etc/kernel/cmdline_fallback".into())
        );
        assert_eq!(
            cmdline_source(&w("--cmdline=/etc/kernel/cmdline")),
            Source::File("/etc/kernel/cmdline".into())
        );
        assert_eq!(
            cmdline_source(&w("--cmdline /a --no-cmdline")),
            Source::None
        );
    }

    #[test]
    fn uki_conf_cmdline_is_read_from_its_section() {
        assert_eq!(
            uki_conf_cmdline(
                "[UKI]\nLinux=/boot/vmlinuz\nCmdline=@/etc/kernel/cmdline\n[PCRSignature:x]\nCmdline=y\n"
            ),
            Some((3, "@/etc/kernel/cmdline".into()))
        );
        assert_eq!(uki_conf_cmdline("[Other]\nCmdline=x\n"), None);
    }
}
