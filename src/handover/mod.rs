//! `vfio-gen handover start|stop`: the profile's devices handed to vfio-pci while a VM runs,
//! and back (SPEC section 8; the design is docs/handover.md section 9). Every step is recorded
//! under `/run/vfio-gen/handover/` before it is taken ([`record`]); a start that fails undoes
//! what it did, and `stop` undoes exactly what the record holds. All system access goes
//! through [`system::System`].

pub mod hostdev;
pub mod record;
pub mod scan;
mod start;
pub mod system;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use crate::host::pci::{Device, Pci};
use crate::profile::{Profile, VfioMode};
use crate::root::Files;
use anyhow::{Result, bail};
use record::{Entry, Record, Step};
use system::{System, pci_driver, read};

/// What `start` and `stop` are told.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--force`: stop the system services holding the card (recorded; `stop` starts them).
    pub force: bool,
    /// `--domain NAME`: the libvirt domain starting or stopping, for the record.
    pub domain: Option<String>,
    /// The profile's path and sha256, for the record.
    pub profile_path: String,
    pub profile_sha256: String,
}

/// What happened to one step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Taken (start) or undone (stop).
    Done,
    /// Nothing to do: already in the state wanted.
    Skipped,
    /// Undone after a later step failed.
    Undone,
    Failed,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Action {
    pub kind: String,
    pub status: Status,
    pub detail: String,
}

/// What `start` or `stop` did. `error` set: exit 2.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub actions: Vec<Action>,
    pub error: Option<String>,
    /// A one-line summary when nothing was done (`nothing to give back`).
    pub note: Option<String>,
}

impl Report {
    fn push(&mut self, kind: &str, status: Status, detail: String) {
        self.actions.push(Action {
            kind: kind.to_string(),
            status,
            detail,
        });
    }
}

/// The boot's id: a record of another boot is stale (a reboot undid everything).
fn boot_id(sys: &dyn System) -> String {
    read(sys.root(), "/proc/sys/kernel/random/boot_id").unwrap_or_default()
}

/// The devices the profile hands over: those it names and every non-bridge member of their
/// IOMMU groups, in address order. Refuses a missing device or a split group.
pub fn devices<'a>(pci: &'a Pci, profile: &Profile) -> Result<Vec<&'a Device>> {
    for d in &profile.devices {
        if pci.device(&d.address).is_none() {
            bail!(
                "{}: vfio.devices names {}, which is not on this host (`vfio-gen iommu` lists the devices); nothing was changed",
                d.place,
                d.address
            );
        }
    }
    let mut set: Vec<&Device> = Vec::new();
    for d in pci.devices.iter().filter(|d| {
        profile.covers(&d.bdf, &d.id()) || profile.devices.iter().any(|a| a.address == d.bdf)
    }) {
        set.extend(pci.passthrough_set(d));
    }
    set.sort_by(|a, b| a.bdf.cmp(&b.bdf));
    set.dedup_by(|a, b| a.bdf == b.bdf);
    if set.is_empty() {
        bail!(
            "no device on this host has an ID from the profile's vfio.ids ({}); `vfio-gen iommu` lists the devices; nothing was changed",
            profile.ids.join(", ")
        );
    }
    // The boot display is what single-GPU handover exists for; every other refusal of `bind`
    // stands.
    let refusals: Vec<String> = crate::bind::refusals(pci, &set)
        .into_iter()
        .filter(|r| !r.ends_with("is the boot display: the host would lose its console"))
        .collect();
    if !refusals.is_empty() {
        bail!("{}; nothing was changed", refusals.join("; "));
    }
    Ok(set)
}

/// Hands the profile's devices to vfio-pci. `Err`: refused before any change. `Ok` with
/// `error` set: a step failed and every step before it was undone.
pub fn start(sys: &mut dyn System, profile: &Profile, opts: &Options) -> Result<Report> {
    let mut report = Report::default();
    if profile.vfio_mode != VfioMode::OnDemand {
        bail!(
            "the profile has [vfio] mode = \"boot\": vfio-pci takes the devices at boot, so there is nothing to hand over; set mode = \"on-demand\" (and run `vfio-gen apply`) to hand them over when a VM starts"
        );
    }
    let Some(p) = start::prepare(sys, profile, opts, &mut report)? else {
        return Ok(report);
    };
    let mut run = Run {
        sys,
        rec: &p.rec,
        domain: opts.domain.clone(),
        taken: Vec::new(),
        report: &mut report,
    };
    let result = start::steps(&mut run, &p, opts);
    if let Err(e) = result {
        let rec = &p.rec;
        let taken = std::mem::take(&mut run.taken);
        let mut undo_failed = Vec::new();
        for entry in taken.iter().rev() {
            match undo(run.sys, entry) {
                Ok(Some(detail)) => run.report.push(entry.step.kind(), Status::Undone, detail),
                Ok(None) => {}
                Err(err) => {
                    undo_failed.push(format!("{err:#}"));
                    run.report
                        .push(entry.step.kind(), Status::Failed, format!("undo: {err:#}"));
                }
            }
        }
        let mut message = format!("{e:#}");
        if undo_failed.is_empty() {
            rec.clear()?;
            message.push_str("; every step taken was undone");
        } else {
            message.push_str(&format!(
                "; some steps could not be undone ({}): the record stays in {}, run `vfio-gen handover stop` to retry",
                undo_failed.join("; "),
                record::DIR
            ));
        }
        report.error = Some(message);
    }
    Ok(report)
}

