//! The trial boot through the binary on fixture roots (docs/trial.md): `apply --trial`, the
//! one-shot's efivar bytes, the health report on the trial boot and after a fallback, `trial
//! status|commit|abort`, byte-for-byte restoration, and the refusals.

use super::*;

const PROFILE: &str = "profiles/arch-intel-systemd-boot.toml";
const ONESHOT: &str =
    "sys/firmware/efi/efivars/LoaderEntryOneShot-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
const ENTRY: &str = "boot/loader/entries/vfio-gen-trial.conf";
/// The trial's units and drop-ins (docs/trial.md), in path order.
const UNITS: [&str; 8] = [
    "etc/systemd/system/emergency.target.d/vfio-gen-trial.conf",
    "etc/systemd/system/multi-user.target.d/vfio-gen-trial.conf",
    "etc/systemd/system/rescue.target.d/vfio-gen-trial.conf",
    "etc/systemd/system/sysinit.target.d/vfio-gen-trial.conf",
    "etc/systemd/system/vfio-gen-trial-deadline.service",
    "etc/systemd/system/vfio-gen-trial-deadline.timer",
    "etc/systemd/system/vfio-gen-trial-fallback@.service",
    "etc/systemd/system/vfio-gen-trial.service",
];

/// The Arch systemd-boot fixture's files on the Intel RTX 3090 host; `bound`: the card's two
/// functions are on vfio-pci (as on a trial boot that worked), else on nvidia/snd_hda_intel.
fn host(bound: bool, efivars: bool) -> tempfile::TempDir {
    host_with(bound, efivars, "arch-intel-systemd-boot")
}

