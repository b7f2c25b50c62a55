//! The hardware checks through the binary on fake hosts: `vfio-gen rom` (each verdict, the
//! reading rules, exit statuses, JSON, `--file`), the `rom` item of `check`, and the kernel log
//! items (`kernel-iommu`, `interrupt-remapping`). docs/rom.md and docs/kernel-log.md.

use super::*;

/// An Intel host: a boot display (virtio, with the firmware's shadow ROM), the guest GPU and its
/// audio on vfio-pci, a second GPU its driver holds, and a third card with no driver. `gpu_rom`
/// is the guest GPU's `rom` line (or nothing), `log` the kernel log (or nothing).
fn host_toml(gpu_rom: &str, log: Option<&str>) -> String {
    let log = log
        .map(|l| format!("kernel_log = '''\n{l}'''\n"))
        .unwrap_or_default();
    format!(
        r#"release = "6.1.0-28-amd64"
cmdline = "BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=UUID=0b3c5e7a-2d4f-4a6b-8c9d-1e2f3a4b5c6d ro quiet intel_iommu=on iommu=pt"
iommu = "dmar"
{log}
[cpu]
vendor = "GenuineIntel"
model_name = "13th Gen Intel(R) Core(TM) i7-13700K"
virtualization = true

[[device]]  # 00:00.0 Host bridge [0600]: Intel Corporation Raptor Lake-S 8+8 Host Bridge/DRAM Controller [8086:a703]
bdf = "0000:00:00.0"
class = "0x060000"
vendor = "0x8086"
device = "0xa703"
group = 0

[[device]]  # 00:02.0 VGA compatible controller [0300]: Red Hat, Inc. Virtio 1.0 GPU [1af4:1050]
bdf = "0000:00:02.0"
class = "0x030000"
vendor = "0x1af4"
device = "0x1050"
driver = "virtio-pci"
group = 1
boot_vga = true
rom = ["x86"]

[[device]]  # 00:05.0 VGA compatible controller [0300]: NVIDIA Corporation GA102 [GeForce RTX 3090] [10de:2204]
bdf = "0000:00:05.0"
class = "0x030000"
vendor = "0x10de"
device = "0x2204"
driver = "vfio-pci"
group = 2
{gpu_rom}

[[device]]  # 00:05.1 Audio device [0403]: NVIDIA Corporation GA102 High Definition Audio Controller [10de:1aef]
bdf = "0000:00:05.1"
class = "0x040300"
vendor = "0x10de"
device = "0x1aef"
driver = "vfio-pci"
group = 2

[[device]]  # 00:06.0 VGA compatible controller [0300]: NVIDIA Corporation GP104 [GeForce GTX 1070] [10de:1b81]
bdf = "0000:00:06.0"
class = "0x030000"
vendor = "0x10de"
device = "0x1b81"
driver = "nvidia"
group = 3
rom = ["x86", "efi-x64"]

[[device]]  # 00:07.0 VGA compatible controller [0300]: AMD/ATI Ellesmere [Radeon RX 470/480/570/570X/580/580X/590] [1002:67df]
bdf = "0000:00:07.0"
class = "0x030000"
vendor = "0x1002"
device = "0x67df"
group = 4
rom = ["x86", "efi-aa64"]
"#
    )
}

const LOG_ON: &str = "Linux version 6.1.0-28-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)
Command line: BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=UUID=0b3c5e7a-2d4f-4a6b-8c9d-1e2f3a4b5c6d ro quiet intel_iommu=on iommu=pt
DMAR: IOMMU enabled
DMAR: Host address width 39
DMAR: DRHD base: 0x000000fed90000 flags: 0x0
DMAR-IR: IOAPIC id 2 under DRHD base  0xfed91000 IOMMU 1
DMAR-IR: Queued invalidation will be enabled to support x2apic and Intr-remapping.
DMAR-IR: Enabled IRQ remapping in x2apic mode
DMAR: Intel(R) Virtualization Technology for Directed I/O
";

