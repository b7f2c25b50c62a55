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