fn host_with(bound: bool, efivars: bool, fixture: &str) -> tempfile::TempDir {
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
    copy_tree(&fixture_root(fixture), tmp.path());
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
        .run();
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

/// `trial report` on the boot after a trial boot that never reported: failed, and why.
fn report_says_no_report(root: &Path) {
    vg(root, &["trial", "report"]).status(0).run();
    let t = trial_json(root);
    assert_eq!(t["phase"], "failed");
    assert!(
        t["reason"]
            .as_str()
            .unwrap()
            .starts_with("no report from the trial boot"),
        "{t}"
    );
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
    .run();
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
    let mut want = vec![
        ENTRY,
        "etc/mkinitcpio.conf.d/vfio.conf",
        "etc/modprobe.d/vfio.conf",
    ];
    want.extend(UNITS);
    assert_eq!(
        changed, want,
        "only the trial's files; the default entry stays as it was"
    );
    // modprobe.d gets the softdeps alone: they order loading, so the trial boot loads its
    // modules as the committed configuration will; the ids and blacklists stay off it.
    let modprobe = String::from_utf8(after["etc/modprobe.d/vfio.conf"].clone()).unwrap();
    assert!(
        modprobe.contains("\nsoftdep nvidia pre: vfio-pci\n"),
        "{modprobe}"
    );
    assert!(
        !modprobe.contains("options") && !modprobe.contains("blacklist"),
        "{modprobe}"
    );
    let entry = String::from_utf8(after[ENTRY].clone()).unwrap();
    assert!(
        entry.contains("title Arch Linux (vfio-gen trial)"),
        "{entry}"
    );
    assert!(
        entry.contains(" intel_iommu=on iommu=pt rd.driver.pre=vfio-pci vfio-pci.ids=10de:2204,10de:1aef module_blacklist=nouveau panic=10 systemd.watchdog_sec=120 vfio_gen.trial=1\n"),
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
        .run();
    let o = vg(root.path(), &["check", "-p", PROFILE, "--format", "json"]).run();
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
    .run();
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
    .run();
    vg(
        root.path(),
        &[
            "apply", "-p", PROFILE, "--trial", "--yes", "--hooks", "none",
        ],
    )
    .status(0)
    .run();
    vg(
        root.path(),
        &["trial", "commit", "--yes", "--hooks", "none"],
    )
    .status(2)
    .stderr_has("the trial is armed, not passed")
    .run();
    boot_the_trial(root.path());
    // q35's TCO watchdog as sysfs shows it once systemd armed it from the trial line.
    let wd = root.path().join("sys/class/watchdog/watchdog0");
    std::fs::create_dir_all(&wd).unwrap();
    for (f, v) in [
        ("identity", "iTCO_wdt\n"),
        ("state", "active\n"),
        ("timeout", "120\n"),
    ] {
        std::fs::write(wd.join(f), v).unwrap();
    }
    vg(root.path(), &["trial", "report"])
        .status(0)
        .stdout_has("passed")
        .run();
    let t = trial_json(root.path());
    assert_eq!(t["phase"], "passed", "{t}");
    let watchdog = t["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "watchdog")
        .unwrap();
    assert_eq!(
        watchdog["detail"],
        "watchdog0 (iTCO_wdt) is active, timeout 120 s (systemd.watchdog_sec=120 on the trial line)",
        "{t}"
    );
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
            "boot display 0000:00:02.0",
            "watchdog"
        ]
    );
    vg(root.path(), &["trial", "status"])
        .stdout_has("pass vfio-pci 0000:01:00.0: 0000:01:00.0 [10de:2204] is on vfio-pci")
        .run();
    vg(
        root.path(),
        &["trial", "commit", "--yes", "--hooks", "none"],
    )
    .status(0)
    .stdout_has("committed as apply")
    .run();
    assert_eq!(config(root.path()), config(plain.path()), "commit = apply");
    assert!(!root.path().join("var/lib/vfio-gen/trial.json").exists());
    vg(root.path(), &["trial", "status"])
        .stdout_has("No trial in progress.")
        .run();
    vg(root.path(), &["rollback", "--yes", "--hooks", "none"])
        .status(0)
        .run();
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
    .run();
    // The boot that armed it: the one-shot is still set, nothing is decided.
    vg(root.path(), &["trial", "report"]).status(0).run();
    assert_eq!(trial_json(root.path())["phase"], "armed");
    // The trial boot panicked; the firmware came back on the default entry.
    std::fs::remove_file(root.path().join(ONESHOT)).unwrap();
    report_says_no_report(root.path());
    vg(root.path(), &["trial", "status"])
        .stdout_has("failed: no report from the trial boot")
        .run();
    vg(root.path(), &["trial", "abort", "--hooks", "none"])
        .status(0)
        .stdout_has("11 files put back as before")
        .run();
    assert_eq!(config(root.path()), before);
    assert!(!root.path().join("var/lib/vfio-gen/trial.json").exists());
    vg(root.path(), &["trial", "abort"])
        .status(2)
        .stderr_has("no trial to abort")
        .run();
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
    .run();
    boot_the_trial(root.path());
    vg(root.path(), &["trial", "report"]).status(0).run();
    let t = trial_json(root.path());
    assert_eq!(t["phase"], "failed");
    let reason = t["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("a check failed: 0000:01:00.0 [10de:2204] is on nvidia"),
        "{reason}"
    );
    vg(root.path(), &["trial", "abort", "--hooks", "none"])
        .status(0)
        .run();
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
    .run();
    assert_eq!(trial_json(root.path())["phase"], "prepared");
    vg(root.path(), &["trial", "arm"])
        .status(2)
        .stderr_has("run `sudo vfio-gen trial arm` on the booted machine")
        .stderr_lines(1)
        .run();
    std::fs::create_dir_all(root.path().join("sys/firmware/efi/efivars")).unwrap();
    vg(root.path(), &["trial", "arm"]).status(0).run();
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
        "[host]\ncpu = \"intel\"\nbootloader = \"refind\"\n[vfio]\nids = [\"10de:2204\"]\n",
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
        (&grub, "bootloader = \"refind\" has no trial entry yet"),
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
        .run();
    }
    vg(
        root.path(),
        &["apply", "-p", PROFILE, "--trial", "--revert", "--yes"],
    )
    .status(2)
    .run();
    vg(
        root.path(),
        &["apply", "-p", PROFILE, "--auto-commit", "--yes"],
    )
    .status(2)
    .run();
    vg(root.path(), &["trial", "commit", "--yes"])
        .status(2)
        .stderr_has("no trial to commit")
        .run();
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
    .run();
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
    .run();
    assert_eq!(trial_json(root.path())["auto_commit"], true);
    boot_the_trial(root.path());
    vg(root.path(), &["trial", "report", "--hooks", "none"])
        .status(0)
        .stdout_has("--auto-commit: committing the trial.")
        .stdout_has("committed as apply")
        .run();
    assert_eq!(config(root.path()), config(plain.path()));
    assert!(trial_json(root.path()).is_null());
}

// ---------------------------------------------------------------- GRUB (docs/trial.md)

const GRUB_PROFILE: &str = "etc/vfio-gen/profile.toml";
const SCRIPT: &str = "etc/grub.d/42_vfio-gen-trial";
const GRUBENV: &str = "boot/grub/grubenv";

