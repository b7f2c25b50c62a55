//! The VM's share of the host at boot (docs/resources.md): huge pages, isolated CPUs, kvmfr
//! and the boot framebuffer, on fixture roots with the host facts they are decided from
//! (`tests/fixtures/roots/*-vm-share`: CPU topology, MemTotal, the kernel's config).

use super::*;

fn at(root: &Path, args: &[&str]) -> Output {
    let mut v: Vec<&str> = args.to_vec();
    v.extend(["--root", root.to_str().unwrap()]);
    run(&v)
}

/// The profile `name` with `from` replaced by `to`, written under `dir`.
fn variant(dir: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo().join(format!("profiles/{name}.toml"))).unwrap();
    assert!(text.contains(from), "{name} has no `{from}`");
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text.replace(from, to)).unwrap();
    p
}

#[test]
fn the_options_reach_the_entries_once_and_nohz_full_only_where_the_kernel_has_it() {
    let o = at(
        &fixture_root("arch-intel-vm-share"),
        &[
            "plan",
            "-p",
            repo()
                .join("profiles/arch-intel-vm-share.toml")
                .to_str()
                .unwrap(),
        ],
    );
    status(&o, 0);
    let out = stdout(&o);
    let line = "+options root=PARTLABEL=\"PRIMARY\" rootfstype=xfs add_efi_memmap intel_iommu=on iommu=pt rd.driver.pre=vfio-pci default_hugepagesz=1G hugepagesz=1G hugepages=16 isolcpus=managed_irq,domain,2-7,10-15 nohz_full=2-7,10-15 rcu_nocbs=2-7,10-15 irqaffinity=0-1,8-9";
    assert_eq!(out.matches(line).count(), 2, "{out}");
    assert!(out.contains("+options kvmfr static_size_mb=64"), "{out}");

    // A kernel without CONFIG_NO_HZ_FULL: left out, and plan says why.
    let o = at(
        &fixture_root("amd-grub-vm-share"),
        &[
            "plan",
            "-p",
            repo()
                .join("profiles/amd-grub-vm-share.toml")
                .to_str()
                .unwrap(),
        ],
    );
    status(&o, 0);
    assert!(!stdout(&o).contains("+GRUB_CMDLINE_LINUX_DEFAULT=\"quiet amd_iommu=on iommu=pt rd.driver.pre=vfio-pci default_hugepagesz=2M hugepagesz=2M hugepages=4096 isolcpus=managed_irq,domain,2-5,8-11 nohz_full"), "{}", stdout(&o));
    assert!(stdout(&o).contains("hugepages=4096 isolcpus=managed_irq,domain,2-5,8-11 rcu_nocbs=2-5,8-11 irqaffinity=0-1,6-7\""), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("left out: nohz_full=: the kernel is built without CONFIG_NO_HZ_FULL"),
        "{}",
        stdout(&o)
    );
    // 1080p with HDR: 1920x1080x8x2 bytes + 10 MiB, rounded up to 64 MiB.
    assert!(stdout(&o).contains("static_size_mb=64"));
}

