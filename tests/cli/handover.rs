//! `vfio-gen handover start|stop` through the binary on fake trees (`--root`): the domain
//! filter the libvirt hook relies on, the refusals, a start that fails and undoes itself, and
//! stop with nothing recorded. The steps against a kernel's behaviour are the unit tests of
//! src/handover/ (docs/handover.md section 9.5).

use super::*;

const PROFILE: &str = "[host]\ncpu = \"intel\"\nbootloader = \"systemd-boot\"\n\n[vfio]\nmode = \"on-demand\"\nids = [\"10de:2204\", \"10de:1aef\"]\n\n[libvirt]\ndomains = [\"win11\"]\n";

/// The intel-3090 host (iGPU boot display, RTX 3090 on nvidia) with vfio-pci loaded, and the
/// profile at ROOT/etc/vfio-gen/profile.toml.
fn host(profile: &str) -> tempfile::TempDir {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/hosts/intel-3090.toml"))
        .unwrap()
        .replace("vfio_pci_loaded = false", "vfio_pci_loaded = true");
    let desc = tempfile::NamedTempFile::new_in(repo().join("tests/fixtures/hosts")).unwrap();
    std::fs::write(desc.path(), text).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    fake_host::build(desc.path(), tmp.path()).unwrap();
    let p = tmp.path().join("etc/vfio-gen/profile.toml");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, profile).unwrap();
    std::fs::create_dir_all(tmp.path().join("proc/sys/kernel/random")).unwrap();
    std::fs::write(
        tmp.path().join("proc/sys/kernel/random/boot_id"),
        "0f6d3c1e-8f4b-4a51-a1f2-9c7e5d2b4a10\n",
    )
    .unwrap();
    tmp
}

fn handover(root: &Path, args: &[&str]) -> Output {
    let mut v = vec!["handover"];
    v.extend(args);
    v.extend(["--root", root.to_str().unwrap()]);
    run(&v)
}

fn record(root: &Path) -> bool {
    root.join("run/vfio-gen/handover").exists()
}

#[test]
fn a_domain_not_in_the_profile_is_left_alone() {
    let h = host(PROFILE);
    for action in ["start", "stop"] {
        let o = handover(h.path(), &[action, "--domain", "other-vm"]);
        status(&o, 0);
        assert!(
            stdout(&o).contains("\"other-vm\" is not in [libvirt] domains"),
            "{}",
            stdout(&o)
        );
    }
    assert!(!h.path().join("run").exists(), "nothing written");
}

#[test]
fn stop_with_nothing_recorded_says_so_and_exits_0() {
    let h = host(PROFILE);
    let o = handover(h.path(), &["stop", "--domain", "win11"]);
    status(&o, 0);
    assert!(stdout(&o).contains("no handover is active: nothing to give back"));
    let o = handover(h.path(), &["stop", "--format", "json"]);
    status(&o, 0);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["steps"], serde_json::json!([]));
}

#[test]
fn boot_mode_and_a_busy_card_are_refused_changing_nothing() {
    let h = host(&PROFILE.replace("on-demand", "boot"));
    let o = handover(h.path(), &["start"]);
    status(&o, 2);
    assert!(stderr(&o).contains("mode = \"boot\""), "{}", stderr(&o));

    let h = host(PROFILE);
    let gpu = std::fs::canonicalize(h.path().join("sys/bus/pci/devices/0000:01:00.0")).unwrap();
    std::fs::create_dir_all(gpu.join("drm/card1")).unwrap();
    let p = h.path().join("proc/4242");
    std::fs::create_dir_all(p.join("fd")).unwrap();
    std::fs::write(p.join("comm"), "kwin_wayland\n").unwrap();
    std::fs::write(
        p.join("cgroup"),
        "0::/user.slice/user-1000.slice/session-3.scope\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("/dev/dri/card1", p.join("fd/7")).unwrap();
    let o = handover(h.path(), &["start", "--domain", "win11", "--force"]);
    status(&o, 2);
    assert!(
        stderr(&o).contains("kwin_wayland (pid 4242, session-3.scope) holds /dev/dri/card1")
            && stderr(&o).contains("log out"),
        "{}",
        stderr(&o)
    );
    assert!(!record(h.path()));
}

/// A tree without a kernel: the writes land in plain files, the driver never changes, so the
/// first read-back fails; start undoes its steps, removes the record and exits 2.
#[test]
fn a_start_that_fails_undoes_itself_and_exits_2() {
    let h = host(PROFILE);
    let o = handover(h.path(), &["start", "--domain", "win11"]);
    status(&o, 2);
    assert!(
        stderr(&o).contains("0000:01:00.0 is on nvidia after the writes, not vfio-pci")
            && stderr(&o).contains("every step taken was undone"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).contains("undone bind"), "{}", stdout(&o));
    assert!(!record(h.path()));
    let o = handover(h.path(), &["stop"]);
    status(&o, 0);
}

fn render_libvirt(root: &Path) -> Output {
    run(&[
        "render",
        "--format",
        "libvirt",
        "--root",
        root.to_str().unwrap(),
    ])
}

fn put_rom(root: &Path, path: &str, kinds: &[&str]) {
    let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, fake_host::rom_image(&kinds, 0x10de, 0x2204).unwrap()).unwrap();
}

