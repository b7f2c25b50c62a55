//! The trial boot through the binary on fixture roots (docs/trial.md): `apply --trial`, the
//! one-shot's efivar bytes, the health report on the trial boot and after a fallback, `trial
//! status|commit|abort`, byte-for-byte restoration, and the refusals.

use super::*;

const PROFILE: &str = "profiles/arch-intel-systemd-boot.toml";
const ONESHOT: &str =
    "sys/firmware/efi/efivars/LoaderEntryOneShot-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
const ENTRY: &str = "boot/loader/entries/vfio-gen-trial.conf";

/// The Arch systemd-boot fixture's files on the Intel RTX 3090 host; `bound`: the card's two
/// functions are on vfio-pci (as on a trial boot that worked), else on nvidia/snd_hda_intel.
fn host(bound: bool, efivars: bool) -> tempfile::TempDir {
    let mut text =
        std::fs::read_to_string(repo().join("tests/fixtures/hosts/intel-3090.toml")).unwrap();
    if bound {
        text = text.replace("driver = \"nvidia\"", "driver = \"vfio-pci\"");
        // The card's audio function (01:00.1) is the second snd_hda_intel in the file.
        let at = text.find("bdf = \"0000:01:00.1\"").unwrap();
        let (head, tail) = text.split_at(at);
        text = format!(
            "{head}{}",
            tail.replacen("driver = \"snd_hda_intel\"", "driver = \"vfio-pci\"", 1)
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let host: fake_host::Host = toml::from_str(&text).unwrap();
    fake_host::build_host(&host, &repo().join("tests/fixtures/hosts"), tmp.path()).unwrap();
    copy_tree(&fixture_root("arch-intel-systemd-boot"), tmp.path());
    if efivars {
        std::fs::create_dir_all(tmp.path().join("sys/firmware/efi/efivars")).unwrap();
    }
    tmp
}

/// The files a trial may touch: everything but /proc, /sys and vfio-gen's state directory.
fn config(root: &Path) -> BTreeMap<String, Vec<u8>> {
    tree(root)
        .into_iter()
        .filter(|(p, _)| {
            !p.starts_with("proc/") && !p.starts_with("sys/") && !p.starts_with("var/lib/vfio-gen")
        })
        .collect()
}

fn vg(root: &Path, args: &[&str]) -> Vg {
    Vg::new(args).root(root)
}

fn trial_json(root: &Path) -> serde_json::Value {
    let o = vg(root, &["trial", "status", "--format", "json"])
        .status(0)
        .output();
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["version"], 1);
    doc["trial"].clone()
}

/// The running command line of the trial boot: the trial entry's options.
fn boot_the_trial(root: &Path) {
    let entry = std::fs::read_to_string(root.join(ENTRY)).unwrap();
    let options = entry
        .lines()
        .find_map(|l| l.strip_prefix("options "))
        .unwrap();
    std::fs::write(
        root.join("proc/cmdline"),
        format!("initrd=\\intel-ucode.img initrd=\\initramfs-linux.img {options}\n"),
    )
    .unwrap();
    // systemd-boot deletes the one-shot when it reads it (docs/trial.md).
    let _ = std::fs::remove_file(root.join(ONESHOT));
}

#[test]
fn apply_trial_installs_only_the_harmless_part_and_arms_the_one_shot() {
    let root = host(true, true);
    let before = config(root.path());
    vg(
        root.path(),
        &[
            "apply", "-p", PROFILE, "--trial", "--yes", "--hooks", "none",
        ],
    )
    .status(0)
    .stdout_has("armed: the next boot uses vfio-gen-trial.conf once")
    .output();
    // The efivarfs file: attributes 0x7 (LE u32), then "vfio-gen-trial.conf\0" in UTF-16LE.
    let mut want = vec![7u8, 0, 0, 0];
    for u in "vfio-gen-trial.conf\0".encode_utf16() {
        want.extend(u.to_le_bytes());
    }
    assert_eq!(std::fs::read(root.path().join(ONESHOT)).unwrap(), want);
    let after = config(root.path());
    let changed: Vec<&String> = after
        .keys()
        .filter(|p| before.get(*p) != after.get(*p))
        .collect();
    assert_eq!(
        changed,
        [
            ENTRY,
            "etc/mkinitcpio.conf.d/vfio.conf",
            "etc/systemd/system/multi-user.target.d/vfio-gen-trial.conf",
            "etc/systemd/system/vfio-gen-trial.service",
        ],
        "only the trial's files; the default entry and modprobe.d stay as they were"
    );
    let entry = String::from_utf8(after[ENTRY].clone()).unwrap();
    assert!(
        entry.contains("title Arch Linux (vfio-gen trial)"),
        "{entry}"
    );
    assert!(
        entry.contains(" intel_iommu=on iommu=pt rd.driver.pre=vfio-pci vfio-pci.ids=10de:2204,10de:1aef module_blacklist=nouveau panic=10 vfio_gen.trial=1\n"),
        "{entry}"
    );
    let unit =
        String::from_utf8(after["etc/systemd/system/vfio-gen-trial.service"].clone()).unwrap();
    assert!(unit.contains("Before=boot-complete.target"), "{unit}");
    assert!(unit.contains("ExecStart=vfio-gen trial report"), "{unit}");
    let t = trial_json(root.path());
    assert_eq!(t["phase"], "armed");
    assert_eq!(t["default_entry"], "/boot/loader/entries/arch.conf");
    // plan and check show the trial.
    vg(root.path(), &["plan", "-p", PROFILE])
        .stdout_has("a trial is in progress")
        .output();
    let o = vg(root.path(), &["check", "-p", PROFILE, "--format", "json"]).output();
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == "trial" && i["status"] == "warn"),
        "{doc}"
    );
    // A second trial waits for this one to end.
    vg(
        root.path(),
        &[
            "apply", "-p", PROFILE, "--trial", "--yes", "--hooks", "none",
        ],
    )
    .status(2)
    .stderr_has("a trial is already in progress (armed)")
    .stderr_lines(1)
    .output();
}

