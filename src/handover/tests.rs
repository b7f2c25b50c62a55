//! The handover on fake trees (docs/handover.md section 9.5): a host laid out by
//! `tests/support/fake_host.rs`, the handover's own sysfs and procfs added here, and
//! [`Fake`] applying the kernel's and systemd's behaviour to it.

use super::fake::Fake;
use super::record::{Record, Step};
use super::*;
use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::Path;

#[path = "../../tests/support/fake_host.rs"]
#[allow(dead_code, clippy::all)]
mod fake_host;

const BOOT_ID: &str = "6b7c2f39-6a7e-4f6e-9d1c-3c0b8f1e2a44";

const PROFILE: &str = r#"
[host]
cpu = "intel"
bootloader = "systemd-boot"

[vfio]
mode = "on-demand"
ids = ["10de:2204", "10de:1aef"]
"#;

fn device(bdf: &str, class: &str, id: &str, driver: &str, group: u32, boot_vga: bool) -> String {
    let (v, d) = id.split_once(':').unwrap();
    let parent = if bdf.starts_with("0000:01:") {
        "parent = \"0000:00:01.0\"\n"
    } else {
        ""
    };
    let vga = if class.starts_with("0x0300") {
        format!("boot_vga = {boot_vga}\n")
    } else {
        String::new()
    };
    format!(
        "[[device]]\nbdf = \"{bdf}\"\n{parent}class = \"{class}\"\nvendor = \"0x{v}\"\ndevice = \"0x{d}\"\ndriver = \"{driver}\"\ngroup = {group}\n{vga}"
    )
}

/// What the host has besides the RTX 3090 (01:00.0, 01:00.1).
#[derive(Default, Clone, Copy)]
struct Shape {
    /// An Intel iGPU (00:02.0, i915) is the boot display: the 3090 is a second card.
    igpu: bool,
    /// fbcon is a system driver (`(S)`): its `bind` ignores writes.
    stubborn_console: bool,
}

fn rel(from: &Path, to: &Path) -> std::path::PathBuf {
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = std::path::PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    out
}

