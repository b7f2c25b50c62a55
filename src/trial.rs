//! The trial boot (docs/trial.md): the configuration tried on one boot that falls back by
//! itself. This module is the pure part: the trial's record, the options of the trial line,
//! the trial loader entry, the health unit, the `LoaderEntryOneShot` bytes and the checks the
//! health unit runs. `app/trial.rs` touches the disk.

use crate::cmdline::Opt;
use crate::host::pci::Pci;
use crate::profile::{Initramfs, Profile};
use crate::targets::lines;
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

pub mod grub;

/// The boot loader a trial goes through: what its entry is and how it is used once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loader {
    /// A loader entry beside the default, `LoaderEntryOneShot`.
    SystemdBoot,
    /// An /etc/grub.d script's menu entry, `next_entry` in grubenv.
    Grub,
}

impl Loader {
    /// The loader of a profile's bootloader, if the trial is built for it.
    pub fn of(profile: &Profile) -> Option<Loader> {
        use crate::plan::loader::TrialEntry;
        match crate::plan::loader::of(profile.bootloader).trial()? {
            TrialEntry::LoaderEntry => Some(Loader::SystemdBoot),
            TrialEntry::GrubMenuEntry => Some(Loader::Grub),
        }
    }

    /// The loader of a trial record (`bootloader`).
    pub fn of_record(s: &State) -> Loader {
        if s.bootloader == "grub" {
            Loader::Grub
        } else {
            Loader::SystemdBoot
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Loader::SystemdBoot => "systemd-boot",
            Loader::Grub => "grub",
        }
    }

    /// What the boot loader calls the trial entry.
    pub fn entry_id(self) -> &'static str {
        match self {
            Loader::SystemdBoot => ENTRY_NAME,
            Loader::Grub => grub::ENTRY_ID,
        }
    }

    /// The one-shot, for messages.
    pub fn one_shot(self) -> &'static str {
        match self {
            Loader::SystemdBoot => "LoaderEntryOneShot",
            Loader::Grub => "next_entry in grubenv",
        }
    }
}

/// The record of the trial in progress, under vfio-gen's state directory.
pub const STATE: &str = "/var/lib/vfio-gen/trial.json";
/// The trial entry's file name: systemd-boot's entry id is the file name, lowercased
/// (docs/trial.md), so the name is lowercase and carries no boot counter.
pub const ENTRY_NAME: &str = crate::plan::TRIAL_ENTRY;
/// The health unit and the drop-in that pulls it into the boot.
pub const UNIT: &str = "/etc/systemd/system/vfio-gen-trial.service";
pub const UNIT_WANTS: &str = "/etc/systemd/system/multi-user.target.d/vfio-gen-trial.conf";
/// The option that marks the trial boot: a dotted name, which the kernel keeps in
/// /proc/cmdline and does not pass to init (docs/trial.md).
pub const MARKER: &str = "vfio_gen.trial";
/// Seconds a panicking trial kernel waits before it reboots (`panic=`).
pub const PANIC_SECONDS: u32 = 10;
/// `systemd.watchdog_sec=` of the trial line: systemd's PID 1 arms the hardware watchdog with
/// it and pings it while it runs, so a trial boot that stops resets into the default entry
/// (docs/trial.md, "The watchdog"). Long enough for a loaded machine's slowest moment.
pub const WATCHDOG_SECONDS: u32 = 120;
/// The units that bring a trial boot back by itself (docs/trial.md, "Coming back"): a
/// template service that emergency.target and rescue.target pull in on the trial boot, and the
/// deadline (a timer pulled in by sysinit.target, its service). Each is conditioned on the
/// marker, so a normal boot's emergency mode is untouched.
pub const FALLBACK_UNIT: &str = "/etc/systemd/system/vfio-gen-trial-fallback@.service";
pub const EMERGENCY_WANTS: &str = "/etc/systemd/system/emergency.target.d/vfio-gen-trial.conf";
pub const RESCUE_WANTS: &str = "/etc/systemd/system/rescue.target.d/vfio-gen-trial.conf";
pub const DEADLINE_TIMER: &str = "/etc/systemd/system/vfio-gen-trial-deadline.timer";
pub const DEADLINE_SERVICE: &str = "/etc/systemd/system/vfio-gen-trial-deadline.service";
pub const DEADLINE_WANTS: &str = "/etc/systemd/system/sysinit.target.d/vfio-gen-trial.conf";
/// The environment variable through which those units tell `vfio-gen trial report` why it
/// runs (`emergency`, `rescue`, `deadline`).
pub const EVENT_VAR: &str = "VFIO_GEN_TRIAL_EVENT";
/// The trial's own copy of its profile, beside the record: the trial boot reads it, and
/// `trial commit` applies exactly what was tried (docs/trial.md).
pub const PROFILE_COPY: &str = "/var/lib/vfio-gen/trial-profile.toml";
/// How long a trial boot may take to record its outcome before it reboots.
pub const DEFAULT_DEADLINE_SECS: u64 = 600;
/// The shortest and longest `--deadline`: a boot takes a minute or more on a slow machine,
/// and a deadline is meant to bring a machine back the same day.
pub const MIN_DEADLINE_SECS: u64 = 60;
pub const MAX_DEADLINE_SECS: u64 = 24 * 3600;
/// systemd's boot loader interface vendor GUID (docs/trial.md).
pub const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
pub const EFIVARS: &str = "/sys/firmware/efi/efivars";