const LOG_OFF: &str = "Linux version 6.1.0-28-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)
DMAR: IOMMU enabled
DMAR: Host address width 39
DMAR: DRHD base: 0x000000fed90000 flags: 0x0
DMAR: Intel(R) Virtualization Technology for Directed I/O
";

const LOG_FIRMWARE: &str = "Linux version 6.1.0-28-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)
DMAR: IOMMU enabled
DMAR: Host address width 39
DMAR-IR: [Firmware Bug]: ioapic 2 has no mapping iommu, interrupt remapping will be disabled
DMAR-IR: Not enabling interrupt remapping
DMAR-IR: Failed to enable irq remapping. You are vulnerable to irq-injection attacks.
DMAR: Intel(R) Virtualization Technology for Directed I/O
";

fn build(gpu_rom: &str, log: Option<&str>) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let host: fake_host::Host = toml::from_str(&host_toml(gpu_rom, log)).unwrap();
    fake_host::build_host(&host, &repo().join("tests/fixtures/hosts"), tmp.path()).unwrap();
    std::fs::write(
        tmp.path().join("p.toml"),
        "[host]\ncpu = \"intel\"\nbootloader = \"grub\"\n[vfio]\nids = [\"10de:2204\", \"10de:1aef\"]\n",
    )
    .unwrap();
    tmp
}

fn at(root: &Path, args: &[&str]) -> Output {
    let mut v: Vec<&str> = args.to_vec();
    v.extend(["--root", root.to_str().unwrap()]);
    run(&v)
}

fn rom_file(root: &Path, bdf: &str) -> PathBuf {
    root.join(format!("sys/bus/pci/devices/{bdf}/rom"))
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}{}", stdout(o), stderr(o)))
}