fn file(root: &Path, path: &str, text: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// `link` → `target`, relative, as the kernel's sysfs links are.
fn link(root: &Path, link: &str, target: &str) {
    let l = root.join(link);
    std::fs::create_dir_all(l.parent().unwrap()).unwrap();
    symlink(rel(l.parent().unwrap(), &root.join(target)), l).unwrap();
}

/// A process holding `node` (a dangling link in the tree: only the link is read).
fn process(root: &Path, pid: u32, comm: &str, cgroup: &str, node: &str) {
    file(root, &format!("proc/{pid}/comm"), &format!("{comm}\n"));
    file(
        root,
        &format!("proc/{pid}/cgroup"),
        &format!("0::{cgroup}\n"),
    );
    file(root, &format!("proc/{pid}/maps"), "");
    std::fs::create_dir_all(root.join(format!("proc/{pid}/fd"))).unwrap();
    symlink(node, root.join(format!("proc/{pid}/fd/3"))).unwrap();
}

/// A single-GPU host (or with `igpu`, a second-card host): an RTX 3090 on nvidia with its
/// modules, fbcon on `vtcon1` after the `(S) dummy device`, `efi-framebuffer.0` on efifb,
/// gdm running Xorg on the card.
fn host(shape: Shape) -> (tempfile::TempDir, Fake) {
    let mut desc = String::from(
        "release = \"6.9.7-arch1-1\"\ncmdline = \"root=/dev/nvme0n1p2 intel_iommu=on iommu=pt\"\niommu = \"dmar\"\nvfio_pci_loaded = true\n\n[cpu]\nvendor = \"GenuineIntel\"\nmodel_name = \"12th Gen Intel(R) Core(TM) i7-12700K\"\nvirtualization = true\n\n[driver_modules]\nnvidia = \"nvidia\"\nsnd_hda_intel = \"snd_hda_intel\"\n\n",
    );
    desc += &device("0000:00:00.0", "0x060000", "8086:4668", "", 1, false)
        .replace("driver = \"\"\n", "");
    desc += &device(
        "0000:00:01.0",
        "0x060400",
        "8086:460d",
        "pcieport",
        2,
        false,
    );
    if shape.igpu {
        desc += &device("0000:00:02.0", "0x030000", "8086:4680", "i915", 0, true);
    }
    desc += &device(
        "0000:01:00.0",
        "0x030000",
        "10de:2204",
        "nvidia",
        2,
        !shape.igpu,
    );
    desc += &device(
        "0000:01:00.1",
        "0x040300",
        "10de:1aef",
        "snd_hda_intel",
        2,
        false,
    );
    let host: fake_host::Host = toml::from_str(&desc).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hosts");
    fake_host::build_host(&host, &fixtures, tmp.path()).unwrap();
    let r = tmp.path();
    file(r, "proc/sys/kernel/random/boot_id", &format!("{BOOT_ID}\n"));
    // nvidia's modules and who holds whom (docs/handover.md section 3).
    for m in ["nvidia", "nvidia_modeset", "nvidia_drm", "nvidia_uvm"] {
        file(r, &format!("sys/module/{m}/refcnt"), "0\n");
        std::fs::create_dir_all(r.join(format!("sys/module/{m}/holders"))).unwrap();
    }
    link(
        r,
        "sys/module/nvidia/holders/nvidia_modeset",
        "sys/module/nvidia_modeset",
    );
    link(
        r,
        "sys/module/nvidia/holders/nvidia_uvm",
        "sys/module/nvidia_uvm",
    );
    link(
        r,
        "sys/module/nvidia_modeset/holders/nvidia_drm",
        "sys/module/nvidia_drm",
    );
    // The card's nodes.
    let gpu = std::fs::canonicalize(r.join("sys/bus/pci/devices/0000:01:00.0")).unwrap();
    let hda = std::fs::canonicalize(r.join("sys/bus/pci/devices/0000:01:00.1")).unwrap();
    for n in ["drm/card0", "drm/renderD128"] {
        std::fs::create_dir_all(gpu.join(n)).unwrap();
    }
    std::fs::create_dir_all(hda.join("sound/card1")).unwrap();
    file(
        r,
        "proc/driver/nvidia/gpus/0000:01:00.0/information",
        "Model: \t\t NVIDIA GeForce RTX 3090\nDevice Minor: \t 0\n",
    );
    // The consoles, numbered as on an EFI host without vgacon.
    let fbcon = if shape.stubborn_console {
        "(S) frame buffer device"
    } else {
        "(M) frame buffer device"
    };
    for (vt, name) in [("vtcon0", "(S) dummy device"), ("vtcon1", fbcon)] {
        file(
            r,
            &format!("sys/class/vtconsole/{vt}/name"),
            &format!("{name}\n"),
        );
        file(r, &format!("sys/class/vtconsole/{vt}/bind"), "1\n");
        file(r, &format!("sys/class/vtconsole/{vt}/uevent"), "");
    }
    // The firmware framebuffer, under /sys/devices/platform (no PCI parent).
    std::fs::create_dir_all(r.join("sys/devices/platform/efi-framebuffer.0")).unwrap();
    file(r, "sys/bus/platform/drivers/efifb/bind", "");
    file(r, "sys/bus/platform/drivers/efifb/unbind", "");
    link(
        r,
        "sys/bus/platform/devices/efi-framebuffer.0",
        "sys/devices/platform/efi-framebuffer.0",
    );
    link(
        r,
        "sys/devices/platform/efi-framebuffer.0/driver",
        "sys/bus/platform/drivers/efifb",
    );
    link(
        r,
        "sys/bus/platform/drivers/efifb/efi-framebuffer.0",
        "sys/devices/platform/efi-framebuffer.0",
    );
    // gdm's X server on the boot display.
    let card = if shape.igpu {
        "/dev/dri/card1"
    } else {
        "/dev/dri/card0"
    };
    process(r, 900, "Xorg", "/system.slice/gdm.service", card);

    let mut fake = Fake::new(r);
    fake.native = BTreeMap::from([
        ("0000:01:00.0".into(), "nvidia".into()),
        ("0000:01:00.1".into(), "snd_hda_intel".into()),
    ]);
    fake.module_driver = BTreeMap::from([("nvidia".into(), "nvidia".into())]);
    fake.deps = BTreeMap::from([
        ("nvidia_modeset".into(), vec!["nvidia".into()]),
        ("nvidia_uvm".into(), vec!["nvidia".into()]),
        ("nvidia_drm".into(), vec!["nvidia_modeset".into()]),
    ]);
    fake.units = BTreeMap::from([
        (
            "display-manager.service".into(),
            ("gdm.service".into(), true),
        ),
        ("gdm.service".into(), ("gdm.service".into(), true)),
    ]);
    (tmp, fake)
}

/// Every path of the tree with what it is (outside the record), and the units' states.
fn snapshot(fake: &Fake) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            if rel == "run" || rel.starts_with("run/vfio-gen") {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                );
            } else if m.is_dir() {
                out.insert(rel, "dir".into());
                walk(base, &p, out);
            } else {
                out.insert(
                    rel,
                    String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(fake.root.dir(), fake.root.dir(), &mut out);
    for (u, (id, active)) in &fake.units {
        out.insert(format!("unit {u}"), format!("{id} {active}"));
    }
    out
}

fn diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let keys: std::collections::BTreeSet<_> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: {:?} / {:?}", a.get(k), b.get(k)))
        .collect()
}

