//! A new user's second hour (issue "a new user's second hour"): the forgotten function of the
//! card caught before the reboot, hints that repeat the options that make them the same
//! command, and output that tells the truth. Each test failed on the main of 2026-12-05.

use super::*;

/// The seed host (Arch, Intel, systemd-boot, RTX 3090 at 01:00.0 with its HDMI audio at
/// 01:00.1, both in IOMMU group 2) as a root: the fixture's files and the fake host's sysfs.
fn seed_host() -> tempfile::TempDir {
    let tmp = copy_root("arch-intel-systemd-boot");
    fake_host::build(
        &repo().join("tests/fixtures/hosts/intel-3090.toml"),
        tmp.path(),
    )
    .unwrap();
    tmp
}

/// The seed profile with `ids` as its vfio.ids, written under `dir`.
fn seed_profile(dir: &Path, ids: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("profiles/arch-intel-systemd-boot.toml"))
        .unwrap()
        .replace(
            "ids = [\"10de:2204\", \"10de:1aef\"]",
            &format!("ids = {ids}"),
        );
    assert!(text.contains(ids), "the seed profile's ids line moved");
    let p = dir.join("profile.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn at(root: &Path, args: &[&str]) -> Output {
    let mut v: Vec<&str> = args.to_vec();
    v.extend(["--root", root.to_str().unwrap()]);
    run(&v)
}