/// Both functions of the card (its whole IOMMU group but the root port), the ROM on the
/// display function only, and the result valid inside a domain for libvirt's schema.
#[test]
fn render_libvirt_gives_every_function_and_validates_in_a_domain() {
    let h = host(&format!("{PROFILE}rom = \"/usr/share/vgabios/gpu.rom\"\n"));
    put_rom(h.path(), "/usr/share/vgabios/gpu.rom", &["x86", "efi-x64"]);
    let o = render_libvirt(h.path());
    status(&o, 0);
    let xml = stdout(&o);
    assert_eq!(
        xml.matches("<hostdev mode='subsystem' type='pci' managed='no'>")
            .count(),
        2,
        "{xml}"
    );
    for f in ["function='0x0'", "function='0x1'"] {
        assert!(
            xml.contains(&format!(
                "<address domain='0x0000' bus='0x01' slot='0x00' {f}/>"
            )),
            "{xml}"
        );
    }
    assert!(!xml.contains("bus='0x00'"), "the root port stays: {xml}");
    let rom_at = xml
        .find("<rom file='/usr/share/vgabios/gpu.rom'/>")
        .expect("rom");
    assert!(
        rom_at < xml.find("function='0x1'").unwrap(),
        "on the display function"
    );
    assert!(!xml.contains("warning"), "{xml}");

    if !have("virt-xml-validate") || !have("xmllint") {
        return;
    }
    let domain = format!(
        "<domain type='kvm'>\n<name>t</name>\n<memory>1048576</memory>\n<os><type>hvm</type></os>\n<devices>\n{xml}</devices>\n</domain>\n"
    );
    let f = h.path().join("domain.xml");
    std::fs::write(&f, &domain).unwrap();
    let v = Command::new("virt-xml-validate")
        .arg(&f)
        .arg("domain")
        .output()
        .unwrap();
    assert!(
        v.status.success()
            && format!(
                "{}{}",
                String::from_utf8_lossy(&v.stdout),
                String::from_utf8_lossy(&v.stderr)
            )
            .contains("validates"),
        "{}{}\n{domain}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    // The validator does catch a broken element (it is not a no-op).
    std::fs::write(&f, domain.replace("<rom file=", "<rom fiel=")).unwrap();
    let v = Command::new("virt-xml-validate")
        .arg(&f)
        .arg("domain")
        .output()
        .unwrap();
    assert!(!v.status.success(), "an unknown attribute must fail");
}

#[test]
fn render_libvirt_checks_the_rom_and_warns_where_apparmor_denies_it() {
    let h = host(&format!(
        "{PROFILE}rom = \"/var/lib/libvirt/vbios/gpu.rom\"\n"
    ));
    put_rom(
        h.path(),
        "/var/lib/libvirt/vbios/gpu.rom",
        &["x86", "efi-x64"],
    );
    let o = render_libvirt(h.path());
    status(&o, 0);
    assert!(
        stdout(&o).contains("<!-- warning: libvirt.rom /var/lib/libvirt/vbios/gpu.rom is outside"),
        "{}",
        stdout(&o)
    );

    put_rom(h.path(), "/var/lib/libvirt/vbios/gpu.rom", &["x86"]);
    let o = render_libvirt(h.path());
    status(&o, 2);
    assert!(
        stderr(&o).contains(
            "profile.toml:11:7: libvirt.rom /var/lib/libvirt/vbios/gpu.rom: no UEFI image"
        ),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).is_empty());
}

