//! `[vfio] devices`: functions named by PCI address and bound at boot by vfio-gen's script
//! (docs/binding-at-boot.md). The profile's rules, what plan/apply/check/bind/detect do with
//! addresses on the fake hosts, and the script itself run by every shell an initramfs may have
//! (dash, busybox, klibc) against a fake sysfs tree.

use super::*;
use vfio_gen::targets::address_bind;

const HEAD: &str =
    "[host]\ncpu = \"amd\"\nbootloader = \"grub\"\ninitramfs = \"initramfs-tools\"\n";

/// The fake host with two identical GTX 1080s (0a:00 the host's, 0b:00 the guest's); with
/// `modular`, its kernel has vfio-pci as a module (the fixture's Ubuntu kernel builds it in).
/// `on_vfio`: the guest card's functions are on vfio-pci.
fn twins(modular: bool, on_vfio: bool) -> tempfile::TempDir {
    let mut text =
        std::fs::read_to_string(repo().join("tests/fixtures/hosts/two-identical-gpus.toml"))
            .unwrap();
    if modular {
        text = text.replace("vfio_pci_builtin = true\n", "vfio_pci_builtin = false\n");
    }
    if on_vfio {
        for drv in ["nvidia", "snd_hda_intel"] {
            let from = format!("driver = \"{drv}\"\ngroup = 22\n");
            assert!(text.contains(&from));
            text = text.replace(&from, "driver = \"vfio-pci\"\ngroup = 22\n");
        }
    }
    let desc = tempfile::NamedTempFile::new_in(repo().join("tests/fixtures/hosts")).unwrap();
    std::fs::write(desc.path(), text).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    fake_host::build(desc.path(), tmp.path()).unwrap();
    tmp
}

fn at(root: &Path, args: &[&str]) -> Output {
    let mut v: Vec<&str> = args.to_vec();
    v.extend(["--root", root.to_str().unwrap()]);
    run(&v)
}

/// A profile file under `dir` with `vfio` as the body of its [vfio] table.
fn profile(dir: &Path, vfio: &str) -> PathBuf {
    let p = dir.join("p.toml");
    std::fs::write(&p, format!("{HEAD}[vfio]\n{vfio}")).unwrap();
    p
}

const GUEST: &str = "devices = [\n    { address = \"0000:0b:00.0\", id = \"10de:1b80\" },\n    { address = \"0000:0b:00.1\", id = \"10de:10f0\" },\n]\nsoftdep = [\"nvidia\"]\n";

#[test]
fn addresses_are_validated_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        (
            "devices = [{ address = \"0b:00.0\", id = \"10de:1b80\" }]\n",
            "p.toml:6:24: vfio.devices: address \"0b:00.0\" lacks the PCI domain; write it in full, like \"0000:0b:00.0\"",
        ),
        (
            "devices = [{ address = \"0000:0B:00.0\", id = \"10de:1b80\" }]\n",
            "p.toml:6:24: vfio.devices: address \"0000:0B:00.0\" has uppercase hex; write it in lowercase, as sysfs does: \"0000:0b:00.0\"",
        ),
        (
            "devices = [{ address = \"0000:0b:00.8\", id = \"10de:1b80\" }]\n",
            "function 8 is out of range; a PCI function is 0 to 7",
        ),
        (
            "devices = [{ address = \"0000:0b:20.0\", id = \"10de:1b80\" }]\n",
            "device 20 is out of range; a PCI device number is 00 to 1f",
        ),
        (
            "devices = [{ address = \"0000:0b:00\", id = \"10de:1b80\" }]\n",
            "is not a PCI address; write domain:bus:device.function",
        ),
        (
            "devices = [{ address = \"0000:0b:00.0\", id = \"10de-1b80\" }]\n",
            "p.toml:6:45: vfio.devices: id \"10de-1b80\" is not a PCI ID",
        ),
        (
            "devices = [\n  { address = \"0000:0b:00.0\", id = \"10de:1b80\" },\n  { address = \"0000:0b:00.0\", id = \"10de:10f0\" },\n]\n",
            "p.toml:8:15: vfio.devices: the address \"0000:0b:00.0\" is listed twice",
        ),
        (
            "devices = [{ addr = \"0000:0b:00.0\", id = \"10de:1b80\" }]\n",
            "unknown field `addr`",
        ),
        (
            "blacklist = []\n",
            "p.toml:5:1: [vfio] has neither ids nor devices",
        ),
        (
            "ids = []\n",
            "vfio.ids is empty; list the vendor:device ID of every function of the GPU, or name the functions by address in vfio.devices",
        ),
    ];
    let root = fixture_root("debian-identical-gpus");
    for (vfio, want) in cases {
        let p = profile(dir.path(), vfio);
        let o = plan_on(p.to_str().unwrap(), root.to_str().unwrap());
        status(&o, 2);
        let err = stderr(&o).replace(&format!("{}", p.display()), "p.toml");
        assert!(err.contains(want), "{vfio}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one message: {err}");
    }
    // ids may be empty once devices are listed, and both may be combined.
    for vfio in [
        GUEST.to_string(),
        format!("ids = []\n{GUEST}"),
        format!("ids = [\"1912:0014\"]\n{GUEST}"),
    ] {
        let p = profile(dir.path(), &vfio);
        let o = plan_on(p.to_str().unwrap(), root.to_str().unwrap());
        status(&o, 0);
    }
}

