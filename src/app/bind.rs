//! `vfio-gen bind` and `vfio-gen unbind`: move devices to vfio-pci now, or give them back,
//! through sysfs (docs/binding.md); `--dry-run` prints the writes.

use super::{Ctx, load_profile, profile_path};
use crate::bind;
use crate::host::pci::{Device, Pci};
use crate::root::{Files, Root};
use anyhow::{Result, bail};
use std::io::Write;
use std::path::PathBuf;

pub struct Options {
    pub profile: Option<PathBuf>,
    /// The devices; none: every device whose ID is in the profile.
    pub bdfs: Vec<String>,
    /// Bind to vfio-pci (`bind`), or give back (`unbind`).
    pub to_vfio: bool,
    /// Bind the boot display or split a group anyway.
    pub force: bool,
    pub dry_run: bool,
}

pub fn run(ctx: &Ctx, opts: &Options, out: &mut dyn Write) -> Result<u8> {
    let root = &ctx.root;
    let to_vfio = opts.to_vfio;
    let pci = Pci::read(root)?;
    let mut set = chosen(root, opts, &pci)?;
    if !to_vfio {
        set = bound_to_vfio(set, out)?;
        if set.is_empty() {
            return Ok(0);
        }
        bind::refuse_busy_groups(root, &set)?;
    }
    let vfio_loaded = root.exists("/sys/bus/pci/drivers/vfio-pci");
    if to_vfio {
        refuse_bind(&pci, &set, opts, vfio_loaded)?;
    }
    let mut sys = bind::RootSysfs { root };
    // Unbinding: where each device goes next (docs/binding.md), for the dry run and the report.
    let natives = if to_vfio {
        Vec::new()
    } else {
        bind::natives(&sys, &set)?
    };
    if opts.dry_run {
        print_dry_run(out, &set, &natives, to_vfio, vfio_loaded)?;
        return Ok(0);
    }
    let outcomes = bind::perform(&mut sys, &set, to_vfio, vfio_loaded)?;
    let report = Report {
        pci: &pci,
        set: &set,
        natives: &natives,
        to_vfio,
    };
    report.print(out, &outcomes)?;
    Ok(0)
}

/// The devices named on the command line, or else every device the profile covers.
fn chosen<'p>(root: &Root, opts: &Options, pci: &'p Pci) -> Result<Vec<&'p Device>> {
    let mut set = Vec::new();
    if opts.bdfs.is_empty() {
        let profile = load_profile(root, &profile_path(root, &opts.profile)?, false)?;
        // Addresses first: one that no longer holds its recorded IDs refuses the whole bind.
        if let Some(why) = crate::targets::address_bind::mismatches(pci, &profile).first() {
            bail!("{why}; nothing was bound: fix vfio.devices (`vfio-gen detect` writes them)");
        }
        set.extend(
            pci.devices
                .iter()
                .filter(|d| profile.covers(&d.bdf, &d.id())),
        );
        if set.is_empty() {
            bail!(
                "no device on this host has an ID from the profile's vfio.ids ({}); `vfio-gen iommu` lists the devices",
                profile.ids.join(", ")
            );
        }
    } else {
        for b in &opts.bdfs {
            let bdf = crate::host::pci::normalize_bdf(b).ok_or_else(|| {
                anyhow::anyhow!("{b} is not a PCI address; write it like 0000:01:00.0")
            })?;
            set.push(pci.device(&bdf).ok_or_else(|| {
                anyhow::anyhow!(
                    "no device {bdf} under /sys/bus/pci/devices; `vfio-gen iommu` lists them"
                )
            })?);
        }
    }
    Ok(set)
}

/// Unbinding: the devices vfio-pci holds; the others are skipped, each with a line saying so.
fn bound_to_vfio<'p>(set: Vec<&'p Device>, out: &mut dyn Write) -> Result<Vec<&'p Device>> {
    let (give, keep) = bind::split_for_unbind(set);
    for d in keep {
        writeln!(
            out,
            "skip {}: bound to {}, not vfio-pci",
            d.bdf,
            d.driver.as_deref().unwrap_or("no driver")
        )?;
    }
    Ok(give)
}

/// Binding: refuses devices bind::refusals names (unless --force), and a vfio-pci not loaded
/// (unless --dry-run).
fn refuse_bind(pci: &Pci, set: &[&Device], opts: &Options, vfio_loaded: bool) -> Result<()> {
    let refusals = bind::refusals(pci, set);
    if !refusals.is_empty() && !opts.force {
        bail!(
            "{}; nothing was written (--force binds anyway)",
            refusals.join("; ")
        );
    }
    if !opts.dry_run && !vfio_loaded {
        bail!(
            "vfio-pci is not loaded (no /sys/bus/pci/drivers/vfio-pci): run `modprobe vfio-pci` first"
        );
    }
    Ok(())
}

