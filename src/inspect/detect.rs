//! `vfio-gen detect`: a commented profile for this host. The GPU and everything that must go
//! with it, the drivers to order and keep off it, and what the root's files say about its boot
//! loader and initramfs generator are worked out here; the profile's text is the template
//! `templates/detect-profile.toml.j2`.

use super::{device_line, host_needs};
use crate::cmdline::normalize;
use crate::host::cpu::Cpu;
use crate::host::pci::{Device, Pci};
use crate::profile::{Bootloader, Initramfs};
use crate::root::Files;
use crate::targets::initramfs;
use anyhow::{Context, Result};
use minijinja::{Environment, UndefinedBehavior, Value, context};

/// The profile `detect` writes, embedded in the binary.
const TEMPLATE_NAME: &str = "detect-profile.toml.j2";
const TEMPLATE: &str = include_str!("../../templates/detect-profile.toml.j2");

/// Writes a commented profile for the host. `gpus`: the addresses asked for with `--gpu`.
pub fn detect(pci: &Pci, cpu: &Cpu, files: &dyn Files, gpus: &[String]) -> Result<String> {
    detect_with_facts(pci, cpu, files, gpus).map(|(text, _)| text)
}

/// [`detect`], with the facts the profile was written from (`detect --format json`).
pub fn detect_with_facts(
    pci: &Pci,
    cpu: &Cpu,
    files: &dyn Files,
    gpus: &[String],
) -> Result<(String, Value)> {
    let mut notes: Vec<String> = Vec::new();
    let chosen = choose_gpus(pci, gpus, &mut notes)?;
    if !chosen.is_empty() && chosen.iter().all(|d| d.class4() == "0302") {
        notes.push(LAPTOP_DGPU.into());
    }
    let pass = Passthrough::of(pci, &chosen, &mut notes);
    notes.extend(binding_notes(pci, files, &pass));
    notes.extend(super::reset::detect_notes(files, &pass.set));
    let drivers = Drivers::of(pci, &chosen, &pass, &mut notes);
    // The boot display goes to the guest only while it runs (single GPU); a second card may
    // (docs/handover.md section 9, README "Single GPU").
    let on_demand = chosen.iter().any(|d| d.boot_vga);
    let held = held_back(pci, &pass, on_demand);
    let active: Vec<String> = pass
        .ids
        .iter()
        .filter(|id| !held.iter().any(|(h, _)| h == *id))
        .cloned()
        .collect();
    let boot = infer_boot(files);
    let ctx = context! {
        on_demand, offer_on_demand => !on_demand && !chosen.is_empty(),
        cpu => cpu_context(cpu),
        bootloader => context! { name => boot.bootloader.0.name(), why => boot.bootloader.1 },
        initramfs => context! { name => initramfs_toml(boot.initramfs.0), why => boot.initramfs.1 },
        iommu => context! {
            on => pci.iommu_active, units => &pci.iommu_units, groups => pci.groups().len(),
        },
        passthrough => pass.set.iter().map(|d| context! {
            line => device_line(d), why => passthrough_reason(d, &chosen),
        }).collect::<Vec<_>>(),
        host_displays => host_displays(pci, &pass),
        notes => notes.iter().map(|n| wrap(n, 96)).collect::<Vec<_>>(),
        ids => active,
        by_address => pass.by_address.iter().map(|d| context! {
            address => &d.bdf, id => d.id(), name => &d.device_name,
        }).collect::<Vec<_>>(),
        held => held.iter().map(|(id, why)| context! { id, why }).collect::<Vec<_>>(),
        blacklist => drivers.blacklist,
        softdep => drivers.softdep,
        share => super::share_proposal::proposal(files, chosen.first().map(|d| d.bdf.as_str())),
    };
    render_profile(ctx.clone()).map(|text| (text, ctx))
}

/// A GPU that is a 3D controller (class 0302) has no display outputs: a muxless laptop dGPU
/// (docs/laptops.md).
const LAPTOP_DGPU: &str = "This GPU is a 3D controller (class 0302): on a laptop that is a muxless (Optimus) dGPU, with no display outputs of its own; the integrated GPU drives the screen and keeps the host's desktop. In a guest it renders, but its picture reaches you only through Looking Glass (add a [looking-glass] section) or streaming, and the guest needs a virtual display. Its ROM is usually in the system firmware, not readable from the card: `vfio-gen rom` says; give the guest a ROM file ([libvirt] rom). docs/laptops.md says more.";