#[test]
fn plan_says_why_the_address_form_is_needed_and_when_ids_undoes_it() {
    let h = twins(true, false);
    let p = profile(h.path(), GUEST);
    let o = at(h.path(), &["plan", "-p", p.to_str().unwrap()]);
    status(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("0000:0a:00.0 [10de:1b80] has the same IDs as 0000:0b:00.0, which vfio.devices names: this is why the address form is needed"),
        "{out}"
    );
    assert!(!out.contains("warning: vfio.devices"), "{out}");
    // The address's ID also in ids: ids= takes the host's card too.
    let p = profile(h.path(), &format!("ids = [\"10de:10f0\"]\n{GUEST}"));
    let out = stdout(&at(h.path(), &["plan", "-p", p.to_str().unwrap()]));
    assert!(
        out.contains("warning: vfio.devices names 0000:0b:00.1 [10de:10f0], and vfio.ids lists 10de:10f0 too: ids= takes every device with that ID (0000:0a:00.1 as well), so naming the address gains nothing; take 10de:10f0 out of vfio.ids"),
        "{out}"
    );
    // An address that holds other IDs (a moved card), or no device at all.
    let p = profile(
        h.path(),
        "devices = [\n  { address = \"0000:0b:00.0\", id = \"10de:2204\" },\n  { address = \"0000:0e:00.0\", id = \"10de:1b80\" },\n]\n",
    );
    let out = stdout(&at(h.path(), &["plan", "-p", p.to_str().unwrap()]));
    assert!(
        out.contains("warning: 0000:0b:00.0 holds [10de:1b80] (GP104 [GeForce GTX 1080]), not [10de:2204] as vfio.devices records: the boot script skips it")
            && out.contains("warning: vfio.devices names 0000:0e:00.0, and no PCI device is at that address"),
        "{out}"
    );
    // Both cards by ids: plan says the address form is the way out.
    let p = profile(h.path(), "ids = [\"10de:1b80\", \"10de:10f0\"]\n");
    let out = stdout(&at(h.path(), &["plan", "-p", p.to_str().unwrap()]));
    assert!(
        out.contains("vfio.ids matches 2 GPUs (0000:0a:00, 0000:0b:00): ids= binds them all; name the guest's functions by address in vfio.devices"),
        "{out}"
    );
}

