//! The plan on hosts held in memory ([`MemFiles`]): what each boot component asks for.

use super::*;
use crate::history::{Entry, Kind, Manifest, State};
use crate::root::MemFiles;

const PROFILE: &str = r#"
[host]
cpu = "intel"
bootloader = "systemd-boot"
initramfs = "mkinitcpio"

[vfio]
ids = ["10de:2204", "10de:1aef"]

[kernel]
iommu_pt = true
"#;

const ENTRY: &str = "title   Arch Linux\nlinux   /vmlinuz-linux\ninitrd  /initramfs-linux.img\noptions root=PARTLABEL=\"PRIMARY\" rw quiet\n";

/// An Arch host with one loader entry, one kernel and a stock mkinitcpio.conf.
fn arch(kernel: &str) -> MemFiles {
    MemFiles::new()
        .with("/etc/os-release", "NAME=\"Arch Linux\"\nID=arch\n")
        .with("/boot/loader/entries/arch.conf", ENTRY)
        .with(
            "/etc/mkinitcpio.conf",
            "MODULES=()\nHOOKS=(base udev autodetect modconf block filesystems fsck)\n",
        )
        .with(
            &format!("/lib/modules/{kernel}/modules.builtin"),
            "kernel/fs/ext4/ext4.ko\n",
        )
}

fn profile(text: &str) -> Profile {
    crate::profile::parse(text, "profile.toml").unwrap()
}

fn plan(profile_text: &str, files: &MemFiles, revert: bool) -> Plan {
    build_with(&profile(profile_text), files, revert, &Shell::none()).unwrap()
}

fn new_text<'a>(plan: &'a Plan, path: &str) -> &'a str {
    let c = plan.changes.iter().find(|c| c.path == path).unwrap();
    std::str::from_utf8(c.new.as_deref().unwrap()).unwrap()
}

/// A host tree after the plan was applied: every pending change in place.
fn applied(files: &MemFiles, plan: &Plan) -> MemFiles {
    let mut after = files.clone();
    for c in plan.pending() {
        match &c.new {
            Some(b) => after.put(&c.path, b),
            None => after.remove(&c.path),
        }
    }
    after
}