/// A Debian 12 grub.cfg as grub-mkconfig writes it (00_header's next_entry branch, 10_linux's
/// entry and submenu, 41_custom), with `default` as given.
fn grub_cfg(default: &str, kernel: &str) -> String {
    format!(
        r#"#
# DO NOT EDIT THIS FILE
#
# It is automatically generated by grub-mkconfig using templates
# from /etc/grub.d and settings from /etc/default/grub
#

### BEGIN /etc/grub.d/00_header ###
if [ -s $prefix/grubenv ]; then
  set have_grubenv=true
  load_env
fi
if [ "${{next_entry}}" ] ; then
   set default="${{next_entry}}"
   set next_entry=
   save_env next_entry
   set boot_once=true
else
   set default="{default}"
fi

if [ x"${{feature_menuentry_id}}" = xy ]; then
  menuentry_id_option="--id"
else
  menuentry_id_option=""
fi

export menuentry_id_option

function load_video {{
  if [ x$feature_all_video_module = xy ]; then
    insmod all_video
  else
    insmod efi_gop
  fi
}}

terminal_input console
terminal_output console
set timeout=5
### END /etc/grub.d/00_header ###

### BEGIN /etc/grub.d/10_linux ###
function gfxmode {{
	set gfxpayload="${{1}}"
}}
set linux_gfx_mode=
export linux_gfx_mode
menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class gnu --class os $menuentry_id_option 'gnulinux-simple-3b1c2f0e-59d4-4a3e-9d0c-6f1e2a7b8c90' {{
	load_video
	insmod gzio
	if [ x$grub_platform = xxen ]; then insmod xzio; insmod lzopio; fi
	insmod part_gpt
	insmod ext2
	search --no-floppy --fs-uuid --set=root 3b1c2f0e-59d4-4a3e-9d0c-6f1e2a7b8c90
	echo	'Loading Linux {kernel} ...'
	linux	/boot/vmlinuz-{kernel} root=UUID=3b1c2f0e-59d4-4a3e-9d0c-6f1e2a7b8c90 ro  quiet
	echo	'Loading initial ramdisk ...'
	initrd	/boot/initrd.img-{kernel}
}}
submenu 'Advanced options for Debian GNU/Linux' $menuentry_id_option 'gnulinux-advanced-3b1c2f0e-59d4-4a3e-9d0c-6f1e2a7b8c90' {{
	menuentry 'Debian GNU/Linux, with Linux {kernel}' --class debian --class gnu-linux --class gnu --class os $menuentry_id_option 'gnulinux-{kernel}-advanced-3b1c2f0e-59d4-4a3e-9d0c-6f1e2a7b8c90' {{
		load_video
		insmod ext2
		linux	/boot/vmlinuz-{kernel} root=UUID=3b1c2f0e-59d4-4a3e-9d0c-6f1e2a7b8c90 ro single
		initrd	/boot/initrd.img-{kernel}
	}}
}}

### END /etc/grub.d/10_linux ###

### BEGIN /etc/grub.d/41_custom ###
if [ -f  ${{config_directory}}/custom.cfg ]; then
  source ${{config_directory}}/custom.cfg
elif [ -z "${{config_directory}}" -a -f  $prefix/custom.cfg ]; then
  source $prefix/custom.cfg
fi
### END /etc/grub.d/41_custom ###
"#
    )
}

/// A block as `grub-editenv create` then `grub-set-default` leave it: the signature, the
/// warning, `saved_entry`, `#` up to 1024 bytes.
fn grubenv_with(vars: &str) -> Vec<u8> {
    let mut b = format!(
        "# GRUB Environment Block\n# WARNING: Do not edit this file by tools other than grub-editenv!!!\n{vars}"
    )
    .into_bytes();
    b.resize(1024, b'#');
    b
}

/// The GRUB profile of the RTX 3090 host: the drop-in, initramfs-tools.
const GRUB_TOML: &str = r#"[host]
cpu = "intel"
bootloader = "grub"
initramfs = "initramfs-tools"

[vfio]
ids = ["10de:2204", "10de:1aef"]
blacklist = ["nouveau"]

[kernel]
iommu = "on"
iommu_pt = true

[grub]
file = "/etc/default/grub"
variable = "GRUB_CMDLINE_LINUX_DEFAULT"
mode = "drop-in"
"#;

/// The Debian GRUB fixture on the RTX 3090 host, with a generated grub.cfg, its environment
/// block, an fstab line for / and the profile.
fn grub_host(bound: bool, fstab: &str) -> tempfile::TempDir {
    let root = host_with(bound, false, "debian-identical-gpus");
    let p = root.path();
    std::fs::write(
        p.join("boot/grub/grub.cfg"),
        grub_cfg("0", "6.1.0-27-amd64"),
    )
    .unwrap();
    std::fs::write(p.join(GRUBENV), grubenv_with("saved_entry=0\n")).unwrap();
    std::fs::write(p.join("etc/fstab"), fstab).unwrap();
    std::fs::create_dir_all(p.join("etc/vfio-gen")).unwrap();
    std::fs::write(p.join(GRUB_PROFILE), GRUB_TOML).unwrap();
    root
}

const PLAIN_FSTAB: &str = "# <file system> <mount point>   <type>  <options>       <dump>  <pass>\nUUID=3b1c2f0e-59d4-4a3e-9d0c-6f1e2a7b8c90 /               ext4    errors=remount-ro 0       1\n";

/// The profile inside the root, as a path on this machine.
fn gp(root: &Path) -> String {
    root.join(GRUB_PROFILE).display().to_string()
}