#[test]
fn host_facts_refuse_with_the_key_s_place_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = copy_root("arch-intel-vm-share");
    let before = tree(root.path());
    let cases = [
        (
            "isolate_cpus = \"2-7,10-15\"",
            "isolate_cpus = \"0-3\"",
            ":31:16: resources.isolate_cpus includes CPU 0",
        ),
        (
            "isolate_cpus = \"2-7,10-15\"",
            "isolate_cpus = \"2-7,10-23\"",
            "resources.isolate_cpus names CPUs this host does not have: 16-23",
        ),
        (
            "isolate_cpus = \"2-7,10-15\"",
            "isolate_cpus = \"0-15\"",
            "takes every CPU",
        ),
        (
            "hugepages = \"16G\"",
            "hugepages = \"62G\"",
            ":29:13: resources.hugepages = 62 GiB leaves the host 747.7 MiB",
        ),
        // Hostile values are refused by the profile's own rules, with their place.
        (
            "isolate_cpus = \"2-7,10-15\"",
            "isolate_cpus = \"0-99999\"",
            ":31:19: resources.isolate_cpus: CPU 99999 is past the last possible CPU 8191",
        ),
        (
            "hugepages = \"16G\"",
            "hugepages = \"1e9G\"",
            ":29:13: resources.hugepages:",
        ),
        (
            "hugepages = \"16G\"",
            "hugepages = \"99999999999999999G\"",
            "resources.hugepages:",
        ),
        ("hugepages = \"16G\"", "hugepages = \"1537M\"", "hugepages"),
    ];
    for (from, to, want) in cases {
        let p = variant(dir.path(), "arch-intel-vm-share", from, to);
        for cmd in [&["plan"][..], &["apply", "--yes", "--hooks", "none"][..]] {
            let mut args = cmd.to_vec();
            args.extend(["-p", p.to_str().unwrap()]);
            let o = at(root.path(), &args);
            status(&o, 2);
            assert!(stderr(&o).contains(want), "{to}: {}", stderr(&o));
            assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
        }
        assert!(
            tree(root.path()) == before,
            "{to}: a refused run wrote files"
        );
    }
}