/// `LoaderEntryOneShot` as an efivarfs path.
pub fn oneshot_var() -> String {
    format!("{EFIVARS}/LoaderEntryOneShot-{LOADER_GUID}")
}

/// The bytes of an efivarfs file that sets `LoaderEntryOneShot` to `id`: the attributes as a
/// little-endian u32 (non-volatile, boot-service and runtime access: 0x7), then the value, a
/// NUL-terminated UTF-16LE string (docs/trial.md).
pub fn oneshot_bytes(id: &str) -> Vec<u8> {
    let mut out = 0x7u32.to_le_bytes().to_vec();
    for unit in id.encode_utf16().chain(std::iter::once(0)) {
        out.extend_from_slice(&unit.to_le_bytes());
    }
    out
}

/// The value of an efivarfs file holding a string (`None` when it is not one).
pub fn efivar_string(bytes: &[u8]) -> Option<String> {
    let body = bytes.get(4..)?;
    if body.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = body
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|u| *u != 0)
        .collect();
    String::from_utf16(&units).ok()
}

/// Where a trial is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Installed, the one-shot not set (the root has no EFI variables): `vfio-gen trial arm`.
    Prepared,
    /// The next boot is the trial.
    Armed,
    /// The trial boot runs its checks.
    Running,
    Passed,
    Failed,
}

impl Phase {
    pub fn word(self) -> &'static str {
        match self {
            Phase::Prepared => "prepared",
            Phase::Armed => "armed",
            Phase::Running => "running",
            Phase::Passed => "passed",
            Phase::Failed => "failed",
        }
    }
}

/// One thing the health unit checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// The record of a trial (`STATE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The transaction that installed the trial (its backup undoes it).
    pub id: String,
    pub bootloader: String,
    /// The trial entry (system path) and its id for the boot loader.
    pub entry: String,
    pub entry_id: String,
    /// The entry it was copied from, which the machine falls back to.
    pub default_entry: String,
    /// The profile: a system path under the root (`profile_in_root`), else an absolute path.
    pub profile: String,
    pub profile_in_root: bool,
    /// The options of the trial line that the default line lacks.
    pub options: Vec<String>,
    pub auto_commit: bool,
    pub phase: Phase,
    /// How the one-shot was set: `bootctl set-oneshot` or the efivarfs file.
    pub armed_by: Option<String>,
    /// Why the trial failed.
    pub reason: Option<String>,
    pub checks: Vec<Check>,
    /// Seconds after boot by which the trial boot must have recorded its outcome.
    #[serde(default = "default_deadline")]
    pub deadline_secs: u64,
    /// Where the profile came from, when `profile` is the trial's own copy of it.
    #[serde(default)]
    pub profile_source: Option<String>,
}

fn default_deadline() -> u64 {
    DEFAULT_DEADLINE_SECS
}

/// `--deadline`'s value in whole seconds, within its bounds.
pub fn deadline_secs(d: std::time::Duration) -> Result<u64> {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || !(MIN_DEADLINE_SECS..=MAX_DEADLINE_SECS).contains(&secs) {
        bail!(
            "--deadline {}: give whole seconds from {} to {} (a trial boot needs time to come up; 10min is the default); nothing was written",
            humantime::format_duration(d),
            span(MIN_DEADLINE_SECS),
            span(MAX_DEADLINE_SECS)
        );
    }
    Ok(secs)
}