#[test]
fn a_built_in_vfio_pci_or_booster_is_refused_and_nothing_changes() {
    let h = twins(false, false);
    let p = profile(h.path(), GUEST);
    let before = tree(h.path());
    for cmd in ["plan", "apply"] {
        let mut args = vec![cmd, "-p", p.to_str().unwrap()];
        if cmd == "apply" {
            args.extend(["--yes", "--no-hooks"]);
        }
        let o = at(h.path(), &args);
        status(&o, 2);
        assert!(
            stderr(&o).contains("vfio.devices needs vfio-pci as a module, and kernel 6.8.0-45-generic has it built in (modules.builtin)")
                && stderr(&o).contains("vfio-gen bind"),
            "{}",
            stderr(&o)
        );
    }
    assert!(tree(h.path()) == before, "a refused run writes nothing");
    // The revert of such a profile is not refused: the way back stays open.
    status(
        &at(h.path(), &["plan", "-p", p.to_str().unwrap(), "--revert"]),
        0,
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("b.toml");
    std::fs::write(
        &p,
        format!(
            "{}[vfio]\n{GUEST}",
            HEAD.replace("initramfs-tools", "booster")
        ),
    )
    .unwrap();
    let root = fixture_root("debian-identical-gpus");
    let o = plan_on(p.to_str().unwrap(), root.to_str().unwrap());
    status(&o, 2);
    assert!(
        stderr(&o).contains("vfio.devices cannot work with booster"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn apply_installs_the_script_and_hook_and_revert_and_rollback_remove_them() {
    use std::os::unix::fs::PermissionsExt;
    let h = twins(true, false);
    let p = profile(h.path(), GUEST);
    let p = p.to_str().unwrap();
    let script = h.path().join(address_bind::SCRIPT.trim_start_matches('/'));
    let hook = h
        .path()
        .join(address_bind::INITRAMFS_TOOLS_HOOK.trim_start_matches('/'));
    let mode = |f: &Path| std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
    let before = tree(h.path());

    status(&at(h.path(), &["apply", "-p", p, "--yes", "--no-hooks"]), 0);
    assert_eq!(mode(&script), 0o644);
    assert_eq!(mode(&hook), 0o755, "mkinitramfs runs only executable hooks");
    let conf = std::fs::read_to_string(h.path().join("etc/modprobe.d/vfio.conf")).unwrap();
    assert!(
        conf.lines().any(|l| l == address_bind::install_line()) && !conf.contains("ids="),
        "{conf}"
    );
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(
        text.contains(
            "\nbind_address 0000:0b:00.0 10de 1b80\nbind_address 0000:0b:00.1 10de 10f0\n"
        ),
        "{text}"
    );
    // Nothing left to do; the initramfs hook input list names the script.
    let o = at(h.path(), &["plan", "-p", p, "--exit-code"]);
    status(&o, 0);

    status(
        &at(
            h.path(),
            &["apply", "-p", p, "--revert", "--yes", "--no-hooks"],
        ),
        0,
    );
    assert!(!script.exists() && !hook.exists());
    let after = |t: BTreeMap<String, Vec<u8>>| -> BTreeMap<String, Vec<u8>> {
        t.into_iter()
            .filter(|(k, _)| !k.starts_with("var/lib/vfio-gen"))
            .collect()
    };
    assert!(
        after(tree(h.path())) == after(before.clone()),
        "revert: back byte for byte"
    );

    status(&at(h.path(), &["apply", "-p", p, "--yes", "--no-hooks"]), 0);
    assert!(script.exists() && hook.exists());
    status(&at(h.path(), &["rollback", "--hooks", "none"]), 0);
    assert!(!script.exists() && !hook.exists());
    assert!(
        after(tree(h.path())) == after(before),
        "rollback: back byte for byte"
    );

    // A profile without devices takes the script and hook away again.
    status(&at(h.path(), &["apply", "-p", p, "--yes", "--no-hooks"]), 0);
    let plain = profile(h.path(), "ids = [\"10de:1b80\"]\n");
    let o = at(
        h.path(),
        &[
            "apply",
            "-p",
            plain.to_str().unwrap(),
            "--yes",
            "--no-hooks",
            "--force",
        ],
    );
    status(&o, 0);
    assert!(!script.exists() && !hook.exists(), "{}", stdout(&o));
}

#[test]
fn check_verifies_each_address_and_its_driver() {
    let items = |h: &Path, p: &Path| -> Vec<(String, String, String)> {
        let o = at(h, &["check", "-p", p.to_str().unwrap(), "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        v["items"]
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
            .collect()
    };
    let has = |items: &[(String, String, String)], id: &str, status: &str, text: &str| {
        items
            .iter()
            .any(|(i, s, m)| i == id && s == status && m.contains(text))
    };
    let h = twins(true, true);
    let p = profile(h.path(), GUEST);
    let got = items(h.path(), &p);
    assert!(
        has(
            &got,
            "address",
            "pass",
            "0000:0b:00.0 holds [10de:1b80], as vfio.devices records"
        ) && has(&got, "address", "pass", "0000:0b:00.1 holds [10de:10f0]")
            && has(
                &got,
                "driver",
                "pass",
                "0000:0b:00.0 [10de:1b80] is bound to vfio-pci"
            )
            && has(
                &got,
                "driver",
                "pass",
                "0000:0b:00.1 [10de:10f0] is bound to vfio-pci"
            ),
        "{got:?}"
    );
    // The host's twin is not the profile's: no item about it, no identical-ids failure.
    assert!(
        !got.iter()
            .any(|(i, s, m)| m.contains("0000:0a:00") && s == "fail" && i != "risk")
            && !got.iter().any(|(i, _, _)| i == "identical-ids"),
        "{got:?}"
    );
    // Before the reboot, on nvidia: the driver item fails with the remedy.
    let h = twins(true, false);
    let p = profile(h.path(), GUEST);
    let got = items(h.path(), &p);
    assert!(
        has(
            &got,
            "driver",
            "fail",
            "0000:0b:00.0 [10de:1b80] is bound to nvidia, not vfio-pci"
        ),
        "{got:?}"
    );
    // A moved card: the address fails and says what it holds; a function left out is named.
    let p = profile(
        h.path(),
        "devices = [{ address = \"0000:0b:00.1\", id = \"10de:1b80\" }]\n",
    );
    let got = items(h.path(), &p);
    assert!(
        has(&got, "address", "fail", "0000:0b:00.1 holds [10de:10f0]"),
        "{got:?}"
    );
    let p = profile(
        h.path(),
        "devices = [{ address = \"0000:0b:00.0\", id = \"10de:1b80\" }]\n",
    );
    let got = items(h.path(), &p);
    assert!(
        has(
            &got,
            "functions",
            "fail",
            "0000:0b:00.1 [10de:10f0] is a function of the same card as 0000:0b:00.0 but is not in vfio.devices"
        ),
        "{got:?}"
    );
    // A built-in vfio-pci: the binding cannot run, and check says so.
    let h = twins(false, false);
    let p = profile(h.path(), GUEST);
    let got = items(h.path(), &p);
    assert!(
        has(&got, "address-binding", "fail", "built into the kernel"),
        "{got:?}"
    );
}

#[test]
fn bind_by_profile_takes_the_addresses_only_and_refuses_a_moved_card() {
    let h = twins(true, false);
    let p = profile(h.path(), GUEST);
    let o = at(h.path(), &["bind", "-p", p.to_str().unwrap(), "--dry-run"]);
    status(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("0000:0b:00.0/driver_override")
            && out.contains("0000:0b:00.1/driver_override"),
        "{out}"
    );
    assert!(!out.contains("0000:0a:00"), "the host's twin stays: {out}");
    let p = profile(
        h.path(),
        "devices = [{ address = \"0000:0b:00.0\", id = \"10de:2204\" }]\n",
    );
    let before = tree(h.path());
    let o = at(h.path(), &["bind", "-p", p.to_str().unwrap()]);
    status(&o, 2);
    assert!(
        stderr(&o).contains("0000:0b:00.0 holds [10de:1b80]")
            && stderr(&o).contains("nothing was bound"),
        "{}",
        stderr(&o)
    );
    assert!(tree(h.path()) == before);
}

#[test]
fn detect_writes_the_address_form_that_plan_accepts() {
    let h = twins(true, false);
    let o = at(h.path(), &["detect"]);
    status(&o, 0);
    let text = stdout(&o);
    let prof = vfio_gen::profile::parse(&text, "detected.toml").unwrap();
    assert!(prof.ids.is_empty(), "{text}");
    let addrs: Vec<(&str, &str)> = prof
        .devices
        .iter()
        .map(|d| (d.address.as_str(), d.id.as_str()))
        .collect();
    assert_eq!(
        addrs,
        [("0000:0b:00.0", "10de:1b80"), ("0000:0b:00.1", "10de:10f0")]
    );
    assert!(!text.contains("built in (modules.builtin)"), "{text}");
    let p = h.path().join("detected.toml");
    std::fs::write(&p, &text).unwrap();
    status(&at(h.path(), &["plan", "-p", p.to_str().unwrap()]), 0);
    // On the built-in kernel detect says why plan will refuse it.
    let h = twins(false, false);
    let text = stdout(&at(h.path(), &["detect"]));
    assert!(
        text.contains("has vfio-pci built in (modules.builtin), so the boot-time binding of"),
        "{text}"
    );
}

#[test]
fn dracut_and_mkinitcpio_carry_the_script_into_the_image() {
    if !have("bash") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = fixture_root("debian-identical-gpus");
    for (generator, file) in [
        ("dracut", "etc/dracut.conf.d/vfio.conf"),
        ("mkinitcpio", "etc/mkinitcpio.conf.d/vfio.conf"),
    ] {
        let p = dir.path().join(format!("{generator}.toml"));
        std::fs::write(
            &p,
            format!(
                "{}[vfio]\n{GUEST}",
                HEAD.replace("initramfs-tools", generator)
            ),
        )
        .unwrap();
        let out = dir.path().join(generator);
        let o = run(&[
            "render",
            "-p",
            p.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        status(&o, 0);
        let drop_in = out.join(file);
        assert!(out.join("etc/vfio-gen/bind-by-address.sh").is_file());
        assert!(!out.join("etc/initramfs-tools/hooks/vfio-gen").exists());
        // What the generator sees after sourcing its configuration: for mkinitcpio, after
        // mkinitcpio.conf in both FILES forms (array, legacy string).
        let cases: Vec<(&str, &str)> = if generator == "dracut" {
            vec![(
                "",
                "install_items=[ /etc/modprobe.d/blacklist-nouveau.conf /etc/modprobe.d/vfio.conf /etc/vfio-gen/bind-by-address.sh ]",
            )]
        } else {
            vec![
                (
                    "FILES=(/etc/foo.conf)",
                    "FILES=[/etc/foo.conf|/etc/vfio-gen/bind-by-address.sh|]",
                ),
                ("FILES=\"\"", "FILES=[/etc/vfio-gen/bind-by-address.sh|]"),
            ]
        };
        for (conf, want) in cases {
            let main = dir.path().join("main.conf");
            std::fs::write(&main, format!("MODULES=()\n{conf}\n")).unwrap();
            let print = if generator == "dracut" {
                "printf 'install_items=[%s]' \"$install_items\""
            } else {
                "printf 'FILES=['; printf '%s|' \"${FILES[@]}\"; printf ']'"
            };
            let o = Command::new("bash")
                .arg("-c")
                .arg(format!(". \"$1\"; . \"$2\"; {print}"))
                .arg("bash")
                .arg(&main)
                .arg(&drop_in)
                .env_clear()
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", stderr(&o));
            assert_eq!(stdout(&o), want, "{generator} {conf}");
        }
    }
}

/// The shells an initramfs may run the script with: dash (Debian's /bin/sh, dracut's 00dash),
/// bash in POSIX mode (dracut's 00bash), busybox sh (mkinitcpio's base hook, initramfs-tools
/// with busybox), klibc's sh (initramfs-tools without busybox). Each one missing follows the
/// skip policy (tests/support/skip.rs): with VFIO_GEN_ALLOW_SKIPS=1 the others still run.
fn shells() -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (tool, argv) in [
        ("sh", vec!["sh"]),
        ("dash", vec!["dash"]),
        ("bash", vec!["bash", "--posix"]),
        ("busybox", vec!["busybox", "sh"]),
    ] {
        if have(tool) {
            out.push(argv.iter().map(|s| s.to_string()).collect());
        }
    }
    if let Some(klibc) = super::skip::file("/usr/lib/klibc/bin/sh", "install klibc-utils") {
        out.push(vec![klibc.to_string_lossy().into_owned()]);
    }
    out
}

/// One PCI function in a fake sysfs tree: vendor, device, driver_override, optionally a driver.
fn fake_function(sys: &Path, bdf: &str, vendor: &str, device: &str, driver: Option<&str>) {
    let dev = sys.join("devices/pci0000:00").join(bdf);
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::write(dev.join("vendor"), format!("{vendor}\n")).unwrap();
    std::fs::write(dev.join("device"), format!("{device}\n")).unwrap();
    std::fs::write(dev.join("driver_override"), "(null)\n").unwrap();
    if let Some(drv) = driver {
        let d = sys.join("bus/pci/drivers").join(drv);
        std::fs::create_dir_all(&d).unwrap();
        std::os::unix::fs::symlink(
            format!("../../../bus/pci/drivers/{drv}"),
            dev.join("driver"),
        )
        .unwrap();
    }
    let link = sys.join("bus/pci/devices").join(bdf);
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(format!("../../../devices/pci0000:00/{bdf}"), link).unwrap();
}

#[test]
fn the_boot_script_binds_only_an_address_that_holds_its_ids() {
    let p = vfio_gen::profile::parse(
        &format!(
            "{HEAD}[vfio]\ndevices = [\n  {{ address = \"0000:0b:00.0\", id = \"10de:1b80\" }},\n  {{ address = \"0000:0b:00.1\", id = \"10de:10f0\" }},\n  {{ address = \"0000:0c:00.0\", id = \"10de:2204\" }},\n  {{ address = \"0000:0d:00.0\", id = \"10de:1b80\" }},\n]\n"
        ),
        "p.toml",
    )
    .unwrap();
    let script_text = address_bind::script(&p).unwrap().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bind-by-address.sh");
    std::fs::write(&script, &script_text).unwrap();
    let shells = shells();
    assert!(!shells.is_empty());
    for shell in &shells {
        // The syntax check each shell does itself.
        let o = Command::new(&shell[0])
            .args(&shell[1..])
            .arg("-n")
            .arg(&script)
            .output()
            .unwrap();
        assert!(o.status.success(), "{shell:?} -n: {}", stderr(&o));

        let t = tempfile::tempdir().unwrap();
        let sys = t.path().join("sys");
        // 0b:00.0 holds its IDs, no driver yet; 0b:00.1 holds its IDs but nvidia's audio
        // driver already drives it; at 0c:00.0 another card sits (moved); 0d:00.0 is empty.
        fake_function(&sys, "0000:0b:00.0", "0x10de", "0x1b80", None);
        fake_function(
            &sys,
            "0000:0b:00.1",
            "0x10de",
            "0x10f0",
            Some("snd_hda_intel"),
        );
        fake_function(&sys, "0000:0c:00.0", "0x10de", "0x1b80", Some("nvidia"));
        // The host's twin at 0a:00.0 is not listed at all.
        fake_function(&sys, "0000:0a:00.0", "0x10de", "0x1b80", Some("nvidia"));
        std::fs::create_dir_all(t.path().join("dev")).unwrap();
        std::fs::write(t.path().join("dev/kmsg"), "").unwrap();
        let bin = t.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let modprobe = bin.join("modprobe");
        std::fs::write(
            &modprobe,
            "#!/bin/sh\necho \"$*\" >\"$VFIO_GEN_TEST_ROOT/modprobe-args\"\n",
        )
        .unwrap();
        std::fs::set_permissions(
            &modprobe,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let o = Command::new(&shell[0])
            .args(&shell[1..])
            .arg(&script)
            .args(["ids=1912:0014", "disable_vga=1"])
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("VFIO_GEN_TEST_ROOT", t.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{shell:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{shell:?}: quiet on stderr");
        let read = |rel: &str| std::fs::read_to_string(t.path().join(rel)).unwrap();
        let over = |bdf: &str| read(&format!("sys/bus/pci/devices/{bdf}/driver_override"));
        assert_eq!(over("0000:0b:00.0"), "vfio-pci\n", "{shell:?}");
        assert_eq!(over("0000:0b:00.1"), "vfio-pci\n", "{shell:?}");
        assert_eq!(
            over("0000:0c:00.0"),
            "(null)\n",
            "{shell:?}: a moved card is skipped"
        );
        assert_eq!(
            over("0000:0a:00.0"),
            "(null)\n",
            "{shell:?}: the host's twin is untouched"
        );
        assert!(!t.path().join("sys/bus/pci/devices/0000:0d:00.0").exists());
        let kmsg = read("dev/kmsg");
        let want = [
            "<6>vfio-gen: 0000:0b:00.0 [10de:1b80]: driver_override set to vfio-pci",
            "<4>vfio-gen: 0000:0b:00.1 [10de:10f0]: driver_override set to vfio-pci, but snd_hda_intel already drives it; vfio-pci takes it after an unbind (vfio-gen bind)",
            "<4>vfio-gen: 0000:0c:00.0: skipped, it holds [10de:1b80], not [10de:2204] (a card was moved?); it keeps its own driver",
            "<4>vfio-gen: 0000:0d:00.0: skipped, no PCI device at this address (the card was moved or removed); expected [10de:1b80]",
        ];
        assert_eq!(kmsg.lines().collect::<Vec<_>>(), want, "{shell:?}");
        assert_eq!(
            read("modprobe-args"),
            "--ignore-install vfio-pci ids=1912:0014 disable_vga=1\n",
            "{shell:?}: then vfio-pci loads, with the options modprobe passed"
        );
    }
}

/// SPEC's form: `devices = ["0000:0b:00.0", ...]`, the address alone. The ID is recorded from
/// the device at that address when the plan is made, and the script checks it at every boot.
#[test]
fn addresses_alone_record_their_ids_from_the_host() {
    let h = twins(true, false);
    let p = profile(
        h.path(),
        "devices = [\"0000:0b:00.0\", { address = \"0000:0b:00.1\" }]\nsoftdep = [\"nvidia\"]\n",
    );
    let tmp = tempfile::tempdir().unwrap();
    let o = at(
        h.path(),
        &[
            "render",
            "-p",
            p.to_str().unwrap(),
            "--out",
            tmp.path().to_str().unwrap(),
        ],
    );
    status(&o, 0);
    let script =
        std::fs::read_to_string(tmp.path().join("etc/vfio-gen/bind-by-address.sh")).unwrap();
    assert!(
        script.contains(
            "\nbind_address 0000:0b:00.0 10de 1b80\nbind_address 0000:0b:00.1 10de 10f0\n"
        ),
        "{script}"
    );
    // Nothing at the address to record it from: one error naming the entry, nothing written.
    let p = profile(h.path(), "devices = [\"0000:0b:00.0\", \"0000:0e:00.0\"]\n");
    let before = tree(h.path());
    let o = at(
        h.path(),
        &["apply", "-p", p.to_str().unwrap(), "--yes", "--no-hooks"],
    );
    status(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{}:6:28: vfio.devices: \"0000:0e:00.0\" names no vendor:device, and the root has no PCI device at that address", p.display()))
            && err.contains("{ address = \"0000:0e:00.0\", id = \"vvvv:dddd\" }"),
        "{err}"
    );
    assert!(tree(h.path()) == before);
    // check says it as an item instead.
    let o = at(
        h.path(),
        &["check", "-p", p.to_str().unwrap(), "--format", "json"],
    );
    assert!(
        stdout(&o)
            .contains("vfio.devices names 0000:0e:00.0, and no PCI device is at that address"),
        "{}",
        stdout(&o)
    );
}