#[test]
fn a_split_core_is_a_warning_naming_its_threads() {
    let dir = tempfile::tempdir().unwrap();
    let p = variant(
        dir.path(),
        "arch-intel-vm-share",
        "isolate_cpus = \"2-7,10-15\"",
        "isolate_cpus = \"2-7\"",
    );
    let o = at(
        &fixture_root("arch-intel-vm-share"),
        &["plan", "-p", p.to_str().unwrap()],
    );
    status(&o, 0);
    assert!(
        stdout(&o)
            .contains("isolate_cpus splits a core: its threads are 2,10, and only 2 are isolated"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn apply_then_revert_gives_back_every_byte() {
    let root = copy_root("arch-intel-vm-share");
    let files = |r: &Path| -> BTreeMap<String, Vec<u8>> {
        tree(r)
            .into_iter()
            .filter(|(k, _)| k.starts_with("etc/") || k.starts_with("boot/"))
            .collect()
    };
    let before = files(root.path());
    let o = apply_over("profiles/arch-intel-vm-share.toml", root.path(), false);
    status(&o, 0);
    let applied = files(root.path());
    assert!(applied.contains_key("etc/udev/rules.d/70-vfio-gen-kvmfr.rules"));
    assert!(applied.contains_key("etc/modules-load.d/kvmfr.conf"));
    // Idempotent: a second plan has nothing to do.
    let p = repo().join("profiles/arch-intel-vm-share.toml");
    let o = at(
        root.path(),
        &["plan", "-p", p.to_str().unwrap(), "--exit-code"],
    );
    status(&o, 0);
    let o = apply_over("profiles/arch-intel-vm-share.toml", root.path(), true);
    status(&o, 0);
    assert!(files(root.path()) == before, "revert left something behind");
}

#[test]
fn a_boot_display_gpu_keeps_the_firmware_framebuffer_off_it() {
    // The kernel of this root registers the boot framebuffer through sysfb's simple-framebuffer.
    let root = copy_root("arch-intel-vm-share");
    let host = std::fs::read_to_string(repo().join("tests/fixtures/hosts/intel-3090.toml"))
        .unwrap()
        .replacen("boot_vga = true\n", "", 1);
    // The RTX 3090 is the boot display: the only change to the host's description.
    let host = host.replacen(
        "device = \"0x2204\"\n",
        "device = \"0x2204\"\nboot_vga = true\n",
        1,
    );
    let desc = tempfile::NamedTempFile::new_in(repo().join("tests/fixtures/hosts")).unwrap();
    std::fs::write(desc.path(), host).unwrap();
    let sys = tempfile::tempdir().unwrap();
    fake_host::build(desc.path(), sys.path()).unwrap();
    copy_tree(&sys.path().join("sys/bus"), &root.path().join("sys/bus"));
    copy_tree(
        &sys.path().join("sys/devices"),
        &root.path().join("sys/devices"),
    );
    let p = repo().join("profiles/arch-intel-vm-share.toml");
    let o = at(root.path(), &["plan", "-p", p.to_str().unwrap()]);
    status(&o, 0);
    assert!(
        stdout(&o).contains("irqaffinity=0-1,8-9 initcall_blacklist=sysfb_init"),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains("video=efifb:off"));
}

/// The arch-intel-vm-share root booted with the profile applied: the PCI devices of
/// intel-3090 (the same host), 16 pages of 1 GiB reserved, CPUs 2-7,10-15 isolated and
/// tickless, kvmfr built by DKMS, loaded, and /dev/kvmfr0 given to the kvm group.
fn booted_share_host() -> tempfile::TempDir {
    let root = copy_root("arch-intel-vm-share");
    let sys = tempfile::tempdir().unwrap();
    fake_host::build(
        &repo().join("tests/fixtures/hosts/intel-3090.toml"),
        sys.path(),
    )
    .unwrap();
    for dir in ["sys/bus", "sys/devices", "sys/class", "sys/kernel"] {
        if sys.path().join(dir).exists() {
            copy_tree(&sys.path().join(dir), &root.path().join(dir));
        }
    }
    let put = |rel: &str, text: &str| {
        let p = root.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    put(
        "proc/meminfo",
        "MemTotal:       65777312 kB\nMemFree:        14201344 kB\nMemAvailable:   15903228 kB\nHugePages_Total:      16\nHugePages_Free:       16\nHugePages_Rsvd:        0\nHugePages_Surp:        0\nHugepagesize:    1048576 kB\nHugetlb:        16777216 kB\n",
    );
    put("sys/devices/system/cpu/isolated", "2-7,10-15\n");
    put("sys/devices/system/cpu/nohz_full", "2-7,10-15\n");
    put(
        "lib/modules/6.9.7-arch1-1/modules.dep",
        "kernel/arch/x86/kvm/kvm.ko.zst:\nkernel/arch/x86/kvm/kvm-intel.ko.zst: kernel/arch/x86/kvm/kvm.ko.zst\nupdates/dkms/kvmfr.ko.zst:\n",
    );
    put("lib/modules/6.9.7-arch1-1/updates/dkms/kvmfr.ko.zst", "");
    put("sys/module/kvmfr/refcnt", "0\n");
    put("sys/module/kvmfr/initstate", "live\n");
    put("dev/kvmfr0", "");
    let dev = root.path().join("dev/kvmfr0");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::set_permissions(&dev, std::fs::Permissions::from_mode(0o660)).unwrap();
    // The test's own group stands for kvm: the device has the group the rule gives.
    let gid = std::fs::metadata(&dev).unwrap().gid();
    put(
        "etc/group",
        &format!("root:x:0:\nwheel:x:998:alice\nkvm:x:{gid}:alice\nalice:x:1000:\n"),
    );
    root
}

/// check's items for the profile on `root`: (id, status, message, remedy) of the ids given.
fn share_items(root: &Path) -> Vec<(String, String, String, String)> {
    let p = repo().join("profiles/arch-intel-vm-share.toml");
    let o = at(
        root,
        &["check", "-p", p.to_str().unwrap(), "--format", "json"],
    );
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    j["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            matches!(
                i["id"].as_str().unwrap(),
                "hugepages" | "isolated-cpus" | "nohz-full" | "kvmfr"
            )
        })
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap_or("").to_string();
            (s("id"), s("status"), s("message"), s("remedy"))
        })
        .collect()
}