/// Runs steps, recording each before it is taken.
struct Run<'a> {
    sys: &'a mut dyn System,
    rec: &'a Record,
    domain: Option<String>,
    taken: Vec<Entry>,
    report: &'a mut Report,
}

impl Run<'_> {
    fn take(
        &mut self,
        step: Step,
        what: &str,
        act: impl FnOnce(&mut dyn System) -> Result<()>,
    ) -> Result<()> {
        let seq = self.taken.len() as u32;
        let kind = step.kind();
        let mut entry = Entry::new(seq, self.domain.clone(), step);
        self.rec.put(&entry)?;
        self.taken.push(entry.clone());
        act(&mut *self.sys).map_err(|e| e.context(format!("step {seq:03} ({kind}) failed")))?;
        entry.done = true;
        self.rec.put(&entry)?;
        if let Some(last) = self.taken.last_mut() {
            last.done = true;
        }
        if !what.is_empty() {
            self.report.push(kind, Status::Done, what.to_string());
        }
        Ok(())
    }
}

/// Undoes one step; `Ok(None)` for the markers, `Ok(Some(text))` with what was done or why
/// nothing was needed. Every undo is safe whether or not its step happened.
fn undo(sys: &mut dyn System, e: &Entry) -> Result<Option<String>> {
    let root = sys.root().clone();
    Ok(Some(match &e.step {
        Step::Begin { .. } | Step::End => return Ok(None),
        Step::Service { unit, was_active } => {
            if !was_active {
                format!("{unit} was not running: left stopped")
            } else if sys.unit(unit)?.active {
                format!("{unit} is running already")
            } else {
                sys.start_unit(unit)?;
                if !sys.unit(unit)?.active {
                    bail!("{unit} is not active after `systemctl start {unit}`");
                }
                format!("start {unit}")
            }
        }
        Step::Vtcon { path, name } => {
            let bind = format!("{path}/bind");
            match read(&root, &bind).as_deref() {
                None => format!("{path} is gone (fbcon took the consoles back by itself)"),
                Some("0") => {
                    sys.write(&bind, "1")?;
                    if read(sys.root(), &bind).as_deref() != Some("1") {
                        bail!("{bind} does not read 1 after writing 1");
                    }
                    format!("bind the console {path} ({name})")
                }
                Some(_) => format!("{path} is bound already"),
            }
        }
        Step::Fbdev { device, driver } => {
            let dev = format!("/sys/bus/platform/devices/{device}");
            if !root.exists(&dev) {
                format!("{device} no longer exists: nothing to bind")
            } else if let Some(d) = system::link_name(&root, &format!("{dev}/driver")) {
                format!("{device} is bound to {d} already")
            } else {
                sys.write(&format!("/sys/bus/platform/drivers/{driver}/bind"), device)?;
                if system::link_name(sys.root(), &format!("{dev}/driver")).is_none() {
                    bail!("{device} has no driver after writing it to {driver}/bind");
                }
                format!("bind {device} to {driver}")
            }
        }
        Step::Cpus { unit, before } => {
            sys.set_allowed_cpus(unit, before)?;
            if before.is_empty() {
                format!("{unit}: AllowedCPUs= reset (every CPU)")
            } else {
                format!("{unit}: AllowedCPUs={before} again")
            }
        }
        Step::Module { name } => {
            if root.exists(&format!("/sys/module/{name}")) {
                format!("{name} is loaded already")
            } else {
                sys.modprobe(name)?;
                if !sys.root().exists(&format!("/sys/module/{name}")) {
                    bail!("{name} is not loaded after `modprobe {name}`");
                }
                format!("load {name}")
            }
        }
        Step::Bind {
            bdf,
            driver,
            driver_override,
        } => {
            let now = pci_driver(&root, bdf);
            let dev = format!("/sys/bus/pci/devices/{bdf}");
            if now.is_some() && now != Some("vfio-pci".into()) && now == *driver {
                // managed='yes': libvirt gave it back before `release end` (docs/libvirt.md);
                // or the step failed before the unbind: only the override is left to put back.
                let o = read(&root, &format!("{dev}/driver_override"))
                    .filter(|o| o != "(null)" && !o.is_empty());
                if o != *driver_override {
                    sys.write(
                        &format!("{dev}/driver_override"),
                        driver_override.as_deref().unwrap_or("\n"),
                    )?;
                }
                format!("{bdf} is on {} already", now.as_deref().unwrap_or(""))
            } else {
                sys.write(
                    &format!("{dev}/driver_override"),
                    driver_override.as_deref().unwrap_or("\n"),
                )?;
                if pci_driver(sys.root(), bdf).as_deref() == Some("vfio-pci") {
                    sys.write(&format!("{dev}/driver/unbind"), bdf)?;
                }
                sys.write("/sys/bus/pci/drivers_probe", bdf)?;
                let after = pci_driver(sys.root(), bdf);
                if after.as_deref() == Some("vfio-pci") {
                    bail!("{bdf} is still on vfio-pci after the writes");
                }
                // A driver whose module is unloaded comes back with the module's undo.
                let registered = driver
                    .as_ref()
                    .is_some_and(|d| sys.root().exists(&format!("/sys/bus/pci/drivers/{d}")));
                if registered && after != *driver {
                    bail!(
                        "{bdf} is on {} after the writes, not {}",
                        after.as_deref().unwrap_or("no driver"),
                        driver.as_deref().unwrap_or("")
                    );
                }
                format!(
                    "{bdf}: vfio-pci -> {}",
                    after
                        .as_deref()
                        .unwrap_or("no driver (its module comes back next)")
                )
            }
        }
    }))
}

