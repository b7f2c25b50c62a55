//! `check` with `[libvirt] domains` through the binary: each fixture of
//! tests/fixtures/libvirt/ as /etc/libvirt/qemu/win11.xml on the intel-3090 fake host, and the
//! items its header names (docs/libvirt.md sections 3 and 5).

use super::*;

const PROFILE: &str = "[host]\ncpu = \"intel\"\nbootloader = \"systemd-boot\"\n\n[vfio]\nmode = \"on-demand\"\nids = [\"10de:2204\", \"10de:1aef\"]\n\n[resources]\nhugepages = \"16G\"\nhugepage_size = \"1G\"\nisolate_cpus = \"4-11\"\nisolation = \"on-demand\"\n\n[libvirt]\ndomains = [\"win11\"]\nrom = \"/usr/share/vgabios/rtx3090.rom\"\n";

/// The intel-3090 host with 16 CPUs, the profile, the fixture as win11's definition and good
/// ROMs (an x64 UEFI image, mode 0644) at the two paths the fixtures name.
fn host(fixture: &str, profile: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    fake_host::build(
        &repo().join("tests/fixtures/hosts/intel-3090.toml"),
        tmp.path(),
    )
    .unwrap();
    let put = |rel: &str, bytes: &[u8]| {
        let p = tmp.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    put("sys/devices/system/cpu/present", b"0-15\n");
    put("etc/vfio-gen/profile.toml", profile.as_bytes());
    if !fixture.is_empty() {
        put(
            "etc/libvirt/qemu/win11.xml",
            &std::fs::read(repo().join("tests/fixtures/libvirt").join(fixture)).unwrap(),
        );
    }
    let rom = fake_host::rom_image(&["x86".into(), "efi-x64".into()], 0x10de, 0x2204).unwrap();
    for p in [
        "usr/share/vgabios/rtx3090.rom",
        "var/lib/libvirt/vbios/gpu.rom",
    ] {
        put(p, &rom);
        set_mode(&tmp.path().join(p), 0o644);
    }
    tmp
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `check --format json`'s items whose id starts with `domain`, as (id, status, message, remedy).
fn domain_items(root: &Path) -> Vec<(String, String, String, String)> {
    let o = run(&[
        "check",
        "--format",
        "json",
        "--root",
        root.to_str().unwrap(),
    ]);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&o), stderr(&o)));
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["id"].as_str().unwrap().starts_with("domain"))
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap_or("").to_string();
            (s("id"), s("status"), s("message"), s("remedy"))
        })
        .collect()
}

/// The items not passing.
fn problems(root: &Path) -> Vec<(String, String, String, String)> {
    domain_items(root)
        .into_iter()
        .filter(|i| i.1 != "pass")
        .collect()
}

#[test]
fn the_good_domain_passes_every_item() {
    let h = host("win11-good.xml", PROFILE);
    let items = domain_items(h.path());
    let ids: Vec<&str> = items.iter().map(|i| i.0.as_str()).collect();
    assert_eq!(
        ids,
        [
            "domain-devices",
            "domain-firmware",
            "domain-rom",
            "domain-hugepages",
            "domain-vcpupin"
        ],
        "{items:#?}"
    );
    assert!(items.iter().all(|i| i.1 == "pass"), "{items:#?}");
    assert!(
        items[0].2.contains("0000:01:00.0, 0000:01:00.1"),
        "{items:#?}"
    );
}

#[test]
fn a_group_member_left_out_is_a_failure_naming_it() {
    // With both IDs in the profile the audio function is the profile's own device.
    let h = host("win11-missing-audio.xml", PROFILE);
    let p = problems(h.path());
    assert!(
        p.iter().any(|i| i.0 == "domain-devices"
            && i.1 == "fail"
            && i.2
                .contains("no <hostdev> for the profile's 0000:01:00.1 [10de:1aef]")),
        "{p:#?}"
    );
    // With the display function's ID alone it is a member of the group the profile takes.
    let h = host(
        "win11-missing-audio.xml",
        &PROFILE.replace(", \"10de:1aef\"", ""),
    );
    let p = problems(h.path());
    let group: Vec<_> = p.iter().filter(|i| i.0 == "domain-group").collect();
    assert_eq!(group.len(), 1, "{p:#?}");
    assert_eq!(group[0].1, "fail");
    assert!(
        group[0].2.contains("0000:01:00.1 [10de:1aef]") && group[0].2.contains("not viable"),
        "{p:#?}"
    );
    assert!(group[0].3.contains("render --format libvirt"), "{p:#?}");
    // The display function the user added through virt-manager carries managed='yes'.
    assert!(
        p.iter()
            .any(|i| i.0 == "domain-managed" && i.2.contains("0000:01:00.0")),
        "{p:#?}"
    );
    assert_eq!(p.len(), 2, "{p:#?}");
    let o = run(&["check", "--root", h.path().to_str().unwrap()]);
    status(&o, 1);
}

