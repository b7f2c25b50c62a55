//! `iommu`, `detect`, `check`, `bind` and `unbind` on fake hosts built from the descriptions in
//! tests/fixtures/hosts/, and the read-only commands on this machine's real /sys and /proc.

use super::*;

const HOSTS: &[&str] = &[
    "intel-3090",
    "amd-shared-group",
    "turing-four-functions",
    "two-identical-gpus",
    "laptop-optimus",
    "iommu-off",
    "vfio-bound",
    "qemu-bookworm",
];

fn host(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    fake_host::build(
        &repo().join(format!("tests/fixtures/hosts/{name}.toml")),
        tmp.path(),
    )
    .unwrap();
    tmp
}

fn at(root: &Path, args: &[&str]) -> Output {
    Vg::new(args).root(root).output()
}

#[test]
fn iommu_lists_groups_in_numeric_order_with_drivers() {
    let h = host("intel-3090");
    let o = at(h.path(), &["iommu"]);
    status(&o, 0);
    let out = stdout(&o);
    assert!(out.lines().any(|l| l == "IOMMU Group 2: 0000:01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GA102 [GeForce RTX 3090] [10de:2204] (nvidia)"), "{out}");
    assert!(
        out.lines().any(
            |l| l.starts_with("IOMMU Group 2: 0000:01:00.1 Audio device [0403]: ")
                && l.ends_with("[10de:1aef] (snd_hda_intel)")
        ),
        "{out}"
    );
    // The GPUs' functions have their reset capability on indented lines below them.
    let groups: Vec<u32> = out
        .lines()
        .filter(|l| !l.starts_with("  "))
        .map(|l| {
            l.strip_prefix("IOMMU Group ")
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let mut sorted = groups.clone();
    sorted.sort();
    assert_eq!(groups, sorted, "numeric order (1, 2, 10, not 1, 10, 2)");
    assert!(groups.contains(&10) && groups.contains(&2));

    let o = at(h.path(), &["iommu", "--format", "json"]);
    status(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["iommu"], true);
    let g2 = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == 2)
        .unwrap();
    assert_eq!(g2["devices"][1]["bdf"], "0000:01:00.0");
    assert_eq!(g2["devices"][1]["driver"], "nvidia");
}

#[test]
fn iommu_off_is_said_clearly() {
    let h = host("iommu-off");
    let o = at(h.path(), &["iommu"]);
    status(&o, 0);
    assert!(
        stdout(&o).starts_with("The IOMMU is off")
            && stdout(&o).contains("VT-d")
            && stdout(&o).contains("intel_iommu=on"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn names_fall_back_to_the_class_code_without_pci_ids() {
    let h = host("laptop-optimus");
    let out = stdout(&at(h.path(), &["iommu"]));
    assert!(
        out.contains("3D controller [0302]: Vendor 10de Device 25a2 [10de:25a2] (nvidia)"),
        "{out}"
    );
}

/// The IDs of every function of the card at `slot`, from the fixture tree itself.
fn slot_ids(root: &Path, slot: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for e in std::fs::read_dir(root.join("sys/bus/pci/devices")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(slot) {
            let read = |f: &str| {
                std::fs::read_to_string(e.path().join(f))
                    .unwrap()
                    .trim()
                    .trim_start_matches("0x")
                    .to_string()
            };
            if !read("class").starts_with("06") {
                ids.push(format!("{}:{}", read("vendor"), read("device")));
            }
        }
    }
    ids
}

#[test]
fn detect_prints_a_profile_plan_accepts_with_every_function() {
    let expect: &[(&str, &str)] = &[
        ("intel-3090", "0000:01:00"),
        ("amd-shared-group", "0000:06:00"),
        ("turing-four-functions", "0000:01:00"),
        ("two-identical-gpus", "0000:0b:00"),
        ("laptop-optimus", "0000:01:00"),
        ("iommu-off", "0000:01:00"),
        ("vfio-bound", "0000:01:00"),
        ("qemu-bookworm", "0000:00:05"),
    ];
    assert_eq!(expect.len(), HOSTS.len());
    for (name, slot) in expect {
        let h = host(name);
        let o = at(h.path(), &["detect"]);
        status(&o, 0);
        let text = stdout(&o);
        let profile = vfio_gen::profile::parse(&text, "detected.toml")
            .unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
        // Each ID of the card is in vfio.ids, or written commented out with the reason when
        // it would also take a device the host needs.
        // An ID another device shares goes by address in vfio.devices instead.
        for id in slot_ids(h.path(), slot) {
            let by_address = profile
                .devices
                .iter()
                .any(|d| d.id == id && d.address.starts_with(slot));
            assert!(
                profile.ids.contains(&id)
                    || by_address
                    || text.contains(&format!("#   \"{id}\"  ")),
                "{name}: {id} of the card at {slot} is missing from {:?}\n{text}",
                profile.ids
            );
        }
        let file = h.path().join("detected.toml");
        std::fs::write(&file, &text).unwrap();
        let o = at(h.path(), &["plan", "-p", file.to_str().unwrap()]);
        if *name == "two-identical-gpus" {
            // Its kernel has vfio-pci built in: binding by address at boot cannot run there,
            // and plan says so (docs/binding-at-boot.md).
            status(&o, 2);
            assert!(stderr(&o).contains("built in"), "{}", stderr(&o));
        } else {
            status(&o, 0);
        }
    }
}

#[test]
fn detect_explains_what_it_cannot_decide() {
    let out = stdout(&at(host("two-identical-gpus").path(), &["detect"]));
    assert!(
        out.contains("has the same IDs [10de:1b80] but stays with the host"),
        "{out}"
    );
    let out = stdout(&at(host("amd-shared-group").path(), &["detect"]));
    assert!(
        out.contains("shares its IOMMU group with") && out.contains("nvme"),
        "{out}"
    );
    assert!(
        out.contains("ids = [\"10de:1b81\", \"10de:10f0\"]"),
        "{out}"
    );
    assert!(
        out.contains("# Held back: these IDs would also take devices the host needs"),
        "{out}"
    );
    for held in ["1022:43c8", "10ec:8168", "2646:2263"] {
        assert!(out.contains(&format!("#   \"{held}\"  ")), "{held}: {out}");
    }
    let out = stdout(&at(host("turing-four-functions").path(), &["detect"]));
    assert!(
        out.contains("ids = [\"10de:1e87\", \"10de:10f8\", \"10de:1ad8\", \"10de:1ad9\"]"),
        "{out}"
    );
    assert!(
        out.contains("softdep = [\"nvidia\", \"snd_hda_intel\", \"xhci_pci\", \"i2c_nvidia_gpu\"]"),
        "module names, not driver names: {out}"
    );

    // --gpu takes the one asked for, and says so when it is the boot display.
    let h = host("two-identical-gpus");
    let out = stdout(&at(h.path(), &["detect", "--gpu", "0a:00.0"]));
    assert!(out.contains("0000:0a:00.0 is the boot display"), "{out}");
    let o = at(h.path(), &["detect", "--gpu", "0000:99:00.0"]);
    status(&o, 2);
    assert!(stderr(&o).contains("no such device"), "{}", stderr(&o));
}

fn profile_file(root: &Path, ids: &[&str]) -> PathBuf {
    let p = root.join("p.toml");
    let ids: Vec<String> = ids.iter().map(|i| format!("\"{i}\"")).collect();
    std::fs::write(
        &p,
        format!(
            "[host]\ncpu = \"intel\"\nbootloader = \"grub\"\n[vfio]\nids = [{}]\n",
            ids.join(", ")
        ),
    )
    .unwrap();
    p
}

fn check_items(root: &Path, profile: Option<&Path>) -> (i32, Vec<(String, String, String)>) {
    let mut args = vec!["check", "--format", "json"];
    if let Some(p) = profile {
        args.extend(["-p", p.to_str().unwrap()]);
    }
    let o = at(root, &args);
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)));
    let items = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["status"].as_str().unwrap().to_string(),
                i["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (o.status.code().unwrap(), items)
}

#[test]
fn check_passes_a_finished_setup() {
    let h = host("vfio-bound");
    // A display function without reset_method on a 5.15+ kernel is a warning (tests/cli/reset.rs).
    std::fs::write(
        h.path()
            .join("sys/bus/pci/devices/0000:01:00.0/reset_method"),
        "flr bus\n",
    )
    .unwrap();
    let p = profile_file(h.path(), &["10de:2684", "10de:22ba"]);
    let (code, items) = check_items(h.path(), Some(&p));
    assert_eq!(code, 0, "{items:?}");
    assert!(items.iter().all(|(_, s, _)| s == "pass"), "{items:?}");
    let o = at(h.path(), &["check", "-p", p.to_str().unwrap()]);
    assert!(
        stdout(&o).contains("[pass] 0000:01:00.0 [10de:2684] is bound to vfio-pci"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn check_finds_what_is_missing() {
    let h = host("intel-3090");
    let p = profile_file(h.path(), &["10de:2204"]);
    let (code, items) = check_items(h.path(), Some(&p));
    assert_eq!(code, 1);
    let has = |id: &str, status: &str, text: &str| {
        items
            .iter()
            .any(|(i, s, m)| i == id && s == status && m.contains(text))
    };
    assert!(
        has("functions", "fail", "0000:01:00.1 [10de:1aef]"),
        "{items:?}"
    );
    assert!(has("driver", "fail", "bound to nvidia"), "{items:?}");
    assert!(has("cmdline", "fail", "iommu=pt"), "{items:?}");
    assert!(has("iommu", "pass", "dmar0"), "{items:?}");

    let h = host("amd-shared-group");
    let p = profile_file(h.path(), &["10de:1b81", "10de:10f0"]);
    let (_, items) = check_items(h.path(), Some(&p));
    assert!(
        items
            .iter()
            .any(|(i, s, m)| i == "group" && s == "fail" && m.contains("0000:05:00.0")),
        "{items:?}"
    );

    let h = host("two-identical-gpus");
    let p = profile_file(h.path(), &["10de:1b80", "10de:10f0"]);
    let (_, items) = check_items(h.path(), Some(&p));
    assert!(
        items
            .iter()
            .any(|(i, s, _)| i == "identical-ids" && s == "fail"),
        "{items:?}"
    );
    assert!(
        items.iter().any(|(i, s, _)| i == "boot-vga" && s == "warn"),
        "{items:?}"
    );
    assert!(
        items
            .iter()
            .any(|(i, s, _)| i == "vfio-builtin" && s == "warn"),
        "{items:?}"
    );

    let h = host("iommu-off");
    let (code, items) = check_items(h.path(), None);
    assert_eq!(code, 1);
    assert!(
        items.iter().any(|(i, s, _)| i == "iommu" && s == "fail"),
        "{items:?}"
    );
}

#[test]
fn bind_dry_run_prints_the_writes_in_order() {
    let h = host("intel-3090");
    let o = at(h.path(), &["bind", "--dry-run", "01:00.0", "0000:01:00.1"]);
    status(&o, 0);
    assert_eq!(
        stdout(&o),
        "# vfio-pci is not loaded (no /sys/bus/pci/drivers/vfio-pci): `modprobe vfio-pci` must come first\n\
         echo 'vfio-pci' > /sys/bus/pci/devices/0000:01:00.0/driver_override\n\
         echo '0000:01:00.0' > /sys/bus/pci/devices/0000:01:00.0/driver/unbind\n\
         echo '0000:01:00.0' > /sys/bus/pci/drivers_probe\n\
         echo 'vfio-pci' > /sys/bus/pci/devices/0000:01:00.1/driver_override\n\
         echo '0000:01:00.1' > /sys/bus/pci/devices/0000:01:00.1/driver/unbind\n\
         echo '0000:01:00.1' > /sys/bus/pci/drivers_probe\n"
    );
    let o = at(h.path(), &["unbind", "--dry-run", "01:00.0"]);
    assert_eq!(
        stdout(&o),
        "skip 0000:01:00.0: bound to nvidia, not vfio-pci\n"
    );
}

#[test]
fn bind_refuses_the_boot_display_and_split_groups() {
    let h = host("intel-3090");
    let before = tree(h.path());
    let o = at(h.path(), &["bind", "0000:00:02.0"]);
    status(&o, 2);
    assert!(
        stderr(&o).contains("boot display") && stderr(&o).contains("--force"),
        "{}",
        stderr(&o)
    );
    let h2 = host("amd-shared-group");
    let o = at(h2.path(), &["bind", "06:00.0", "06:00.1"]);
    status(&o, 2);
    assert!(
        stderr(&o).contains("shares IOMMU group") && stderr(&o).contains("0000:05:00.0"),
        "{}",
        stderr(&o)
    );
    assert!(tree(h.path()) == before, "a refused bind writes nothing");
}

/// On a fake tree the kernel does not react, so the driver stays: bind writes under ROOT/sys
/// only, then reports that the device did not move.
#[test]
fn bind_writes_only_under_sys_and_reads_the_driver_back() {
    let h = host("two-identical-gpus");
    let outside = |t: BTreeMap<String, Vec<u8>>| -> BTreeMap<String, Vec<u8>> {
        t.into_iter()
            .filter(|(k, _)| !k.starts_with("sys/"))
            .collect()
    };
    let before = outside(tree(h.path()));
    let o = at(h.path(), &["bind", "0b:00.0", "0b:00.1"]);
    status(&o, 2);
    assert!(
        stdout(&o).contains("FAIL 0000:0b:00.0: nvidia"),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("0000:0b:00.0 is bound to nvidia")
            && stderr(&o).contains("after the writes"),
        "{}",
        stderr(&o)
    );
    let ov = std::fs::read_to_string(
        h.path()
            .join("sys/bus/pci/devices/0000:0b:00.1/driver_override"),
    )
    .unwrap();
    assert!(ov.starts_with("vfio-pci"), "{ov}");
    assert_eq!(
        std::fs::read_to_string(h.path().join("sys/bus/pci/drivers_probe")).unwrap(),
        "0000:0b:00.1"
    );
    assert!(
        outside(tree(h.path())) == before,
        "nothing outside ROOT/sys changed"
    );
}

/// The read-only commands on this machine: they succeed and report what /sys/class/iommu shows.
#[test]
fn read_only_commands_on_this_machine() {
    let entries = |dir: &str| std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    // On: IOMMU units in /sys/class/iommu and groups in /sys/kernel/iommu_groups.
    let active = entries("/sys/class/iommu") > 0 && entries("/sys/kernel/iommu_groups") > 0;
    let o = run(&["iommu", "--format", "json"]);
    status(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v["iommu"], active,
        "iommu reports what /sys/class/iommu shows"
    );
    let o = run(&["iommu"]);
    status(&o, 0);
    assert_eq!(stdout(&o).starts_with("The IOMMU is off"), !active);
    let o = run(&["detect"]);
    // Exit 1 and no profile when the machine has no GPU for a guest (a CI runner often has none).
    if o.status.code() == Some(1) {
        assert!(
            stdout(&o).is_empty() && stderr(&o).contains("no GPU to pass through"),
            "{}",
            stderr(&o)
        );
    } else {
        status(&o, 0);
        assert!(
            stdout(&o).contains(if active {
                "# IOMMU: on"
            } else {
                "# IOMMU: OFF"
            }),
            "{}",
            stdout(&o)
        );
    }
    let o = run(&[
        "check",
        "--format",
        "json",
        "-p",
        "/nonexistent/profile.toml",
    ]);
    status(&o, 2);
    let o = run(&["check", "--format", "json"]);
    assert!(
        matches!(o.status.code(), Some(0) | Some(1)),
        "{}",
        stderr(&o)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let iommu = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "iommu")
        .unwrap();
    assert_eq!(iommu["status"], if active { "pass" } else { "fail" });
}

#[test]
fn wrong_addresses_and_roots_are_explained() {
    let h = host("intel-3090");
    let o = at(h.path(), &["detect", "--gpu", "00:1f.3"]);
    status(&o, 2);
    assert!(
        stderr(&o).contains("(Audio device [0403]) is not a GPU"),
        "{}",
        stderr(&o)
    );
    let o = run(&["iommu", "--root", "/nonexistent-root"]);
    status(&o, 2);
    assert!(
        stderr(&o).contains("--root /nonexistent-root: no such directory"),
        "{}",
        stderr(&o)
    );
    let empty = tempfile::tempdir().unwrap();
    let o = at(empty.path(), &["detect"]);
    status(&o, 2);
    assert!(stderr(&o).contains("has no sysfs"), "{}", stderr(&o));
}

#[test]
fn unbind_gives_back_only_what_vfio_pci_holds() {
    let h = host("two-identical-gpus");
    let o = at(h.path(), &["unbind", "--dry-run", "0a:00.0"]);
    status(&o, 0);
    assert_eq!(
        stdout(&o),
        "skip 0000:0a:00.0: bound to nvidia, not vfio-pci\n"
    );
    let h = host("vfio-bound");
    let o = at(h.path(), &["unbind", "--dry-run", "01:00.0"]);
    assert!(stdout(&o).starts_with("echo '' > /sys/bus/pci/devices/0000:01:00.0/driver_override\necho '0000:01:00.0' > /sys/bus/pci/devices/0000:01:00.0/driver/unbind\n"), "{}", stdout(&o));
}

/// A detected profile for a GPU in a shared group takes the host's disks and network: plan,
/// check and bind say so, and bind refuses without --force.
#[test]
fn taking_the_hosts_disks_is_named_everywhere() {
    let h = host("amd-shared-group");
    let profile = h.path().join("risky.toml");
    // Every ID of the GPU's shared group, as detect wrote it before it held such IDs back.
    std::fs::write(
        &profile,
        "[host]\ncpu = \"amd\"\nbootloader = \"grub\"\ninitramfs = \"none\"\n[vfio]\nids = [\"1022:43d5\", \"1022:43c8\", \"10ec:8168\", \"2646:2263\", \"10de:1b81\", \"10de:10f0\"]\n",
    )
    .unwrap();
    let p = profile.to_str().unwrap();
    // apply refuses it, names each device and why, and writes nothing; --force installs it.
    let before = tree(h.path());
    let o = at(h.path(), &["apply", "-p", p, "--yes", "--no-hooks"]);
    status(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("refusing to apply")
            && err.contains("0000:05:00.0 (A2000 NVMe SSD, nvme), a storage controller")
            && err.contains("0000:04:00.0")
            && err.contains("--force"),
        "{err}"
    );
    assert!(tree(h.path()) == before, "a refused apply writes nothing");
    let o = at(
        h.path(),
        &["apply", "-p", p, "--yes", "--no-hooks", "--force"],
    );
    status(&o, 0);
    let o = at(
        h.path(),
        &["apply", "-p", p, "--yes", "--no-hooks", "--revert"],
    );
    status(&o, 0);
    let out = stdout(&at(h.path(), &["plan", "-p", p]));
    assert!(
        out.contains(
            "warning: vfio.ids takes 0000:05:00.0 (A2000 NVMe SSD, nvme), a storage controller"
        ),
        "{out}"
    );
    assert!(
        out.contains("warning: vfio.ids takes 0000:04:00.0") && out.contains("network controller"),
        "{out}"
    );
    let (_, items) = check_items(h.path(), Some(&profile));
    assert!(
        items
            .iter()
            .any(|(i, s, m)| i == "risk" && s == "warn" && m.contains("0000:05:00.0")),
        "{items:?}"
    );
    let o = at(h.path(), &["bind", "-p", p, "--dry-run"]);
    status(&o, 2);
    assert!(
        stderr(&o).contains("0000:05:00.0 (A2000 NVMe SSD) is a storage controller")
            && stderr(&o).contains("--force"),
        "{}",
        stderr(&o)
    );

    let h = host("two-identical-gpus");
    let text = stdout(&at(h.path(), &["detect"]));
    // The GPU's IDs are the boot display's too: detect names the guest's functions by address
    // and keeps the shared IDs out of vfio.ids.
    assert!(
        text.contains("ids = []\n")
            && text.contains("{ address = \"0000:0b:00.0\", id = \"10de:1b80\" }")
            && text.contains("{ address = \"0000:0b:00.1\", id = \"10de:10f0\" }")
            && !text.contains("0000:0a:00.0\", id"),
        "{text}"
    );
    // Written by hand into vfio.ids, it is named by plan and refused by apply.
    let risky = profile_file(h.path(), &["10de:1b80", "10de:10f0"]);
    let risky = risky.to_str().unwrap();
    let out = stdout(&at(h.path(), &["plan", "-p", risky]));
    assert!(
        out.contains("the boot display: the host loses its console")
            && out.contains("vfio.ids matches 2 GPUs"),
        "{out}"
    );
    let o = at(h.path(), &["apply", "-p", risky, "--yes", "--no-hooks"]);
    status(&o, 2);
    assert!(stderr(&o).contains("the boot display"), "{}", stderr(&o));
}

/// A blacklist of the driver the host's own display uses is refused: it applies to every
/// card, so the host would lose its display; the message points to softdep.
#[test]
fn blacklisting_the_hosts_display_driver_is_refused() {
    let h = host("two-identical-gpus");
    let p = h.path().join("p.toml");
    std::fs::write(
        &p,
        "[host]\ncpu = \"intel\"\nbootloader = \"grub\"\ninitramfs = \"none\"\n[vfio]\nids = [\"10de:10f0\"]\nblacklist = [\"nvidia\"]\nsoftdep = []\n",
    )
    .unwrap();
    let p = p.to_str().unwrap();
    let before = tree(h.path());
    let o = at(h.path(), &["apply", "-p", p, "--yes", "--no-hooks"]);
    status(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("vfio.blacklist takes nvidia from 0000:0a:00.0")
            && err.contains("the boot display")
            && err.contains("softdep = [\"nvidia\"]"),
        "{err}"
    );
    assert!(tree(h.path()) == before, "a refused apply writes nothing");
    let out = stdout(&at(h.path(), &["plan", "-p", p]));
    assert!(
        out.contains("warning: vfio.blacklist takes nvidia"),
        "{out}"
    );
}

#[test]
fn check_items_are_keyed_and_honest_when_groups_are_unknown() {
    let h = host("amd-shared-group");
    let p = profile_file(h.path(), &["10de:1b81", "10de:10f0"]);
    let o = at(
        h.path(),
        &["check", "--format", "json", "-p", p.to_str().unwrap()],
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let groups: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["id"] == "group")
        .map(|i| i["bdf"].as_str().unwrap())
        .collect();
    let mut unique = groups.clone();
    unique.dedup();
    assert_eq!(groups.len(), 4, "one item per group member: {groups:?}");
    assert_eq!(groups, unique);

    let h = host("iommu-off");
    let p = profile_file(h.path(), &["10de:1c03", "10de:10f1"]);
    let (_, items) = check_items(h.path(), Some(&p));
    assert!(
        items
            .iter()
            .any(|(i, s, _)| i == "isolation" && s == "warn"),
        "{items:?}"
    );
    let o = at(h.path(), &["check", "-q", "-p", p.to_str().unwrap()]);
    assert!(
        !stdout(&o).contains("[pass]")
            && !stdout(&o).contains("checks:")
            && stdout(&o).contains("[FAIL]"),
        "{}",
        stdout(&o)
    );

    let o = at(h.path(), &["iommu", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["iommu"], false);
    assert!(
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["bdf"] == "0000:01:00.0"),
        "devices are listed while the IOMMU is off"
    );
}

/// The QEMU guest of the report: `options vfio-pci ids=` put both IDs into vfio-pci's dynamic ID
/// table, so giving the functions back must remove them before the re-probe (docs/binding.md).
#[test]
fn unbind_removes_the_ids_that_options_vfio_pci_ids_added() {
    let h = host("qemu-bookworm");
    let o = at(h.path(), &["unbind", "--dry-run", "00:05.0", "00:05.1"]);
    status(&o, 0);
    assert_eq!(
        stdout(&o),
        "echo '' > /sys/bus/pci/devices/0000:00:05.0/driver_override\n\
         echo '0000:00:05.0' > /sys/bus/pci/devices/0000:00:05.0/driver/unbind\n\
         echo '1234 1111' > /sys/bus/pci/drivers/vfio-pci/remove_id || true  # optional: ENODEV when the ID is not a dynamic one\n\
         echo '0000:00:05.0' > /sys/bus/pci/drivers_probe\n\
         echo '' > /sys/bus/pci/devices/0000:00:05.1/driver_override\n\
         echo '0000:00:05.1' > /sys/bus/pci/devices/0000:00:05.1/driver/unbind\n\
         echo '8086 293e' > /sys/bus/pci/drivers/vfio-pci/remove_id || true  # optional: ENODEV when the ID is not a dynamic one\n\
         echo '0000:00:05.1' > /sys/bus/pci/drivers_probe\n\
         # 0000:00:05.0 then goes to bochs-drm (module bochs)\n\
         # 0000:00:05.1 then goes to snd_hda_intel (module snd_hda_intel)\n"
    );

    // bochs not loaded: probing cannot reach bochs-drm, so `modprobe bochs` is the step.
    std::fs::remove_dir_all(h.path().join("sys/bus/pci/drivers/bochs-drm")).unwrap();
    let out = stdout(&at(
        h.path(),
        &["unbind", "--dry-run", "00:05.0", "00:05.1"],
    ));
    assert!(
        out.ends_with(
            "# 0000:00:05.0 goes to module bochs, which is not loaded: drivers_probe leaves the device without a driver, and loading the module binds it\n\
             # 0000:00:05.1 then goes to snd_hda_intel (module snd_hda_intel)\n\
             modprobe bochs\n"
        ),
        "{out}"
    );
}

/// On a fake tree the kernel does not react: unbind writes remove_id under ROOT/sys, then says
/// where each function is (still vfio-pci here) instead of calling that a success.
#[test]
fn unbind_reports_where_each_function_went() {
    let h = host("qemu-bookworm");
    let o = at(h.path(), &["unbind", "00:05.0", "00:05.1"]);
    status(&o, 2);
    assert_eq!(
        stdout(&o),
        "FAIL 0000:00:05.0: vfio-pci -> vfio-pci: vfio-pci took it again\n\
         FAIL 0000:00:05.1: vfio-pci -> vfio-pci: vfio-pci took it again\n"
    );
    assert!(
        stderr(&o).contains("0000:00:05.0 is bound to vfio-pci"),
        "{}",
        stderr(&o)
    );
    // The two IDs went to the same attribute, the second over the first.
    assert_eq!(
        std::fs::read_to_string(h.path().join("sys/bus/pci/drivers/vfio-pci/remove_id")).unwrap(),
        "8086 293e"
    );
}

/// vfio-pci holds the card at boot, so its drivers come from the modaliases: bochs and
/// snd_hda_intel go before vfio-pci, not vfio_pci and not the boot display's virtio_pci.
#[test]
fn detect_names_the_drivers_a_card_on_vfio_pci_would_get() {
    let h = host("qemu-bookworm");
    let out = stdout(&at(h.path(), &["detect"]));
    assert!(
        out.contains("softdep = [\"bochs\", \"snd_hda_intel\"]\n"),
        "{out}"
    );
    assert!(
        out.contains("ids = [\"1234:1111\", \"8086:293e\"]\n"),
        "{out}"
    );
    assert!(!out.contains("virtio_pci"), "{out}");

    let o = at(h.path(), &["iommu", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let dev = |bdf: &str| {
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["bdf"] == bdf)
            .unwrap()
            .clone()
    };
    let vga = dev("0000:00:05.0");
    assert_eq!(vga["module"], "vfio_pci", "module keeps its meaning");
    assert_eq!(vga["native_modules"], serde_json::json!(["bochs"]));
    assert_eq!(
        vga["modalias"],
        "pci:v00001234d00001111sv00001AF4sd00001100bc03sc80i00"
    );
    assert_eq!(
        dev("0000:00:01.0")["native_modules"],
        serde_json::json!(["virtio_pci"])
    );

    // Without modules.alias the drivers are unknown, and detect says so.
    let h = host("vfio-bound");
    let out = stdout(&at(h.path(), &["detect"]));
    assert!(
        out.contains("# 0000:01:00.0, 0000:01:00.1 are on vfio-pci, and this root has no")
            && out.contains("modules.alias, so the drivers vfio-pci keeps from them are unknown"),
        "{out}"
    );
}

/// A VM holding the device's VFIO group: unbind refuses (the kernel's unbind would wait until
/// the VM lets go) and names the process; nothing is written.
#[test]
fn unbind_refuses_while_a_vm_holds_the_group() {
    let h = host("vfio-bound");
    let group = std::fs::read_link(
        h.path()
            .join("sys/bus/pci/devices/0000:01:00.0/iommu_group"),
    )
    .unwrap();
    let group = group.file_name().unwrap().to_str().unwrap().to_string();
    let fd = h.path().join("proc/4242/fd");
    std::fs::create_dir_all(&fd).unwrap();
    std::os::unix::fs::symlink(format!("/dev/vfio/{group}"), fd.join("17")).unwrap();
    std::fs::write(h.path().join("proc/4242/comm"), "qemu-system-x86\n").unwrap();
    let before = tree(h.path());
    let o = at(h.path(), &["unbind", "01:00.0"]);
    status(&o, 2);
    assert!(
        stderr(&o).contains(&format!(
            "IOMMU group {group} (/dev/vfio/{group}) is open by qemu-system-x86 (pid 4242)"
        )),
        "{}",
        stderr(&o)
    );
    assert!(tree(h.path()) == before, "nothing written");
}

/// An ID no device has (a typo: the lab's deliberate break booted with the card on its own
/// drivers) is named by plan.
#[test]
fn plan_names_an_id_no_device_has() {
    let h = host("qemu-bookworm");
    let p = profile_file(h.path(), &["1234:1112", "8086:293e"]);
    let out = stdout(&at(h.path(), &["plan", "-p", p.to_str().unwrap()]));
    assert!(
        out.contains("vfio.ids has 1234:1112, which no PCI device under"),
        "{out}"
    );
    assert!(!out.contains("vfio.ids has 8086:293e"), "{out}");
}

/// With no GPU for a guest, `detect` says so on stderr, prints no profile and exits 1; inside
/// a virtual machine it names the VM and says what a vIOMMU takes.
#[test]
fn detect_without_a_candidate_says_so_and_exits_1() {
    let h = host("qemu-no-viommu");
    let out = h.path().join("etc/vfio-gen/profile.toml");
    let o = at(h.path(), &["detect", "-o", out.to_str().unwrap()]);
    status(&o, 1);
    assert_eq!(stdout(&o), "", "no profile");
    assert!(
        !out.exists() && !h.path().join("etc/vfio-gen").exists(),
        "nothing written"
    );
    let err = stderr(&o);
    assert!(
        err.contains("no GPU to pass through besides the boot display: 0000:00:01.0"),
        "{err}"
    );
    assert!(
        err.contains("This is a QEMU virtual machine (/sys/class/dmi/id/sys_vendor: QEMU; the `hypervisor` flag in /proc/cpuinfo)")
            && err.contains("virtual IOMMU")
            && err.contains("-device intel-iommu")
            && err.contains("<iommu model='intel'>")
            && err.contains("The IOMMU here is off"),
        "{err}"
    );
    // The flag alone is enough to call it a VM.
    for f in ["sys_vendor", "product_name", "bios_vendor"] {
        std::fs::remove_file(h.path().join("sys/class/dmi/id").join(f)).unwrap();
    }
    let err = stderr(&at(h.path(), &["detect"]));
    assert!(
        err.contains("This is a virtual machine (the `hypervisor` flag"),
        "{err}"
    );
    // `--gpu` takes the boot display anyway.
    status(&at(h.path(), &["detect", "--gpu", "00:01.0"]), 0);

    // Bare metal whose only GPU is the boot display: a single-GPU profile (tests/cli/handover.rs).
    let h = host("intel-3090");
    for bdf in ["0000:01:00.0", "0000:01:00.1"] {
        std::fs::remove_file(h.path().join("sys/bus/pci/devices").join(bdf)).unwrap();
    }
    let o = at(h.path(), &["detect"]);
    status(&o, 0);
    assert!(
        stdout(&o).contains("\nmode = \"on-demand\"\n"),
        "{}",
        stdout(&o)
    );
    // No display controller at all.
    std::fs::remove_file(h.path().join("sys/bus/pci/devices/0000:00:02.0")).unwrap();
    let o = at(h.path(), &["detect"]);
    status(&o, 1);
    assert!(
        stderr(&o).contains("there is no PCI display controller (class 03xx)"),
        "{}",
        stderr(&o)
    );
}

/// `detect -o FILE` creates the missing directories 0755 and the file 0644 with what `detect`
/// prints, refuses to overwrite it without `--force`, and `plan` takes the file as it is.
#[test]
fn detect_writes_the_profile_where_it_is_told() {
    use std::os::unix::fs::PermissionsExt;
    let h = host("intel-3090");
    let printed = stdout(&at(h.path(), &["detect"]));
    let dir = h.path().join("etc/vfio-gen");
    assert!(!dir.exists());
    let file = dir.join("profile.toml");
    let file_s = file.to_str().unwrap();
    // A umask that would take bits away does not.
    let o = Command::new("sh")
        .args([
            "-c",
            "umask 077; exec \"$@\"",
            "sh",
            BIN,
            "detect",
            "-o",
            file_s,
            "--root",
        ])
        .arg(h.path())
        .output()
        .unwrap();
    status(&o, 0);
    assert!(
        stdout(&o).contains(&format!("created {}", dir.display())),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains(&format!(
            "wrote {file_s}; read it, then `vfio-gen plan --root {}` shows",
            h.path().display()
        )),
        "{}",
        stdout(&o)
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&dir), 0o755);
    assert_eq!(mode(&file), 0o644);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), printed);
    // The default -p is that file: plan reads it.
    status(&at(h.path(), &["plan"]), 0);

    std::fs::write(&file, "# my edits\n").unwrap();
    let o = at(h.path(), &["detect", "-o", file_s]);
    status(&o, 2);
    assert!(
        stderr(&o).contains(&format!("{file_s} exists; nothing was written"))
            && stderr(&o).contains("--force"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "# my edits\n");
    status(&at(h.path(), &["detect", "-o", file_s, "--force"]), 0);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), printed);
    let o = at(h.path(), &["detect", "--force"]);
    status(&o, 2);
    assert!(stderr(&o).contains("--output"), "{}", stderr(&o));
}

/// The state of `check` in json, and its next step.
fn check_state(root: &Path) -> (String, String) {
    let o = at(root, &["check", "--format", "json"]);
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)));
    (
        v["state"].as_str().unwrap_or("").to_string(),
        v["next"].as_str().unwrap_or("").to_string(),
    )
}