fn profile(text: &str) -> Profile {
    crate::profile::parse(text, "profile.toml").unwrap()
}

fn opts(force: bool) -> Options {
    Options {
        force,
        domain: Some("win11".into()),
        profile_path: "/etc/vfio-gen/profile.toml".into(),
        profile_sha256: "0".repeat(64),
    }
}

fn kinds(fake: &Fake) -> Vec<(String, bool)> {
    Record::at(&fake.root)
        .unwrap()
        .read()
        .unwrap()
        .iter()
        .map(|e| (e.step.kind().to_string(), e.done))
        .collect()
}

fn drv(fake: &Fake, bdf: &str) -> Option<String> {
    pci_driver(&fake.root, bdf)
}

fn rd(fake: &Fake, path: &str) -> String {
    read(&fake.root, path).unwrap_or_default()
}

#[test]
fn single_gpu_start_then_stop_restores_the_tree() {
    let (_t, mut fake) = host(Shape::default());
    let before = snapshot(&fake);
    let r = start(&mut fake, &profile(PROFILE), &opts(false)).unwrap();
    assert_eq!(r.error, None, "{r:#?}");
    let k: Vec<String> = kinds(&fake)
        .into_iter()
        .map(|(k, done)| {
            assert!(done, "{k} not done");
            k
        })
        .collect();
    assert_eq!(
        k,
        [
            "begin", "service", "vtcon", "fbdev", "module", "module", "module", "module", "bind",
            "bind", "end"
        ]
    );
    assert!(!fake.unit("gdm.service").unwrap().active);
    assert_eq!(rd(&fake, "/sys/class/vtconsole/vtcon1/bind"), "0");
    assert_eq!(
        rd(&fake, "/sys/class/vtconsole/vtcon0/bind"),
        "1",
        "the dummy console is left alone"
    );
    assert!(link_name_of(&fake, "/sys/bus/platform/devices/efi-framebuffer.0/driver").is_none());
    let unloads: Vec<&str> = fake
        .log
        .iter()
        .filter_map(|l| l.strip_prefix("modprobe -r "))
        .collect();
    assert_eq!(
        unloads,
        ["nvidia_drm", "nvidia_modeset", "nvidia_uvm", "nvidia"],
        "holders first"
    );
    assert_eq!(drv(&fake, "0000:01:00.0").as_deref(), Some("vfio-pci"));
    assert_eq!(drv(&fake, "0000:01:00.1").as_deref(), Some("vfio-pci"));
    // The order: display manager, consoles, framebuffer, modules, devices.
    let first = |p: &str| fake.log.iter().position(|l| l.contains(p)).unwrap();
    assert!(first("systemctl stop") < first("vtcon1"));
    assert!(first("vtcon1") < first("efifb/unbind"));
    assert!(first("efifb/unbind") < first("modprobe -r"));

    // start again: idempotent.
    let calls = fake.calls;
    let again = start(&mut fake, &profile(PROFILE), &opts(false)).unwrap();
    assert!(again.note.unwrap().contains("already handed over"));
    assert_eq!(fake.calls, calls);

    let s = stop(&mut fake).unwrap();
    assert_eq!(s.error, None, "{s:#?}");
    assert_eq!(diff(&before, &snapshot(&fake)), Vec::<String>::new());
    assert!(!fake.root.join(record::DIR).unwrap().exists());
    // The way back, reversed: devices, modules (nvidia first), framebuffer, consoles, DM.
    let loads: Vec<&str> = fake
        .log
        .iter()
        .filter_map(|l| l.strip_prefix("modprobe "))
        .filter(|l| !l.starts_with("-r"))
        .collect();
    assert_eq!(
        loads,
        ["nvidia", "nvidia_uvm", "nvidia_modeset", "nvidia_drm"]
    );
    assert_eq!(fake.log.last().unwrap(), "systemctl start gdm.service");
}

