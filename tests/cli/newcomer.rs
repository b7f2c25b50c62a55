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