/// The libvirt hook as plan renders it, run by `sh` with libvirt's arguments and the domain
/// XML on stdin, against a stub vfio-gen that logs its arguments, prints on stdout and exits
/// with STUB_EXIT (docs/libvirt.md section 1).
#[test]
fn the_libvirt_hook_calls_handover_for_prepare_begin_and_release_end_only() {
    if !have("sh") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let hook = t.path().join("vfio-gen-hook");
    let script = vfio_gen::targets::libvirt_hook::script().unwrap();
    assert!(
        script.starts_with("#!/bin/sh\n# Generated by vfio-gen"),
        "{script}"
    );
    std::fs::write(&hook, &script).unwrap();
    let stub = t.path().join("bin/vfio-gen");
    std::fs::create_dir_all(stub.parent().unwrap()).unwrap();
    std::fs::write(
        &stub,
        "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]' \"$a\" >> \"$LOG\"; done\necho >> \"$LOG\"\necho 'stub on stdout'\nexit \"${STUB_EXIT:-0}\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = t.path().join("log");
    let call = |args: &[&str], exit: &str| {
        let _ = std::fs::remove_file(&log);
        let mut c = Command::new("sh");
        c.arg(&hook)
            .args(args)
            .env_clear()
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", stub.parent().unwrap().display()),
            )
            .env("VFIO_GEN", &stub)
            .env("LOG", &log)
            .env("STUB_EXIT", exit)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write as _;
        let xml = "<domain type='kvm'><name>win11</name></domain>\n".repeat(2000);
        child
            .stdin
            .take()
            .unwrap()
            .write_all(xml.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        (o, std::fs::read_to_string(&log).unwrap_or_default())
    };
    let (o, l) = call(&["win11", "prepare", "begin", "-"], "0");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(l, "[handover][start][--domain][win11]\n");
    assert!(
        o.stdout.is_empty(),
        "nothing on stdout: libvirt reads it as XML"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("stub on stdout"));

    let (o, l) = call(&["win11", "release", "end", "destroyed"], "0");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(l, "[handover][stop][--domain][win11]\n");
    assert!(o.stdout.is_empty());

    // A failed start fails the hook: libvirt does not start the domain.
    let (o, _) = call(&["win11", "prepare", "begin", "-"], "2");
    assert_eq!(o.status.code(), Some(2));

    // Other operations: no call at all.
    for args in [
        ["win11", "start", "begin", "-"],
        ["win11", "started", "begin", "-"],
        ["win11", "stopped", "end", "-"],
        ["win11", "release", "begin", "-"],
    ] {
        let (o, l) = call(&args, "2");
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert_eq!(l, "", "{args:?}");
    }

    // A domain name is one argument, never shell code (vfio-gen decides whether it is ours).
    let (o, l) = call(&["my vm $(touch pwned)", "prepare", "begin", "-"], "0");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(l, "[handover][start][--domain][my vm $(touch pwned)]\n");
    assert!(!t.path().join("pwned").exists() && !Path::new("pwned").exists());
}

/// A host whose only GPU is the boot display (the RTX 3090 of intel-3090 without the iGPU):
/// `detect` writes `[vfio] mode = "on-demand"` with what it means instead of exiting 1, and
/// `plan` takes the profile without asking for --force or binding anything at boot.
#[test]
fn detect_writes_an_on_demand_profile_for_a_single_gpu_host() {
    let h = host(PROFILE);
    std::fs::remove_file(h.path().join("etc/vfio-gen/profile.toml")).unwrap();
    std::fs::remove_file(h.path().join("sys/bus/pci/devices/0000:00:02.0")).unwrap();
    std::fs::write(
        h.path().join("sys/bus/pci/devices/0000:01:00.0/boot_vga"),
        "1\n",
    )
    .unwrap();
    let p = h.path().join("etc/vfio-gen/profile.toml");
    let o = handover_like(h.path(), &["detect", "-o", p.to_str().unwrap()]);
    status(&o, 0);
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(
        text.contains("\nmode = \"on-demand\"\nids = [\"10de:2204\", \"10de:1aef\"]\n"),
        "{text}"
    );
    assert!(
        text.contains("# mode = \"on-demand\": the card is the host's display")
            && text.contains("`sudo vfio-gen handover start` gives it to a VM")
            && text.contains("# [libvirt]\n# domains = [\"win11\"]"),
        "{text}"
    );
    assert!(!text.contains("Held back"), "{text}");
    let o = handover_like(h.path(), &["plan"]);
    status(&o, 0);
    assert!(!stdout(&o).contains("ids=10de"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("--force"), "{}", stdout(&o));
}

/// With a second card, `detect` binds it at boot and offers on-demand as a comment.
#[test]
fn detect_offers_on_demand_for_a_second_card() {
    let h = host(PROFILE);
    let o = handover_like(h.path(), &["detect"]);
    status(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("[vfio]\n# mode = \"on-demand\"  # instead of binding the card at boot"),
        "{out}"
    );
    assert!(!out.contains("\nmode = "), "{out}");
}

fn handover_like(root: &Path, args: &[&str]) -> Output {
    let mut v = args.to_vec();
    v.extend(["--root", root.to_str().unwrap()]);
    run(&v)
}

/// `check` in on-demand mode: the devices on their host drivers are right (they stay there
/// until `handover start`), not a failure; the domain's XML is not there (a warn).
#[test]
fn check_in_on_demand_mode_accepts_the_host_drivers() {
    let h = host(PROFILE);
    let o = run(&[
        "--root",
        h.path().to_str().unwrap(),
        "check",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let drivers: Vec<&serde_json::Value> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["id"] == "driver")
        .collect();
    assert_eq!(drivers.len(), 2, "{v:#}");
    for d in drivers {
        assert_eq!(d["status"], "pass", "{d:#}");
        assert!(
            d["message"]
                .as_str()
                .unwrap()
                .contains("until `vfio-gen handover start"),
            "{d:#}"
        );
    }
}