#[test]
fn the_forgotten_audio_function_is_named_by_plan_and_refused_by_apply() {
    let host = seed_host();
    let dir = tempfile::tempdir().unwrap();
    let p = seed_profile(dir.path(), "[\"10de:2204\"]");
    let p = p.to_str().unwrap();

    let o = at(host.path(), &["plan", "-p", p, "--format", "json"]);
    status(&o, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let warnings = json["warnings"].to_string();
    assert!(
        warnings.contains("0000:01:00.1 [10de:1aef]")
            && warnings.contains("same card as 0000:01:00.0")
            && warnings.contains("add \\\"10de:1aef\\\" to vfio.ids"),
        "{warnings}"
    );

    let before = tree(host.path());
    for extra in [&[][..], &["--trial"][..]] {
        let mut args = vec!["apply", "-p", p, "--yes", "--hooks", "none"];
        args.extend_from_slice(extra);
        let o = at(host.path(), &args);
        status(&o, 2);
        assert!(
            stderr(&o).contains("leaves out devices that must go to the guest")
                && stderr(&o).contains("0000:01:00.1 [10de:1aef]")
                && stderr(&o).contains("--force"),
            "{}",
            stderr(&o)
        );
        assert!(tree(host.path()) == before, "a refused apply wrote files");
    }

    let o = at(
        host.path(),
        &["apply", "-p", p, "--yes", "--hooks", "none", "--force"],
    );
    status(&o, 0);
    assert!(tree(host.path()) != before);
}

#[test]
fn a_complete_profile_gets_no_companion_warning() {
    let host = seed_host();
    let dir = tempfile::tempdir().unwrap();
    let p = seed_profile(dir.path(), "[\"10de:2204\", \"10de:1aef\"]");
    let o = at(host.path(), &["plan", "-p", p.to_str().unwrap()]);
    status(&o, 0);
    assert!(!stderr(&o).contains("not in vfio.ids") && !stdout(&o).contains("not in vfio.ids"));
}

/// Item 5: `apply` with nothing to change asks nothing, so it needs no terminal (exit 0).
#[test]
fn apply_with_nothing_to_do_needs_no_terminal() {
    let host = copy_root("amd-grub");
    let p = repo().join("profiles/amd-grub.toml");
    let p = p.to_str().unwrap();
    status(
        &at(host.path(), &["apply", "-p", p, "--yes", "--hooks", "none"]),
        0,
    );
    // stdin is /dev/null: no terminal to ask on, and nothing to ask.
    let o = at(host.path(), &["apply", "-p", p, "--hooks", "none"]);
    status(&o, 0);
    assert!(stdout(&o).contains("Nothing to do"), "{}", stdout(&o));
    // With something to change, the refusal stands.
    let other = copy_root("amd-grub");
    let o = at(other.path(), &["apply", "-p", p, "--hooks", "none"]);
    status(&o, 2);
    assert!(stderr(&o).contains("no terminal"), "{}", stderr(&o));
}

/// Item 4: `vfio-gen` and `vfio-gen trial` with no subcommand list the subcommands, not
/// `--color`'s values.
#[test]
fn no_subcommand_lists_the_subcommands() {
    for (args, names) in [
        (
            &[][..],
            &["plan", "apply", "check", "detect", "rollback"][..],
        ),
        (&["trial"][..], &["status", "commit"][..]),
    ] {
        let o = run(args);
        status(&o, 2);
        let err = stderr(&o);
        assert!(!err.contains("always"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        for n in names {
            assert!(err.contains(n), "{n} missing: {err}");
        }
    }
}

/// Item 3: every suggested command repeats `--root` and `-p`: check's next step, apply's
/// refusal without a terminal, and the remedies of check's items.
#[test]
fn suggested_commands_repeat_root_and_profile() {
    let host = seed_host();
    let r = host.path().to_str().unwrap();
    // No profile: the next step writes one for this root, and plans it there.
    let o = at(host.path(), &["check"]);
    let out = stdout(&o);
    assert!(
        out.contains(&format!(
            "`sudo vfio-gen detect -o {r}/etc/vfio-gen/profile.toml --root {r}`"
        )) && out.contains(&format!("`vfio-gen plan --root {r}`")),
        "{out}"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = seed_profile(dir.path(), "[\"10de:2204\", \"10de:1aef\"]");
    let p = p.to_str().unwrap();
    let o = at(host.path(), &["apply", "-p", p, "--hooks", "none"]);
    status(&o, 2);
    assert!(
        stderr(&o).contains(&format!("`vfio-gen apply --yes -p {p} --root {r}`"))
            && stderr(&o).contains(&format!("`vfio-gen plan -p {p} --root {r}`")),
        "{}",
        stderr(&o)
    );
    // Applied, not rebooted: every command check suggests is for this root and profile.
    status(
        &at(host.path(), &["apply", "-p", p, "--yes", "--hooks", "none"]),
        0,
    );
    let o = at(host.path(), &["check", "-p", p]);
    let out = stdout(&o);
    let mut suggested = 0;
    for span in out.split('`').skip(1).step_by(2) {
        if span.starts_with("vfio-gen ") || span.starts_with("sudo vfio-gen ") {
            suggested += 1;
            assert!(
                span.ends_with(&format!("--root {r}")),
                "{span:?} in:\n{out}"
            );
        }
    }
    assert!(suggested > 0, "{out}");
}

/// Item 2: hooks that did not run (`--hooks none`, or `auto` under a root other than `/`) are
/// left to run like failed ones: plan and check name them, and the hint `apply --hooks chroot`
/// runs them although no file changes; then they are forgotten.
#[test]
fn hooks_not_run_are_left_for_the_next_apply() {
    let host = seed_host();
    let r = host.path().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = seed_profile(dir.path(), "[\"10de:2204\", \"10de:1aef\"]");
    let p = p.to_str().unwrap();
    let o = at(host.path(), &["apply", "-p", p, "--yes", "--hooks", "none"]);
    status(&o, 0);
    let hint = format!("`vfio-gen apply --hooks chroot -p {p} --root {r}`");
    assert!(stdout(&o).contains(&hint), "{}", stdout(&o));

    let o = at(host.path(), &["plan", "-p", p, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["skipped_hooks"][0]["command"][0], "mkinitcpio", "{v}");
    assert!(v["warnings"].to_string().contains("has not run"), "{v}");
    let o = at(host.path(), &["check", "-p", p]);
    assert!(
        stdout(&o).contains("`mkinitcpio -P` has not run") && stdout(&o).contains(&hint),
        "{}",
        stdout(&o)
    );

    // Still off: nothing runs, and the hooks stay left.
    let o = at(host.path(), &["apply", "-p", p, "--yes"]);
    status(&o, 0);
    assert!(
        stdout(&o).contains("have not run (hooks are off)"),
        "{}",
        stdout(&o)
    );

    // The hint, with a stand-in chroot on PATH: it runs the hooks, and they are forgotten.
    let bin = tempfile::tempdir().unwrap();
    let log = bin.path().join("log");
    let path = super::apply::stand_ins(bin.path(), &[]);
    let o = Vg::new(&["apply", "-p", p, "--yes", "--hooks", "chroot"])
        .root(host.path())
        .env("PATH", &path)
        .env("HOOK_LOG", log.to_str().unwrap())
        .output();
    status(&o, 0);
    let ran = std::fs::read_to_string(&log).unwrap();
    assert!(ran.contains(&format!("chroot {r} mkinitcpio -P")), "{ran}");
    let o = at(host.path(), &["plan", "-p", p, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["skipped_hooks"], serde_json::json!([]), "{v}");
}

/// Item 7: a quote left open on line 5 of /etc/default/grub is reported on line 5, not where
/// the shifted quotes finally fail (a backquote in a comment on line 24).
#[test]
fn an_unclosed_grub_quote_is_reported_where_it_was_opened() {
    let root = copy_root("amd-grub");
    let path = root.path().join("etc/default/grub");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.lines().nth(23).unwrap().contains('`'),
        "the fixture moved"
    );
    let text = text.replacen(
        "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"",
        "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let p = repo().join("profiles/amd-grub.toml");
    let o = at(root.path(), &["plan", "-p", p.to_str().unwrap()]);
    status(&o, 2);
    assert!(
        stderr(&o)
            .contains("/etc/default/grub: line 5: the \" opened here is not closed on this line")
            && stderr(&o).contains("(`GRUB_CMDLINE_LINUX=`)"),
        "{}",
        stderr(&o)
    );
}

/// Item 8: a profile naming the wrong boot loader is told which one the root boots with.
#[test]
fn the_wrong_boot_loader_is_named() {
    let cases = [
        (
            "amd-grub",
            "arch-intel-systemd-boot",
            "this root boots with systemd-boot (loader entries found, no /etc/default/grub), not grub: write bootloader = \"systemd-boot\"",
        ),
        (
            "arch-intel-systemd-boot",
            "amd-grub",
            "this root boots with grub (/etc/default/grub), not systemd-boot: write bootloader = \"grub\"",
        ),
    ];
    for (profile, root, want) in cases {
        let p = repo().join(format!("profiles/{profile}.toml"));
        let o = at(&fixture_root(root), &["plan", "-p", p.to_str().unwrap()]);
        status(&o, 2);
        assert!(
            stderr(&o).contains(want),
            "{profile} on {root}: {}",
            stderr(&o)
        );
    }
}

/// Item 6: rolling back a revert says, before anything is asked, that it installs
/// passthrough again; `rollback --list` names each backup's kind.
#[test]
fn rolling_back_a_revert_says_it_reinstalls_passthrough() {
    let root = copy_root("amd-grub");
    status(&apply_over("profiles/amd-grub.toml", root.path(), false), 0);
    status(&apply_over("profiles/amd-grub.toml", root.path(), true), 0);
    let o = at(root.path(), &["rollback", "--list"]);
    status(&o, 0);
    assert!(
        stdout(&o).contains("  apply (") && stdout(&o).contains("  revert ("),
        "{}",
        stdout(&o)
    );
    let o = at(root.path(), &["rollback", "--dry-run"]);
    status(&o, 0);
    assert!(
        stdout(&o).contains(
            "This backup is of `apply --revert`: rolling it back installs passthrough again"
        ),
        "{}",
        stdout(&o)
    );
}

/// Item 11 (in part): `check` says each thing once.
#[test]
fn check_says_each_thing_once() {
    let host = seed_host();
    let o = at(host.path(), &["check"]);
    let out = stdout(&o);
    let mut lines: Vec<&str> = out.lines().filter(|l| l.starts_with('[')).collect();
    assert!(!lines.is_empty(), "{out}");
    let n = lines.len();
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), n, "a line is said twice:\n{out}");
}

/// Item 11: right after a good apply, what only a reboot changes is pending (`[WAIT]`,
/// `"pending"` in JSON), not failed, and check exits 3 ("waiting for a reboot"); a boot entry
/// whose image is missing says which of its files is the missing one.
#[test]
fn after_apply_check_waits_for_a_reboot_and_names_the_missing_image() {
    let host = seed_host();
    let dir = tempfile::tempdir().unwrap();
    let p = seed_profile(dir.path(), "[\"10de:2204\", \"10de:1aef\"]");
    let p = p.to_str().unwrap();
    // Before apply: the drivers fail (exit 1), nothing waits.
    let o = at(host.path(), &["check", "-p", p]);
    status(&o, 1);
    assert!(!stdout(&o).contains("[WAIT]"), "{}", stdout(&o));

    status(
        &at(host.path(), &["apply", "-p", p, "--yes", "--hooks", "none"]),
        0,
    );
    // The microcode is there, the main image is not. (The sixth warning: the fake 3090 has no
    // reset_method file on its 5.15+ kernel.)
    std::fs::write(host.path().join("boot/intel-ucode.img"), b"").unwrap();
    let o = at(host.path(), &["check", "-p", p]);
    status(&o, 3);
    let out = stdout(&o);
    assert!(!out.contains("[FAIL]"), "{out}");
    let waits: Vec<&str> = out.lines().filter(|l| l.starts_with("[WAIT]")).collect();
    assert_eq!(waits.len(), 3, "{out}");
    assert!(
        waits[0].contains("command line") && waits[1].contains("0000:01:00.0"),
        "{out}"
    );
    assert!(
        out.contains("0 failed, 6 warnings, 3 waiting for a reboot")
            && out.contains("State: applied, not rebooted."),
        "{out}"
    );
    assert!(
        out.contains(
            "arch.conf names /boot/intel-ucode.img and /boot/initramfs-linux.img: /boot/initramfs-linux.img is not there"
        ),
        "{out}"
    );

    let o = at(host.path(), &["check", "-p", p, "--format", "json"]);
    status(&o, 3);
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(json["waiting_for_reboot"], true);
    assert_eq!(json["ok"], true);
    let pending: Vec<&str> = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "pending")
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(pending, ["cmdline", "driver", "driver"], "{json}");
}

/// Item 10: one meaning of `-q` and `-v` for every command. `-q` hides progress, notes,
/// summaries and passing or unchanged things, never a warning; `-v` shows unchanged files and
/// every check item, also one that says what another said.
#[test]
fn minus_q_never_hides_a_warning_and_minus_v_shows_more() {
    let host = seed_host();
    let dir = tempfile::tempdir().unwrap();
    let typo = seed_profile(dir.path(), "[\"10de:2240\", \"10de:1aef\"]");
    let typo = typo.to_str().unwrap();
    let no_device = "vfio.ids has 10de:2240, which no PCI device";

    // plan -q: the diff and the warning, no note, no summary.
    let o = at(host.path(), &["plan", "-q", "-p", typo]);
    status(&o, 0);
    let out = stdout(&o);
    assert!(out.contains(no_device), "{out}");
    assert!(!out.contains("note:") && !out.contains("Plan: "), "{out}");
    // apply -q --yes: no diff, but the warning, on stderr.
    let o = at(
        host.path(),
        &[
            "apply", "-q", "--yes", "--hooks", "none", "--force", "-p", typo,
        ],
    );
    status(&o, 0);
    assert!(stderr(&o).contains(no_device), "{}", stderr(&o));
    assert!(!stdout(&o).contains("+++ "), "{}", stdout(&o));

    // check -q: warnings and waits, no pass; check -v: every item, the repeated one too.
    let o = at(host.path(), &["check", "-q", "-p", typo]);
    let out = stdout(&o);
    assert!(out.contains("[warn]") && !out.contains("[pass]"), "{out}");
    let log = |args: &[&str]| {
        let mut v = vec!["check", "-p", typo];
        v.extend_from_slice(args);
        stdout(&at(host.path(), &v))
            .matches("no kernel log")
            .count()
    };
    assert_eq!(log(&[]), 1);
    assert!(log(&["-v"]) >= 2, "check -v shows each item");

    // -v: the files in sync, for plan, apply and render --check.
    let p = seed_profile(dir.path(), "[\"10de:2204\", \"10de:1aef\"]");
    let p = p.to_str().unwrap();
    let in_sync = "unchanged /etc/modprobe.d/blacklist-nouveau.conf (in sync)";
    let o = at(host.path(), &["plan", "-p", p]);
    assert!(!stdout(&o).contains(in_sync), "{}", stdout(&o));
    let o = at(host.path(), &["plan", "-v", "-p", p]);
    assert!(stdout(&o).contains(in_sync), "{}", stdout(&o));
    let o = at(
        host.path(),
        &["apply", "-v", "--yes", "--hooks", "none", "-p", p],
    );
    status(&o, 0);
    assert!(stdout(&o).contains(in_sync), "{}", stdout(&o));
    let out = tempfile::tempdir().unwrap();
    let o_dir = out.path().to_str().unwrap();
    status(&at(host.path(), &["render", "-p", p, "--out", o_dir]), 0);
    let o = at(host.path(), &["render", "-p", p, "--check", o_dir]);
    assert!(!stdout(&o).contains("(in sync)"), "{}", stdout(&o));
    let o = at(host.path(), &["render", "-v", "-p", p, "--check", o_dir]);
    status(&o, 0);
    assert!(stdout(&o).contains(in_sync), "{}", stdout(&o));
}

/// A `mkinitcpio` on PATH that takes `secs` seconds and exits `code`, in `dir`; the PATH
/// that finds it first.
fn slow_mkinitcpio(dir: &Path, secs: &str, code: u8) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = format!(
        "#!/bin/sh\necho '==> Building image from preset: /etc/mkinitcpio.d/linux.preset'\nsleep {secs}\nexit {code}\n"
    );
    let path = bin.join("mkinitcpio");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("{}:/usr/bin:/bin", bin.display())
}

/// Item 9: a hook that runs says so. Not on a terminal: one plain line as it starts (none
/// under -q), "ran ... (N s)" when done; on a terminal (`script`): one line redrawn with the elapsed
/// seconds, erased when done; a failure shows the hook's output, as before.
#[test]
fn a_running_hook_says_which_and_for_how_long() {
    let dir = tempfile::tempdir().unwrap();
    let p = seed_profile(dir.path(), "[\"10de:2204\", \"10de:1aef\"]");
    let p = p.to_str().unwrap();
    let path = slow_mkinitcpio(dir.path(), "0.2", 0);
    let apply = |host: &Path, extra: &[&str], path: &str| {
        let mut args = vec!["apply", "-p", p, "--yes", "--hooks", "host"];
        args.extend_from_slice(extra);
        Vg::new(&args).root(host).env("PATH", path).output()
    };
    let host = seed_host();
    let o = apply(host.path(), &[], &path);
    status(&o, 0);
    assert!(
        stderr(&o).contains("running mkinitcpio -P ...\n") && !stderr(&o).contains('\x1b'),
        "{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        stdout(&o).contains("ran mkinitcpio -P (0 s)\n"),
        "{}",
        stdout(&o)
    );
    let host = seed_host();
    let o = apply(host.path(), &["-q"], &path);
    status(&o, 0);
    assert!(!stderr(&o).contains("running mkinitcpio"), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("ran mkinitcpio -P (0 s)\n"),
        "{}",
        stdout(&o)
    );

    let failing = slow_mkinitcpio(&dir.path().join("f"), "0", 1);
    let host = seed_host();
    let o = apply(host.path(), &[], &failing);
    status(&o, 3);
    assert!(
        stdout(&o).contains("FAILED mkinitcpio -P:\n==> Building image from preset"),
        "{}",
        stdout(&o)
    );

    if !have("script") {
        return;
    }
    let slow = slow_mkinitcpio(&dir.path().join("s"), "2.5", 0);
    let host = seed_host();
    let cmd = format!(
        "{} apply -p {p} --yes --hooks host --root {}",
        env!("CARGO_BIN_EXE_vfio-gen"),
        host.path().display()
    );
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("PATH", &slow)
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(
        out.contains("\r\x1b[Krunning mkinitcpio -P ... 0 s")
            && out.contains("\r\x1b[Krunning mkinitcpio -P ... 2 s")
            && out.contains("\r\x1b[Kran mkinitcpio -P"),
        "{out:?}"
    );
}

/// Item 12: `detect --format json` gives the facts and the proposed profile; a laptop whose
/// only candidate is a 3D controller (muxless Optimus) gets a comment on what that involves.
#[test]
fn detect_speaks_json_and_explains_a_laptop_dgpu() {
    let tmp = tempfile::tempdir().unwrap();
    fake_host::build(
        &repo().join("tests/fixtures/hosts/laptop-optimus.toml"),
        tmp.path(),
    )
    .unwrap();
    let o = at(tmp.path(), &["detect"]);
    status(&o, 0);
    let text = stdout(&o);
    assert!(
        text.contains("# This GPU is a 3D controller (class 0302)")
            && text.contains("muxless (Optimus)")
            && text.contains("Looking Glass"),
        "{text}"
    );
    let o = at(tmp.path(), &["detect", "--format", "json"]);
    status(&o, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(json["version"], 1);
    assert_eq!(
        json["profile"]["vfio"]["ids"],
        serde_json::json!(["10de:25a2"])
    );
    assert_eq!(json["profile"]["host"]["bootloader"], "systemd-boot");
    assert_eq!(json["facts"]["cpu"]["name"], "intel");
    assert_eq!(json["facts"]["iommu"]["on"], true);
    assert!(
        json["facts"]["notes"][0]
            .as_str()
            .unwrap()
            .contains("3D controller")
    );
    assert_eq!(json["profile_text"].as_str().unwrap(), text);

    // A desktop card (class 0300) gets no such comment.
    let o = at(seed_host().path(), &["detect"]);
    assert!(
        !stdout(&o).contains("3D controller (class 0302)"),
        "{}",
        stdout(&o)
    );
}

/// Item 15: the profile's reference ships with the binary: `vfio-gen man vfio-gen.toml` prints
/// vfio-gen.toml(5) with every table and key of the profile, `man --dir` writes it as section 5
/// (which contrib/dist/install.sh installs to man5), and an unknown key points to it.
#[test]
fn the_profile_reference_is_a_man_page() {
    let o = run(&["man", "vfio-gen.toml"]);
    status(&o, 0);
    let page = stdout(&o);
    assert!(page.starts_with(".TH VFIO\\-GEN.TOML 5"), "{page}");
    for key in [
        ".SH [host]",
        ".SH [vfio]",
        ".SH [kernel]",
        ".SH [grub]",
        ".SH [resources]",
        ".SH [looking\\-glass]",
        ".SH [libvirt]",
        "\\fBmode\\fR\n\\fB\"boot\"\\fR (default)",
        "\\fBisolate_cpus\\fR",
        ".SH EXAMPLES",
    ] {
        assert!(page.contains(key), "{key:?} missing");
    }
    // Every key of the full example profile is in the page.
    let example =
        std::fs::read_to_string(repo().join("profiles/arch-intel-systemd-boot.toml")).unwrap();
    for line in example
        .lines()
        .filter(|l| !l.starts_with(['#', '[']) && l.contains(" = "))
    {
        let key = line.split(" = ").next().unwrap().trim().replace('-', "\\-");
        assert!(
            page.contains(&format!("\\fB{key}\\fR")),
            "{key} is not in the page"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    status(&run(&["man", "--dir", dir.path().to_str().unwrap()]), 0);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("vfio-gen.toml.5")).unwrap(),
        page
    );
    assert!(
        run(&["man"])
            .stdout
            .windows(16)
            .any(|w| w == b"vfio\\-gen.toml(5")
    );

    let p = dir.path().join("p.toml");
    std::fs::write(
        &p,
        "[host]\ncpu = \"intel\"\nbootloader = \"grub\"\nbootlaoder = \"grub\"\n[vfio]\nids = []\n",
    )
    .unwrap();
    let o = run(&["plan", "-p", p.to_str().unwrap()]);
    status(&o, 2);
    assert!(stderr(&o).contains("`man vfio-gen.toml`"), "{}", stderr(&o));
}

/// The seed host with a readable profile, /etc/kernel/cmdline (Debian's systemd-boot: the
/// strongest sign of a loader a user who cannot read the ESP still sees) and its loader
/// entries readable by root only (installers mount the ESP with `umask=0077`): (host, profile
/// directory, entries).
fn esp_for_root_only() -> (tempfile::TempDir, tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let host = seed_host();
    let dir = tempfile::tempdir().unwrap();
    seed_profile(dir.path(), "[\"10de:2204\", \"10de:1aef\"]");
    let mode = |path: &Path, m: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).unwrap();
    };
    mode(host.path(), 0o755);
    mode(dir.path(), 0o755);
    std::fs::create_dir_all(host.path().join("etc/kernel")).unwrap();
    std::fs::write(
        host.path().join("etc/kernel/cmdline"),
        "root=UUID=x rw quiet\n",
    )
    .unwrap();
    let entries = host.path().join("boot/loader/entries");
    mode(&entries, 0o000);
    (host, dir, entries)
}

/// vfio-gen with `args` as a user who is not root (nobody, when the tests run as root, as in
/// CI), with the entries made readable again after it.
fn as_user(args: &[&str], entries: &Path) -> Output {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    if nix::unistd::geteuid().is_root() {
        cmd.uid(65534).gid(65534);
    }
    let o = cmd.output().unwrap();
    std::fs::set_permissions(entries, std::fs::Permissions::from_mode(0o755)).unwrap();
    o
}

/// A user who is not root, on a host whose ESP only root may read: `plan` names what could not
/// be read and gives the same command, as typed, with sudo in front (and no guess at another
/// boot loader from what the user can see).
#[test]
fn a_file_only_root_may_read_gets_the_same_command_with_sudo() {
    let (host, dir, entries) = esp_for_root_only();
    let p = dir.path().join("profile.toml");
    let (p, r) = (p.to_str().unwrap(), host.path().to_str().unwrap());
    let o = as_user(&["plan", "-p", p, "--root", r], &entries);
    status(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains(&format!("listing {}", entries.display()))
            && err.contains("Permission denied")
            && err.contains(&format!(
                "only root may do that: run it as root, `sudo vfio-gen plan -p {p} --root {r}`"
            )),
        "{err}"
    );
    assert!(!err.contains("boots with"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// `check` as that user checks what it can read and says once what it could not, with sudo.
#[test]
fn check_as_a_user_says_what_only_root_may_read_and_checks_the_rest() {
    let (host, dir, entries) = esp_for_root_only();
    let p = dir.path().join("profile.toml");
    let (p, r) = (p.to_str().unwrap(), host.path().to_str().unwrap());
    let o = as_user(&["check", "-p", p, "--root", r], &entries);
    let out = stdout(&o);
    assert_ne!(o.status.code(), Some(2), "{out}\n{}", stderr(&o));
    let unread: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with('[') && l.contains(&format!("listing {}", entries.display())))
        .collect();
    assert_eq!(unread.len(), 1, "{out}");
    assert!(
        unread[0].starts_with("[warn]")
            && unread[0].contains("only root may read it")
            && unread[0].contains(&format!("run `sudo vfio-gen check -p {p} --root {r}`")),
        "{out}"
    );
    assert!(
        out.contains("0000:01:00.0"),
        "the devices are still checked: {out}"
    );
    let cmdline = out
        .lines()
        .find(|l| l.contains("command line lacks"))
        .unwrap_or("");
    assert!(
        cmdline.contains(&format!(
            "`sudo vfio-gen check -p {p} --root {r}` says whether the files are in place"
        )),
        "not `apply` as if nothing were applied: {out}"
    );
    assert!(
        out.contains(&format!(
            "State: unknown. Next: run `sudo vfio-gen check -p {p} --root {r}`: only root may read"
        )),
        "{out}"
    );
}

/// Writing where only root may: `detect -o` into /etc as a user names the directory and gives
/// the command as typed with sudo, once, and writes nothing.
#[test]
fn writing_where_only_root_may_gives_the_command_with_sudo() {
    use std::os::unix::fs::PermissionsExt;
    let (host, _dir, entries) = esp_for_root_only();
    let etc = host.path().join("etc");
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o555)).unwrap();
    let target = etc.join("vfio-gen/profile.toml");
    let (t, r) = (target.to_str().unwrap(), host.path().to_str().unwrap());
    let o = as_user(&["detect", "-o", t, "--root", r], &entries);
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o755)).unwrap();
    status(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "{}: Permission denied",
            etc.join("vfio-gen").display()
        )) && err.ends_with(&format!(
            "; only root may do that: run it as root, `sudo vfio-gen detect -o {t} --root {r}`\n"
        )),
        "{err}"
    );
    assert_eq!(err.matches("sudo").count(), 1, "{err}");
    assert!(!target.exists());
}
