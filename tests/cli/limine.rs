//! Limine as people install it (docs/limine.md): an Omarchy-shaped root (limine-entry-tool
//! writing UKI entries, limine-snapper-sync's snapshot entries, drop-ins) and Limine 7's
//! `limine.cfg` with macros, through plan, apply and revert byte for byte; the shapes vfio-gen
//! refuses, with their file and line and nothing written. The golden files of both roots are
//! checked by `golden`.

use super::*;

const OMARCHY: &str = "profiles/omarchy-limine-uki.toml";
const LIMINE7: &str = "profiles/limine7-cfg.toml";
const DROP_IN: &str = "etc/limine-entry-tool.d/zz-vfio-gen.conf";

/// The root's files without vfio-gen's history.
fn files_of(root: &Path) -> BTreeMap<String, Vec<u8>> {
    tree(root)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("var/lib/vfio-gen"))
        .collect()
}

/// Applies, checks that a second plan has nothing to do, reverts, and checks that the root is
/// back byte for byte; returns the applied files.
fn round_trip(profile: &str, root: &Path) -> BTreeMap<String, Vec<u8>> {
    let before = files_of(root);
    status(&apply_over(profile, root, false), 0);
    let applied = files_of(root);
    let o = run(&[
        "plan",
        "-p",
        profile,
        "--root",
        root.to_str().unwrap(),
        "--exit-code",
    ]);
    status(&o, 0);
    assert!(stdout(&o).contains("No changes"), "{}", stdout(&o));
    status(&apply_over(profile, root, true), 0);
    assert!(files_of(root) == before, "not back byte for byte");
    applied
}

fn text(files: &BTreeMap<String, Vec<u8>>, path: &str) -> String {
    String::from_utf8(files[path].clone()).unwrap()
}

#[track_caller]
fn refused(o: &Output, has: &[&str]) {
    status(o, 2);
    let err = stderr(o);
    assert_eq!(err.matches("vfio-gen: error:").count(), 1, "{err}");
    for h in has {
        assert!(err.contains(h), "{h:?} not in {err}");
    }
}

#[test]
fn omarchy_uki_entry_and_drop_in_round_trip() {
    let tmp = copy_root("omarchy-limine-uki");
    let o = plan_on(OMARCHY, tmp.path().to_str().unwrap());
    status(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains(
            "limine-update    (because /etc/limine-entry-tool.d/zz-vfio-gen.conf changed)"
        ),
        "{out}"
    );
    assert!(
        out.contains("2 snapshot entries (limine-snapper-sync's) keep their command line"),
        "{out}"
    );
    assert!(out.contains("under Secure Boot it ignores them"), "{out}");
    let applied = round_trip(OMARCHY, tmp.path());
    let conf = text(&applied, "boot/limine.conf");
    assert!(
        conf.contains(" resume_offset=533760 intel_iommu=on iommu=pt\n"),
        "{conf}"
    );
    assert_eq!(
        conf.matches("intel_iommu=on").count(),
        1,
        "snapshots and Windows untouched: {conf}"
    );
    assert_eq!(
        text(&applied, DROP_IN).lines().last(),
        Some("KERNEL_CMDLINE[default]+=\" intel_iommu=on iommu=pt\"")
    );
    assert_eq!(
        applied["etc/default/limine"],
        tree(&fixture_root("omarchy-limine-uki"))["etc/default/limine"]
    );
}

/// `/etc/default/limine` is read last: a `KERNEL_CMDLINE[default]=` there would reset a
/// drop-in, so vfio-gen's line goes at its end instead (Omarchy's older installer writes that
/// shape).
#[test]
fn a_resetting_default_line_keeps_the_options_in_etc_default_limine() {
    let tmp = copy_root("omarchy-limine-uki");
    let defaults = tmp.path().join("etc/default/limine");
    let old = std::fs::read_to_string(&defaults).unwrap();
    std::fs::write(&defaults, old.replace("[default]+=", "[default]=")).unwrap();
    let o = plan_on(OMARCHY, tmp.path().to_str().unwrap());
    status(&o, 0);
    assert!(
        stdout(&o).contains("/etc/default/limine:5: KERNEL_CMDLINE[default] is set with `=`"),
        "{}",
        stdout(&o)
    );
    let applied = round_trip(OMARCHY, tmp.path());
    assert!(!applied.contains_key(DROP_IN));
    assert!(
        text(&applied, "etc/default/limine")
            .ends_with("\nKERNEL_CMDLINE[default]+=\" intel_iommu=on iommu=pt\"\n"),
        "{}",
        text(&applied, "etc/default/limine")
    );
}