/// The profile's text from its template.
fn render_profile(ctx: Value) -> Result<String> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()?,
    );
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_filter("toml_array", |items: Vec<String>| list(&items));
    env.add_template(TEMPLATE_NAME, TEMPLATE)?;
    env.get_template(TEMPLATE_NAME)
        .and_then(|t| t.render(ctx))
        .with_context(|| format!("rendering the template {TEMPLATE_NAME}"))
}

/// The GPUs the profile is for: the ones `--gpu` names, else the one GPU that is not the boot
/// display (the first of several, the boot display when it is the only one).
fn choose_gpus<'a>(
    pci: &'a Pci,
    gpus: &[String],
    notes: &mut Vec<String>,
) -> Result<Vec<&'a Device>> {
    if gpus.is_empty() {
        Ok(default_gpu(pci, notes))
    } else {
        gpus.iter().map(|g| named_gpu(pci, g, notes)).collect()
    }
}

/// The GPU `detect` takes when `--gpu` names none, with what the user should know about it.
fn default_gpu<'a>(pci: &'a Pci, notes: &mut Vec<String>) -> Vec<&'a Device> {
    let displays: Vec<&Device> = pci.devices.iter().filter(|d| d.is_display()).collect();
    let candidates: Vec<&Device> = displays.iter().copied().filter(|d| !d.boot_vga).collect();
    match candidates.as_slice() {
        [] => match displays.as_slice() {
            [] => {
                notes.push("No GPU (PCI display controller, class 03xx) under /sys/bus/pci/devices: nothing to pass through. Fill in vfio.ids by hand if the card is not visible yet.".into());
                Vec::new()
            }
            [only, ..] => {
                notes.push(format!("The only GPU, {}, is the boot display: the host loses its console when it goes to a guest.", only.bdf));
                vec![*only]
            }
        },
        [one] => vec![*one],
        [first, ..] => {
            notes.push(format!(
                "Several GPUs could go to a guest: {}. This profile takes {}; run `vfio-gen detect --gpu <address>` for another.",
                candidates.iter().map(|d| format!("{} ({})", d.bdf, d.device_name)).collect::<Vec<_>>().join(", "),
                first.bdf
            ));
            vec![*first]
        }
    }
}

/// The GPU at the address `--gpu` names (`g` as the user wrote it).
fn named_gpu<'a>(pci: &'a Pci, g: &str, notes: &mut Vec<String>) -> Result<&'a Device> {
    let bdf = crate::host::pci::normalize_bdf(g).ok_or_else(|| {
        anyhow::anyhow!(
            "--gpu {g}: not a PCI address; write it like 0000:01:00.0 (`vfio-gen iommu` lists them)"
        )
    })?;
    let d = pci.device(&bdf).ok_or_else(|| {
        anyhow::anyhow!(
            "--gpu {g}: no such device under /sys/bus/pci/devices; `vfio-gen iommu` lists them"
        )
    })?;
    if !d.is_display() {
        anyhow::bail!(
            "--gpu {g}: {} ({} [{}]) is not a GPU; name the GPU's display function (class 03xx), its other functions come with it",
            d.bdf,
            d.class_name,
            d.class4()
        );
    }
    if d.boot_vga {
        notes.push(format!(
            "{} is the boot display: the host loses its console when it goes to a guest.",
            d.bdf
        ));
    }
    Ok(d)
}

/// What goes to the guest and how the profile names it.
struct Passthrough<'a> {
    /// Every function of the chosen cards and every non-bridge device of their IOMMU groups,
    /// by address.
    set: Vec<&'a Device>,
    /// The devices that stay with the host.
    others: Vec<&'a Device>,
    /// The IDs for vfio.ids: the set's, but for those a host device shares.
    ids: Vec<String>,
    /// The set's functions whose IDs a host device shares, for vfio.devices.
    by_address: Vec<&'a Device>,
}