#[test]
fn systemd_boot_with_mkinitcpio_writes_four_files_and_one_hook() {
    let files = arch("6.9.7-arch1-1");
    let p = plan(PROFILE, &files, false);
    let pending: Vec<(&str, Action)> = p.pending().map(|c| (c.path.as_str(), c.action())).collect();
    assert_eq!(
        pending,
        [
            ("/boot/loader/entries/arch.conf", Action::Modify),
            ("/etc/mkinitcpio.conf.d/vfio.conf", Action::Create),
            // NVIDIA ids: nouveau is kept off the card by default.
            ("/etc/modprobe.d/blacklist-nouveau.conf", Action::Create),
            ("/etc/modprobe.d/vfio.conf", Action::Create),
        ]
    );
    assert!(
        new_text(&p, "/boot/loader/entries/arch.conf")
            .contains("options root=PARTLABEL=\"PRIMARY\" rw quiet intel_iommu=on iommu=pt\n")
    );
    assert!(!new_text(&p, "/etc/mkinitcpio.conf.d/vfio.conf").contains("vfio_virqfd"));
    let hooks: Vec<&str> = p.hooks.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(hooks, ["mkinitcpio"]);
    assert_eq!(p.hooks[0].command, ["mkinitcpio", "-P"]);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn applied_is_in_sync_and_revert_takes_it_all_out() {
    let files = arch("6.9.7-arch1-1");
    let after = applied(&files, &plan(PROFILE, &files, false));
    let again = plan(PROFILE, &after, false);
    assert!(again.in_sync() && again.hooks.is_empty());
    // Without a recorded apply the entry's options count as the user's and stay; the owned
    // files carry vfio-gen's header and go.
    let revert = plan(PROFILE, &after, true);
    let gone: Vec<&str> = revert
        .pending()
        .filter(|c| c.new.is_none())
        .map(|c| c.path.as_str())
        .collect();
    assert_eq!(
        gone,
        [
            "/etc/mkinitcpio.conf.d/vfio.conf",
            "/etc/modprobe.d/blacklist-nouveau.conf",
            "/etc/modprobe.d/vfio.conf"
        ]
    );
    assert!(
        revert
            .notes
            .iter()
            .any(|n| n.starts_with("/boot/loader/entries/arch.conf: no apply recorded"))
    );
}

#[test]
fn revert_with_history_puts_the_entry_back_byte_for_byte() {
    let files = arch("6.9.7-arch1-1");
    let p = plan(PROFILE, &files, false);
    let mut after = applied(&files, &p);
    // The record `apply` leaves: the entry's old bytes kept as its backup.
    let entry = "/boot/loader/entries/arch.conf";
    let m = Manifest {
        version: 1,
        id: "20261201T000000Z".into(),
        seq: 1,
        time: "2026-12-01T00:00:00Z".into(),
        kind: Kind::Apply,
        undoes: None,
        state: State::Complete,
        entries: vec![Entry {
            path: entry.into(),
            action: Action::Modify,
            old_sha256: Some(sha256(ENTRY.as_bytes())),
            new_sha256: Some(sha256(new_text(&p, entry).as_bytes())),
            mode: Some(0o644),
            uid: Some(0),
            gid: Some(0),
            rewritten_by: Vec::new(),
        }],
    };
    after.put(&Manifest::path(&m.id), serde_json::to_vec(&m).unwrap());
    after.put(&Manifest::backup_path(&m.id, entry), ENTRY);
    let revert = plan(PROFILE, &after, true);
    assert_eq!(new_text(&revert, entry), ENTRY);
}

#[test]
fn an_old_kernel_brings_vfio_virqfd_and_says_why() {
    let files = arch("6.1.0-13-amd64");
    let p = plan(PROFILE, &files, false);
    assert!(new_text(&p, "/etc/mkinitcpio.conf.d/vfio.conf").contains("vfio_virqfd"));
    assert!(p.notes.iter().any(|n| n.contains("older than 6.2")));
}

#[test]
fn each_generator_plans_its_own_file_and_hook() {
    let base = arch("6.9.7-arch1-1")
        .with(
            "/etc/initramfs-tools/modules",
            "# modules\nvfio_pci ids=1002:67df\n",
        )
        .with("/etc/booster.yaml", "universal: false\n");
    for (generator, path, action, hook) in [
        (
            "dracut",
            "/etc/dracut.conf.d/vfio.conf",
            Action::Create,
            "dracut",
        ),
        (
            "initramfs-tools",
            "/etc/initramfs-tools/modules",
            Action::Modify,
            "update-initramfs",
        ),
        (
            "booster",
            "/etc/booster.yaml",
            Action::Modify,
            "/usr/lib/booster/regenerate_images",
        ),
    ] {
        let text = PROFILE.replace("\"mkinitcpio\"", &format!("\"{generator}\""));
        let p = plan(&text, &base, false);
        let c = p.changes.iter().find(|c| c.path == path).unwrap();
        assert_eq!(c.action(), action, "{generator}");
        assert_eq!(p.hooks[0].name, generator);
        assert_eq!(p.hooks[0].command[0], hook);
        assert!(
            !p.changes
                .iter()
                .any(|c| c.path.starts_with("/etc/mkinitcpio.conf.d")),
            "{generator}"
        );
    }
    // initramfs-tools: the user's own vfio_pci line comes after vfio-gen's and is ignored.
    let text = PROFILE.replace("\"mkinitcpio\"", "\"initramfs-tools\"");
    let p = plan(&text, &base, false);
    assert!(
        p.warnings
            .iter()
            .any(|w| w.starts_with("/etc/initramfs-tools/modules:2: `vfio_pci ids=1002:67df`")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn a_mkinitcpio_drop_in_of_an_earlier_profile_goes_away() {
    let files = arch("6.9.7-arch1-1");
    let after = applied(&files, &plan(PROFILE, &files, false));
    let p = plan(
        &PROFILE.replace("\"mkinitcpio\"", "\"dracut\""),
        &after,
        false,
    );
    let c = p
        .changes
        .iter()
        .find(|c| c.path == "/etc/mkinitcpio.conf.d/vfio.conf")
        .unwrap();
    assert_eq!(c.action(), Action::Delete);
    assert!(p.notes.iter().any(|n| n.contains("for an earlier profile")));
}

/// `[vfio] mode = "on-demand"`: vfio-pci loads early but takes nothing at boot, so no ids, no
/// blacklist and no softdep; the VFIO modules stay in the image (SPEC section 8).
#[test]
fn on_demand_mode_puts_no_ids_blacklist_or_softdep_at_boot() {
    let files = arch("6.9.7-arch1-1");
    let text = PROFILE.replace("[vfio]\n", "[vfio]\nmode = \"on-demand\"\n");
    let p = plan(&text, &files, false);
    let vfio = new_text(&p, "/etc/modprobe.d/vfio.conf");
    assert!(
        !vfio.contains("ids=") && !vfio.contains("softdep"),
        "{vfio}"
    );
    assert!(!p.changes.iter().any(|c| c.path.contains("blacklist")));
    assert!(new_text(&p, "/etc/mkinitcpio.conf.d/vfio.conf").contains("vfio_pci"));
    // The boot mode of the same profile does put them there.
    let boot = plan(PROFILE, &files, false);
    assert!(new_text(&boot, "/etc/modprobe.d/vfio.conf").contains("ids=10de:2204,10de:1aef"));
}

/// `[libvirt] domains`: the qemu hook is an owned file (0755 at install), with a note that
/// libvirt's daemon must reload to see it; --revert takes it out.
#[test]
fn libvirt_domains_install_the_qemu_hook_and_revert_removes_it() {
    let files = arch("6.9.7-arch1-1");
    let text = format!("{PROFILE}\n[libvirt]\ndomains = [\"win11\"]\n");
    let p = plan(&text, &files, false);
    let hook = crate::targets::libvirt_hook::PATH;
    let c = p.changes.iter().find(|c| c.path == hook).unwrap();
    assert_eq!(c.action(), Action::Create);
    assert!(new_text(&p, hook).contains("exec \"${VFIO_GEN:-/usr/bin/vfio-gen}\" handover"));
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("systemctl reload virtqemud"))
    );
    assert_eq!(crate::targets::address_bind::mode(hook), Some(0o755));
    let after = applied(&files, &p);
    let again = plan(&text, &after, false);
    assert!(again.in_sync(), "idempotent");
    assert!(!again.notes.iter().any(|n| n.contains("reload virtqemud")));
    let back = plan(&text, &after, true);
    let c = back.changes.iter().find(|c| c.path == hook).unwrap();
    assert_eq!(c.action(), Action::Delete);
    // Without domains, no hook.
    assert!(
        !plan(PROFILE, &files, false)
            .changes
            .iter()
            .any(|c| c.path == hook)
    );
}