#[test]
fn rom_passes_an_x64_efi_image_and_closes_the_rom_again() {
    let h = build(r#"rom = ["x86", "efi-x64"]"#, None);
    let before = std::fs::read(rom_file(h.path(), "0000:00:05.0")).unwrap();
    let p = h.path().join("p.toml");
    let o = at(h.path(), &["rom", "-p", p.to_str().unwrap()]);
    status(&o, 0);
    assert_eq!(
        stdout(&o),
        "0000:00:05.0 [10de:2204]: pass: an x64 EFI image (4096 bytes at 0x1000)\n\
         \x20 read 8192 bytes from /sys/bus/pci/devices/0000:00:05.0/rom\n\
         \x20 image at 0x0: x86 BIOS, 10de:2204, 4096 bytes\n\
         \x20 image at 0x1000: EFI x64 (boot service driver), 10de:2204, 4096 bytes, last\n"
    );
    // The kernel's sequence, in the fake tree: 1 to open the ROM, 0 to close it.
    let after = std::fs::read(rom_file(h.path(), "0000:00:05.0")).unwrap();
    assert_eq!(after, [before, b"10\n".to_vec()].concat());
}

#[test]
fn rom_fails_without_an_x64_image_and_names_the_remedy() {
    for (rom, want) in [
        (r#"rom = ["x86"]"#, "no UEFI image (only x86 BIOS)"),
        (
            r#"rom = ["x86", "efi-aa64"]"#,
            "no x64 UEFI image (EFI images for AArch64 only)",
        ),
    ] {
        let h = build(rom, None);
        let o = at(h.path(), &["rom", "0000:00:05.0"]);
        status(&o, 1);
        let out = stdout(&o);
        assert!(
            out.starts_with(&format!(
                "0000:00:05.0 [10de:2204]: FAIL: {want} — update the card's firmware"
            )),
            "{out}"
        );
        assert!(
            out.contains("romfile=") && out.contains("<rom file="),
            "{out}"
        );
    }
}

#[test]
fn rom_says_unknown_where_it_must_not_or_cannot_read() {
    let h = build(r#"rom = ["x86", "efi-x64"]"#, None);
    let untouched = |bdf: &str| std::fs::read(rom_file(h.path(), bdf)).unwrap();
    let (boot, busy) = (untouched("0000:00:02.0"), untouched("0000:00:06.0"));
    let o = at(h.path(), &["rom", "00:02.0", "00:06.0", "0000:00:05.1"]);
    status(&o, 2);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with(' ')).collect();
    assert!(
        lines[0].starts_with("0000:00:02.0 [1af4:1050]: unknown: the firmware's shadow copy"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("0000:00:06.0 [10de:1b81]: unknown: in use by nvidia"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("0000:00:05.1 [10de:1aef]: unknown: no ROM"),
        "{out}"
    );
    // Neither ROM was opened.
    assert_eq!(untouched("0000:00:02.0"), boot);
    assert_eq!(untouched("0000:00:06.0"), busy);
    // A device without a driver is read.
    let o = at(h.path(), &["rom", "00:07.0"]);
    status(&o, 1);
    assert!(stdout(&o).contains("AArch64 only"), "{}", stdout(&o));
}

#[test]
fn rom_json_follows_the_envelope() {
    let h = build(r#"rom = ["x86", "efi-x64"]"#, None);
    let o = at(h.path(), &["rom", "00:05.0", "00:06.0", "--format", "json"]);
    status(&o, 2);
    let v = json(&o);
    assert_eq!(v["version"], 1);
    assert_eq!(v["ok"], false);
    let roms = v["roms"].as_array().unwrap();
    assert_eq!(roms[0]["bdf"], "0000:00:05.0");
    assert_eq!(roms[0]["verdict"], "pass");
    assert_eq!(roms[0]["images"][1]["efi"]["machine"], "x64");
    assert_eq!(roms[0]["images"][1]["efi"]["machine_type"], "0x8664");
    assert_eq!(roms[0]["images"][0]["code_type"], 0);
    assert_eq!(roms[0]["vendor_header"], 0);
    assert_eq!(roms[1]["verdict"], "unknown");
    assert!(
        roms[1]["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown: in use by nvidia")
    );
}

#[test]
fn rom_file_reads_a_dump_and_names_a_vendor_header() {
    let h = build("", None);
    let rom = fake_host::rom_image(&["x86".into(), "efi-x64".into()], 0x10de, 0x2204).unwrap();
    let plain = h.path().join("card.rom");
    std::fs::write(&plain, &rom).unwrap();
    let o = run(&["rom", "--file", plain.to_str().unwrap()]);
    status(&o, 0);
    let headed = h.path().join("dump.rom");
    std::fs::write(&headed, [vec![0xAB; 0x200], rom.clone()].concat()).unwrap();
    let o = run(&[
        "rom",
        "--file",
        headed.to_str().unwrap(),
        "--format",
        "json",
    ]);
    status(&o, 0);
    let v = json(&o);
    assert_eq!(v["roms"][0]["vendor_header"], 512);
    let note = v["roms"][0]["notes"][0].as_str().unwrap();
    assert!(
        note.starts_with("a 512-byte vendor header precedes the first image")
            && note.contains("tail -c +513"),
        "{note}"
    );
    // Not a ROM, and no file: exit 2.
    let junk = h.path().join("junk.bin");
    std::fs::write(&junk, b"MZ\x90\x00 this is a PE file, not a ROM").unwrap();
    let o = run(&["rom", "--file", junk.to_str().unwrap()]);
    status(&o, 2);
    assert!(
        stdout(&o).contains("error: not a ROM: no PCI expansion ROM image in its 33 bytes"),
        "{}",
        stdout(&o)
    );
    let o = run(&[
        "rom",
        "--file",
        h.path().join("missing.rom").to_str().unwrap(),
    ]);
    status(&o, 2);
    assert!(stderr(&o).contains("missing.rom"), "{}", stderr(&o));
}

#[test]
fn rom_without_a_profile_or_with_a_wrong_address_is_one_clear_error() {
    let h = build(r#"rom = ["x86"]"#, None);
    std::fs::remove_file(h.path().join("p.toml")).unwrap();
    let o = at(h.path(), &["rom"]);
    status(&o, 2);
    assert!(
        stderr(&o).contains("no profile at") && stderr(&o).contains("vfio-gen rom 0000:01:00.0"),
        "{}",
        stderr(&o)
    );
    let o = at(h.path(), &["rom", "0000:09:00.0"]);
    status(&o, 2);
    assert!(
        stderr(&o).contains("no device 0000:09:00.0"),
        "{}",
        stderr(&o)
    );
    let o = at(h.path(), &["rom", "bogus"]);
    status(&o, 2);
    assert!(stderr(&o).contains("not a PCI address"), "{}", stderr(&o));
}

/// `setpriv` runs the binary as nobody: the rom attribute and /dev/kmsg are root's (0600).
fn as_nobody(root: &Path, args: &[&str]) -> Option<Output> {
    if !have("setpriv") {
        return None;
    }
    if !nix::unistd::geteuid().is_root() {
        // Already not root (a package's check(), a user's cargo test): the fake host's 0600
        // files are this user's own, so they are made unreadable to it (0000) for the run, as
        // root's 0600 files are to nobody, and given back their mode after it.
        use std::os::unix::fs::PermissionsExt;
        let mut private = Vec::new();
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                let kind = entry.file_type().unwrap();
                if kind.is_dir() {
                    dirs.push(entry.path());
                } else if kind.is_file()
                    && entry.metadata().unwrap().permissions().mode() & 0o777 == 0o600
                {
                    private.push(entry.path());
                }
            }
        }
        let chmod = |mode| {
            for p in &private {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        };
        chmod(0o000);
        let out = at(root, args);
        chmod(0o600);
        return Some(out);
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut v: Vec<String> = [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        BIN,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(args.iter().map(|s| s.to_string()));
    v.extend(["--root".into(), root.display().to_string()]);
    Some(
        Command::new("setpriv")
            .args(&v)
            .current_dir("/")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output()
            .expect("setpriv runs"),
    )
}

#[test]
fn not_root_is_unknown_never_a_pass() {
    let h = build(r#"rom = ["x86", "efi-x64"]"#, Some(LOG_ON));
    let before = std::fs::read(rom_file(h.path(), "0000:00:05.0")).unwrap();
    let Some(o) = as_nobody(h.path(), &["rom", "00:05.0"]) else {
        return;
    };
    status(&o, 2);
    assert_eq!(
        stdout(&o),
        "0000:00:05.0 [10de:2204]: unknown: run as root\n"
    );
    assert_eq!(
        std::fs::read(rom_file(h.path(), "0000:00:05.0")).unwrap(),
        before
    );
    let p = h.path().join("p.toml");
    let o = as_nobody(
        h.path(),
        &["check", "-p", p.to_str().unwrap(), "--format", "json"],
    )
    .unwrap();
    let v = json(&o);
    let item = |id: &str| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .unwrap_or_else(|| panic!("no {id} item: {v}"))
            .clone()
    };
    assert_eq!(item("rom")["status"], "warn");
    assert_eq!(
        item("rom")["message"],
        "0000:00:05.0 ROM: unknown: run as root"
    );
    for id in ["kernel-iommu", "interrupt-remapping"] {
        assert_eq!(item(id)["status"], "warn");
        assert_eq!(item(id)["message"], "unknown: run as root");
    }
}

/// id, status, message, remedy.
type Row = (String, String, String, Option<String>);

fn items(root: &Path) -> (i32, Vec<Row>) {
    let p = root.join("p.toml");
    let o = at(
        root,
        &["check", "-p", p.to_str().unwrap(), "--format", "json"],
    );
    let v = json(&o);
    let list = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["status"].as_str().unwrap().to_string(),
                i["message"].as_str().unwrap().to_string(),
                i["remedy"].as_str().map(str::to_string),
            )
        })
        .collect();
    (o.status.code().unwrap(), list)
}

fn find<'a>(list: &'a [Row], id: &str) -> &'a Row {
    list.iter()
        .find(|i| i.0 == id)
        .unwrap_or_else(|| panic!("no {id} item in {list:?}"))
}

#[test]
fn check_has_a_rom_item_per_passthrough_display() {
    let (code, list) = items(build(r#"rom = ["x86", "efi-x64"]"#, Some(LOG_ON)).path());
    let rom = find(&list, "rom");
    assert_eq!(
        (rom.1.as_str(), rom.2.as_str()),
        (
            "pass",
            "0000:00:05.0 ROM: an x64 EFI image (4096 bytes at 0x1000)"
        )
    );
    assert_eq!(
        list.iter().filter(|i| i.0 == "rom").count(),
        1,
        "only the profile's display"
    );
    assert_eq!(code, 0, "{list:?}");

    let (code, list) = items(build(r#"rom = ["x86"]"#, Some(LOG_ON)).path());
    let rom = find(&list, "rom");
    assert_eq!(
        (rom.1.as_str(), rom.2.as_str()),
        ("fail", "0000:00:05.0 ROM: no UEFI image (only x86 BIOS)")
    );
    assert!(rom.3.as_deref().unwrap().contains("romfile="));
    assert_eq!(code, 1);

    let (code, list) = items(build("", Some(LOG_ON)).path());
    let rom = find(&list, "rom");
    assert_eq!(rom.1, "warn");
    assert!(
        rom.2.starts_with("0000:00:05.0 ROM: unknown: no ROM"),
        "{}",
        rom.2
    );
    assert_eq!(code, 0);
}

#[test]
fn check_reads_the_kernel_log() {
    let rom = r#"rom = ["x86", "efi-x64"]"#;
    let (_, list) = items(build(rom, Some(LOG_ON)).path());
    let (k, ir) = (
        find(&list, "kernel-iommu"),
        find(&list, "interrupt-remapping"),
    );
    assert_eq!(k.1, "pass");
    assert_eq!(
        (ir.1.as_str(), ir.2.as_str()),
        (
            "pass",
            "the kernel enabled interrupt remapping: \"DMAR-IR: Enabled IRQ remapping in x2apic mode\""
        )
    );

    let (code, list) = items(build(rom, Some(LOG_OFF)).path());
    let ir = find(&list, "interrupt-remapping");
    assert_eq!(ir.1, "warn");
    assert!(
        ir.2.starts_with("interrupt remapping is off: the IOMMU is on"),
        "{}",
        ir.2
    );
    let remedy = ir.3.as_deref().unwrap();
    assert!(
        remedy.contains("firmware setup")
            && remedy.contains("allow_unsafe_interrupts=1")
            && remedy.contains("last resort"),
        "{remedy}"
    );
    assert_eq!(code, 0, "a warn does not fail check");

    let (_, list) = items(build(rom, Some(LOG_FIRMWARE)).path());
    let ir = find(&list, "interrupt-remapping");
    assert_eq!(
        (ir.1.as_str(), ir.2.as_str()),
        (
            "warn",
            "interrupt remapping is off: \"DMAR-IR: [Firmware Bug]: ioapic 2 has no mapping iommu, interrupt remapping will be disabled\""
        )
    );

    let (_, list) = items(build(rom, None).path());
    for id in ["kernel-iommu", "interrupt-remapping"] {
        let i = find(&list, id);
        assert_eq!(i.1, "warn");
        assert!(
            i.2.starts_with("unknown: there is no kernel log at"),
            "{}",
            i.2
        );
    }
}

#[test]
fn rom_is_not_read_while_a_vm_holds_the_group() {
    let h = build(r#"rom = ["x86", "efi-x64"]"#, None);
    let before = std::fs::read(rom_file(h.path(), "0000:00:05.0")).unwrap();
    let fd = h.path().join("proc/4242/fd");
    std::fs::create_dir_all(&fd).unwrap();
    std::os::unix::fs::symlink("/dev/vfio/2", fd.join("23")).unwrap();
    std::fs::write(h.path().join("proc/4242/comm"), "qemu-system-x86\n").unwrap();
    let o = at(h.path(), &["rom", "00:05.0"]);
    status(&o, 2);
    assert_eq!(
        stdout(&o),
        "0000:00:05.0 [10de:2204]: unknown: in use by a VM: qemu-system-x86 (pid 4242) holds /dev/vfio/2; read it while the VM is off\n"
    );
    assert_eq!(
        std::fs::read(rom_file(h.path(), "0000:00:05.0")).unwrap(),
        before
    );
}