/// A span of seconds for people: `10 min`, `90 s`, `24 h`.
pub fn span(secs: u64) -> String {
    if secs.is_multiple_of(3600) && secs >= 3600 {
        format!("{} h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

/// Why `vfio-gen trial report` runs, when a unit other than the health unit runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// emergency.target was started on the trial boot.
    Emergency,
    /// rescue.target was started on the trial boot.
    Rescue,
    /// The deadline's timer elapsed.
    Deadline,
}

impl Event {
    /// The value of `EVENT_VAR`.
    pub fn parse(value: &str) -> Result<Event> {
        Ok(match value {
            "emergency" => Event::Emergency,
            "rescue" => Event::Rescue,
            "deadline" => Event::Deadline,
            other => bail!(
                "{EVENT_VAR}={}: not emergency, rescue or deadline; it is set by vfio-gen's trial units only: unset it",
                crate::escape::one_line(other)
            ),
        })
    }

    pub fn word(self) -> &'static str {
        match self {
            Event::Emergency => "emergency",
            Event::Rescue => "rescue",
            Event::Deadline => "deadline",
        }
    }
}

/// What made systemd start emergency or rescue mode, from this boot's journal (JSON lines of
/// `journalctl -o json` for the job results `failed`, `timeout` and `dependency`) and, when the
/// journal names none, `systemctl list-units --state=failed --plain --no-legend`: the first job
/// that failed or timed out (the cause; `dependency` results are its consequences), with its
/// message (docs/trial.md, "Coming back").
pub fn failed_unit(journal: &str, failed_units: &str) -> Option<String> {
    let entries: Vec<(String, String, String)> = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
            let unit = field("UNIT")?;
            if unit.starts_with("vfio-gen-trial") {
                return None;
            }
            Some((
                unit,
                field("JOB_RESULT")?,
                field("MESSAGE").unwrap_or_default(),
            ))
        })
        .collect();
    let first = |results: &[&str]| {
        entries
            .iter()
            .find(|(_, r, _)| results.contains(&r.as_str()))
            .map(|(u, _, m)| {
                let m = m.trim();
                if m.is_empty() {
                    crate::escape::one_line(u).into_owned()
                } else {
                    format!(
                        "{} ({})",
                        crate::escape::one_line(u),
                        crate::escape::one_line(m)
                    )
                }
            })
    };
    first(&["failed", "timeout"])
        .or_else(|| first(&["dependency"]))
        .or_else(|| {
            failed_units
                .lines()
                .filter_map(|l| {
                    l.split_whitespace()
                        .find(|w| *w != "●" && *w != "*")
                        .map(str::to_string)
                })
                .find(|u| !u.starts_with("vfio-gen-trial"))
                .map(|u| format!("{} failed", crate::escape::one_line(&u)))
        })
}

impl State {
    pub fn parse(bytes: &[u8]) -> Result<State> {
        serde_json::from_slice(bytes).map_err(|e| {
            anyhow::anyhow!(
                "{STATE}: not a trial record vfio-gen can read ({e}); `sudo vfio-gen trial abort --force` removes the trial"
            )
        })
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut b = serde_json::to_vec_pretty(self)?;
        b.push(b'\n');
        Ok(b)
    }

    /// One line for people: the phase and what it means.
    pub fn summary(&self) -> String {
        match self.phase {
            Phase::Prepared if self.bootloader == "grub" => format!(
                "prepared: {} is installed but grub.cfg has no trial entry yet; run the GRUB hook (update-grub), then `sudo vfio-gen trial arm`, then reboot",
                self.entry
            ),
            Phase::Prepared => format!(
                "prepared: {} is installed but not armed; run `sudo vfio-gen trial arm` on the machine, then reboot",
                self.entry
            ),
            Phase::Armed => format!(
                "armed: the next boot uses {} once, then the machine boots {} again",
                self.entry_id, self.default_entry
            ),
            Phase::Running => {
                "running: this is the trial boot; its checks have not finished".into()
            }
            Phase::Passed => "passed: `sudo vfio-gen trial commit` makes it permanent".into(),
            Phase::Failed => format!(
                "failed: {}; the permanent configuration is as before; `sudo vfio-gen trial abort` removes the trial",
                self.reason.as_deref().unwrap_or("no reason recorded")
            ),
        }
    }
}

/// Why `--trial` cannot try this profile, if it cannot.
pub fn refusal(profile: &Profile) -> Option<String> {
    let loader = crate::plan::loader::of(profile.bootloader);
    if loader.trial().is_none() {
        return Some(loader.no_trial());
    }
    if !profile.devices.is_empty() {
        return Some(
            "--trial does not carry [vfio] devices yet: binding by address runs from modprobe.d, which a trial leaves alone (docs/trial.md); run `vfio-gen apply` without --trial, or name the card by vfio.ids".into(),
        );
    }
    None
}

