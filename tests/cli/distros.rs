//! The distributions' own boot paths (docs/distributions.md): Fedora's BLS entries, Pop!_OS's
//! kernelstub, GRUB-booted Proxmox, NixOS. The golden and revert tests of `main.rs` cover
//! their profiles in profiles/; these check what is particular to each path.

use super::*;

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// The whole tree under `dir` except vfio-gen's own state.
fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    tree(dir)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("var/lib/vfio-gen"))
        .collect()
}

/// A refused plan: exit 2, one message with `needle`, and the root unchanged.
#[track_caller]
fn refused(profile: &str, root: &str, needle: &str) {
    let tmp = copy_root(root);
    let r = tmp.path().to_str().unwrap();
    for args in [
        vec!["plan", "-p", profile, "--root", r],
        vec!["apply", "-p", profile, "--root", r, "--yes", "--no-hooks"],
    ] {
        let o = run(&args);
        status(&o, 2);
        let err = stderr(&o);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one message: {err}");
    }
    assert!(
        files_of(tmp.path()) == tree(&fixture_root(root)),
        "{root} changed"
    );
}

#[test]
fn a_boot_loader_the_root_does_not_use_is_refused_with_the_right_value() {
    refused(
        "profiles/arch-intel-systemd-boot.toml",
        "pop-kernelstub",
        "write bootloader = \"kernelstub\"",
    );
    refused(
        "profiles/proxmox-kernel-cmdline.toml",
        "proxmox-grub",
        "write bootloader = \"grub\"",
    );
    refused(
        "profiles/arch-intel-systemd-boot.toml",
        "fedora-bls",
        "write bootloader = \"grub-bls\"",
    );
    refused(
        "profiles/pop-kernelstub.toml",
        "amd-grub",
        "/etc/kernelstub/configuration does not exist",
    );
    refused("tests/fixtures/nixos.toml", "amd-grub", "not NixOS");
}

#[test]
fn nixos_refuses_every_plan_and_says_what_to_run() {
    for profile in ["tests/fixtures/nixos.toml", "profiles/amd-grub.toml"] {
        refused(profile, "nixos", "render --format nix");
    }
    // --revert too: nothing in NixOS's /etc is vfio-gen's to take out.
    let o = run(&[
        "plan",
        "-p",
        "profiles/amd-grub.toml",
        "--root",
        fixture_root("nixos").to_str().unwrap(),
        "--revert",
    ]);
    status(&o, 2);
}

fn nix_module() -> String {
    let o = run(&[
        "render",
        "--format",
        "nix",
        "-p",
        "tests/fixtures/nixos.toml",
        "--root",
        fixture_root("nixos").to_str().unwrap(),
    ]);
    status(&o, 0);
    stdout(&o)
}

/// The module is golden/nixos/etc/nixos/vfio-gen.nix, where the user saves it.
#[test]
fn the_nixos_module_matches_its_golden_file() {
    let got = nix_module();
    let path = repo().join("golden/nixos/etc/nixos/vfio-gen.nix");
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
    }
    assert_eq!(got, std::fs::read_to_string(&path).unwrap());
    // --format nix stands alone: with --out it is a usage error.
    let o = run(&[
        "render",
        "--format",
        "nix",
        "-p",
        "tests/fixtures/nixos.toml",
        "--out",
        "/nonexistent",
    ]);
    status(&o, 2);
}

/// Parsing and evaluating need no store: the dummy one keeps nix-instantiate from opening
/// /nix/var, which a user other than its owner (a package's check()) may not write.
const NIX_STORE: [&str; 2] = ["--store", "dummy://"];