/// A value another layer gives differently is named with its file and line.
#[test]
fn a_conflicting_value_in_a_drop_in_is_named() {
    let tmp = copy_root("omarchy-limine-uki");
    std::fs::write(
        tmp.path().join("etc/limine-entry-tool.d/resume.conf"),
        "KERNEL_CMDLINE[default]+=\" iommu=soft\"\n",
    )
    .unwrap();
    let o = plan_on(OMARCHY, tmp.path().to_str().unwrap());
    status(&o, 0);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        all.contains("/etc/limine-entry-tool.d/resume.conf:1: KERNEL_CMDLINE[default] gives iommu=soft, the profile wants iommu=pt"),
        "{all}"
    );
}

#[test]
fn limine7_macro_definition_and_mixed_line_round_trip() {
    let tmp = copy_root("limine7-cfg");
    let o = plan_on(LIMINE7, tmp.path().to_str().unwrap());
    status(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("+${cmdline}=root=UUID=4b6e2d8a-91c3-4f57-a0d2-6e8c1b3f5a79 rw rootfstype=ext4 loglevel=3 quiet intel_iommu=on iommu=pt\n"), "{out}");
    assert!(
        out.contains("+    KERNEL_CMDLINE=${ROOT} nowatchdog intel_iommu=on iommu=pt\n"),
        "{out}"
    );
    assert!(out.contains("/boot/limine.cfg:10: the Linux entries take their command line from ${cmdline} (lines 15, 22)"), "{out}");
    assert!(
        !out.contains("limine-update"),
        "no entry tool, no hook: {out}"
    );
    let applied = round_trip(LIMINE7, tmp.path());
    assert_eq!(
        text(&applied, "boot/limine.cfg")
            .matches("CMDLINE=${cmdline}\n")
            .count(),
        2
    );
}

#[test]
fn limine7_shapes_vfio_gen_cannot_edit_safely_are_refused() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "${cmdline}",
            "${kernel_opts}",
            &[
                "/boot/limine.cfg:15:",
                "${kernel_opts}",
                "not defined",
                "Limine 7",
            ],
        ),
        (
            "    KERNEL_PATH=boot:///vmlinuz-linux-lts\n",
            "    KERNEL_PATH=boot:///vmlinuz-linux-lts\n    COMMENT=${cmdline}\n",
            &[
                "/boot/limine.cfg:29:",
                "${cmdline} is used here too",
                "line 10",
            ],
        ),
        (
            "${ROOT}=root=UUID=4b6e2d8a-91c3-4f57-a0d2-6e8c1b3f5a79 rw rootfstype=ext4\n",
            "${ROOT}=root=UUID=4b6e2d8a-91c3-4f57-a0d2-6e8c1b3f5a79 rw rootfstype=ext4 iommu=soft\n",
            &["/boot/limine.cfg:29:", "${ROOT}", "iommu=soft", "line 9"],
        ),
    ];
    for (from, to, has) in cases {
        let tmp = copy_root("limine7-cfg");
        let cfg = tmp.path().join("boot/limine.cfg");
        let old = std::fs::read_to_string(&cfg).unwrap();
        let new = if *from == "${cmdline}" {
            old.replacen("CMDLINE=${cmdline}", &format!("CMDLINE={to}"), 1)
        } else {
            old.replace(from, to)
        };
        assert_ne!(old, new);
        std::fs::write(&cfg, new).unwrap();
        let before = tree(tmp.path());
        let o = apply_over(LIMINE7, tmp.path(), false);
        refused(&o, has);
        assert_eq!(tree(tmp.path()), before, "a refused apply writes nothing");
    }
}