/// The profile with everything that could hurt a boot taken out: what `apply --trial`
/// installs permanently is its initramfs part (the VFIO modules; vfio-pci without ids binds
/// nothing) and its softdeps (`softdep M pre: vfio-pci` only orders loading), so the trial
/// boot loads its modules in the order the committed configuration will (docs/trial.md).
pub fn harmless(profile: &Profile) -> Profile {
    Profile {
        ids: Vec::new(),
        devices: Vec::new(),
        blacklist: Vec::new(),
        disable_vga: false,
        iommu: crate::profile::OnOff::Off,
        iommu_pt: false,
        driver_pre: crate::profile::DriverPre::No,
        extra: Vec::new(),
        amd_iommu: None,
        ..profile.clone()
    }
}

/// Whether the permanent part includes the initramfs generator's file: dracut's drop-in also
/// carries modprobe.d files into the image, so with dracut the trial line loads vfio-pci early
/// by `rd.driver.pre=` instead and nothing of the generator is installed.
pub fn installs_initramfs(profile: &Profile) -> bool {
    !matches!(profile.initramfs, Initramfs::Dracut | Initramfs::None)
}

/// The options the trial line carries: the profile's kernel options, the ids and blacklists
/// that would otherwise live in modprobe.d (`vfio-pci.ids=`, `module_blacklist=`),
/// `rd.driver.pre=vfio-pci` with dracut, `panic=` and the marker naming the trial.
pub fn options(profile: &Profile, trial_id: &str) -> Vec<Opt> {
    let mut out = profile.kernel_options(true);
    if profile.initramfs == Initramfs::Dracut && !out.iter().any(|o| o.key() == "rd.driver.pre") {
        out.push(Opt::parse("rd.driver.pre=vfio-pci"));
    }
    if !profile.blacklist.is_empty() {
        let names: Vec<String> = profile
            .blacklist
            .iter()
            .map(|m| m.replace('-', "_"))
            .collect();
        out.push(Opt::parse(&format!("module_blacklist={}", names.join(","))));
    }
    if !out.iter().any(|o| o.key() == "panic") {
        out.push(Opt::parse(&format!("panic={PANIC_SECONDS}")));
    }
    // dracut's emergency shell does not read panic=: without a shell, rd.emergency= says what
    // it does instead (docs/trial.md, "dracut").
    if profile.initramfs == Initramfs::Dracut {
        if !out.iter().any(|o| o.key() == "rd.shell") {
            out.push(Opt::parse("rd.shell=0"));
        }
        if !out.iter().any(|o| o.key() == "rd.emergency") {
            out.push(Opt::parse("rd.emergency=reboot"));
        }
    }
    if !out.iter().any(|o| o.key() == "systemd.watchdog_sec") {
        out.push(Opt::parse(&format!(
            "systemd.watchdog_sec={WATCHDOG_SECONDS}"
        )));
    }
    out.push(Opt::parse(&format!("{MARKER}={trial_id}")));
    out
}

/// The trial entry: the default entry's lines with the trial's options on its `options`
/// lines, its title marked, and vfio-gen's header on top.
pub fn entry(default: &[u8], default_path: &str, opts: &[Opt]) -> Result<Vec<u8>> {
    let text = std::str::from_utf8(default).map_err(|_| {
        anyhow::anyhow!("{default_path}: not UTF-8 text; a loader entry is a text file (fix it, or name another in [systemd-boot] entries)")
    })?;
    let mut body = String::new();
    let mut titled = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("title")
            && (rest.starts_with([' ', '\t']) || rest.trim().is_empty())
            && !titled
        {
            let title = rest.trim();
            body.push_str(&format!(
                "title {}(vfio-gen trial)\n",
                if title.is_empty() {
                    String::new()
                } else {
                    format!("{title} ")
                }
            ));
            titled = true;
        } else {
            body.push_str(line);
        }
    }
    if !body.ends_with('\n') {
        body.push('\n');
    }
    if !titled {
        body = format!("title vfio-gen trial\n{body}");
    }
    if lines::line(body.as_bytes(), lines::Shape::Entry).is_empty() {
        body.push_str("options\n");
    }
    let (edited, _) = lines::edit(
        body.as_bytes(),
        lines::Shape::Entry,
        opts,
        false,
        default_path,
    )?;
    let mut out = format!(
        "{} from {default_path}; do not edit.\n# A trial boot, used once: `vfio-gen trial commit` makes it permanent, `vfio-gen trial abort` removes it.\n",
        crate::targets::HEADER_MARK
    )
    .into_bytes();
    out.extend(edited);
    Ok(out)
}

/// The health unit: on each boot while a trial is recorded, `vfio-gen trial report` checks
/// the trial boot (or records that it never came up) before `boot-complete.target`.
pub fn unit() -> String {
    format!(
        "{}; do not edit. `vfio-gen trial commit` or `vfio-gen trial abort` removes it.
# The health check of a vfio-gen trial boot (docs/trial.md).
[Unit]
Description=vfio-gen trial boot check
ConditionPathExists={STATE}
After=local-fs.target systemd-udev-trigger.service systemd-modules-load.service
Before=boot-complete.target multi-user.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=vfio-gen trial report
",
        crate::targets::HEADER_MARK
    )
}