/// A newcomer's way through `check`: before apply it says "not applied" and "apply"; after a
/// successful apply "applied, not rebooted" and "reboot" (never "run apply"); after the reboot
/// (the running command line and drivers as the files make them) "done".
#[test]
fn check_tells_not_applied_applied_and_done_apart() {
    let h = host("intel-3090");
    let root = h.path();
    let profile = root.join("etc/vfio-gen/profile.toml");
    status(&at(root, &["detect", "-o", profile.to_str().unwrap()]), 0);

    let r = root.to_str().unwrap();
    let (state, next) = check_state(root);
    assert_eq!(state, "not-applied");
    assert!(
        next.starts_with(&format!("`sudo vfio-gen apply --root {r}`")),
        "{next}"
    );
    let o = at(root, &["check"]);
    assert!(
        stdout(&o).ends_with(&format!("State: not applied. Next: `sudo vfio-gen apply --root {r}` (`vfio-gen plan --root {r}` shows what it changes), then reboot.\n")),
        "{}",
        stdout(&o)
    );

    status(&at(root, &["apply", "--yes", "--no-hooks"]), 0);
    let (state, next) = check_state(root);
    assert_eq!(state, "applied-not-rebooted");
    assert_eq!(
        next,
        format!("reboot; then run `vfio-gen check --root {r}` again")
    );
    let o = at(root, &["check", "-q"]);
    status(&o, 3);
    let text = stdout(&o);
    assert!(
        text.contains("[WAIT] the running kernel command line lacks or overrides: iommu=pt — the files are in place: reboot"),
        "{text}"
    );
    assert!(
        !text.contains("run `vfio-gen apply`") && !text.contains("after `vfio-gen apply`"),
        "{text}"
    );
    assert!(
        text.ends_with(&format!(
            "State: applied, not rebooted. Next: reboot; then run `vfio-gen check --root {r}` again.\n"
        )),
        "{text}"
    );

    // The reboot: the same machine, booted with the entry's options, the card on vfio-pci.
    let text =
        std::fs::read_to_string(repo().join("tests/fixtures/hosts/intel-3090.toml")).unwrap();
    let mut desc: fake_host::Host = toml::from_str(&text).unwrap();
    let entry = std::fs::read_to_string(root.join("boot/loader/entries/arch.conf")).unwrap();
    let options = entry
        .lines()
        .find_map(|l| l.strip_prefix("options "))
        .unwrap()
        .trim()
        .to_string();
    desc.cmdline = format!("initrd=\\intel-ucode.img initrd=\\initramfs-linux.img {options}");
    for d in desc
        .devices
        .iter_mut()
        .filter(|d| d.bdf.starts_with("0000:01:00."))
    {
        d.driver = Some("vfio-pci".into());
    }
    let booted = tempfile::tempdir().unwrap();
    fake_host::build_host(&desc, &repo().join("tests/fixtures/hosts"), booted.path()).unwrap();
    for dir in ["etc", "boot", "var"] {
        copy_tree(&root.join(dir), &booted.path().join(dir));
    }
    let (state, next) = check_state(booted.path());
    assert_eq!(state, "done", "{next}");
    assert!(next.contains("virtual machine"), "{next}");
    let o = at(booted.path(), &["check"]);
    status(&o, 0);
    assert!(stdout(&o).contains("State: done."), "{}", stdout(&o));

    // Set up by hand, not by vfio-gen: done now, and the files are named for the next boot.
    std::fs::remove_file(booted.path().join("etc/modprobe.d/blacklist-nouveau.conf")).unwrap();
    let (state, next) = check_state(booted.path());
    assert_eq!(state, "done");
    assert!(
        next.contains("/etc/modprobe.d/blacklist-nouveau.conf differs from the profile"),
        "{next}"
    );

    // `apply --revert` on the booted machine: still running with passthrough, so "reverted,
    // not rebooted" and reboot; on the unconfigured machine, "reverted", exit 0.
    let (booted_root, unbooted) = (booted.path(), root);
    status(&at(booted_root, &["apply", "--yes", "--no-hooks"]), 0);
    status(
        &at(booted_root, &["apply", "--revert", "--yes", "--no-hooks"]),
        0,
    );
    let (state, next) = check_state(booted_root);
    assert_eq!(state, "reverted-not-rebooted", "{next}");
    assert!(
        next.starts_with("reboot to boot without passthrough"),
        "{next}"
    );
    status(
        &at(unbooted, &["apply", "--revert", "--yes", "--no-hooks"]),
        0,
    );
    let (state, next) = check_state(unbooted);
    assert_eq!(state, "reverted", "{next}");
    let o = at(unbooted, &["check"]);
    assert!(
        stdout(&o).contains("(expected after the revert)")
            && stdout(&o).contains("State: reverted. Next: nothing"),
        "{}",
        stdout(&o)
    );

    // Without a profile: host checks, and the step is to write one.
    std::fs::remove_file(&profile).unwrap();
    let o = at(root, &["check"]);
    assert!(
        stdout(&o).contains("Next: write a profile: `sudo vfio-gen detect -o "),
        "{}",
        stdout(&o)
    );
}
