//! `handover start`, in its phases: the checks before any change ([`prepare`]), then the
//! steps, each recorded before it is taken (docs/handover.md section 9.2).

use super::record::{self, Record, Step};
use super::system::{self, System, pci_driver, read};
use super::{Options, Report, Run, Status, boot_id, devices, scan};
use crate::cpulist;
use crate::host::pci::{Device, Pci};
use crate::profile::{Isolation, Profile};
use crate::root::{Files, Root};
use anyhow::{Result, anyhow, bail};

/// What the checks found: the record, the devices and what holds them.
pub(super) struct Prepared {
    pub rec: Record,
    root: Root,
    boot: String,
    bdfs: Vec<String>,
    set: Vec<Device>,
    boot_display: bool,
    dm: Option<String>,
    modules: Vec<String>,
    nodes: Vec<scan::Node>,
    services: Vec<String>,
    /// `[resources] isolation = "on-demand"`: the host's CPUs, for `AllowedCPUs=`.
    host_cpus: Option<String>,
}

/// The checks, nothing changed: `None` when the devices are handed over already.
pub(super) fn prepare(
    sys: &mut dyn System,
    profile: &Profile,
    opts: &Options,
    report: &mut Report,
) -> Result<Option<Prepared>> {
    let root = sys.root().clone();
    let rec = Record::at(&root)?;
    let boot = boot_id(sys);
    let pci = Pci::read(&root)?;
    let set: Vec<Device> = devices(&pci, profile)?.into_iter().cloned().collect();
    let bdfs: Vec<String> = set.iter().map(|d| d.bdf.clone()).collect();

    let entries = rec.read()?;
    if let Some(first) = entries.first() {
        match &first.step {
            Step::Begin {
                boot_id, devices, ..
            } if *boot_id == boot => {
                if entries.last().is_some_and(|e| e.step == Step::End) && *devices == bdfs {
                    report.note = Some(format!(
                        "{} already handed over to vfio-pci; nothing to do",
                        bdfs.join(", ")
                    ));
                    return Ok(None);
                }
                bail!(
                    "a handover is active ({} holds it); run `vfio-gen handover stop` first; nothing was changed",
                    record::DIR
                );
            }
            // A record of another boot: the reboot undid it.
            _ => rec.clear()?,
        }
    }

    if !root.exists("/sys/bus/pci/drivers/vfio-pci") {
        sys.modprobe("vfio-pci").map_err(|e| {
            anyhow!("vfio-pci is not available (no /sys/bus/pci/drivers/vfio-pci): {e:#}; nothing was changed")
        })?;
        if !root.exists("/sys/bus/pci/drivers/vfio-pci") {
            bail!(
                "`modprobe vfio-pci` ran and /sys/bus/pci/drivers/vfio-pci is still missing; nothing was changed"
            );
        }
    }

    let boot_display = set.iter().any(|d| d.boot_vga);
    let dm = if boot_display {
        let u = sys.unit("display-manager.service")?;
        (u.loaded && u.active).then_some(u.id)
    } else {
        None
    };
    let refs: Vec<&Device> = set.iter().collect();
    let modules = scan::nvidia_modules(&root, &refs, &pci.devices);
    let nodes = scan::nodes(&root, &refs, !modules.is_empty());
    let outside: Vec<scan::Holder> = scan::holders(&root, &nodes)
        .into_iter()
        .filter(|h| dm.is_none() || h.unit != dm)
        .collect();
    let mut services: Vec<String> = Vec::new();
    if !outside.is_empty() {
        let users: Vec<&scan::Holder> = outside
            .iter()
            .filter(|h| !h.system || h.unit.is_none())
            .collect();
        let named = |hs: &[&scan::Holder]| {
            hs.iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        };
        if !opts.force || !users.is_empty() {
            let all: Vec<&scan::Holder> = outside.iter().collect();
            bail!(
                "the card is in use: {}; {}; nothing was changed",
                named(&all),
                if users.is_empty() {
                    "stop those services, or run again with --force to have vfio-gen stop them (and start them again at `handover stop`)"
                } else {
                    "processes of a user session are never stopped by vfio-gen: log out of that session (or quit the programs), then try again"
                }
            );
        }
        for h in &outside {
            if let Some(u) = &h.unit
                && !services.contains(u)
            {
                services.push(u.clone());
            }
        }
    }

    let host_cpus = host_cpus(sys, profile, report)?;
    Ok(Some(Prepared {
        rec,
        root,
        boot,
        bdfs,
        set,
        boot_display,
        dm,
        modules,
        nodes,
        services,
        host_cpus,
    }))
}