fn link_name_of(fake: &Fake, path: &str) -> Option<String> {
    system::link_name(&fake.root, path)
}

#[test]
fn a_second_card_leaves_the_boot_display_alone() {
    let (_t, mut fake) = host(Shape {
        igpu: true,
        ..Shape::default()
    });
    let before = snapshot(&fake);
    let r = start(&mut fake, &profile(PROFILE), &opts(false)).unwrap();
    assert_eq!(r.error, None, "{r:#?}");
    let k: Vec<String> = kinds(&fake).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        k,
        [
            "begin", "module", "module", "module", "module", "bind", "bind", "end"
        ]
    );
    assert!(fake.unit("gdm.service").unwrap().active);
    assert_eq!(rd(&fake, "/sys/class/vtconsole/vtcon1/bind"), "1");
    assert_eq!(
        link_name_of(&fake, "/sys/bus/platform/devices/efi-framebuffer.0/driver").as_deref(),
        Some("efifb")
    );
    assert_eq!(drv(&fake, "0000:00:02.0").as_deref(), Some("i915"));
    let s = stop(&mut fake).unwrap();
    assert_eq!(s.error, None, "{s:#?}");
    assert_eq!(diff(&before, &snapshot(&fake)), Vec::<String>::new());
}

#[test]
fn a_console_that_will_not_unbind_undoes_everything() {
    let (_t, mut fake) = host(Shape {
        stubborn_console: true,
        ..Shape::default()
    });
    let before = snapshot(&fake);
    let r = start(&mut fake, &profile(PROFILE), &opts(false)).unwrap();
    let e = r.error.clone().unwrap();
    assert!(
        e.contains("vtcon1/bind reads 1") && e.contains("every step taken was undone"),
        "{e}"
    );
    assert!(
        r.actions
            .iter()
            .any(|a| a.status == Status::Undone && a.detail == "start gdm.service"),
        "{r:#?}"
    );
    assert_eq!(diff(&before, &snapshot(&fake)), Vec::<String>::new());
    assert!(
        !fake.root.join(record::DIR).unwrap().exists(),
        "no record left"
    );
    assert!(
        !fake.log.iter().any(|l| l.contains("modprobe -r")),
        "nothing after the failed step"
    );
}

/// Every call of a full start failing in turn: the tree is back as it was each time.
#[test]
fn a_failure_at_any_step_leaves_the_host_as_it_was() {
    let (_t, mut fake) = host(Shape::default());
    start(&mut fake, &profile(PROFILE), &opts(false)).unwrap();
    let total = fake.calls;
    assert!(total >= 12, "{total}");
    for n in 1..=total {
        let (_t, mut fake) = host(Shape::default());
        let before = snapshot(&fake);
        fake.fail_at = Some(n);
        let r = start(&mut fake, &profile(PROFILE), &opts(false)).unwrap();
        let e = r.error.unwrap_or_else(|| panic!("call {n}: no error"));
        assert!(e.contains("injected failure"), "call {n}: {e}");
        assert_eq!(
            diff(&before, &snapshot(&fake)),
            Vec::<String>::new(),
            "call {n}: {e}"
        );
        assert!(!fake.root.join(record::DIR).unwrap().exists(), "call {n}");
    }
}

/// vfio-gen killed after k calls (no undo ran): `stop` restores the tree from the record.
#[test]
fn stop_after_a_crash_in_the_middle_of_start_restores_the_tree() {
    let (_t, mut fake) = host(Shape::default());
    start(&mut fake, &profile(PROFILE), &opts(false)).unwrap();
    let total = fake.calls;
    for k in 1..=total {
        let (_t, mut fake) = host(Shape::default());
        let before = snapshot(&fake);
        fake.crash_at = Some(k);
        let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            start(&mut fake, &profile(PROFILE), &opts(false))
        }));
        assert!(crashed.is_err(), "call {k}");
        fake.crash_at = None;
        let ks = kinds(&fake);
        assert!(!ks.iter().any(|(k, _)| k == "end"), "{ks:?}");
        let s = stop(&mut fake).unwrap();
        assert_eq!(s.error, None, "crash at {k}: {s:#?}");
        assert_eq!(
            diff(&before, &snapshot(&fake)),
            Vec::<String>::new(),
            "crash at {k}"
        );
    }
}