fn grub_trial(root: &Path) -> Output {
    vg(
        root,
        &[
            "apply",
            "-p",
            &gp(root),
            "--trial",
            "--yes",
            "--hooks",
            "none",
            "--format",
            "json",
        ],
    )
    .status(0)
    .run()
}

/// What `grub-mkconfig` prints for the script: the script run by sh.
fn script_output(root: &Path) -> String {
    let o = Command::new("sh")
        .arg(root.join(SCRIPT))
        .output()
        .expect("sh runs");
    assert!(o.status.success(), "{o:?}");
    String::from_utf8(o.stdout).unwrap()
}

/// What the GRUB hook (update-grub) does with the script installed: grub.cfg as before with
/// the script's output after 41_custom (as grub-mkconfig runs /etc/grub.d in name order), or
/// without it once the script is gone.
fn update_grub(root: &Path) {
    let mut cfg = grub_cfg("0", "6.1.0-27-amd64");
    if root.join(SCRIPT).exists() {
        cfg.push_str(&format!(
            "\n### BEGIN /etc/grub.d/42_vfio-gen-trial ###\n{}### END /etc/grub.d/42_vfio-gen-trial ###\n",
            script_output(root)
        ));
    }
    std::fs::write(root.join("boot/grub/grub.cfg"), cfg).unwrap();
}

/// `apply --trial` (prepared: grub.cfg has no trial entry yet), the GRUB hook, `trial arm`.
fn grub_trial_armed(root: &Path) {
    grub_trial(root);
    assert_eq!(trial_json(root)["phase"], "prepared");
    update_grub(root);
    vg(root, &["trial", "arm"])
        .status(0)
        .stdout_has("armed: the next boot uses vfio-gen-trial once")
        .run();
}

fn env_var(root: &Path, name: &str) -> Option<String> {
    let b = std::fs::read(root.join(GRUBENV)).unwrap();
    String::from_utf8_lossy(&b)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")).map(str::to_string))
}

/// GRUB at the trial boot: 00_header's `set next_entry=` and `save_env next_entry` leave an
/// empty value in place of the trial's.
fn grub_consumes_next_entry(root: &Path) {
    let b = std::fs::read(root.join(GRUBENV)).unwrap();
    let text = String::from_utf8(b).unwrap();
    let new = text.replacen("next_entry=vfio-gen-trial\n", "next_entry=\n", 1);
    let mut new = new.into_bytes();
    new.resize(1024, b'#');
    std::fs::write(root.join(GRUBENV), new).unwrap();
}

fn grub_boot_the_trial(root: &Path) {
    let out = script_output(root);
    let line = out
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("linux"))
        .unwrap();
    let args: Vec<&str> = line.split_whitespace().skip(1).collect();
    std::fs::write(
        root.join("proc/cmdline"),
        format!(
            "BOOT_IMAGE=/boot/vmlinuz-6.1.0-27-amd64 {}\n",
            args.join(" ")
        ),
    )
    .unwrap();
    grub_consumes_next_entry(root);
}

/// The configuration without the environment block, which GRUB itself rewrites at boot.
fn grub_config(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut c = config(root);
    c.remove(GRUBENV);
    c
}