impl<'a> Passthrough<'a> {
    fn of(pci: &'a Pci, chosen: &[&'a Device], notes: &mut Vec<String>) -> Passthrough<'a> {
        let mut set: Vec<&Device> = chosen.iter().flat_map(|d| pci.passthrough_set(d)).collect();
        set.sort_by(|a, b| a.bdf.cmp(&b.bdf));
        set.dedup_by(|a, b| a.bdf == b.bdf);
        let mut ids: Vec<String> = Vec::new();
        for d in &set {
            if !ids.contains(&d.id()) {
                ids.push(d.id());
            }
        }
        let others: Vec<&Device> = pci
            .devices
            .iter()
            .filter(|d| !set.iter().any(|s| s.bdf == d.bdf))
            .collect();
        // IDs a device staying with the host shares: vfio-pci ids= would take it too, so those
        // functions are named by address in vfio.devices (docs/binding-at-boot.md).
        let mut shared_ids: Vec<String> = Vec::new();
        for d in others.iter().filter(|d| ids.contains(&d.id())) {
            notes.push(format!(
                "{} ({}) has the same IDs [{}] but stays with the host: vfio-pci ids= would take it too, so this profile names {} by address in vfio.devices, bound at boot only while each address holds its IDs.",
                d.bdf, d.device_name, d.id(), set.iter().filter(|s| s.id() == d.id()).map(|s| s.bdf.as_str()).collect::<Vec<_>>().join(" ")
            ));
            if !shared_ids.contains(&d.id()) {
                shared_ids.push(d.id());
            }
        }
        let by_address: Vec<&Device> = set
            .iter()
            .copied()
            .filter(|d| shared_ids.contains(&d.id()))
            .collect();
        ids.retain(|id| !shared_ids.contains(id));
        Passthrough {
            set,
            others,
            ids,
            by_address,
        }
    }
}

/// What keeps the binding from working on this host: a built-in vfio-pci for vfio.devices, an
/// IOMMU that is off.
fn binding_notes(pci: &Pci, files: &dyn Files, pass: &Passthrough) -> Vec<String> {
    let mut notes = Vec::new();
    if !pass.by_address.is_empty()
        && let Ok(facts) = crate::host::Facts::read(files)
        && let Some(release) = facts.vfio_pci_builtin
    {
        notes.push(format!(
            "Kernel {release} has vfio-pci built in (modules.builtin), so the boot-time binding of vfio.devices cannot run there (its `install vfio-pci` line needs vfio-pci as a module): `vfio-gen plan` refuses it until a kernel with vfio-pci as a module is booted; until then bind after boot with `vfio-gen bind -p <this file>`."
        ));
    }
    if !pci.iommu_active {
        notes.push("The IOMMU is off, so the IOMMU groups are unknown: after enabling it and rebooting, run `vfio-gen check` to see what else must go with the GPU.".into());
    }
    notes
}

/// The modules vfio.softdep orders after vfio-pci and vfio.blacklist keeps off.
struct Drivers {
    softdep: Vec<String>,
    blacklist: Vec<String>,
}

impl Drivers {
    /// Softdep every driver a passthrough function uses; blacklist GPU drivers no host device
    /// uses.
    fn of(pci: &Pci, chosen: &[&Device], pass: &Passthrough, notes: &mut Vec<String>) -> Drivers {
        let host_drivers: Vec<String> = pass
            .others
            .iter()
            .filter_map(|d| d.driver.clone())
            .map(|d| normalize(&d))
            .collect();
        let mut softdep = card_modules(pci, chosen, pass, notes);
        notes.extend(shared_group_note(chosen, pass));
        let blacklist = display_drivers(pass, &host_drivers, &mut softdep, notes);
        for m in &softdep {
            if crate::host::pci::is_gpu_driver(m) && host_drivers.contains(m) {
                notes.push(format!("The host's own GPU also uses {m}: the softdep only orders loading, it does not take {m} from the host."));
            }
        }
        Drivers { softdep, blacklist }
    }
}