#[test]
fn stop_without_a_record_or_with_another_boots_does_nothing() {
    let (_t, mut fake) = host(Shape::default());
    let before = snapshot(&fake);
    let s = stop(&mut fake).unwrap();
    assert!(s.note.unwrap().contains("nothing to give back"));
    assert_eq!(fake.calls, 0);
    // A record of the boot before (the reboot undid everything).
    let rec = Record::at(&fake.root).unwrap();
    let mut e = record::Entry::new(
        0,
        None,
        Step::Begin {
            profile: "p".into(),
            sha256: String::new(),
            boot_id: "another-boot".into(),
            pid: 1,
            devices: vec!["0000:01:00.0".into()],
        },
    );
    e.done = true;
    rec.put(&e).unwrap();
    rec.put(&record::Entry::new(
        1,
        None,
        Step::Module {
            name: "nvidia".into(),
        },
    ))
    .unwrap();
    let s = stop(&mut fake).unwrap();
    assert!(
        s.note.unwrap().contains("another boot"),
        "stale record removed"
    );
    assert_eq!(fake.calls, 0);
    assert!(!fake.root.join(record::DIR).unwrap().exists());
    assert_eq!(diff(&before, &snapshot(&fake)), Vec::<String>::new());
}

#[test]
fn a_card_held_by_a_user_session_is_refused_naming_the_process() {
    let (t, mut fake) = host(Shape {
        igpu: true,
        ..Shape::default()
    });
    process(
        t.path(),
        2000,
        "gnome-shell",
        "/user.slice/user-1000.slice/session-2.scope",
        "/dev/dri/card0",
    );
    let before = snapshot(&fake);
    let e = start(&mut fake, &profile(PROFILE), &opts(true))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gnome-shell (pid 2000, session-2.scope) holds /dev/dri/card0")
            && e.contains("log out"),
        "{e}"
    );
    assert_eq!(fake.calls, 0);
    assert_eq!(diff(&before, &snapshot(&fake)), Vec::<String>::new());
}

#[test]
fn a_card_held_by_a_service_needs_force_and_comes_back_at_stop() {
    let (t, mut fake) = host(Shape {
        igpu: true,
        ..Shape::default()
    });
    process(
        t.path(),
        3000,
        "ollama",
        "/system.slice/ollama.service",
        "/dev/nvidia-uvm",
    );
    fake.units
        .insert("ollama.service".into(), ("ollama.service".into(), true));
    let before = snapshot(&fake);
    let e = start(&mut fake, &profile(PROFILE), &opts(false))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ollama (pid 3000, ollama.service) holds /dev/nvidia-uvm")
            && e.contains("--force"),
        "{e}"
    );
    assert_eq!(fake.calls, 0);
    let r = start(&mut fake, &profile(PROFILE), &opts(true)).unwrap();
    assert_eq!(r.error, None, "{r:#?}");
    assert!(!fake.unit("ollama.service").unwrap().active);
    assert_eq!(stop(&mut fake).unwrap().error, None);
    assert!(fake.unit("ollama.service").unwrap().active);
    assert_eq!(diff(&before, &snapshot(&fake)), Vec::<String>::new());
}

#[test]
fn boot_mode_has_nothing_to_hand_over() {
    let (_t, mut fake) = host(Shape::default());
    let e = start(
        &mut fake,
        &profile(&PROFILE.replace("on-demand", "boot")),
        &opts(false),
    )
    .unwrap_err();
    assert!(e.to_string().contains("mode = \"boot\""), "{e}");
    assert_eq!(fake.calls, 0);
}

/// managed='yes': libvirt gave the devices back before `release end`; stop skips them.
#[test]
fn stop_accepts_devices_already_back_on_their_driver() {
    let (_t, mut fake) = host(Shape {
        igpu: true,
        ..Shape::default()
    });
    start(&mut fake, &profile(PROFILE), &opts(false)).unwrap();
    // libvirt's reattach of the audio function.
    fake.write("/sys/bus/pci/devices/0000:01:00.1/driver_override", "\n")
        .unwrap();
    fake.write(
        "/sys/bus/pci/devices/0000:01:00.1/driver/unbind",
        "0000:01:00.1",
    )
    .unwrap();
    fake.write("/sys/bus/pci/drivers_probe", "0000:01:00.1")
        .unwrap();
    assert_eq!(drv(&fake, "0000:01:00.1").as_deref(), Some("snd_hda_intel"));
    let s = stop(&mut fake).unwrap();
    assert_eq!(s.error, None, "{s:#?}");
    assert!(
        s.actions.iter().any(|a| a.status == Status::Skipped
            && a.detail == "0000:01:00.1 is on snd_hda_intel already"),
        "{s:#?}"
    );
}

