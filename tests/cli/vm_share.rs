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