#[test]
fn grub_trial_writes_the_script_and_arms_next_entry_in_the_block() {
    let root = grub_host(true, PLAIN_FSTAB);
    let before = config(root.path());
    let o = grub_trial(root.path());
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let hooks: Vec<&str> = doc["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert!(hooks.contains(&"grub"), "update-grub runs: {doc}");
    assert!(hooks.contains(&"initramfs-tools"), "{doc}");
    assert!(
        doc["notes"].to_string().contains("/etc/fstab:2: UUID=3b1c2f0e-59d4-4a3e-9d0c-6f1e2a7b8c90 (ext4); whether that device is a plain partition"),
        "the fstab's UUID is said to be unchecked: {doc}"
    );
    let after = config(root.path());
    let changed: Vec<&String> = after
        .keys()
        .filter(|p| before.get(*p) != after.get(*p))
        .collect();
    let mut want = vec![
        SCRIPT,
        "etc/initramfs-tools/modules",
        "etc/modprobe.d/vfio.conf",
    ];
    want.extend(UNITS);
    assert_eq!(
        changed, want,
        "grub.cfg, grubenv and /etc/default/grub stay as they were; modprobe.d gets the softdeps (nvidia, the default)"
    );
    // Not armed yet: grub.cfg has no trial entry until the GRUB hook runs, and GRUB would
    // clear a next_entry it cannot find on a boot that is not the trial.
    assert_eq!(trial_json(root.path())["phase"], "prepared");
    vg(root.path(), &["trial", "arm"])
        .status(2)
        .stderr_has("/boot/grub/grub.cfg has no menu entry --id vfio-gen-trial yet: run the GRUB hook (update-grub")
        .stderr_lines(1)
        .run();
    assert_eq!(config(root.path()), after, "a refused arm writes nothing");
    update_grub(root.path());
    vg(root.path(), &["trial", "arm"]).status(0).run();
    let after = config(root.path());
    // The block: 1024 bytes, saved_entry kept, next_entry naming the trial's id.
    let env = &after[GRUBENV];
    assert_eq!(env.len(), 1024);
    assert_eq!(env_var(root.path(), "saved_entry").as_deref(), Some("0"));
    assert_eq!(
        env_var(root.path(), "next_entry").as_deref(),
        Some("vfio-gen-trial")
    );
    assert!(env.starts_with(b"# GRUB Environment Block\n# WARNING"));
    // The script: executable, sh parses it, and what it prints is one menu entry.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root.path().join(SCRIPT))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o755,
        "grub-mkconfig runs only executable scripts"
    );
    if have("sh") {
        let o = Command::new("sh")
            .arg("-n")
            .arg(root.path().join(SCRIPT))
            .output()
            .unwrap();
        assert!(o.status.success(), "sh -n: {o:?}");
        let out = script_output(root.path());
        assert!(
            out.starts_with(
                "menuentry 'Debian GNU/Linux (vfio-gen trial)' --id vfio-gen-trial {\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("\tlinux\t/boot/vmlinuz-6.1.0-27-amd64 root=UUID=3b1c2f0e-59d4-4a3e-9d0c-6f1e2a7b8c90 ro  quiet intel_iommu=on iommu=pt vfio-pci.ids=10de:2204,10de:1aef module_blacklist=nouveau panic=10 systemd.watchdog_sec=120 vfio_gen.trial=1\n"),
            "{out}"
        );
        assert!(
            out.contains("\tinitrd\t/boot/initrd.img-6.1.0-27-amd64\n"),
            "{out}"
        );
        assert_eq!(out.matches("menuentry").count(), 1, "{out}");
        if have("grub-script-check") {
            // The grub.cfg update-grub would write: the old one with the script's output after.
            let scratch = tempfile::tempdir().unwrap();
            let cfg = scratch.path().join("grub.cfg");
            let old = std::fs::read_to_string(root.path().join("boot/grub/grub.cfg")).unwrap();
            std::fs::write(
                &cfg,
                format!("{old}### BEGIN /etc/grub.d/42_vfio-gen-trial ###\n{out}### END ###\n"),
            )
            .unwrap();
            let o = Command::new("grub-script-check")
                .arg(&cfg)
                .output()
                .unwrap();
            assert!(o.status.success(), "grub-script-check: {o:?}");
            // It does reject what GRUB cannot parse.
            std::fs::write(&cfg, out.replace("}\n", "")).unwrap();
            let o = Command::new("grub-script-check")
                .arg(&cfg)
                .output()
                .unwrap();
            assert!(!o.status.success(), "an unclosed entry is rejected");
        }
    }
    let t = trial_json(root.path());
    assert_eq!(t["phase"], "armed", "{t}");
    assert_eq!(t["bootloader"], "grub");
    assert_eq!(t["entry"], "/etc/grub.d/42_vfio-gen-trial");
    assert_eq!(t["entry_id"], "vfio-gen-trial");
    assert_eq!(
        t["default_entry"],
        "/boot/grub/grub.cfg: menuentry 'Debian GNU/Linux'"
    );
    assert_eq!(t["armed_by"], "grubenv /boot/grub/grubenv");
    vg(root.path(), &["plan", "-p", &gp(root.path())])
        .stdout_has("a trial is in progress")
        .run();
    // Abort before the trial boot: next_entry goes, every file is as before, byte for byte
    // (grub.cfg once its hook, update-grub, has run).
    let o = vg(
        root.path(),
        &["trial", "abort", "--hooks", "none", "--format", "json"],
    )
    .status(0)
    .run();
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["restored"].as_array().unwrap().len(), 11, "{doc}");
    assert!(doc["hooks"].to_string().contains("update-grub"), "{doc}");
    update_grub(root.path());
    assert_eq!(config(root.path()), before);
}

#[test]
fn a_grub_trial_that_never_reported_fails_and_abort_restores_the_files() {
    let root = grub_host(true, PLAIN_FSTAB);
    let before = grub_config(root.path());
    grub_trial_armed(root.path());
    // The boot that armed it: next_entry still names the trial.
    vg(root.path(), &["trial", "report"]).status(0).run();
    assert_eq!(trial_json(root.path())["phase"], "armed");
    // The trial boot panicked after GRUB cleared next_entry; the default entry booted.
    grub_consumes_next_entry(root.path());
    report_says_no_report(root.path());
    vg(root.path(), &["trial", "abort", "--hooks", "none"])
        .status(0)
        .run();
    update_grub(root.path());
    assert_eq!(grub_config(root.path()), before);
    // The block as GRUB left it: next_entry empty (not the trial's), the rest kept.
    assert_eq!(env_var(root.path(), "next_entry").as_deref(), Some(""));
    assert_eq!(env_var(root.path(), "saved_entry").as_deref(), Some("0"));
    assert_eq!(
        std::fs::read(root.path().join(GRUBENV)).unwrap().len(),
        1024
    );
}

