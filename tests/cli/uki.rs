//! Unified kernel images (docs/uki.md): detection of each builder, the files each one reads,
//! refusals that leave every file as it was, the hooks, and `check` reading the `.cmdline` of
//! the images (hostile ones included).

use super::*;
use vfio_gen::profile::Bootloader;

const ROOTS: [(&str, &str); 3] = [
    ("arch-uki-mkinitcpio", "mkinitcpio"),
    ("fedora-uki-dracut", "dracut"),
    ("debian-uki-kernel-install", "kernel-install"),
];

/// Everything under a root but vfio-gen's own state.
fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    tree(root)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("var/lib/vfio-gen"))
        .collect()
}

#[test]
fn detect_names_the_builder_and_why() {
    for (name, builder) in ROOTS {
        let (b, why) =
            vfio_gen::inspect::infer_bootloader(&vfio_gen::root::Root::new(fixture_root(name)));
        assert_eq!(b, Bootloader::Uki, "{name}: {why}");
        assert!(why.contains(builder), "{name}: {why}");
    }
    let (_, why) = vfio_gen::inspect::infer_bootloader(&vfio_gen::root::Root::new(fixture_root(
        "arch-uki-mkinitcpio",
    )));
    assert!(
        why.contains("/etc/mkinitcpio.d/linux.preset:10: default_uki="),
        "{why}"
    );
    // The stock preset has its *_uki lines commented out: not a UKI host.
    let (b, _) = vfio_gen::inspect::infer_bootloader(&vfio_gen::root::Root::new(fixture_root(
        "arch-intel-systemd-boot",
    )));
    assert_ne!(b, Bootloader::Uki);
}

#[test]
fn plan_refuses_a_builder_the_root_does_not_use() {
    let o = plan_on(
        "profiles/fedora-uki-dracut.toml",
        fixture_root("arch-uki-mkinitcpio").to_str().unwrap(),
    );
    status(&o, 2);
    assert!(
        stderr(&o).contains("set [uki] builder = \"mkinitcpio\""),
        "{}",
        stderr(&o)
    );
    let o = plan_on(
        "profiles/arch-uki-mkinitcpio.toml",
        fixture_root("amd-grub").to_str().unwrap(),
    );
    status(&o, 2);
    assert!(
        stderr(&o).contains("nothing under the root builds unified kernel images"),
        "{}",
        stderr(&o)
    );
}

/// Loader entries or /etc/kernel/cmdline edited alone on a root that boots UKIs and has no
/// type #1 entry would never reach the running line: refused, naming `uki`.
#[test]
fn plan_refuses_entry_edits_on_a_uki_root() {
    for (profile, root) in [
        (
            "profiles/arch-intel-systemd-boot.toml",
            "arch-uki-mkinitcpio",
        ),
        (
            "profiles/proxmox-kernel-cmdline.toml",
            "debian-uki-kernel-install",
        ),
    ] {
        let o = plan_on(profile, fixture_root(root).to_str().unwrap());
        status(&o, 2);
        assert!(
            stderr(&o).contains("boots unified kernel images built by")
                && stderr(&o).contains("write bootloader = \"uki\""),
            "{root}: {}",
            stderr(&o)
        );
        // The refusal names the profile's line of host.bootloader.
        let line = std::fs::read_to_string(repo().join(profile))
            .unwrap()
            .lines()
            .position(|l| l.starts_with("bootloader"))
            .unwrap()
            + 1;
        assert!(
            stderr(&o).contains(&format!("{profile}:{line}:14: host.bootloader = ")),
            "{}",
            stderr(&o)
        );
    }
    // With a type #1 entry beside the images, systemd-boot mode has something to edit.
    let tmp = copy_root("arch-uki-mkinitcpio");
    let entries = tmp.path().join("efi/loader/entries");
    std::fs::create_dir_all(&entries).unwrap();
    std::fs::write(
        entries.join("arch.conf"),
        "title Arch Linux\nlinux /vmlinuz-linux\ninitrd /initramfs-linux.img\noptions root=LABEL=arch rw\n",
    )
    .unwrap();
    let o = plan_on(
        "profiles/arch-intel-systemd-boot.toml",
        tmp.path().to_str().unwrap(),
    );
    assert!(
        !stderr(&o).contains("boots unified kernel images built by"),
        "{}",
        stderr(&o)
    );
}