#[test]
fn a_passed_trial_commits_as_an_ordinary_apply_that_rollback_undoes() {
    let root = host(true, true);
    let before = config(root.path());
    // What an ordinary apply writes, on a copy.
    let plain = host(true, true);
    vg(
        plain.path(),
        &["apply", "-p", PROFILE, "--yes", "--hooks", "none"],
    )
    .status(0)
    .output();
    vg(
        root.path(),
        &[
            "apply", "-p", PROFILE, "--trial", "--yes", "--hooks", "none",
        ],
    )
    .status(0)
    .output();
    vg(
        root.path(),
        &["trial", "commit", "--yes", "--hooks", "none"],
    )
    .status(2)
    .stderr_has("the trial is armed, not passed")
    .output();
    boot_the_trial(root.path());
    vg(root.path(), &["trial", "report"])
        .status(0)
        .stdout_has("passed")
        .output();
    let t = trial_json(root.path());
    assert_eq!(t["phase"], "passed", "{t}");
    let names: Vec<&str> = t["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "system",
            "cmdline",
            "vfio-pci 0000:01:00.0",
            "vfio-pci 0000:01:00.1",
            "boot display 0000:00:02.0"
        ]
    );
    vg(root.path(), &["trial", "status"])
        .stdout_has("pass vfio-pci 0000:01:00.0: 0000:01:00.0 [10de:2204] is on vfio-pci")
        .output();
    vg(
        root.path(),
        &["trial", "commit", "--yes", "--hooks", "none"],
    )
    .status(0)
    .stdout_has("committed as apply")
    .output();
    assert_eq!(config(root.path()), config(plain.path()), "commit = apply");
    assert!(!root.path().join("var/lib/vfio-gen/trial.json").exists());
    vg(root.path(), &["trial", "status"])
        .stdout_has("No trial in progress.")
        .output();
    vg(root.path(), &["rollback", "--yes", "--hooks", "none"])
        .status(0)
        .output();
    assert_eq!(config(root.path()), before, "rollback undoes the commit");
}

#[test]
fn a_trial_that_never_reported_fails_and_abort_restores_every_byte() {
    let root = host(true, true);
    let before = config(root.path());
    vg(
        root.path(),
        &[
            "apply", "-p", PROFILE, "--trial", "--yes", "--hooks", "none",
        ],
    )
    .status(0)
    .output();
    // The boot that armed it: the one-shot is still set, nothing is decided.
    vg(root.path(), &["trial", "report"]).status(0).output();
    assert_eq!(trial_json(root.path())["phase"], "armed");
    // The trial boot panicked; the firmware came back on the default entry.
    std::fs::remove_file(root.path().join(ONESHOT)).unwrap();
    vg(root.path(), &["trial", "report"]).status(0).output();
    let t = trial_json(root.path());
    assert_eq!(t["phase"], "failed");
    assert!(
        t["reason"]
            .as_str()
            .unwrap()
            .starts_with("no report from the trial boot"),
        "{t}"
    );
    vg(root.path(), &["trial", "status"])
        .stdout_has("failed: no report from the trial boot")
        .output();
    vg(root.path(), &["trial", "abort", "--hooks", "none"])
        .status(0)
        .stdout_has("4 files put back as before")
        .output();
    assert_eq!(config(root.path()), before);
    assert!(!root.path().join("var/lib/vfio-gen/trial.json").exists());
    vg(root.path(), &["trial", "abort"])
        .status(2)
        .stderr_has("no trial to abort")
        .output();
}