/// `--dry-run`: the sysfs writes, where each unbound device goes next, and the modprobe left.
fn print_dry_run(
    out: &mut dyn Write,
    set: &[&Device],
    natives: &[bind::Native],
    to_vfio: bool,
    vfio_loaded: bool,
) -> Result<()> {
    if to_vfio && !vfio_loaded {
        writeln!(
            out,
            "# vfio-pci is not loaded (no /sys/bus/pci/drivers/vfio-pci): `modprobe vfio-pci` must come first"
        )?;
    }
    for (d, writes) in set.iter().zip(bind::writes(set, to_vfio, vfio_loaded)) {
        if writes.is_empty() {
            writeln!(out, "# {} is already bound to vfio-pci", d.bdf)?;
        }
        for w in writes {
            writeln!(out, "{w}")?;
        }
    }
    let mut modprobe: Vec<&str> = Vec::new();
    for n in natives {
        match &n.driver {
            Some(drv) => writeln!(out, "# {} then goes to {drv} (module {})", n.bdf, n.module)?,
            None => {
                writeln!(
                    out,
                    "# {} goes to module {}, which is not loaded: drivers_probe leaves the device without a driver, and loading the module binds it",
                    n.bdf, n.module
                )?;
                if !modprobe.contains(&n.module.as_str()) {
                    modprobe.push(&n.module);
                }
            }
        }
    }
    for m in modprobe {
        writeln!(out, "modprobe {m}")?;
    }
    Ok(())
}

/// What the writes did: a line per device, and an error naming the devices not where they
/// should be.
struct Report<'a> {
    pci: &'a Pci,
    set: &'a [&'a Device],
    natives: &'a [bind::Native],
    to_vfio: bool,
}

impl Report<'_> {
    fn print(&self, out: &mut dyn Write, outcomes: &[bind::Outcome]) -> Result<()> {
        let mut failed = Vec::new();
        for (o, d) in outcomes.iter().zip(self.set) {
            let name = |drv: &Option<String>| drv.clone().unwrap_or_else(|| "no driver".into());
            let moved = format!("{} -> {}", name(&o.from), name(&o.driver));
            let why = self.why(o, d);
            writeln!(
                out,
                "{} {}: {moved}{why}",
                if o.ok { "ok  " } else { "FAIL" },
                o.bdf
            )?;
            if !o.ok {
                failed.push(match &o.driver {
                    Some(drv) => format!("{} is bound to {drv}", o.bdf),
                    None => format!("{} has no driver", o.bdf),
                });
            }
        }
        if !failed.is_empty() {
            bail!(
                "{} after the writes{}",
                failed.join(", "),
                if self.to_vfio {
                    format!(
                        "; the device may be in use (a display server, nvidia-persistenced): stop what uses it and try again. driver_override stays set to vfio-pci, so no other driver takes them meanwhile: `vfio-gen unbind {}` gives them back",
                        outcomes
                            .iter()
                            .filter(|o| !o.ok)
                            .map(|o| o.bdf.as_str())
                            .collect::<Vec<_>>()
                            .join(" ")
                    )
                } else {
                    String::new()
                }
            );
        }
        Ok(())
    }

    /// The end of a device's line: the modprobe that ran, or why it is not where it should be.
    fn why(&self, o: &bind::Outcome, d: &Device) -> String {
        if o.ok {
            return match &o.modprobe {
                Some(bind::Modprobe::Ran(m)) => format!(" (after `modprobe {m}`)"),
                _ => String::new(),
            };
        }
        if self.to_vfio {
            return String::new();
        }
        match (&o.driver, &o.modprobe) {
            (Some(_), _) => ": vfio-pci took it again".to_string(),
            (None, Some(bind::Modprobe::Left(m))) => format!(
                ": its driver is in module {m}, which is not loaded; `modprobe {m}` loads it and binds it (vfio-gen runs modprobe only with --root /)"
            ),
            (None, Some(bind::Modprobe::Ran(m))) => {
                format!(": `modprobe {m}` ran, and its driver did not take the device (see dmesg)")
            }
            (None, None) => match self.natives.iter().find(|n| n.bdf == o.bdf) {
                Some(n) => format!(
                    ": {} (module {}) is loaded and did not take it (see dmesg)",
                    n.driver.as_deref().unwrap_or("its driver"),
                    n.module
                ),
                None => format!(
                    ": no module in {} matches its modalias {}",
                    self.pci
                        .modules_alias
                        .as_deref()
                        .unwrap_or("/lib/modules/<release>/modules.alias (missing)"),
                    d.modalias.as_deref().unwrap_or("(unknown)")
                ),
            },
        }
    }
}