#[test]
fn a_passed_grub_trial_commits_as_an_ordinary_apply() {
    let root = grub_host(true, PLAIN_FSTAB);
    let plain = grub_host(true, PLAIN_FSTAB);
    vg(
        plain.path(),
        &["apply", "-p", &gp(plain.path()), "--yes", "--hooks", "none"],
    )
    .status(0)
    .run();
    grub_trial_armed(root.path());
    grub_boot_the_trial(root.path());
    vg(root.path(), &["trial", "report"])
        .status(0)
        .stdout_has("passed")
        .run();
    assert_eq!(trial_json(root.path())["phase"], "passed");
    vg(
        root.path(),
        &["trial", "commit", "--yes", "--hooks", "none"],
    )
    .status(0)
    .stdout_has("committed as apply")
    .run();
    update_grub(root.path());
    assert_eq!(
        grub_config(root.path()),
        grub_config(plain.path()),
        "commit = apply"
    );
    assert!(!root.path().join(SCRIPT).exists());
    assert!(root.path().join("etc/default/grub.d/vfio-gen.cfg").exists());
}

#[test]
fn grub_trial_arm_sets_next_entry_again_and_status_says_when_it_is_stale() {
    let root = grub_host(true, PLAIN_FSTAB);
    grub_trial_armed(root.path());
    let armed = std::fs::read(root.path().join(GRUBENV)).unwrap();
    // Someone cleared it (`grub-editenv ... unset next_entry`): arm sets it again.
    std::fs::write(root.path().join(GRUBENV), grubenv_with("saved_entry=0\n")).unwrap();
    vg(root.path(), &["trial", "arm"])
        .status(0)
        .stdout_has("armed: the next boot uses vfio-gen-trial once")
        .run();
    assert_eq!(std::fs::read(root.path().join(GRUBENV)).unwrap(), armed);
    // A kernel update and update-grub: the default entry is not the one the trial copied.
    std::fs::write(
        root.path().join("boot/grub/grub.cfg"),
        grub_cfg("0", "6.1.0-28-amd64"),
    )
    .unwrap();
    vg(root.path(), &["trial", "status"])
        .stdout_has("stale: /boot/grub/grub.cfg's default entry 'Debian GNU/Linux' changed")
        .run();
    let o = vg(
        root.path(),
        &["check", "-p", &gp(root.path()), "--format", "json"],
    )
    .run();
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == "trial" && i["message"].as_str().unwrap().contains("stale:")),
        "{doc}"
    );
}

#[test]
fn grub_trial_refusals_name_the_reason_and_write_nothing() {
    for (fstab, cfg, says) in [
        (
            "/dev/mapper/vg0-root / ext4 defaults 0 1\n",
            grub_cfg("0", "6.1.0-27-amd64"),
            "/etc/fstab:1 mounts it from /dev/mapper/vg0-root, a device-mapper device",
        ),
        (
            "UUID=1 / ext4 defaults 0 1\n/dev/md0 /boot ext4 defaults 0 2\n",
            grub_cfg("0", "6.1.0-27-amd64"),
            "/etc/fstab:2 mounts it from /dev/md0, a software RAID",
        ),
        (
            "UUID=1 / btrfs subvol=@ 0 0\n",
            grub_cfg("0", "6.1.0-27-amd64"),
            "/etc/fstab:1 mounts it as btrfs",
        ),
        (
            PLAIN_FSTAB,
            grub_cfg("1>0", "6.1.0-27-amd64"),
            "an entry inside a submenu",
        ),
        (
            PLAIN_FSTAB,
            grub_cfg("1", "6.1.0-27-amd64"),
            "is the submenu 'Advanced options for Debian GNU/Linux'",
        ),
    ] {
        let root = grub_host(true, fstab);
        std::fs::write(root.path().join("boot/grub/grub.cfg"), cfg).unwrap();
        let before = tree(root.path());
        vg(
            root.path(),
            &["apply", "-p", &gp(root.path()), "--trial", "--yes"],
        )
        .status(2)
        .stderr_has(says)
        .stderr_lines(1)
        .run();
        assert_eq!(tree(root.path()), before, "{says}");
    }
}

fn trial_apply(root: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "apply", "-p", PROFILE, "--trial", "--yes", "--hooks", "none",
    ];
    args.extend(extra);
    vg(root, &args).status(0).run()
}