#[test]
fn a_trial_boot_whose_card_is_not_on_vfio_pci_fails_its_check() {
    let root = host(false, true);
    vg(
        root.path(),
        &[
            "apply", "-p", PROFILE, "--trial", "--yes", "--hooks", "none",
        ],
    )
    .status(0)
    .output();
    boot_the_trial(root.path());
    vg(root.path(), &["trial", "report"]).status(0).output();
    let t = trial_json(root.path());
    assert_eq!(t["phase"], "failed");
    let reason = t["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("a check failed: 0000:01:00.0 [10de:2204] is on nvidia"),
        "{reason}"
    );
    vg(root.path(), &["trial", "abort", "--hooks", "none"])
        .status(0)
        .output();
}

#[test]
fn without_efi_variables_the_trial_is_prepared_and_arm_says_where_to_run() {
    let root = host(true, false);
    vg(
        root.path(),
        &[
            "apply", "-p", PROFILE, "--trial", "--yes", "--hooks", "none",
        ],
    )
    .status(0)
    .stdout_has("prepared:")
    .output();
    assert_eq!(trial_json(root.path())["phase"], "prepared");
    vg(root.path(), &["trial", "arm"])
        .status(2)
        .stderr_has("run `vfio-gen trial arm` on the booted machine")
        .stderr_lines(1)
        .output();
    std::fs::create_dir_all(root.path().join("sys/firmware/efi/efivars")).unwrap();
    vg(root.path(), &["trial", "arm"]).status(0).output();
    assert_eq!(trial_json(root.path())["phase"], "armed");
    assert!(root.path().join(ONESHOT).exists());
}

#[test]
fn trial_refusals_write_nothing() {
    let root = host(true, true);
    let before = tree(root.path());
    let grub = root.path().join("grub.toml");
    std::fs::write(
        &grub,
        "[host]\ncpu = \"intel\"\nbootloader = \"grub\"\n[vfio]\nids = [\"10de:2204\"]\n",
    )
    .unwrap();
    let cmdline = root.path().join("cmdline.toml");
    std::fs::write(
        &cmdline,
        "[host]\ncpu = \"intel\"\nbootloader = \"kernel-cmdline\"\n[vfio]\nids = [\"10de:2204\"]\n",
    )
    .unwrap();
    let before = {
        let mut b = before;
        for p in ["grub.toml", "cmdline.toml"] {
            b.insert(p.into(), std::fs::read(root.path().join(p)).unwrap());
        }
        b
    };
    for (profile, says) in [
        (&grub, "--trial with GRUB is not supported yet"),
        (
            &cmdline,
            "with bootloader = \"kernel-cmdline\" there is none",
        ),
    ] {
        vg(
            root.path(),
            &["apply", "-p", profile.to_str().unwrap(), "--trial", "--yes"],
        )
        .status(2)
        .stderr_has(says)
        .stderr_has("nothing was written")
        .stderr_lines(1)
        .output();
    }
    vg(
        root.path(),
        &["apply", "-p", PROFILE, "--trial", "--revert", "--yes"],
    )
    .status(2)
    .output();
    vg(
        root.path(),
        &["apply", "-p", PROFILE, "--auto-commit", "--yes"],
    )
    .status(2)
    .output();
    vg(root.path(), &["trial", "commit", "--yes"])
        .status(2)
        .stderr_has("no trial to commit")
        .output();
    assert_eq!(tree(root.path()), before);
}

#[test]
fn auto_commit_commits_a_passing_trial_boot_by_itself() {
    let root = host(true, true);
    let plain = host(true, true);
    vg(
        plain.path(),
        &["apply", "-p", PROFILE, "--yes", "--hooks", "none"],
    )
    .status(0)
    .output();
    vg(
        root.path(),
        &[
            "apply",
            "-p",
            PROFILE,
            "--trial",
            "--auto-commit",
            "--yes",
            "--hooks",
            "none",
        ],
    )
    .status(0)
    .output();
    assert_eq!(trial_json(root.path())["auto_commit"], true);
    boot_the_trial(root.path());
    vg(root.path(), &["trial", "report", "--hooks", "none"])
        .status(0)
        .stdout_has("--auto-commit: committing the trial.")
        .stdout_has("committed as apply")
        .output();
    assert_eq!(config(root.path()), config(plain.path()));
    assert!(trial_json(root.path()).is_null());
}