/// A drop-in that makes `target` pull in `unit`.
fn wants(target: &str, unit: &str) -> String {
    format!(
        "{}; do not edit. `vfio-gen trial commit` or `vfio-gen trial abort` removes it.
# {target} pulls in {unit} (docs/trial.md).
[Unit]
Wants={unit}
",
        crate::targets::HEADER_MARK
    )
}

/// The drop-in that pulls the health unit into the boot.
pub fn unit_wants() -> String {
    wants("multi-user.target", "vfio-gen-trial.service")
}

/// The fallback: started with emergency.target or rescue.target (the instance names which),
/// only on the trial boot; records why (`trial report` with `EVENT_VAR`), then reboots, also
/// when vfio-gen itself fails or hangs (docs/trial.md, "Coming back").
pub fn fallback_unit() -> String {
    format!(
        "{}; do not edit. `vfio-gen trial commit` or `vfio-gen trial abort` removes it.
# On a vfio-gen trial boot, %i mode reboots into the default entry instead (docs/trial.md).
[Unit]
Description=vfio-gen trial boot: reboot instead of %i mode
DefaultDependencies=no
ConditionKernelCommandLine={MARKER}
SuccessAction=reboot-force
FailureAction=reboot-force

[Service]
Type=oneshot
Environment={EVENT_VAR}=%i
ExecStart=-vfio-gen trial report
TimeoutStartSec=90s
",
        crate::targets::HEADER_MARK
    )
}

/// The deadline's timer: `secs` after the machine booted, only on the trial boot.
pub fn deadline_timer(secs: u64) -> String {
    format!(
        "{}; do not edit. `vfio-gen trial commit` or `vfio-gen trial abort` removes it.
# A vfio-gen trial boot that has recorded no outcome {} after boot reboots (docs/trial.md).
[Unit]
Description=vfio-gen trial boot deadline
DefaultDependencies=no
ConditionKernelCommandLine={MARKER}

[Timer]
OnBootSec={secs}s
AccuracySec=1s
",
        crate::targets::HEADER_MARK,
        span(secs)
    )
}

/// The deadline's service: `trial report` records `no outcome within ...` and exits 1 when
/// the trial boot has not decided, which reboots (`FailureAction=`); a decided trial exits 0.
pub fn deadline_service() -> String {
    format!(
        "{}; do not edit. `vfio-gen trial commit` or `vfio-gen trial abort` removes it.
# Reboots a vfio-gen trial boot that has recorded no outcome by its deadline (docs/trial.md).
[Unit]
Description=vfio-gen trial boot deadline: reboot a trial boot without an outcome
DefaultDependencies=no
ConditionKernelCommandLine={MARKER}
FailureAction=reboot-force

[Service]
Type=oneshot
Environment={EVENT_VAR}=deadline
ExecStart=vfio-gen trial report
TimeoutStartSec=90s
",
        crate::targets::HEADER_MARK
    )
}

/// Every unit file and drop-in of a trial, with its contents, in path order.
pub fn units(deadline_secs: u64) -> Vec<(&'static str, String)> {
    let mut out = vec![
        (UNIT, unit()),
        (UNIT_WANTS, unit_wants()),
        (FALLBACK_UNIT, fallback_unit()),
        (
            EMERGENCY_WANTS,
            wants(
                "emergency.target",
                "vfio-gen-trial-fallback@emergency.service",
            ),
        ),
        (
            RESCUE_WANTS,
            wants("rescue.target", "vfio-gen-trial-fallback@rescue.service"),
        ),
        (DEADLINE_TIMER, deadline_timer(deadline_secs)),
        (DEADLINE_SERVICE, deadline_service()),
        (
            DEADLINE_WANTS,
            wants("sysinit.target", "vfio-gen-trial-deadline.timer"),
        ),
    ];
    out.sort();
    out
}

/// The trial id the running command line names, if it is a trial boot.
pub fn marker_in(cmdline: &str) -> Option<String> {
    cmdline.split_whitespace().find_map(|t| {
        let (k, v) = t.split_once('=')?;
        (crate::cmdline::normalize(k) == MARKER).then(|| v.to_string())
    })
}