/// An option the user already has in another cmdline.d file is not repeated; another value of
/// a managed option in any of them is refused with its file and line, and nothing is written.
#[test]
fn cmdline_d_keeps_each_option_once_and_refuses_a_conflict() {
    let tmp = copy_root("arch-uki-mkinitcpio");
    let root = tmp.path().to_str().unwrap();
    let p = "profiles/arch-uki-mkinitcpio.toml";
    let o = run(&["plan", "-p", p, "--root", root, "--color", "never"]);
    status(&o, 0);
    assert!(
        stdout(&o).contains("/etc/cmdline.d/tuning.conf:1 already holds iommu=pt"),
        "{}",
        stdout(&o)
    );
    std::fs::write(
        tmp.path().join("etc/cmdline.d/zz-local.conf"),
        "quiet\niommu=nopt\n",
    )
    .unwrap();
    let before = files(tmp.path());
    let o = run(&["apply", "-p", p, "--root", root, "--yes", "--no-hooks"]);
    status(&o, 2);
    assert!(
        stderr(&o).contains(
            "/etc/cmdline.d/zz-local.conf:2: iommu=nopt conflicts with the profile's iommu=pt"
        ),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert_eq!(files(tmp.path()), before, "a refused apply writes nothing");
}

/// The options the profile wants once across the files, after apply; the kernel line is
/// rebuilt by the builder from these files.
#[test]
fn apply_then_rollback_gives_the_files_back() {
    let tmp = copy_root("arch-uki-mkinitcpio");
    let root = tmp.path().to_str().unwrap();
    let p = "profiles/arch-uki-mkinitcpio.toml";
    status(&apply_over(p, tmp.path(), false), 0);
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("etc/cmdline.d/vfio-gen.conf")).unwrap(),
        "intel_iommu=on\n"
    );
    status(&run(&["plan", "-p", p, "--root", root, "--exit-code"]), 0);
    status(&run(&["rollback", "--root", root, "--yes", "-p", p]), 0);
    assert!(
        files(tmp.path()) == tree(&fixture_root("arch-uki-mkinitcpio")),
        "rollback gives the fixture back byte for byte"
    );
}

/// `apply` on a copy of `fixture` with `path` holding `text` exits 2 with `says` on stderr and
/// leaves every file as it was.
fn apply_refuses(fixture: &str, profile: &str, path: &str, text: &str, says: &str) {
    let tmp = copy_root(fixture);
    std::fs::write(tmp.path().join(path), text).unwrap();
    let before = files(tmp.path());
    let o = run(&[
        "apply",
        "-p",
        profile,
        "--root",
        tmp.path().to_str().unwrap(),
        "--yes",
        "--no-hooks",
    ]);
    status(&o, 2);
    assert!(stderr(&o).contains(says), "{}", stderr(&o));
    assert_eq!(files(tmp.path()), before);
}

#[test]
fn dracut_refuses_what_would_lose_the_options_or_the_root() {
    let p = "profiles/fedora-uki-dracut.toml";
    // A plain kernel_cmdline= read after vfio-gen's drop-in would drop its options.
    apply_refuses(
        "fedora-uki-dracut",
        p,
        "etc/dracut.conf.d/zz-zz-late.conf",
        "kernel_cmdline=\"quiet\"\n",
        "/etc/dracut.conf.d/zz-zz-late.conf:1: kernel_cmdline= is set after",
    );
    // Without any kernel_cmdline, dracut embeds its host-only line; vfio-gen's alone would
    // replace it.
    apply_refuses(
        "fedora-uki-dracut",
        p,
        "etc/dracut.conf.d/uki.conf",
        "uefi=\"yes\"\n",
        "kernel_cmdline, which no dracut.conf file sets",
    );
}