/// `trial report` run by the fallback or the deadline unit (docs/trial.md, "Coming back").
fn report_event(root: &Path, event: &str, status: i32) -> Vg {
    vg(root, &["trial", "report"])
        .env("VFIO_GEN_TRIAL_EVENT", event)
        .status(status)
}

#[test]
fn emergency_or_rescue_mode_on_the_trial_boot_records_why_and_reboots() {
    for (event, mode) in [
        ("emergency", "emergency mode: "),
        ("rescue", "rescue mode: "),
    ] {
        let root = host(true, true);
        trial_apply(root.path(), &[]);
        // On another boot (no marker) the units never run (ConditionKernelCommandLine=);
        // run by hand, the report decides nothing.
        report_event(root.path(), event, 0).run();
        assert_eq!(trial_json(root.path())["phase"], "armed");
        boot_the_trial(root.path());
        std::fs::write(root.path().join("proc/uptime"), "143.52 280.17\n").unwrap();
        report_event(root.path(), event, 0)
            .stdout_has("Rebooting into /boot/loader/entries/arch.conf.")
            .run();
        let t = trial_json(root.path());
        assert_eq!(t["phase"], "failed", "{t}");
        // Under --root there is no journal to name the unit.
        assert_eq!(
            t["reason"],
            format!(
                "{mode}no failed unit found in this boot's journal; rebooted 143 s after the trial boot started"
            ),
            "{t}"
        );
        vg(root.path(), &["trial", "status"])
            .stdout_has(&format!("failed: {mode}"))
            .run();
        // The default entry's boot keeps the record.
        std::fs::write(root.path().join("proc/cmdline"), "root=/dev/sda1 rw\n").unwrap();
        vg(root.path(), &["trial", "report"]).status(0).run();
        assert_eq!(trial_json(root.path())["reason"], t["reason"]);
    }
}

#[test]
fn the_deadline_reboots_an_undecided_trial_boot_and_spares_a_decided_one() {
    let root = host(true, true);
    trial_apply(root.path(), &[]);
    boot_the_trial(root.path());
    // exit 1: the deadline unit's FailureAction=reboot-force reboots.
    report_event(root.path(), "deadline", 1)
        .stdout_has("failed: no outcome within 10 min")
        .run();
    let t = trial_json(root.path());
    assert!(
        t["reason"]
            .as_str()
            .unwrap()
            .starts_with("no outcome within 10 min: the trial boot recorded none by its deadline"),
        "{t}"
    );
    // A trial boot that passed keeps running past its deadline.
    let root = host(true, true);
    trial_apply(root.path(), &[]);
    boot_the_trial(root.path());
    vg(root.path(), &["trial", "report"]).status(0).run();
    assert_eq!(trial_json(root.path())["phase"], "passed");
    report_event(root.path(), "deadline", 0)
        .stdout_has("passed")
        .run();
    assert_eq!(trial_json(root.path())["phase"], "passed");
    // A health check that started and never finished is undecided too.
    let root = host(true, true);
    trial_apply(root.path(), &[]);
    boot_the_trial(root.path());
    let state = root.path().join("var/lib/vfio-gen/trial.json");
    let text = std::fs::read_to_string(&state).unwrap();
    std::fs::write(
        &state,
        text.replace("\"phase\": \"armed\"", "\"phase\": \"running\""),
    )
    .unwrap();
    report_event(root.path(), "deadline", 1).run();
    assert_eq!(trial_json(root.path())["phase"], "failed");
    vg(root.path(), &["trial", "report"])
        .env("VFIO_GEN_TRIAL_EVENT", "later")
        .status(2)
        .stderr_has("VFIO_GEN_TRIAL_EVENT=later: not emergency, rescue or deadline")
        .run();
}

#[test]
fn deadline_sets_the_timer_and_shows_in_status_and_bad_values_write_nothing() {
    let root = host(true, true);
    let before = config(root.path());
    for (value, says) in [
        (
            "30s",
            "--deadline 30s: give whole seconds from 1 min to 24 h",
        ),
        (
            "2days",
            "--deadline 2days: give whole seconds from 1 min to 24 h",
        ),
        ("soon", "invalid value 'soon' for '--deadline"),
    ] {
        vg(
            root.path(),
            &[
                "apply",
                "-p",
                PROFILE,
                "--trial",
                "--yes",
                "--hooks",
                "none",
                "--deadline",
                value,
            ],
        )
        .status(2)
        .stderr_has(says)
        .run();
        assert_eq!(config(root.path()), before, "{value}: nothing written");
        assert!(!root.path().join("var/lib/vfio-gen").exists(), "{value}");
    }
    vg(
        root.path(),
        &["apply", "-p", PROFILE, "--yes", "--deadline", "4min"],
    )
    .status(2)
    .stderr_has("--trial")
    .run();
    trial_apply(root.path(), &["--deadline", "4min"]);
    let timer = std::fs::read_to_string(
        root.path()
            .join("etc/systemd/system/vfio-gen-trial-deadline.timer"),
    )
    .unwrap();
    assert!(timer.contains("\nOnBootSec=240s\n"), "{timer}");
    assert_eq!(trial_json(root.path())["deadline_secs"], 240);
    vg(root.path(), &["trial", "status"])
        .stdout_has("  deadline: 4 min after the trial boot starts")
        .run();
    boot_the_trial(root.path());
    report_event(root.path(), "deadline", 1)
        .stdout_has("failed: no outcome within 4 min")
        .run();
}