/// Gives the devices back: undoes every recorded step, last first. `Err`: refused before any
/// change.
pub fn stop(sys: &mut dyn System) -> Result<Report> {
    let mut report = Report::default();
    let root = sys.root().clone();
    let rec = Record::at(&root)?;
    let entries = rec.read()?;
    let boot = boot_id(sys);
    let current = entries
        .first()
        .is_some_and(|e| matches!(&e.step, Step::Begin { boot_id, .. } if *boot_id == boot));
    if !current {
        if !entries.is_empty() {
            rec.clear()?;
            report.note = Some(
                "the record under /run/vfio-gen/handover is from another boot (or has no begin): removed; nothing to give back".into(),
            );
        } else {
            report.note = Some("no handover is active: nothing to give back".into());
        }
        return Ok(report);
    }
    // The way back waits for QEMU to close the group (docs/binding.md section 4).
    let pci = Pci::read(&root)?;
    let mut groups: Vec<u32> = entries
        .iter()
        .filter_map(|e| match &e.step {
            Step::Bind { bdf, .. } => pci.device(bdf).and_then(|d| d.iommu_group),
            _ => None,
        })
        .collect();
    groups.sort();
    groups.dedup();
    for g in groups {
        let (users, _) = crate::host::vfio_users::users(&root, g)?;
        if let Some(u) = users.first() {
            bail!(
                "IOMMU group {g} (/dev/vfio/{g}) is open by {} (pid {}): shut that VM down first; nothing was changed",
                u.name,
                u.pid
            );
        }
    }
    let mut failed = Vec::new();
    for e in entries.iter().rev() {
        match undo(sys, e) {
            Ok(Some(detail)) => {
                let skipped = detail.contains("already")
                    || detail.contains("no longer")
                    || detail.contains("is gone")
                    || detail.contains("left stopped");
                report.push(
                    e.step.kind(),
                    if skipped {
                        Status::Skipped
                    } else {
                        Status::Done
                    },
                    detail,
                );
                rec.remove(e)?;
            }
            Ok(None) => {}
            Err(err) => {
                failed.push(format!("step {:03} ({}): {err:#}", e.seq, e.step.kind()));
                report.push(e.step.kind(), Status::Failed, format!("{err:#}"));
            }
        }
    }
    // Every device on the driver it had before.
    for e in &entries {
        if let Step::Bind {
            bdf,
            driver: Some(want),
            ..
        } = &e.step
        {
            let now = pci_driver(&root, bdf);
            if now.as_deref() != Some(want.as_str()) {
                failed.push(format!(
                    "{bdf} is on {}, not {want} as before the handover",
                    now.as_deref().unwrap_or("no driver")
                ));
            }
        }
    }
    if failed.is_empty() {
        rec.clear()?;
    } else {
        report.error = Some(format!(
            "{}; what is left stays recorded in {}: fix it and run `vfio-gen handover stop` again",
            failed.join("; "),
            record::DIR
        ));
    }
    Ok(report)
}