/// `nix-instantiate --eval` of the module: Nix reads back exactly the values vfio-gen meant.
fn nix_eval(file: &Path, attr: &str) -> serde_json::Value {
    let expr = format!("(import {} {{ }}).{attr}", file.display());
    let o = Command::new("nix-instantiate")
        .args(NIX_STORE)
        .args(["--eval", "--strict", "--json", "-E", &expr])
        .output()
        .unwrap();
    assert!(o.status.success(), "{attr}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn nix_parses_and_evaluates_the_module() {
    if !have("nix-instantiate") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("vfio-gen.nix");
    std::fs::write(&file, nix_module()).unwrap();
    let o = Command::new("nix-instantiate")
        .args(NIX_STORE)
        .arg("--parse")
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        nix_eval(&file, "boot.kernelParams"),
        serde_json::json!([
            "iommu=pt",
            "video=efifb:off",
            "vfio-pci.ids=1002:73df,1002:ab28"
        ])
    );
    assert_eq!(
        nix_eval(&file, "boot.blacklistedKernelModules"),
        serde_json::json!(["amdgpu"])
    );
    assert_eq!(
        nix_eval(&file, "boot.extraModprobeConfig"),
        serde_json::json!(
            "options amdgpu modeset=0\noptions vfio-pci ids=1002:73df,1002:ab28 disable_vga=1\nsoftdep amdgpu pre: vfio-pci\n"
        )
    );
    // Strings a profile cannot hold today still come back as they went in.
    let hostile = [
        "a\"b",
        "c\\d",
        "${builtins.abort \"x\"}",
        "$e ${",
        "''x''",
        "tab\tnl\n",
    ];
    let quoted: Vec<String> = hostile
        .iter()
        .map(|s| vfio_gen::targets::nixos::string(s))
        .collect();
    let path = tmp.path().join("q.nix");
    std::fs::write(
        &path,
        format!("{{ ... }}: {{ v = [ {} ]; }}\n", quoted.join(" ")),
    )
    .unwrap();
    assert_eq!(nix_eval(&path, "v"), serde_json::json!(hostile));
}

#[test]
fn fedora_plan_shows_every_entry_before_and_after() {
    let o = run(&[
        "plan",
        "-p",
        "profiles/fedora-bls.toml",
        "--root",
        fixture_root("fedora-bls").to_str().unwrap(),
        "--format",
        "json",
    ]);
    status(&o, 0);
    let v = json(&o);
    let changes = v["changes"].as_array().unwrap();
    let entries: Vec<&serde_json::Value> = changes
        .iter()
        .filter(|c| {
            c["path"]
                .as_str()
                .unwrap()
                .starts_with("/boot/loader/entries/")
        })
        .collect();
    assert_eq!(entries.len(), 3, "{changes:?}");
    for e in &entries {
        assert_eq!(e["action"], "modify");
        assert_eq!(e["ownership"], "edited");
        let diff = e["diff"].as_str().unwrap();
        assert!(
            diff.lines().any(|l| l.starts_with("-options "))
                && diff.lines().any(|l| l.starts_with("+options ")
                    && l.ends_with(" intel_iommu=on iommu=pt rd.driver.pre=vfio-pci")
                    || l.contains("iommu=pt intel_iommu=on")),
            "{diff}"
        );
    }
    for path in ["/etc/default/grub", "/etc/kernel/cmdline"] {
        assert!(
            changes
                .iter()
                .any(|c| c["path"] == path && c["action"] == "modify"),
            "{path}"
        );
    }
    // The entries are the boot configuration itself: no grub2-mkconfig needed.
    assert!(
        v["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["name"] != "grub"),
        "{v}"
    );
}

#[test]
fn rhel8_kernelopts_entries_are_left_to_grub2_mkconfig() {
    let o = run(&[
        "plan",
        "-p",
        "profiles/rhel8-bls-kernelopts.toml",
        "--root",
        fixture_root("rhel8-bls-kernelopts").to_str().unwrap(),
        "--format",
        "json",
    ]);
    status(&o, 0);
    let v = json(&o);
    assert!(
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| !c["path"].as_str().unwrap().starts_with("/boot/loader"))
    );
    let hooks = v["hooks"].as_array().unwrap();
    assert!(
        hooks
            .iter()
            .any(|h| h["command"]
                == serde_json::json!(["grub2-mkconfig", "-o", "/boot/grub2/grub.cfg"])),
        "{hooks:?}"
    );
    assert!(v["notes"].to_string().contains("$kernelopts"));
}