#[test]
fn a_bios_domain_is_reported() {
    let h = host("win10-bios.xml", &PROFILE.replace("win11", "win10"));
    std::fs::rename(
        h.path().join("etc/libvirt/qemu/win11.xml"),
        h.path().join("etc/libvirt/qemu/win10.xml"),
    )
    .unwrap();
    let p = problems(h.path());
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].0, "domain-firmware");
    assert!(p[0].2.contains("domain win10: boots with BIOS"), "{p:#?}");
    assert!(p[0].3.contains("UEFI"), "{p:#?}");
}

#[test]
fn vcpus_pinned_outside_isolate_cpus_are_named_and_emulatorpin_is_not() {
    let h = host("win11-pin-outside.xml", PROFILE);
    let p = problems(h.path());
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].0, "domain-vcpupin");
    assert!(
        p[0].2
            .contains("vcpu 6 (cpuset 2), vcpu 7 (cpuset 3) pinned outside isolate_cpus 4-11"),
        "{p:#?}"
    );
    assert!(
        !p[0].2.contains("0-3"),
        "emulatorpin is not flagged: {p:#?}"
    );
}

#[test]
fn a_rom_where_apparmor_denies_it_names_usr_share_vgabios() {
    let h = host("win11-rom-apparmor.xml", PROFILE);
    let p = problems(h.path());
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!((p[0].0.as_str(), p[0].1.as_str()), ("domain-rom", "warn"));
    assert!(p[0].2.contains("/var/lib/libvirt/vbios/gpu.rom"), "{p:#?}");
    assert!(p[0].3.contains("/usr/share/vgabios/"), "{p:#?}");
}

#[test]
fn managed_yes_and_no_huge_pages_are_both_said() {
    let h = host("win11-managed-no-hugepages.xml", PROFILE);
    let p = problems(h.path());
    let ids: Vec<&str> = p.iter().map(|i| i.0.as_str()).collect();
    assert_eq!(ids, ["domain-managed", "domain-hugepages"], "{p:#?}");
    assert!(p[0].2.contains("0000:01:00.0, 0000:01:00.1"), "{p:#?}");
    assert!(p[0].3.contains("managed='no'"), "{p:#?}");
    assert!(p[1].3.contains("<memoryBacking><hugepages/>"), "{p:#?}");
}

#[test]
fn a_rom_without_an_x64_uefi_image_or_unreadable_by_qemu_is_reported() {
    let h = host("win11-good.xml", PROFILE);
    let rom = h.path().join("usr/share/vgabios/rtx3090.rom");
    set_mode(&rom, 0o600);
    let p = problems(h.path());
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].2.contains("not readable by others"), "{p:#?}");
    assert!(p[0].3.contains("chmod 0644"), "{p:#?}");

    std::fs::write(
        &rom,
        fake_host::rom_image(&["x86".into()], 0x10de, 0x2204).unwrap(),
    )
    .unwrap();
    let p = problems(h.path());
    assert_eq!((p[0].0.as_str(), p[0].1.as_str()), ("domain-rom", "fail"));
    assert!(p[0].3.contains("x64 UEFI image for 10de:2204"), "{p:#?}");

    std::fs::remove_file(&rom).unwrap();
    let p = problems(h.path());
    assert!(p[0].2.contains("No such file"), "{p:#?}");
}

#[test]
fn a_missing_domain_is_a_warning_with_a_remedy() {
    let h = host("", PROFILE);
    let p = problems(h.path());
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].1, "warn");
    assert!(
        p[0].2
            .contains("domain win11: not defined (no /etc/libvirt/qemu/win11.xml)"),
        "{p:#?}"
    );
    assert!(
        p[0].3.contains("remove \"win11\" from [libvirt] domains"),
        "{p:#?}"
    );
    // The hint carries --root, as every hint does.
    assert!(p[0].3.contains("--root"), "{p:#?}");
}

#[test]
fn broken_xml_fails_with_its_line_and_column_and_stays_as_it_was() {
    let h = host("win11-good.xml", PROFILE);
    let f = h.path().join("etc/libvirt/qemu/win11.xml");
    let text = std::fs::read_to_string(&f).unwrap().replace(
        "<vcpu placement='static'>8</vcpu>",
        "<vcpu placement='static'>8</vcpus>",
    );
    std::fs::write(&f, &text).unwrap();
    let p = problems(h.path());
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].1, "fail");
    let line = text.lines().position(|l| l.contains("</vcpus>")).unwrap() + 1;
    assert!(
        p[0].2.contains(&format!(
            "/etc/libvirt/qemu/win11.xml: line {line}, column 29: </vcpus> closes <vcpu> of line {line}"
        )),
        "{p:#?}"
    );
    assert_eq!(std::fs::read_to_string(&f).unwrap(), text);
}

#[test]
fn the_text_output_says_each_domain_item() {
    let h = host("win11-pin-outside.xml", PROFILE);
    let o = run(&["check", "--root", h.path().to_str().unwrap()]);
    let out = stdout(&o);
    assert!(
        out.contains("[pass] domain win11: boots with UEFI"),
        "{out}"
    );
    assert!(
        out.contains("[warn] domain win11: vcpu 6 (cpuset 2)"),
        "{out}"
    );
}