/// What the health unit checks on the trial boot: the trial's options on the running line,
/// each passthrough function on vfio-pci, every other display on its own driver.
pub fn checks(pci: &Pci, cmdline: &str, profile: &Profile, options: &[String]) -> Vec<Check> {
    let mut out = Vec::new();
    let running: Vec<Opt> = cmdline.split_whitespace().map(Opt::parse).collect();
    let missing: Vec<&String> = options
        .iter()
        .filter(|o| {
            let want = Opt::parse(o);
            !running.iter().any(|r| crate::cmdline::holds(r, &want))
        })
        .collect();
    out.push(Check {
        name: "cmdline".into(),
        ok: missing.is_empty(),
        detail: if missing.is_empty() {
            format!("the running command line holds {}", options.join(" "))
        } else {
            format!(
                "the running command line lacks {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        },
    });
    let mut taken = Vec::new();
    for d in &pci.devices {
        if !profile.ids.contains(&d.id()) {
            continue;
        }
        taken.push(d.bdf.clone());
        let driver = d.driver.as_deref().unwrap_or("no driver");
        out.push(Check {
            name: format!("vfio-pci {}", d.bdf),
            ok: driver == "vfio-pci",
            detail: format!("{} [{}] is on {driver}", d.bdf, d.id()),
        });
    }
    if taken.is_empty() {
        out.push(Check {
            name: "vfio-pci".into(),
            ok: false,
            detail: format!(
                "no PCI device has an ID of vfio.ids ({})",
                profile.ids.join(", ")
            ),
        });
    }
    for d in pci
        .devices
        .iter()
        .filter(|d| d.boot_vga && !taken.contains(&d.bdf))
    {
        let driver = d.driver.as_deref();
        out.push(Check {
            name: format!("boot display {}", d.bdf),
            ok: driver.is_some_and(|x| x != "vfio-pci"),
            detail: format!(
                "the boot display {} is on {}",
                d.bdf,
                driver.unwrap_or("no driver")
            ),
        });
    }
    out
}

/// What the trial boot's watchdog is, from `/sys/class/watchdog/watchdog*/` (`identity`,
/// `state`, `timeout`): informational, never a failure (a machine without one keeps `panic=`).
pub fn watchdog_check(devices: &[(String, String, String, String)]) -> Check {
    let detail = match devices.iter().find(|d| d.2 == "active").or(devices.first()) {
        Some((name, identity, state, timeout)) => format!(
            "{name} ({identity}) is {state}, timeout {timeout} s (systemd.watchdog_sec={WATCHDOG_SECONDS} on the trial line)"
        ),
        None => {
            "this machine has no hardware watchdog: a hang without a panic needs a reset by hand"
                .into()
        }
    };
    Check {
        name: "watchdog".into(),
        ok: true,
        detail,
    }
}

/// A program on PATH (`bootctl`, `grub-reboot`, `grub-probe`).
pub fn on_path(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs one of the boot loader's tools; its standard output, or an error that quotes the
/// command and its message and then says `next` (what to do, what was left).
pub fn run_tool(program: &std::path::Path, args: &[&str], next: &str) -> Result<String> {
    use anyhow::Context;
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        let name = program.file_name().unwrap_or_default().to_string_lossy();
        anyhow::bail!(
            "`{name} {}` failed: {}; {next}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The default entry a trial is copied from: the one entry there is, the profile's single
/// entry, or loader.conf's `default` when it names an entry file exactly.
pub fn default_entry(entries: &[String], loader_conf: Option<&[u8]>) -> Result<String> {
    let entries: Vec<&String> = entries
        .iter()
        .filter(|e| !e.ends_with(&format!("/{ENTRY_NAME}")))
        .collect();
    if let [one] = entries.as_slice() {
        return Ok((*one).clone());
    }
    if let Some(conf) = loader_conf {
        for line in String::from_utf8_lossy(conf).lines() {
            let mut parts = line.split_whitespace();
            if parts.next() == Some("default")
                && let Some(value) = parts.next()
                && let Some(found) = entries.iter().find(|e| {
                    e.rsplit('/')
                        .next()
                        .is_some_and(|n| n == value || n.strip_suffix(".conf") == Some(value))
                })
            {
                return Ok((*found).clone());
            }
        }
    }
    if entries.is_empty() {
        bail!(
            "no systemd-boot entry to try the configuration beside; mount the ESP, or list the entry in [systemd-boot] entries"
        );
    }
    bail!(
        "{} systemd-boot entries and no `default` in loader.conf naming one of them exactly: name the entry the machine boots in [systemd-boot] entries (one entry), then run `vfio-gen apply --trial` again",
        entries.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oneshot_variable_is_attributes_then_nul_terminated_utf16le() {
        let b = oneshot_bytes("vfio-gen-trial.conf");
        assert_eq!(&b[..4], &[7, 0, 0, 0]);
        assert_eq!(&b[4..8], &[b'v', 0, b'f', 0]);
        assert_eq!(&b[b.len() - 2..], &[0, 0]);
        assert_eq!(b.len(), 4 + 2 * ("vfio-gen-trial.conf".len() + 1));
        assert_eq!(efivar_string(&b).as_deref(), Some("vfio-gen-trial.conf"));
    }

    #[test]
    fn the_marker_is_found_with_dashes_or_underscores() {
        assert_eq!(
            marker_in("root=/dev/sda vfio-gen.trial=X1 quiet").as_deref(),
            Some("X1")
        );
        assert_eq!(marker_in("root=/dev/sda quiet"), None);
    }

    #[test]
    fn the_default_is_the_one_entry_or_loader_conf_s_exact_name() {
        let e = vec![
            "/efi/loader/entries/a.conf".to_string(),
            "/efi/loader/entries/b.conf".to_string(),
            format!("/efi/loader/entries/{ENTRY_NAME}"),
        ];
        assert_eq!(
            default_entry(&e, Some(b"timeout 3\ndefault b.conf\n")).unwrap(),
            "/efi/loader/entries/b.conf"
        );
        assert_eq!(
            default_entry(&e, Some(b"default b\n")).unwrap(),
            "/efi/loader/entries/b.conf"
        );
        let err = default_entry(&e, Some(b"default *.conf\n")).unwrap_err();
        assert!(err.to_string().contains("[systemd-boot] entries"), "{err}");
        assert_eq!(
            default_entry(&e[..1], None).unwrap(),
            "/efi/loader/entries/a.conf"
        );
    }

    #[test]
    fn the_trial_entry_marks_the_title_and_adds_the_options() {
        let default = b"title Debian GNU/Linux\nlinux /vmlinuz\ninitrd /initrd\noptions root=LABEL=r ro panic=10\n";
        let opts = vec![
            Opt::parse("intel_iommu=on"),
            Opt::parse("panic=10"),
            Opt::parse("vfio_gen.trial=T"),
        ];
        let out = String::from_utf8(entry(default, "/efi/loader/entries/d.conf", &opts).unwrap())
            .unwrap();
        assert!(out.starts_with(crate::targets::HEADER_MARK), "{out}");
        assert!(
            out.contains("title Debian GNU/Linux (vfio-gen trial)\n"),
            "{out}"
        );
        assert!(
            out.contains("options root=LABEL=r ro panic=10 intel_iommu=on vfio_gen.trial=T\n"),
            "{out}"
        );
        assert!(out.contains("linux /vmlinuz\ninitrd /initrd\n"), "{out}");
    }

    fn profile(initramfs: &str, extra: &str) -> Profile {
        crate::profile::parse(
            &format!(
                "[host]\ncpu = \"intel\"\nbootloader = \"systemd-boot\"\ninitramfs = \"{initramfs}\"\n\n[vfio]\nids = [\"10de:2204\"]\nsoftdep = [\"nvidia\"]\n\n[kernel]\niommu = \"on\"\nextra = [{extra}]\n"
            ),
            "profile.toml",
        )
        .unwrap()
    }

    fn line(p: &Profile) -> String {
        options(p, "1")
            .iter()
            .map(|o| o.text())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn dracut_s_trial_line_turns_its_emergency_shell_into_a_reboot() {
        let l = line(&profile("dracut", ""));
        assert!(
            l.contains(" panic=10 rd.shell=0 rd.emergency=reboot "),
            "{l}"
        );
        let l = line(&profile("initramfs-tools", ""));
        assert!(
            !l.contains("rd.shell") && !l.contains("rd.emergency"),
            "{l}"
        );
        // The profile's own choice stays.
        let l = line(&profile("dracut", "\"rd.shell=1\""));
        assert!(l.contains("rd.shell=1") && !l.contains("rd.shell=0"), "{l}");
        assert!(l.contains("rd.emergency=reboot"), "{l}");
    }

    #[test]
    fn the_harmless_part_keeps_the_softdeps_and_drops_what_binds() {
        let h = harmless(&profile("initramfs-tools", ""));
        assert_eq!(h.softdep, ["nvidia"]);
        assert!(h.ids.is_empty() && h.blacklist.is_empty() && h.extra.is_empty());
    }

    #[test]
    fn the_deadline_is_whole_seconds_between_a_minute_and_a_day() {
        let d = |s: &str| deadline_secs(humantime::parse_duration(s).unwrap());
        assert_eq!(d("4min").unwrap(), 240);
        assert_eq!(d("1h").unwrap(), 3600);
        assert_eq!(d("60s").unwrap(), 60);
        for bad in ["59s", "25h", "90s 500ms"] {
            let e = d(bad).unwrap_err().to_string();
            assert!(
                e.contains("from 1 min to 24 h") && e.contains("nothing was written"),
                "{e}"
            );
        }
        assert_eq!(span(600), "10 min");
        assert_eq!(span(90), "90 s");
        assert_eq!(span(7200), "2 h");
    }

    #[test]
    fn every_unit_but_the_health_unit_is_for_the_trial_boot_only() {
        let units = units(240);
        let names: Vec<&str> = units.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            names,
            [
                EMERGENCY_WANTS,
                UNIT_WANTS,
                RESCUE_WANTS,
                DEADLINE_WANTS,
                DEADLINE_SERVICE,
                DEADLINE_TIMER,
                FALLBACK_UNIT,
                UNIT
            ]
        );
        for (path, text) in &units {
            assert!(text.starts_with(crate::targets::HEADER_MARK), "{path}");
            if [FALLBACK_UNIT, DEADLINE_TIMER, DEADLINE_SERVICE].contains(path) {
                assert!(
                    text.contains(
                        "\nDefaultDependencies=no\nConditionKernelCommandLine=vfio_gen.trial\n"
                    ),
                    "{path}: {text}"
                );
            }
        }
        let get = |p: &str| &units.iter().find(|(q, _)| *q == p).unwrap().1;
        assert!(get(DEADLINE_TIMER).contains("\nOnBootSec=240s\n"));
        let fallback = get(FALLBACK_UNIT);
        // The reboot is the unit's, so it happens also when vfio-gen fails or hangs.
        for l in [
            "SuccessAction=reboot-force",
            "FailureAction=reboot-force",
            "ExecStart=-vfio-gen trial report",
            "Environment=VFIO_GEN_TRIAL_EVENT=%i",
            "TimeoutStartSec=90s",
        ] {
            assert!(fallback.contains(&format!("\n{l}\n")), "{l}: {fallback}");
        }
        assert!(
            get(EMERGENCY_WANTS).contains("\nWants=vfio-gen-trial-fallback@emergency.service\n")
        );
        assert!(get(RESCUE_WANTS).contains("\nWants=vfio-gen-trial-fallback@rescue.service\n"));
        assert!(get(DEADLINE_WANTS).contains("\nWants=vfio-gen-trial-deadline.timer\n"));
        assert!(get(DEADLINE_SERVICE).contains("\nFailureAction=reboot-force\n"));
        assert!(!get(DEADLINE_SERVICE).contains("SuccessAction"));
    }

    #[test]
    fn the_failed_unit_is_the_first_job_that_failed_or_timed_out() {
        // journalctl -o json lines, as systemd logs job results (JOB_RESULT, UNIT).
        let journal = [
            r#"{"UNIT":"vfio-gen-trial-deadline.timer","JOB_RESULT":"failed","MESSAGE":"x"}"#,
            r#"{"UNIT":"data.mount","JOB_RESULT":"dependency","MESSAGE":"Dependency failed for /data."}"#,
            r#"{"UNIT":"dev-disk-by\\x2dlabel-vgdata.device","JOB_RESULT":"timeout","MESSAGE":"Timed out waiting for device /dev/disk/by-label/vgdata."}"#,
            "not json",
        ]
        .join("\n");
        assert_eq!(
            failed_unit(&journal, "").as_deref(),
            Some(
                "dev-disk-by\\x2dlabel-vgdata.device (Timed out waiting for device /dev/disk/by-label/vgdata.)"
            )
        );
        let only_dependency = journal.lines().nth(1).unwrap();
        assert_eq!(
            failed_unit(only_dependency, "").as_deref(),
            Some("data.mount (Dependency failed for /data.)")
        );
        let listed = "\u{25cf} data.mount loaded failed failed /data\n";
        assert_eq!(
            failed_unit("", listed).as_deref(),
            Some("data.mount failed")
        );
        assert_eq!(failed_unit("", ""), None);
    }

    #[test]
    fn an_older_record_reads_with_the_default_deadline() {
        let old = br#"{"id":"X","bootloader":"systemd-boot","entry":"/e","entry_id":"e","default_entry":"/d","profile":"/p","profile_in_root":false,"options":[],"auto_commit":false,"phase":"armed","armed_by":null,"reason":null,"checks":[]}"#;
        let s = State::parse(old).unwrap();
        assert_eq!(s.deadline_secs, DEFAULT_DEADLINE_SECS);
        assert_eq!(s.profile_source, None);
        assert!(Event::parse("later").is_err());
        assert_eq!(Event::parse("rescue").unwrap(), Event::Rescue);
    }
}