/// The modules the chosen cards' own functions use, for softdep. Only the card's own
/// functions: ordering the drivers of other group members (a disk, a NIC) before vfio-pci gains
/// nothing. A function vfio-pci already holds (or that has no driver) counts with the modules
/// its modalias resolves to: the drivers it gets when vfio-pci does not take it first
/// (docs/binding.md).
fn card_modules(
    pci: &Pci,
    chosen: &[&Device],
    pass: &Passthrough,
    notes: &mut Vec<String>,
) -> Vec<String> {
    let mut softdep: Vec<String> = Vec::new();
    let mut unknown: Vec<&str> = Vec::new();
    for d in pass
        .set
        .iter()
        .filter(|d| chosen.iter().any(|c| c.slot() == d.slot()))
    {
        let modules: Vec<String> = match d.driver.as_deref() {
            Some("vfio-pci") | None => {
                if d.native_modules.is_empty() && d.driver.is_some() {
                    unknown.push(&d.bdf);
                }
                d.native_modules.clone()
            }
            Some(_) => d.module.iter().cloned().collect(),
        };
        for module in modules {
            // A name sysfs gives that is no module name (control characters, blanks) would
            // make the profile invalid: it is named in a note instead.
            if crate::profile::check_module(&module).is_err() {
                notes.push(format!(
                    "{} uses the driver {module:?}, which is not a module name, so it is not in softdep: check the device's driver by hand.",
                    d.bdf
                ));
                continue;
            }
            if !matches!(module.as_str(), "vfio_pci" | "pci_stub") && !softdep.contains(&module) {
                softdep.push(module);
            }
        }
    }
    if !unknown.is_empty() {
        notes.push(format!(
            "{} {} on vfio-pci, and {}, so the drivers vfio-pci keeps from them are unknown: softdep may lack them; add them by hand.",
            unknown.join(", "),
            if unknown.len() == 1 { "is" } else { "are" },
            match &pci.modules_alias {
                Some(p) => format!("no alias in {p} matches their modalias"),
                None => "this root has no /lib/modules/<release>/modules.alias".into(),
            }
        ));
    }
    softdep
}

/// The devices off the chosen cards that go to the guest because they share its IOMMU group.
fn shared_group_note(chosen: &[&Device], pass: &Passthrough) -> Option<String> {
    let shared: Vec<&&Device> = pass
        .set
        .iter()
        .filter(|d| !chosen.iter().any(|c| c.slot() == d.slot()))
        .collect();
    (!shared.is_empty()).then(|| format!(
        "The GPU shares its IOMMU group with {}: they must go to the guest with it, and the host loses them. If one is the host's disk or network, move the card to a slot with its own group instead.",
        shared.iter().map(|d| format!("{} ({}, {})", d.bdf, d.device_name, d.driver.as_deref().unwrap_or("no driver"))).collect::<Vec<_>>().join(", ")
    ))
}