/// The units whose `AllowedCPUs=` an on-demand isolation limits (docs/handover.md section 6):
/// the three top-level units the public hook scripts limit; `machine.slice` (QEMU) is left.
pub(super) const SLICES: [&str; 3] = ["system.slice", "user.slice", "init.scope"];

/// With `[resources] isolation = "on-demand"`, the CPUs left to the host (online minus
/// `isolate_cpus`); refused when the kernel's cgroup v2 has no `cpuset`. `None` without it,
/// or under a root with no systemd to ask (said in the report).
fn host_cpus(sys: &dyn System, profile: &Profile, report: &mut Report) -> Result<Option<String>> {
    let Some(cpus) = profile
        .resources
        .as_ref()
        .filter(|r| r.isolation == Isolation::OnDemand)
        .and_then(|r| r.isolate_cpus.as_ref())
    else {
        return Ok(None);
    };
    let root = sys.root();
    if !sys.unit(SLICES[0])?.loaded {
        report.push(
            "cpus",
            Status::Skipped,
            format!(
                "no systemd answers for {SLICES:?} under this root: the host's CPUs are not limited"
            ),
        );
        return Ok(None);
    }
    let controllers = read(root, "/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
    if !controllers.split_whitespace().any(|c| c == "cpuset") {
        bail!(
            "[resources] isolation = \"on-demand\" needs the cgroup v2 cpuset controller, and /sys/fs/cgroup/cgroup.controllers does not list it (cgroup v1, or a kernel without CONFIG_CPUSETS); use isolation = \"boot\"; nothing was changed"
        );
    }
    let online_text = read(root, "/sys/devices/system/cpu/online").unwrap_or_default();
    let online = cpulist::parse(online_text.trim(), cpulist::MAX_CPUS).map_err(|e| {
        anyhow!("/sys/devices/system/cpu/online reads {online_text:?}: {e}; nothing was changed")
    })?;
    // On demand, `apply` does not judge isolate_cpus against the host (`check` fails it):
    // this is the last place before the limit. A CPU the host does not run would make the
    // limit a silent no-op for it (the host keeps every CPU the guest is meant to have).
    let missing = cpus.difference(&online);
    if !missing.is_empty() {
        bail!(
            "isolate_cpus names CPUs that are not online on this host: {missing} (online: {online}); name the guest's CPUs among the online ones; nothing was changed"
        );
    }
    let host = online.difference(cpus);
    if host.is_empty() {
        bail!(
            "isolate_cpus ({cpus}) leaves the host no online CPU (online: {online}); nothing was changed"
        );
    }
    Ok(Some(host.to_string()))
}

/// `AllowedCPUs=` of the top-level units set to the host's CPUs, each unit's value before
/// recorded for `stop`.
fn limit_cpus(run: &mut Run, p: &Prepared) -> Result<()> {
    let Some(host) = &p.host_cpus else {
        return Ok(());
    };
    for unit in SLICES {
        let before = run.sys.allowed_cpus(unit)?;
        run.take(
            Step::Cpus {
                unit: unit.to_string(),
                before,
            },
            &format!("{unit}: AllowedCPUs={host}"),
            |sys| sys.set_allowed_cpus(unit, host),
        )?;
    }
    Ok(())
}

/// Every step of a start, in order; the first error stops them (the caller undoes).
pub(super) fn steps(run: &mut Run, p: &Prepared, opts: &Options) -> Result<()> {
    run.take(
        Step::Begin {
            profile: opts.profile_path.clone(),
            sha256: opts.profile_sha256.clone(),
            boot_id: p.boot.clone(),
            pid: std::process::id(),
            devices: p.bdfs.clone(),
        },
        "",
        |_| Ok(()),
    )?;
    limit_cpus(run, p)?;
    stop_services(run, p)?;
    if p.boot_display {
        unbind_consoles(run, p)?;
    }
    release_framebuffer(run, p)?;
    unload_modules(run, p)?;
    bind_devices(run, p)?;
    run.take(Step::End, "", |_| Ok(()))
}

/// The services that hold the card (`--force`) and the display manager, stopped; then no
/// holder may be left.
fn stop_services(run: &mut Run, p: &Prepared) -> Result<()> {
    for unit in p.services.iter().chain(p.dm.iter()) {
        let was_active = run.sys.unit(unit)?.active;
        let what = if Some(unit) == p.dm.as_ref() {
            format!("stop {unit} (the display manager)")
        } else {
            format!("stop {unit} (it holds the card; --force)")
        };
        run.take(
            Step::Service {
                unit: unit.clone(),
                was_active,
            },
            &what,
            |sys| {
                sys.stop_unit(unit)?;
                if sys.unit(unit)?.active {
                    bail!("{unit} is still active after `systemctl stop`");
                }
                Ok(())
            },
        )?;
    }
    let left = scan::holders(&p.root, &p.nodes);
    if !left.is_empty() {
        let stopped: Vec<&String> = p.services.iter().chain(p.dm.iter()).collect();
        let of_stopped = left
            .iter()
            .all(|h| h.unit.as_ref().is_some_and(|u| stopped.contains(&u)));
        bail!(
            "the card is still in use after stopping the services: {}; {}",
            left.iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join("; "),
            if of_stopped {
                "the stopped service left these processes running (its KillMode= keeps them): end them (`systemctl kill` the unit, or quit the programs), then try again"
            } else {
                "log out of that session (or quit the programs), then try again"
            }
        );
    }
    Ok(())
}

/// The framebuffer consoles on the boot display, unbound and read back.
fn unbind_consoles(run: &mut Run, p: &Prepared) -> Result<()> {
    for (path, name) in scan::bound_fbcons(&p.root) {
        let what = format!("unbind the console {path} ({name})");
        let bind = format!("{path}/bind");
        run.take(Step::Vtcon { path, name }, &what, |sys| {
            sys.write(&bind, "0")?;
            match read(sys.root(), &bind).as_deref() {
                Some("0") => Ok(()),
                other => bail!(
                    "{bind} reads {} after writing 0: the console did not let go (a system console driver, or a console in graphics mode; docs/handover.md section 1)",
                    other.unwrap_or("nothing")
                ),
            }
        })?;
    }
    Ok(())
}

/// The firmware framebuffer on the handed card, released from its driver.
fn release_framebuffer(run: &mut Run, p: &Prepared) -> Result<()> {
    if let Some((device, driver)) =
        scan::firmware_framebuffer(&p.root, &p.set.iter().collect::<Vec<_>>(), p.boot_display)
    {
        let what = format!("release the firmware framebuffer {device} from {driver}");
        let dev = device.clone();
        run.take(
            Step::Fbdev {
                device: device.clone(),
                driver: driver.clone(),
            },
            &what,
            |sys| {
                sys.write(&format!("/sys/bus/platform/drivers/{driver}/unbind"), &dev)?;
                if system::link_name(
                    sys.root(),
                    &format!("/sys/bus/platform/devices/{dev}/driver"),
                )
                .is_some()
                {
                    bail!("{dev} is still bound to {driver} after the unbind");
                }
                Ok(())
            },
        )?;
    }
    Ok(())
}

/// nvidia's modules, unloaded in holder order.
fn unload_modules(run: &mut Run, p: &Prepared) -> Result<()> {
    for m in &p.modules {
        run.take(
            Step::Module { name: m.clone() },
            &format!("unload {m} (modprobe -r)"),
            |sys| {
                sys.modprobe_remove(m)?;
                if sys.root().exists(&format!("/sys/module/{m}")) {
                    bail!("{m} is still loaded after `modprobe -r {m}`");
                }
                Ok(())
            },
        )?;
    }
    Ok(())
}

/// Each function bound to vfio-pci through driver_override, unbind and drivers_probe.
fn bind_devices(run: &mut Run, p: &Prepared) -> Result<()> {
    for d in &p.set {
        let driver = pci_driver(&p.root, &d.bdf);
        if driver.as_deref() == Some("vfio-pci") {
            run.report.push(
                "bind",
                Status::Skipped,
                format!("{} is on vfio-pci already", d.bdf),
            );
            continue;
        }
        let before = read(
            &p.root,
            &format!("/sys/bus/pci/devices/{}/driver_override", d.bdf),
        )
        .filter(|o| o != "(null)" && !o.is_empty());
        let what = format!(
            "{}: {} -> vfio-pci",
            d.bdf,
            driver.as_deref().unwrap_or("no driver")
        );
        let bdf = d.bdf.clone();
        run.take(
            Step::Bind {
                bdf: bdf.clone(),
                driver: driver.clone(),
                driver_override: before,
            },
            &what,
            |sys| {
                let dev = format!("/sys/bus/pci/devices/{bdf}");
                sys.write(&format!("{dev}/driver_override"), "vfio-pci")?;
                if pci_driver(sys.root(), &bdf).is_some() {
                    sys.write(&format!("{dev}/driver/unbind"), &bdf)?;
                }
                sys.write("/sys/bus/pci/drivers_probe", &bdf)?;
                match pci_driver(sys.root(), &bdf) {
                    Some(d) if d == "vfio-pci" => Ok(()),
                    other => bail!(
                        "{bdf} is on {} after the writes, not vfio-pci",
                        other.as_deref().unwrap_or("no driver")
                    ),
                }
            },
        )?;
    }
    Ok(())
}