/// `[resources] isolation = "on-demand"`: the top-level units limited to the host's CPUs,
/// their values before recorded and written back by `stop`, also when a later step fails
/// (docs/handover.md section 6).
#[test]
fn on_demand_isolation_limits_the_host_slices_and_gives_them_back() {
    let with_cpus =
        format!("{PROFILE}\n[resources]\nisolate_cpus = \"2-7\"\nisolation = \"on-demand\"\n");
    let setup = |fake: &mut Fake| {
        eight_cpus_with_cpuset(fake);
        fake.allowed.insert("user.slice".into(), "0-3".into());
    };
    let (_t, mut fake) = host(Shape::default());
    setup(&mut fake);
    let r = start(&mut fake, &profile(&with_cpus), &opts(false)).unwrap();
    assert_eq!(r.error, None, "{r:#?}");
    for u in super::start::SLICES {
        assert_eq!(fake.allowed.get(u).map(String::as_str), Some("0-1"), "{u}");
    }
    let k: Vec<String> = kinds(&fake).into_iter().map(|(k, _)| k).collect();
    assert_eq!(&k[..4], ["begin", "cpus", "cpus", "cpus"]);
    let s = stop(&mut fake).unwrap();
    assert_eq!(s.error, None, "{s:#?}");
    assert_eq!(
        fake.allowed.get("system.slice").map(String::as_str),
        Some("")
    );
    assert_eq!(
        fake.allowed.get("user.slice").map(String::as_str),
        Some("0-3")
    );
    assert_eq!(fake.allowed.get("init.scope").map(String::as_str), Some(""));

    // A later step fails: the limits are undone with the rest.
    let (_t, mut fake) = host(Shape::default());
    setup(&mut fake);
    fake.fail_at = Some(5);
    let r = start(&mut fake, &profile(&with_cpus), &opts(false)).unwrap();
    assert!(r.error.is_some(), "{r:#?}");
    assert_eq!(
        fake.allowed.get("system.slice").map(String::as_str),
        Some("")
    );
    assert_eq!(
        fake.allowed.get("user.slice").map(String::as_str),
        Some("0-3")
    );

    // cgroup v1 (no cpuset in cgroup.controllers): refused before any change.
    let (_t, mut fake) = host(Shape::default());
    setup(&mut fake);
    file(
        fake.root.dir(),
        "sys/fs/cgroup/cgroup.controllers",
        "cpu io memory pids\n",
    );
    let e = start(&mut fake, &profile(&with_cpus), &opts(false)).unwrap_err();
    assert!(format!("{e:#}").contains("cpuset controller"), "{e:#}");
    assert_eq!(fake.calls, 0);
}

/// On demand, `apply` does not judge isolate_cpus against the host (`check` and `handover
/// start` do): a CPU that is not online is refused before any change, not left to a limit that
/// keeps every CPU for the host. Isolating every online CPU is refused too.
#[test]
fn on_demand_isolation_refuses_cpus_the_host_does_not_run() {
    for (cpus, want) in [
        ("2-9", "not online on this host: 8-9 (online: 0-7)"),
        ("0-7", "leaves the host no online CPU"),
    ] {
        let p = format!(
            "{PROFILE}\n[resources]\nisolate_cpus = \"{cpus}\"\nisolation = \"on-demand\"\n"
        );
        let (_t, mut fake) = host(Shape::default());
        eight_cpus_with_cpuset(&mut fake);
        let e = start(&mut fake, &profile(&p), &opts(false)).unwrap_err();
        assert!(format!("{e:#}").contains(want), "{cpus}: {e:#}");
        assert!(format!("{e:#}").ends_with("nothing was changed"), "{e:#}");
        assert_eq!(fake.calls, 0, "{cpus}");
        assert!(fake.allowed.is_empty(), "{cpus}");
        assert!(kinds(&fake).is_empty(), "{cpus}");
    }
}

/// Eight CPUs online, cgroup v2 with the cpuset controller, and the slices the limit is set on.
fn eight_cpus_with_cpuset(fake: &mut Fake) {
    file(fake.root.dir(), "sys/devices/system/cpu/online", "0-7\n");
    file(
        fake.root.dir(),
        "sys/fs/cgroup/cgroup.controllers",
        "cpuset cpu io memory pids\n",
    );
    for u in super::start::SLICES {
        fake.units.insert(u.into(), (u.into(), true));
    }
}
