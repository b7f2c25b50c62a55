//! Reset capability through the binary (docs/handover.md section 7): `iommu`, `detect` and
//! `check` show each passthrough function's `reset_method` and flag the AMD reset bug with
//! vendor-reset's remedy, on the amd-shared-group fake host (an RX 580, 1002:67df, Polaris 10).

use super::*;

fn host() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    fake_host::build(
        &repo().join("tests/fixtures/hosts/amd-shared-group.toml"),
        tmp.path(),
    )
    .unwrap();
    // As sysfs shows it on 6.1: the display function has a bus reset, the audio none.
    std::fs::write(
        tmp.path()
            .join("sys/bus/pci/devices/0000:07:00.0/reset_method"),
        "bus\n",
    )
    .unwrap();
    tmp
}

fn at(root: &Path, args: &[&str]) -> Output {
    let mut v = args.to_vec();
    v.extend(["--root", root.to_str().unwrap()]);
    run(&v)
}

#[test]
fn iommu_shows_reset_methods_and_the_reset_bug_with_its_remedy() {
    let h = host();
    let o = at(h.path(), &["iommu"]);
    status(&o, 0);
    let out = stdout(&o);
    let gpu = out
        .split("\nIOMMU Group")
        .find(|b| b.contains("0000:07:00.0"))
        .unwrap();
    assert!(gpu.contains("\n  reset: bus\n"), "{out}");
    assert!(
        gpu.contains(
            "\n  AMD Polaris 10 has the AMD reset bug (gnif/vendor-reset lists 1002:67df)"
        ),
        "{out}"
    );
    assert!(
        gpu.contains("Remedy: install vendor-reset")
            && gpu.contains("ATTR{device}==\"0x67DF\"")
            && gpu.contains("echo device_specific > /sys$env{DEVPATH}/reset_method"),
        "{out}"
    );
    let audio = out
        .split("\nIOMMU Group")
        .find(|b| b.contains("0000:07:00.1"))
        .unwrap();
    assert!(
        audio.contains("no reset method (no reset_method file on a 5.15+ kernel)"),
        "{out}"
    );
    // Devices of no GPU card get no reset line.
    let usb = out
        .lines()
        .skip_while(|l| !l.contains("0000:08:00.3"))
        .nth(1)
        .unwrap();
    assert!(usb.starts_with("IOMMU Group"), "{out}");

    let o = at(h.path(), &["iommu", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let r = &doc["reset"]["0000:07:00.0"];
    assert_eq!(r["methods"], serde_json::json!(["bus"]));
    assert_eq!(r["reset_bug"], "Polaris 10");
    assert!(r["remedy"].as_str().unwrap().contains("vendor-reset"));
    assert_eq!(
        doc["reset"]["0000:07:00.1"]["methods"],
        serde_json::Value::Null
    );
}

#[test]
fn device_specific_first_means_vendor_reset_is_in_place() {
    let h = host();
    std::fs::write(
        h.path()
            .join("sys/bus/pci/devices/0000:07:00.0/reset_method"),
        "device_specific bus\n",
    )
    .unwrap();
    let out = stdout(&at(h.path(), &["iommu"]));
    assert!(
        out.contains("  reset: device_specific, bus\n  AMD Polaris 10 (AMD reset bug): reset_method starts with device_specific, as vendor-reset needs\n"),
        "{out}"
    );
    assert!(!out.contains("Remedy"), "{out}");
}

#[test]
fn detect_and_check_say_it_for_the_passthrough_functions() {
    let h = host();
    let o = at(h.path(), &["detect", "--gpu", "07:00.0"]);
    status(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("# Reset between guests (reset_method): 0000:07:00.0 reset: bus;"),
        "{out}"
    );
    assert!(
        out.contains("# AMD Polaris 10 has the AMD reset bug"),
        "{out}"
    );
    let p = h.path().join("etc/vfio-gen/profile.toml");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, &out).unwrap();
    let o = at(h.path(), &["check", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let resets: Vec<&serde_json::Value> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["id"] == "reset")
        .collect();
    let gpu = resets
        .iter()
        .find(|i| i["bdf"] == "0000:07:00.0")
        .unwrap_or_else(|| panic!("{resets:#?}"));
    assert_eq!(gpu["status"], "warn");
    assert!(
        gpu["message"].as_str().unwrap().starts_with(
            "0000:07:00.0 [1002:67df]: reset: bus; AMD Polaris 10 has the AMD reset bug"
        ),
        "{gpu}"
    );
    assert!(
        gpu["remedy"].as_str().unwrap().contains("load it early"),
        "{gpu}"
    );
    let audio = resets.iter().find(|i| i["bdf"] == "0000:07:00.1").unwrap();
    assert_eq!(audio["status"], "pass", "{audio}");
}