/// The blacklist: the open GPU drivers of the passthrough GPUs' vendors that no host device
/// uses. Adds `nvidia` to `softdep` for an NVIDIA card when the host does not use it.
fn display_drivers(
    pass: &Passthrough,
    host_drivers: &[String],
    softdep: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Vec<String> {
    let mut blacklist: Vec<String> = Vec::new();
    for d in pass.set.iter().filter(|d| d.is_display()) {
        let candidates: &[&str] = match d.vendor.as_str() {
            "10de" => &["nouveau"],
            "1002" => &["radeon"],
            _ => &[],
        };
        for m in candidates {
            if host_drivers.iter().any(|h| h == m) {
                notes.push(format!("The host uses {m} for another device, so it is not blacklisted; the softdep keeps it off the passthrough GPU."));
            } else if !blacklist.contains(&m.to_string()) {
                blacklist.push(m.to_string());
            }
        }
        if d.vendor == "10de"
            && !softdep.iter().any(|s| s == "nvidia")
            && !host_drivers.iter().any(|h| h == "nvidia")
        {
            softdep.push("nvidia".into());
        }
    }
    blacklist
}

/// Why a device of the passthrough set goes to the guest.
fn passthrough_reason(d: &Device, chosen: &[&Device]) -> String {
    if chosen.iter().any(|c| c.bdf == d.bdf) {
        "the GPU".to_string()
    } else if chosen.iter().any(|c| c.slot() == d.slot()) {
        "same card".to_string()
    } else {
        format!(
            "same IOMMU group {}",
            d.iommu_group.map(|g| g.to_string()).unwrap_or_default()
        )
    }
}

/// The boot displays that stay with the host, each with whether vfio.ids takes it too.
fn host_displays(pci: &Pci, pass: &Passthrough) -> Vec<Value> {
    pci.devices
        .iter()
        .filter(|d| d.is_display() && d.boot_vga && !pass.set.iter().any(|s| s.bdf == d.bdf))
        .map(|d| context! { line => device_line(d), taken => pass.ids.contains(&d.id()) })
        .collect()
}

/// The CPU as the profile's comment and `host.cpu` name it.
fn cpu_context(cpu: &Cpu) -> Value {
    context! {
        name => if cpu.is_amd() { "amd" } else { "intel" },
        model => &cpu.model_name,
        vendor => &cpu.vendor_id,
        virtualization => cpu.virtualization,
        hypervisor => cpu.hypervisor,
    }
}

/// The IDs among `pass.ids` that would take a device the host likely needs (any device with that
/// ID, the chosen card's or another), with the reason: `detect` writes them commented out.
/// `on_demand`: the boot display is handed over while a VM runs, which holds nothing back.
fn held_back(pci: &Pci, pass: &Passthrough, on_demand: bool) -> Vec<(String, String)> {
    let gpu_slots: Vec<&str> = pass
        .set
        .iter()
        .filter(|d| d.is_display())
        .map(|d| d.slot())
        .collect();
    let mut out = Vec::new();
    for id in &pass.ids {
        for d in pci.devices.iter().filter(|d| &d.id() == id) {
            if let Some(why) = host_needs(d, gpu_slots.contains(&d.slot()))
                .iter()
                .find(|w| !(on_demand && w.starts_with("the boot display")))
            {
                out.push((
                    id.clone(),
                    format!(
                        "{} ({}, {}): {why}",
                        d.bdf,
                        d.device_name,
                        d.driver.as_deref().unwrap_or("no driver")
                    ),
                ));
                break;
            }
        }
    }
    out
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let Some(last) = lines.last_mut() else {
            break;
        };
        if !last.is_empty() && last.len() + 1 + word.len() > width {
            lines.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

fn initramfs_toml(i: Initramfs) -> &'static str {
    initramfs::generator(i).map_or("none", |g| g.name())
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML array of basic strings on one line.
fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| toml_string(i)).collect();
    format!("[{}]", quoted.join(", "))
}

/// The vendors of the display adapters hypervisors emulate: QEMU's stdvga/bochs (1234),
/// virtio-gpu (1af4), QXL (1b36), VMware SVGA (15ad), VirtualBox (80ee). Inside a VM such a card
/// as the only display is no GPU to pass through.
const EMULATED_DISPLAY_VENDORS: &[&str] = &["1234", "1af4", "1b36", "15ad", "80ee"];

/// `detect` with nothing to pass through: why, and what to do (exit 1, no profile). `None`
/// when there is a GPU for a guest or `--gpu` names one.
pub fn no_candidate(pci: &Pci, virt: &crate::host::virt::Virt, gpus: &[String]) -> Option<String> {
    if !gpus.is_empty() {
        return None;
    }
    let displays: Vec<&Device> = pci.devices.iter().filter(|d| d.is_display()).collect();
    if displays.iter().any(|d| !d.boot_vga) {
        return None;
    }
    let mut text = match displays.as_slice() {
        [] => "no GPU to pass through: there is no PCI display controller (class 03xx) under /sys/bus/pci/devices, so there is no profile to write".to_string(),
        // Bare metal, or a real card in a VM: a single-GPU profile (`[vfio] mode = "on-demand"`).
        [only] if !(virt.is_vm() && EMULATED_DISPLAY_VENDORS.contains(&only.vendor.as_str())) => {
            return None;
        }
        [only] => format!(
            "no GPU to pass through besides the boot display: {}, the only GPU, is the host's console. \
             To give it to a guest anyway (single-GPU passthrough: the host keeps no display), run \
             `vfio-gen detect --gpu {}` (it writes a profile with [vfio] mode = \"on-demand\": the card goes to the guest only while the guest runs)",
            device_line(only),
            only.bdf
        ),
        many => format!(
            "no GPU to pass through: every GPU is a boot display ({}); name one with `vfio-gen detect --gpu <address>`",
            many.iter().map(|d| d.bdf.as_str()).collect::<Vec<_>>().join(", ")
        ),
    };
    if virt.is_vm() {
        text.push_str(&format!(
            ".\nThis is {}. A GPU reaches a guest inside it only when the outer host passes the card to this VM and gives it a virtual IOMMU: \
             on QEMU a q35 machine with `-device intel-iommu,intremap=on,caching-mode=on` (and `-machine kernel-irqchip=split`) or `-device amd-iommu`; \
             in libvirt `<iommu model='intel'><driver intremap='on' caching_mode='on'/></iommu>` (docs/virtual-machines.md). \
             The IOMMU here is {}",
            virt.describe(),
            if pci.iommu_active {
                format!("on ({}).", pci.iommu_units.join(", "))
            } else {
                "off: no vIOMMU yet.".to_string()
            }
        ));
    }
    Some(text)
}

// ---- What the root's files say about its boot loader and initramfs generator ----
// The one place `detect` decides on a boot loader (`rollback` asks it too): the per-boot-loader
// trait of issue 19 takes this over.

/// The boot loader and initramfs generator the root shows, each with its evidence.
struct Boot {
    bootloader: (Bootloader, String),
    initramfs: (Initramfs, String),
}

fn infer_boot(files: &dyn Files) -> Boot {
    let bootloader = infer_bootloader(files);
    // An image brings its initramfs (rpm-ostree initramfs-etc adds the files).
    let initramfs = match crate::plan::loader::of(bootloader.0).image_initramfs() {
        Some(why) => (Initramfs::None, why.to_string()),
        None => infer_initramfs(files),
    };
    Boot {
        bootloader,
        initramfs,
    }
}

/// What the files under the root say about the boot loader: each loader is asked
/// (`plan::loader::detect`).
pub fn infer_bootloader(files: &dyn Files) -> (Bootloader, String) {
    crate::plan::loader::detect(files)
}

/// The initramfs generator the root's configuration shows, with the evidence.
pub fn infer_initramfs(files: &dyn Files) -> (Initramfs, String) {
    for &i in initramfs::DETECT_ORDER {
        if let Some(evidence) = initramfs::generator(i).and_then(|g| g.detect(files)) {
            return (i, evidence);
        }
    }
    (Initramfs::None, "no initramfs generator recognised".into())
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::MemFiles;

    /// The template with every branch taken, against the text `detect` wrote by hand before
    /// it had a template (the cli tests and fake hosts check it through the binary).
    #[test]
    fn the_profile_template_renders_every_part() {
        let ctx = context! {
            cpu => context! { name => "amd", model => "", vendor => "AuthenticAMD",
                virtualization => false, hypervisor => true },
            bootloader => context! { name => "grub", why => "/etc/default/grub" },
            initramfs => context! { name => "dracut", why => "/etc/dracut.conf(.d)" },
            iommu => context! { on => true, units => vec!["ivhd0", "ivhd1"], groups => 3 },
            passthrough => vec![
                context! { line => "L1", why => "the GPU" },
                context! { line => "L2", why => "same card" },
            ],
            host_displays => vec![
                context! { line => "D1", taken => false },
                context! { line => "D2", taken => true },
            ],
            notes => vec![vec!["first line", "second"], vec!["one"]],
            ids => vec!["10de:2204"],
            by_address => vec![context! { address => "0000:0b:00.0", id => "10de:1aef", name => "GA102 {{ Audio }}" }],
            held => vec![context! { id => "1022:149c", why => "0000:0c:00.3 (USB, xhci_hcd): a USB controller" }],
            blacklist => vec!["nouveau"],
            softdep => vec!["snd_hda_intel", "a\"b\\c\u{1b}"],
            on_demand => false, offer_on_demand => false,
        };
        let want = r#"# Host profile written by `vfio-gen detect`. Review it, then run
#   vfio-gen plan -p <this file>    (shows every change, touches nothing)
#   vfio-gen apply -p <this file>   (installs it, with backups; `vfio-gen rollback` undoes it)
#
# CPU: unknown model (AuthenticAMD, NO vmx/svm flag: this runs under a hypervisor; enable nested virtualization there)
# Boot loader: grub (/etc/default/grub)
# Initramfs: dracut (/etc/dracut.conf(.d))
# IOMMU: on (ivhd0, ivhd1), 3 groups
#
# Passthrough devices (every function of the card and every non-bridge device of its IOMMU group):
#   L1  (the GPU)
#   L2  (same card)
# The host keeps its display on D1
# WARNING: the boot display D2 has the same IDs, so vfio.ids takes it too (see below)
#
# first line
# second
#
# one

[host]
cpu = "amd"
bootloader = "grub"
initramfs = "dracut"

[vfio]
ids = ["10de:2204"]
# By address: these IDs are shared with a device the host keeps (see above).
devices = [
    { address = "0000:0b:00.0", id = "10de:1aef" },  # GA102 {{ Audio }}
]
# Held back: these IDs would also take devices the host needs (apply refuses them
# without --force). Move the card to a slot with its own IOMMU group, or bind by address.
#   "1022:149c"  0000:0c:00.3 (USB, xhci_hcd): a USB controller
blacklist = ["nouveau"]
softdep = ["snd_hda_intel", "a\"b\\c\u001B"]
disable_vga = false

[kernel]
iommu = "on"
iommu_pt = true
driver_pre = "auto"
"#;
        assert_eq!(render_profile(ctx).unwrap(), want);
    }

    #[test]
    fn the_profile_template_leaves_out_what_is_empty() {
        let ctx = context! {
            cpu => context! { name => "intel", model => "i7", vendor => "",
                virtualization => true, hypervisor => false },
            bootloader => context! { name => "systemd-boot", why => "loader entries found" },
            initramfs => context! { name => "none", why => "no initramfs generator recognised" },
            iommu => context! { on => false, units => Vec::<String>::new(), groups => 0 },
            passthrough => Vec::<Value>::new(),
            host_displays => Vec::<Value>::new(),
            notes => Vec::<Vec<String>>::new(),
            ids => Vec::<String>::new(),
            by_address => Vec::<Value>::new(),
            held => Vec::<Value>::new(),
            blacklist => Vec::<String>::new(),
            softdep => Vec::<String>::new(),
            on_demand => false, offer_on_demand => false,
        };
        let got = render_profile(ctx).unwrap();
        let head = "# CPU: i7 (vendor unknown, Intel assumed, virtualization available)\n\
                    # Boot loader: systemd-boot (loader entries found)\n\
                    # Initramfs: none (no initramfs generator recognised)\n\
                    # IOMMU: OFF\n#\n\
                    # Passthrough devices (every function of the card and every non-bridge device of its IOMMU group):\n\
                    \n[host]\n";
        assert!(got.contains(head), "{got}");
        assert!(
            got.contains("\n[vfio]\nids = []\nblacklist = []\nsoftdep = []\ndisable_vga = false\n"),
            "{got}"
        );
        assert!(got.ends_with("driver_pre = \"auto\"\n"), "{got}");
    }

    #[test]
    fn the_generator_is_read_off_its_configuration() {
        let arch = MemFiles::new().with("/etc/mkinitcpio.conf", "HOOKS=(base)\n");
        assert_eq!(infer_initramfs(&arch).0, Initramfs::Mkinitcpio);
        // EndeavourOS: dracut, with mkinitcpio.conf left from the Arch base.
        let eos = arch
            .clone()
            .with("/etc/dracut.conf.d/eos.conf", "hostonly=yes\n");
        assert_eq!(
            infer_initramfs(&eos),
            (Initramfs::Dracut, "/etc/dracut.conf(.d)".to_string())
        );
        let booster = eos.with("/etc/booster.yaml", "universal: false\n");
        assert_eq!(infer_initramfs(&booster).0, Initramfs::Booster);
        let debian = MemFiles::new().with("/etc/initramfs-tools/modules", "# List\n");
        assert_eq!(infer_initramfs(&debian).0, Initramfs::InitramfsTools);
        assert_eq!(infer_initramfs(&MemFiles::new()).0, Initramfs::None);
        assert_eq!(initramfs_toml(Initramfs::InitramfsTools), "initramfs-tools");
        assert_eq!(initramfs_toml(Initramfs::None), "none");
    }

    #[test]
    fn refind_is_read_off_its_config_and_options_file() {
        let grub = MemFiles::new().with("/etc/default/grub", "GRUB_TIMEOUT=5\n");
        let refind = grub
            .clone()
            .with("/boot/efi/EFI/refind/refind.conf", "timeout 20\n")
            .with("/boot/refind_linux.conf", "\"Boot\" \"ro\"\n");
        assert_eq!(
            infer_bootloader(&refind),
            (
                Bootloader::Refind,
                "/boot/efi/EFI/refind/refind.conf on the ESP and /boot/refind_linux.conf"
                    .to_string()
            )
        );
        // rEFInd's config alone does not outweigh GRUB's; alone on the root it is named.
        let conf_only = grub.with("/efi/EFI/BOOT/refind.conf", "timeout 5\n");
        assert_eq!(infer_bootloader(&conf_only).0, Bootloader::Grub);
        let alone = MemFiles::new().with("/efi/EFI/BOOT/refind.conf", "timeout 5\n");
        assert_eq!(infer_bootloader(&alone).0, Bootloader::Refind);
        assert_eq!(Bootloader::Refind.name(), "refind");
    }

    #[test]
    fn limine_is_read_off_limine_conf() {
        let cachy = MemFiles::new()
            .with("/boot/limine.conf", "timeout: 5\n")
            .with("/etc/default/grub", "GRUB_TIMEOUT=5\n");
        assert_eq!(
            infer_bootloader(&cachy),
            (Bootloader::Limine, "/boot/limine.conf".to_string())
        );
        let esp = MemFiles::new().with("/efi/EFI/BOOT/limine.conf", "timeout: 5\n");
        assert_eq!(infer_bootloader(&esp).0, Bootloader::Limine);
        assert_eq!(Bootloader::Limine.name(), "limine");
    }

    #[test]
    fn the_boot_loader_is_read_off_its_files() {
        let entries = MemFiles::new().with("/boot/loader/entries/arch.conf", "options rw\n");
        assert_eq!(infer_bootloader(&entries).0, Bootloader::SystemdBoot);
        let both = entries
            .clone()
            .with("/etc/default/grub", "GRUB_TIMEOUT=5\n");
        assert_eq!(
            infer_bootloader(&both),
            (Bootloader::Grub, "/etc/default/grub".to_string())
        );
        let proxmox = MemFiles::new()
            .with("/etc/kernel/cmdline", "root=ZFS=rpool/ROOT/pve-1\n")
            .with("/etc/kernel/proxmox-boot-uuids", "5A1B-0C2D\n")
            .with("/usr/sbin/proxmox-boot-tool", "#!/bin/sh\n");
        assert_eq!(infer_bootloader(&proxmox).0, Bootloader::KernelCmdline);
        // Without the ESP list proxmox-boot-tool syncs nothing: GRUB boots from /boot.
        let mut pve_grub = proxmox
            .clone()
            .with("/etc/default/grub", "GRUB_CMDLINE_LINUX=\"\"\n");
        pve_grub.remove("/etc/kernel/proxmox-boot-uuids");
        assert_eq!(infer_bootloader(&pve_grub).0, Bootloader::Grub);
        let pop = MemFiles::new()
            .with("/etc/kernelstub/configuration", "{}")
            .with(
                "/boot/efi/loader/entries/Pop_OS-current.conf",
                "options rw\n",
            );
        assert_eq!(infer_bootloader(&pop).0, Bootloader::Kernelstub);
        let fedora = MemFiles::new()
            .with("/etc/default/grub", "GRUB_ENABLE_BLSCFG=true\n")
            .with("/boot/loader/entries/a-6.11.conf", "options ro\n");
        assert_eq!(infer_bootloader(&fedora).0, Bootloader::GrubBls);
        let silverblue = fedora.clone().with("/run/ostree-booted", "");
        assert_eq!(infer_bootloader(&silverblue).0, Bootloader::RpmOstree);
        let nixos = fedora.clone().with("/etc/NIXOS", "");
        assert_eq!(infer_bootloader(&nixos).0, Bootloader::Nixos);
        assert!(infer_bootloader(&MemFiles::new()).1.contains("a guess"));
    }
}