#[test]
fn fedora_without_entries_is_refused() {
    let tmp = copy_root("fedora-bls");
    std::fs::remove_dir_all(tmp.path().join("boot/loader/entries")).unwrap();
    std::fs::create_dir(tmp.path().join("boot/loader/entries")).unwrap();
    let o = plan_on("profiles/fedora-bls.toml", tmp.path().to_str().unwrap());
    status(&o, 2);
    assert!(
        stderr(&o).contains("no BLS entries in /boot/loader/entries"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn kernelstub_hook_is_named_and_the_json_stays_json() {
    let tmp = copy_root("pop-kernelstub");
    let root = tmp.path().to_str().unwrap();
    let o = run(&[
        "apply",
        "-p",
        "profiles/pop-kernelstub.toml",
        "--root",
        root,
        "--yes",
    ]);
    status(&o, 0);
    // Under --root the hook is printed to run by hand, not run on this machine.
    assert!(
        stdout(&o).contains(" kernelstub") || stderr(&o).contains(" kernelstub"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    let text = std::fs::read(tmp.path().join("etc/kernelstub/configuration")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(
        v["user"]["kernel_options"],
        serde_json::json!([
            "quiet",
            "loglevel=0",
            "systemd.show_status=false",
            "splash",
            "iommu=pt",
            "intel_iommu=on"
        ])
    );
    assert_eq!(
        v["default"]["kernel_options"],
        serde_json::json!(["quiet", "splash"])
    );
    // rollback puts the file back byte for byte.
    status(
        &run(&[
            "rollback",
            "--root",
            root,
            "-p",
            "profiles/pop-kernelstub.toml",
        ]),
        0,
    );
    assert!(files_of(tmp.path()) == tree(&fixture_root("pop-kernelstub")));
}

#[test]
fn broken_kernelstub_configuration_is_refused_with_its_line() {
    let tmp = copy_root("pop-kernelstub");
    let conf = tmp.path().join("etc/kernelstub/configuration");
    let text = std::fs::read_to_string(&conf).unwrap().replace(
        "\"splash\",\n      \"iommu=soft\"",
        "\"splash\",\n      \"iommu=soft\",",
    );
    std::fs::write(&conf, &text).unwrap();
    let before = files_of(tmp.path());
    let root = tmp.path().to_str().unwrap();
    let o = run(&[
        "apply",
        "-p",
        "profiles/pop-kernelstub.toml",
        "--root",
        root,
        "--yes",
        "--no-hooks",
    ]);
    status(&o, 2);
    assert!(
        stderr(&o).contains("/etc/kernelstub/configuration:21:"),
        "{}",
        stderr(&o)
    );
    assert!(files_of(tmp.path()) == before);
}

#[test]
fn grub_booted_proxmox_runs_update_grub_and_esp_synced_grub_refreshes() {
    let tmp = copy_root("proxmox-grub");
    let root = tmp.path().to_str().unwrap();
    let hooks =
        |o: &Output| -> Vec<serde_json::Value> { json(o)["hooks"].as_array().unwrap().clone() };
    let o = run(&[
        "plan",
        "-p",
        "profiles/proxmox-grub.toml",
        "--root",
        root,
        "--format",
        "json",
    ]);
    status(&o, 0);
    assert!(
        hooks(&o)
            .iter()
            .any(|h| h["command"] == serde_json::json!(["update-grub"])),
        "{:?}",
        hooks(&o)
    );
    // With ESPs listed (GRUB on them), proxmox-boot-tool refresh runs update-grub on each.
    std::fs::create_dir_all(tmp.path().join("etc/kernel")).unwrap();
    std::fs::write(
        tmp.path().join("etc/kernel/proxmox-boot-uuids"),
        "5A1B-0C2D\n",
    )
    .unwrap();
    let o = run(&[
        "plan",
        "-p",
        "profiles/proxmox-grub.toml",
        "--root",
        root,
        "--format",
        "json",
    ]);
    status(&o, 0);
    let h = hooks(&o);
    assert!(
        h.iter()
            .any(|h| h["command"] == serde_json::json!(["proxmox-boot-tool", "refresh"])),
        "{h:?}"
    );
    assert!(
        !h.iter()
            .any(|h| h["command"] == serde_json::json!(["update-grub"])),
        "{h:?}"
    );
}

fn hook_commands(o: &Output) -> Vec<Vec<String>> {
    json(o)["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| serde_json::from_value(h["command"].clone()).unwrap())
        .collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn rpm_ostree_kargs_is_the_hook_and_revert_runs_the_inverse() {
    let tmp = copy_root("silverblue-rpm-ostree");
    let root = tmp.path().to_str().unwrap();
    let profile = "profiles/silverblue-rpm-ostree.toml";
    let o = run(&["plan", "-p", profile, "--root", root, "--format", "json"]);
    status(&o, 0);
    let delete = strs(&["rpm-ostree", "kargs", "--delete-if-present=iommu=soft"]);
    let kargs = strs(&[
        "rpm-ostree",
        "kargs",
        "--append-if-missing=intel_iommu=on",
        "--append-if-missing=iommu=pt",
        "--append-if-missing=vfio-pci.ids=10de:2504,10de:228e",
    ]);
    let etc = strs(&[
        "rpm-ostree",
        "initramfs-etc",
        "--track=/etc/modprobe.d/blacklist-nouveau.conf",
        "--track=/etc/modprobe.d/vfio.conf",
    ]);
    assert_eq!(hook_commands(&o), vec![delete, kargs.clone(), etc]);
    // No file under /boot is touched: ostree owns the entries.
    assert!(
        json(&o)["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| !c["path"].as_str().unwrap().starts_with("/boot"))
    );

    // Under --root apply prints the commands to run by hand and runs nothing here.
    let o = run(&["apply", "-p", profile, "--root", root, "--yes"]);
    status(&o, 0);
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(said.contains(&kargs.join(" ")), "{said}");

    let o = run(&[
        "plan", "-p", profile, "--root", root, "--revert", "--format", "json",
    ]);
    status(&o, 0);
    assert_eq!(
        hook_commands(&o),
        vec![
            strs(&[
                "rpm-ostree",
                "kargs",
                "--delete-if-present=intel_iommu=on",
                "--delete-if-present=iommu=pt",
                "--delete-if-present=vfio-pci.ids=10de:2504,10de:228e",
            ]),
            strs(&[
                "rpm-ostree",
                "initramfs-etc",
                "--untrack=/etc/modprobe.d/blacklist-nouveau.conf",
                "--untrack=/etc/modprobe.d/vfio.conf",
            ]),
        ]
    );

    // `rollback` restores the state file, so it names the same inverse, with or without a
    // profile: computed from the file's options before and after.
    for with_profile in [false, true] {
        let mut args = vec!["rollback", "--root", root, "--dry-run"];
        if with_profile {
            args.extend(["-p", profile]);
        }
        let o = run(&args);
        status(&o, 0);
        let out = stdout(&o);
        assert!(
            out.contains("rpm-ostree kargs --delete-if-present=intel_iommu=on --delete-if-present=iommu=pt --delete-if-present=vfio-pci.ids=10de:2504,10de:228e")
                && out.contains("rpm-ostree initramfs-etc --untrack=/etc/modprobe.d/blacklist-nouveau.conf --untrack=/etc/modprobe.d/vfio.conf")
                && !out.contains("feed no generator"),
            "{out}"
        );
    }
    let o = run(&["rollback", "--root", root, "--yes"]);
    status(&o, 0);
    assert!(
        stdout(&o).contains("chroot ") && stdout(&o).contains("--delete-if-present=iommu=pt"),
        "{}",
        stdout(&o)
    );
    assert!(!tmp.path().join("etc/vfio-gen/rpm-ostree-kargs").exists());
}

#[test]
fn rpm_ostree_roots_refuse_file_editing_paths() {
    refused(
        "profiles/fedora-bls.toml",
        "silverblue-rpm-ostree",
        "write bootloader = \"rpm-ostree\"",
    );
    refused(
        "profiles/silverblue-rpm-ostree.toml",
        "fedora-bls",
        "not an ostree system",
    );
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("p.toml");
    std::fs::write(
        &p,
        std::fs::read_to_string(repo().join("profiles/silverblue-rpm-ostree.toml"))
            .unwrap()
            .replace("initramfs = \"none\"", "initramfs = \"dracut\""),
    )
    .unwrap();
    refused(
        p.to_str().unwrap(),
        "silverblue-rpm-ostree",
        "write initramfs = \"none\"",
    );
}

#[test]
fn bootc_images_get_a_kargs_drop_in_from_render() {
    let tmp = tempfile::tempdir().unwrap();
    let o = render(
        "silverblue-rpm-ostree",
        &fixture_root("silverblue-rpm-ostree"),
        tmp.path(),
    );
    status(&o, 0);
    let text =
        std::fs::read_to_string(tmp.path().join("usr/lib/bootc/kargs.d/vfio-gen.toml")).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(
        v["kargs"],
        toml::Value::Array(vec![
            "intel_iommu=on".into(),
            "iommu=pt".into(),
            "vfio-pci.ids=10de:2504,10de:228e".into()
        ])
    );
}