#[test]
fn the_trial_carries_its_own_copy_of_a_profile_from_outside_the_root() {
    let root = host(true, true);
    let outside = tempfile::tempdir().unwrap();
    let profile = outside.path().join("image-profile.toml");
    std::fs::copy(repo().join(PROFILE), &profile).unwrap();
    vg(
        root.path(),
        &[
            "apply",
            "-p",
            profile.to_str().unwrap(),
            "--trial",
            "--yes",
            "--hooks",
            "none",
        ],
    )
    .status(0)
    .run();
    let copy = root.path().join("var/lib/vfio-gen/trial-profile.toml");
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(&profile).unwrap()
    );
    let t = trial_json(root.path());
    assert_eq!(t["profile"], "/var/lib/vfio-gen/trial-profile.toml");
    assert_eq!(t["profile_in_root"], true);
    assert_eq!(
        t["profile_source"],
        std::fs::canonicalize(&profile)
            .unwrap()
            .display()
            .to_string()
    );
    // The image is booted elsewhere: the host path is gone; the trial boot reads its copy.
    drop(outside);
    boot_the_trial(root.path());
    vg(root.path(), &["trial", "report"])
        .status(0)
        .stdout_has("passed")
        .run();
    vg(root.path(), &["trial", "status"])
        .stdout_has("  profile: /var/lib/vfio-gen/trial-profile.toml (a copy of ")
        .run();
    vg(
        root.path(),
        &["trial", "commit", "--yes", "--hooks", "none"],
    )
    .status(0)
    .run();
    assert!(!copy.exists(), "commit removes the copy with the record");
    // A profile that is not a file cannot be copied: refused before anything is written.
    let root = host(true, true);
    let before = config(root.path());
    vg(
        root.path(),
        &[
            "apply",
            "-p",
            "/dev/stdin",
            "--trial",
            "--yes",
            "--hooks",
            "none",
        ],
    )
    .stdin(std::fs::read(repo().join(PROFILE)).unwrap())
    .status(2)
    .stderr_has("/dev/stdin: not a regular file; --trial keeps a copy of the profile")
    .stderr_has("nothing was written")
    .run();
    assert_eq!(config(root.path()), before);
    assert!(!root.path().join("var/lib/vfio-gen").exists());
}

#[test]
fn the_trial_units_pass_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        return;
    }
    // systemd's own units, which the drop-ins extend, from this machine.
    let system = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|d| d.join("emergency.target").is_file())
        .expect("systemd-analyze without systemd's units");
    let root = host(true, true);
    trial_apply(root.path(), &[]);
    // A root for systemd-analyze: systemd's units, the trial's, and a vfio-gen in the units'
    // fixed search path (ExecStart=vfio-gen ...).
    let v = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(v.path().join("usr/lib/systemd")).unwrap();
    std::fs::create_dir_all(v.path().join("usr/bin")).unwrap();
    copy_tree(system, &v.path().join("usr/lib/systemd/system"));
    copy_tree(
        &root.path().join("etc/systemd/system"),
        &v.path().join("etc/systemd/system"),
    );
    let stub = v.path().join("usr/bin/vfio-gen");
    std::fs::write(&stub, "#!/bin/sh\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", v.path().display()))
        .args([
            "vfio-gen-trial.service",
            "vfio-gen-trial-fallback@emergency.service",
            "vfio-gen-trial-fallback@rescue.service",
            "vfio-gen-trial-deadline.timer",
            "vfio-gen-trial-deadline.service",
            "emergency.target",
            "rescue.target",
            "sysinit.target",
            "multi-user.target",
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "systemd-analyze verify: {o:?}"
    );
    // systemd finds the drop-ins where the trial put them.
    for (target, wants) in [
        (
            "emergency.target",
            "vfio-gen-trial-fallback@emergency.service",
        ),
        ("rescue.target", "vfio-gen-trial-fallback@rescue.service"),
        ("sysinit.target", "vfio-gen-trial-deadline.timer"),
        ("multi-user.target", "vfio-gen-trial.service"),
    ] {
        let o = Command::new("systemd-analyze")
            .arg(format!("--root={}", v.path().display()))
            .args(["cat-config", &format!("systemd/system/{target}")])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && text.contains(&format!("\nWants={wants}\n")),
            "{target}: {o:?}"
        );
    }
}