#[test]
fn check_passes_the_share_of_a_host_booted_with_it() {
    let root = booted_share_host();
    let items = share_items(root.path());
    let ids: Vec<(&str, &str)> = items
        .iter()
        .map(|(i, s, _, _)| (i.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            ("hugepages", "pass"),
            ("isolated-cpus", "pass"),
            ("nohz-full", "pass"),
            ("kvmfr", "pass"),
            ("kvmfr", "pass"),
        ],
        "{items:#?}"
    );
    assert!(
        items[0].2.contains("16 huge pages of 1G are reserved"),
        "{items:#?}"
    );
    assert!(
        items[4]
            .2
            .contains("/dev/kvmfr0 is there, group kvm, mode 0660")
    );

    // The text says the same, one line each.
    let p = repo().join("profiles/arch-intel-vm-share.toml");
    let o = at(root.path(), &["check", "-p", p.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(
        out.contains("[pass] the running kernel isolates CPUs 2-7,10-15 (/sys/devices/system/cpu/isolated), as resources.isolate_cpus asks"),
        "{out}"
    );
}

#[test]
fn check_fails_each_share_item_with_a_remedy() {
    let root = booted_share_host();
    let r = root.path();
    // Fewer pages than asked, with hugepages= not on the running line: apply and reboot.
    let meminfo = std::fs::read_to_string(r.join("proc/meminfo"))
        .unwrap()
        .replace("HugePages_Total:      16", "HugePages_Total:      11");
    std::fs::write(r.join("proc/meminfo"), meminfo).unwrap();
    std::fs::write(r.join("sys/devices/system/cpu/isolated"), "\n").unwrap();
    std::fs::remove_file(r.join("sys/devices/system/cpu/nohz_full")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(r.join("dev/kvmfr0"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let items = share_items(r);
    let get = |id: &str, n: usize| items.iter().filter(|i| i.0 == id).nth(n).unwrap().clone();
    let h = get("hugepages", 0);
    assert_eq!(h.1, "fail");
    assert!(
        h.2.contains("HugePages_Total is 11, fewer than the 16 pages of 1G (16 GiB)"),
        "{h:?}"
    );
    assert!(h.3.contains("apply") && h.3.contains("reboot"), "{h:?}");
    let i = get("isolated-cpus", 0);
    assert_eq!(i.1, "fail");
    assert!(i.2.contains("isolates no CPU"), "{i:?}");
    let n = get("nohz-full", 0);
    assert_eq!(n.1, "warn");
    assert!(n.2.contains("CONFIG_NO_HZ_FULL"), "{n:?}");
    let d = get("kvmfr", 1);
    assert_eq!(d.1, "fail");
    assert!(d.2.contains("mode 0600"), "{d:?}");
    assert!(
        d.3.contains("udevadm trigger --subsystem-match=kvmfr"),
        "{d:?}"
    );
}

#[test]
fn check_says_how_to_get_kvmfr_and_warns_under_secure_boot() {
    let root = booted_share_host();
    let r = root.path();
    std::fs::remove_dir_all(r.join("sys/module/kvmfr")).unwrap();
    std::fs::remove_file(r.join("dev/kvmfr0")).unwrap();
    std::fs::remove_file(r.join("lib/modules/6.9.7-arch1-1/updates/dkms/kvmfr.ko.zst")).unwrap();
    std::fs::write(
        r.join("lib/modules/6.9.7-arch1-1/modules.dep"),
        "kernel/arch/x86/kvm/kvm.ko.zst:\n",
    )
    .unwrap();
    let efivars = r.join("sys/firmware/efi/efivars");
    std::fs::create_dir_all(&efivars).unwrap();
    // 4 attribute bytes (NV|BS|RT), then the value.
    std::fs::write(
        efivars.join("SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"),
        [0x06, 0, 0, 0, 1],
    )
    .unwrap();
    let items = share_items(r);
    let kvmfr: Vec<_> = items.iter().filter(|i| i.0 == "kvmfr").collect();
    assert_eq!(kvmfr.len(), 2, "{kvmfr:#?}");
    assert_eq!(kvmfr[0].1, "fail");
    assert!(
        kvmfr[0]
            .2
            .contains("not installed for the running kernel 6.9.7-arch1-1"),
        "{kvmfr:#?}"
    );
    assert!(
        kvmfr[0].3.contains("AUR package looking-glass-module-dkms"),
        "{kvmfr:#?}"
    );
    assert_eq!(kvmfr[1].1, "warn");
    assert!(kvmfr[1].2.contains("Secure Boot is on"));
    assert!(kvmfr[1].3.contains("mokutil --import"));

    // On a Debian root the remedy is DKMS from the Looking Glass source.
    std::fs::write(r.join("etc/os-release"), "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n").unwrap();
    let items = share_items(r);
    let first = items.iter().find(|i| i.0 == "kvmfr").unwrap();
    assert!(first.3.contains("sudo dkms install ."), "{first:?}");
    assert!(first.3.contains("linux-headers-6.9.7-arch1-1"), "{first:?}");

    // Installed but not loaded: modprobe it now, modules-load.d at boot.
    std::fs::write(
        r.join("lib/modules/6.9.7-arch1-1/modules.dep"),
        "updates/dkms/kvmfr.ko.zst:\n",
    )
    .unwrap();
    let items = share_items(r);
    let first = items.iter().find(|i| i.0 == "kvmfr").unwrap();
    assert!(
        first
            .2
            .contains("installed for 6.9.7-arch1-1 but not loaded"),
        "{first:?}"
    );
    assert!(first.3.contains("sudo modprobe kvmfr"), "{first:?}");
}

#[test]
fn check_has_no_share_items_without_the_keys() {
    let root = booted_share_host();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("profiles/arch-intel-vm-share.toml")).unwrap();
    let cut = text.find("[resources]").unwrap();
    let p = dir.path().join("plain.toml");
    std::fs::write(&p, &text[..cut]).unwrap();
    let o = at(
        root.path(),
        &["check", "-p", p.to_str().unwrap(), "--format", "json"],
    );
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ids: Vec<&str> = j["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    for id in ["hugepages", "isolated-cpus", "nohz-full", "kvmfr"] {
        assert!(!ids.contains(&id), "{ids:?}");
    }
}

/// The arch-intel-vm-share root with libvirt installed: Debian 12's qemu.conf shape (the
/// default list only in a comment) and libvirt's AppArmor abstraction, which includes the
/// local file.
fn root_with_libvirt() -> tempfile::TempDir {
    let root = copy_root("arch-intel-vm-share");
    let fx = repo().join("tests/fixtures/libvirt/debian12");
    for (from, to) in [
        ("qemu.conf", "etc/libvirt/qemu.conf"),
        (
            "apparmor-abstraction-libvirt-qemu",
            "etc/apparmor.d/abstractions/libvirt-qemu",
        ),
    ] {
        let p = root.path().join(to);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::copy(fx.join(from), p).unwrap();
    }
    root
}

#[test]
fn libvirt_gets_kvmfr_in_its_acl_and_apparmor_and_gives_back_every_byte() {
    let root = root_with_libvirt();
    let r = root.path();
    let before = tree(r);
    let p = repo().join("profiles/arch-intel-vm-share.toml");
    let p = p.to_str().unwrap();
    let o = at(r, &["plan", "-p", p]);
    status(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("+    \"/dev/kvmfr0\""), "{out}");
    assert!(out.contains("+/dev/kvmfr0 rw,"), "{out}");
    assert!(out.contains("restart libvirt's QEMU daemon"), "{out}");
    status(&apply_over(p, r, false), 0);
    let conf = std::fs::read_to_string(r.join("etc/libvirt/qemu.conf")).unwrap();
    let original =
        std::fs::read_to_string(repo().join("tests/fixtures/libvirt/debian12/qemu.conf")).unwrap();
    // Only lines added, after the user's file, between vfio-gen's marks.
    assert!(conf.starts_with(&original));
    let added = &conf[original.len()..];
    assert!(
        added.starts_with("# vfio-gen: begin") && added.ends_with("# vfio-gen: end\n"),
        "{added}"
    );
    assert!(added.contains("cgroup_device_acl = [\n    \"/dev/null\",\n    \"/dev/full\",\n    \"/dev/zero\",\n    \"/dev/random\",\n    \"/dev/urandom\",\n    \"/dev/ptmx\",\n    \"/dev/kvm\",\n    \"/dev/userfaultfd\",\n    \"/dev/kvmfr0\"\n]\n"), "{added}");
    let aa =
        std::fs::read_to_string(r.join("etc/apparmor.d/local/abstractions/libvirt-qemu")).unwrap();
    assert!(aa.lines().any(|l| l == "/dev/kvmfr0 rw,"), "{aa}");
    // In sync: nothing more to do.
    status(&at(r, &["plan", "-p", p, "--exit-code"]), 0);
    // --revert gives back every byte (the local file vfio-gen created is gone).
    status(&apply_over(p, r, true), 0);
    let after: BTreeMap<String, Vec<u8>> = tree(r)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("var/"))
        .collect();
    let before: BTreeMap<String, Vec<u8>> = before
        .into_iter()
        .filter(|(k, _)| !k.starts_with("var/"))
        .collect();
    assert!(
        after == before,
        "revert left something behind: {:?}",
        after
            .keys()
            .filter(|k| !before.contains_key(*k))
            .collect::<Vec<_>>()
    );

    // rollback of an apply gives back the same bytes.
    status(&apply_over(p, r, false), 0);
    status(&at(r, &["rollback", "--no-hooks"]), 0);
    assert_eq!(
        std::fs::read_to_string(r.join("etc/libvirt/qemu.conf")).unwrap(),
        original
    );
    assert!(
        !r.join("etc/apparmor.d/local/abstractions/libvirt-qemu")
            .exists()
    );
}

#[test]
fn a_qemu_conf_with_its_own_acl_is_left_alone_with_the_line_to_add() {
    let root = root_with_libvirt();
    let r = root.path();
    let conf = r.join("etc/libvirt/qemu.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("\ncgroup_device_acl = [\n    \"/dev/null\", \"/dev/full\", \"/dev/zero\",\n    \"/dev/random\", \"/dev/urandom\",\n    \"/dev/ptmx\", \"/dev/kvm\",\n    \"/dev/input/by-id/usb-Logitech_G502-event-mouse\"\n]\n");
    std::fs::write(&conf, &text).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("cgroup_device_acl"))
        .unwrap()
        + 1;
    let p = repo().join("profiles/arch-intel-vm-share.toml");
    let p = p.to_str().unwrap();
    let o = at(r, &["plan", "-p", p]);
    status(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains(&format!("/etc/libvirt/qemu.conf:{line}: cgroup_device_acl is set there, so vfio-gen leaves it alone: add `\"/dev/kvmfr0\",` to that list")),
        "{out}"
    );
    status(&apply_over(p, r, false), 0);
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), text);
}

#[test]
fn detect_proposes_the_share_as_comments_that_plan_accepts() {
    let root = booted_share_host();
    let r = root.path();
    let gpu = std::fs::canonicalize(r.join("sys/bus/pci/devices/0000:01:00.0")).unwrap();
    std::fs::write(gpu.join("numa_node"), "0\n").unwrap();
    let o = at(r, &["detect"]);
    status(&o, 0);
    let profile = stdout(&o);
    for line in [
        "# isolate_cpus: the CPUs of NUMA node 0, the GPU's (numa_node),",
        "# hugepages: half of MemTotal (62.7 GiB in /proc/meminfo), rounded down to whole GiB and",
        "# [resources]\n# hugepages = \"31G\"\n# hugepage_size = \"1G\"\n# isolate_cpus = \"1-7,9-15\"\n# isolation = \"boot\"\n",
    ] {
        assert!(profile.contains(line), "{line}\n{profile}");
    }
    // Never active: the profile as written has no [resources].
    assert!(
        !profile
            .lines()
            .any(|l| l.starts_with("[resources]") || l.starts_with("hugepages"))
    );
    // Uncommented, the proposal passes plan's checks against the same host.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("profile.toml");
    let mut text = profile.clone();
    for key in [
        "[resources]",
        "hugepages = ",
        "hugepage_size = ",
        "isolate_cpus = ",
        "isolation = ",
    ] {
        text = text.replace(&format!("\n# {key}"), &format!("\n{key}"));
    }
    std::fs::write(&p, &text).unwrap();
    let o = at(r, &["plan", "-p", p.to_str().unwrap()]);
    status(&o, 0);
    assert!(
        stdout(&o).contains(
            "default_hugepagesz=1G hugepagesz=1G hugepages=31 isolcpus=managed_irq,domain,1-7,9-15"
        ),
        "{}",
        stdout(&o)
    );
}

/// `render --format nix` carries [resources] in boot.kernelParams and kvmfr's module, options
/// and udev rule; Nix reads back exactly those values. Needs nix-instantiate.
#[test]
fn the_nix_module_carries_the_share_and_kvmfr() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nixos-share.toml");
    let mut text = std::fs::read_to_string(repo().join("tests/fixtures/nixos.toml")).unwrap();
    text.push_str("\n[resources]\nhugepages = \"8G\"\nhugepage_size = \"2M\"\nisolate_cpus = \"2-7\"\n\n[looking-glass]\nresolution = \"2560x1440\"\nuser = \"alice\"\n");
    std::fs::write(&p, text).unwrap();
    let o = run(&[
        "render",
        "--format",
        "nix",
        "-p",
        p.to_str().unwrap(),
        "--root",
        fixture_root("nixos").to_str().unwrap(),
    ]);
    status(&o, 0);
    let module = stdout(&o);
    assert!(
        module.contains("  # boot.extraModulePackages = [ config.boot.kernelPackages.kvmfr ];\n"),
        "{module}"
    );
    if !have("nix-instantiate") {
        return;
    }
    let file = dir.path().join("vfio-gen.nix");
    std::fs::write(&file, &module).unwrap();
    let eval = |attr: &str| -> serde_json::Value {
        let expr = format!("(import {} {{ }}).{attr}", file.display());
        let o = Command::new("nix-instantiate")
            .args([
                "--store", "dummy://", "--eval", "--strict", "--json", "-E", &expr,
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{attr}: {}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let params = eval("boot.kernelParams");
    for want in [
        "default_hugepagesz=2M",
        "hugepagesz=2M",
        "hugepages=4096",
        "isolcpus=managed_irq,domain,2-7",
        "rcu_nocbs=2-7",
    ] {
        assert!(
            params.as_array().unwrap().iter().any(|p| p == want),
            "{want}: {params}"
        );
    }
    assert_eq!(eval("boot.kernelModules"), serde_json::json!(["kvmfr"]));
    assert!(
        eval("boot.extraModprobeConfig")
            .as_str()
            .unwrap()
            .ends_with("options kvmfr static_size_mb=64\n")
    );
    assert_eq!(
        eval("services.udev.extraRules"),
        serde_json::json!(
            "SUBSYSTEM==\"kvmfr\", KERNEL==\"kvmfr[0-9]*\", GROUP=\"kvm\", MODE=\"0660\"\nSUBSYSTEM==\"kvmfr\", KERNEL==\"kvmfr[0-9]*\", TAG+=\"uaccess\"\n"
        )
    );
}