/// bash, sourcing dracut.conf and the drop-ins in dracut's order, ends with the user's
/// kernel_cmdline followed by vfio-gen's options.
#[test]
fn bash_sources_the_dracut_drop_ins_to_the_full_line() {
    if !have("bash") {
        return;
    }
    let tmp = copy_root("fedora-uki-dracut");
    status(
        &apply_over("profiles/fedora-uki-dracut.toml", tmp.path(), false),
        0,
    );
    let mut drop_ins: Vec<PathBuf> = std::fs::read_dir(tmp.path().join("etc/dracut.conf.d"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    drop_ins.sort();
    let mut script = String::new();
    for f in &drop_ins {
        script.push_str(&format!(". '{}'; ", f.display()));
    }
    script.push_str("printf '%s|%s' \"$uefi\" \"$kernel_cmdline\"");
    let o = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env_clear()
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let (uefi, line) = out.split_once('|').unwrap();
    assert_eq!(uefi, "yes");
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>(),
        [
            "root=UUID=0c6e1f0a-8d4b-4f2e-a5c3-7b9e2d1f6a08",
            "ro",
            "rootflags=subvol=root",
            "rhgb",
            "quiet",
            "iommu=pt",
            "rd.driver.pre=vfio-pci"
        ]
    );
}

#[test]
fn the_hooks_rebuild_the_images() {
    let want = [
        (
            "arch-uki-mkinitcpio",
            vec!["mkinitcpio", "-P"],
            "/etc/cmdline.d/vfio-gen.conf",
        ),
        (
            "fedora-uki-dracut",
            vec!["dracut", "-f", "--regenerate-all"],
            "/etc/dracut.conf.d/zz-vfio-gen-cmdline.conf",
        ),
        (
            "debian-uki-kernel-install",
            vec![
                "kernel-install",
                "add",
                "6.12.12-amd64",
                "/boot/vmlinuz-6.12.12-amd64",
            ],
            "/etc/kernel/cmdline",
        ),
    ];
    for (name, command, input) in want {
        let p = format!("profiles/{name}.toml");
        let o = run(&[
            "plan",
            "-p",
            &p,
            "--root",
            fixture_root(name).to_str().unwrap(),
            "--format",
            "json",
        ]);
        status(&o, 0);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let hooks = v["hooks"].as_array().unwrap();
        let h = hooks
            .iter()
            .find(|h| h["command"] == serde_json::json!(command))
            .unwrap_or_else(|| panic!("{name}: {hooks:?}"));
        assert!(
            h["inputs"].as_array().unwrap().iter().any(|i| i == input),
            "{name}: {h}"
        );
    }
}

/// A PE file shaped like a UKI: DOS and COFF headers, the section table, the sections' data.
fn uki(sections: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = vec![0u8; 0x40];
    b[..2].copy_from_slice(b"MZ");
    b[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
    b.extend_from_slice(b"PE\0\0");
    let mut coff = [0u8; 20];
    coff[..2].copy_from_slice(&0x8664u16.to_le_bytes());
    coff[2..4].copy_from_slice(&(sections.len() as u16).to_le_bytes());
    b.extend_from_slice(&coff);
    let mut at = b.len() + 40 * sections.len();
    let mut data = Vec::new();
    for (name, bytes) in sections {
        let mut e = [0u8; 40];
        e[..name.len()].copy_from_slice(name.as_bytes());
        e[8..12].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
        let raw = bytes.len().div_ceil(512) * 512;
        e[16..20].copy_from_slice(&(raw as u32).to_le_bytes());
        e[20..24].copy_from_slice(&(at as u32).to_le_bytes());
        b.extend_from_slice(&e);
        let mut padded = bytes.to_vec();
        padded.resize(raw, 0);
        data.extend(padded);
        at += raw;
    }
    b.extend(data);
    b
}

#[test]
fn check_reads_the_cmdline_of_each_uki() {
    let tmp = copy_root("arch-uki-mkinitcpio");
    // A host without PCI devices: only the uki items matter here.
    std::fs::create_dir_all(tmp.path().join("sys/bus/pci/devices")).unwrap();
    let linux = tmp.path().join("efi/EFI/Linux");
    std::fs::create_dir_all(&linux).unwrap();
    let line =
        b"root=UUID=5b0d7c1e-3f4a-4e8b-9d2c-1a6f0e9b7c44 rw nowatchdog iommu=pt intel_iommu=on\0";
    std::fs::write(
        linux.join("arch-linux.efi"),
        uki(&[
            (".osrel", b"ID=arch\n"),
            (".cmdline", line),
            (".linux", b"kernel"),
        ]),
    )
    .unwrap();
    std::fs::write(
        linux.join("arch-linux-fallback.efi"),
        uki(&[(".cmdline", b"root=UUID=5b0d7c1e rw iommu=pt\0")]),
    )
    .unwrap();
    // Hostile: a truncated image, and a section table pointing past the end of the file.
    let good = uki(&[(".cmdline", b"quiet\0")]);
    std::fs::write(linux.join("truncated.efi"), &good[..100]).unwrap();
    let mut past = good.clone();
    past[0x40 + 24 + 20..0x40 + 24 + 24].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
    std::fs::write(linux.join("past-the-end.efi"), past).unwrap();
    // Secure Boot on: the SecureBoot variable (attributes, then 1).
    let vars = tmp.path().join("sys/firmware/efi/efivars");
    std::fs::create_dir_all(&vars).unwrap();
    std::fs::write(
        vars.join("SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"),
        [6, 0, 0, 0, 1],
    )
    .unwrap();

    let o = run(&[
        "check",
        "-p",
        "profiles/arch-uki-mkinitcpio.toml",
        "--root",
        tmp.path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    status(&o, 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let items: Vec<&serde_json::Value> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["id"] == "uki")
        .collect();
    let of = |file: &str| -> &serde_json::Value {
        items
            .iter()
            .find(|i| i["path"] == format!("/efi/EFI/Linux/{file}"))
            .unwrap_or_else(|| panic!("{file}: {items:?}"))
    };
    assert_eq!(of("arch-linux.efi")["status"], "pass");
    let fallback = of("arch-linux-fallback.efi");
    assert_eq!(fallback["status"], "fail");
    assert!(
        fallback["message"]
            .as_str()
            .unwrap()
            .contains("lacks intel_iommu=on"),
        "{fallback}"
    );
    for bad in ["truncated.efi", "past-the-end.efi"] {
        assert_eq!(of(bad)["status"], "fail", "{bad}");
        assert!(
            of(bad)["message"]
                .as_str()
                .unwrap()
                .contains("cannot read it"),
            "{bad}"
        );
    }
    assert!(
        items.iter().any(|i| i["status"] == "warn"
            && i["message"].as_str().unwrap().contains("Secure Boot is on")),
        "{items:?}"
    );
}
