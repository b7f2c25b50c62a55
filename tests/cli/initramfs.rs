//! `check` reads the initramfs images the boot loader boots (docs/initramfs-images.md): images
//! built here in Rust (tests/support/cpio.rs), on fake hosts from tests/fixtures/hosts/.

use super::*;

#[path = "../support/cpio.rs"]
mod cpio;

use std::time::{Duration, SystemTime};

const RELEASE: &str = "6.1.0-50-amd64";
const QEMU_IDS: &str = "options vfio-pci ids=1234:1111,8086:293e\n";

fn host(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    fake_host::build(
        &repo().join(format!("tests/fixtures/hosts/{name}.toml")),
        tmp.path(),
    )
    .unwrap();
    tmp
}

fn profile(root: &Path, bootloader: &str, initramfs: &str, ids: &[&str]) -> PathBuf {
    let p = root.join("p.toml");
    let ids: Vec<String> = ids.iter().map(|i| format!("\"{i}\"")).collect();
    std::fs::write(
        &p,
        format!(
            "[host]\ncpu = \"intel\"\nbootloader = \"{bootloader}\"\ninitramfs = \"{initramfs}\"\n[vfio]\nids = [{}]\n",
            ids.join(", ")
        ),
    )
    .unwrap();
    p
}

fn write(root: &Path, path: &str, bytes: &[u8]) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn age(root: &Path, path: &str, secs: u64) {
    let f = std::fs::File::options()
        .write(true)
        .open(root.join(path.trim_start_matches('/')))
        .unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(secs))
        .unwrap();
}

/// The `initramfs` items of `check --format json`: (status, path, message, remedy), and the exit code.
fn images(root: &Path, p: &Path) -> (i32, Vec<(String, String, String, String)>) {
    let o = run(&[
        "check",
        "--format",
        "json",
        "-p",
        p.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)));
    let items = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["id"] == "initramfs")
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap_or("").to_string();
            (s("status"), s("path"), s("message"), s("remedy"))
        })
        .collect();
    (o.status.code().unwrap(), items)
}

/// The QEMU guest of the lab: GRUB, initramfs-tools, its profile's two ids.
#[test]
fn a_debian_image_with_microcode_and_zstd_carries_the_ids() {
    let h = host("qemu-bookworm");
    let p = profile(
        h.path(),
        "grub",
        "initramfs-tools",
        &["1234:1111", "8086:293e"],
    );
    let image = format!("/boot/initrd.img-{RELEASE}");

    // No image and no kernel under /boot: nothing to say.
    let (_, items) = images(h.path(), &p);
    assert!(items.is_empty(), "{items:?}");
    // A kernel without its image is worth a warning.
    write(h.path(), &format!("/boot/vmlinuz-{RELEASE}"), b"kernel");
    let (_, items) = images(h.path(), &p);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].0, "warn");
    assert!(items[0].2.contains("no initramfs image found"), "{items:?}");

    // What update-initramfs writes: early microcode, then the zstd main archive.
    let good = cpio::concat(
        &[
            cpio::microcode(),
            cpio::zstd(&cpio::main_archive(RELEASE, Some(QEMU_IDS))),
        ],
        0,
    );
    write(h.path(), &image, &good);
    let (code, items) = images(h.path(), &p);
    assert_eq!(code, 0, "{items:?}");
    assert_eq!(items.len(), 1, "{items:?}");
    let (status, path, message, _) = &items[0];
    assert_eq!((status.as_str(), path.as_str()), ("pass", image.as_str()));
    assert!(
        message.contains("cpio (early microcode) + zstd")
            && message.contains("/kernel/drivers/vfio/pci/vfio-pci.ko")
            && message.contains("/etc/modprobe.d/vfio.conf:1 with ids 1234:1111,8086:293e"),
        "{message}"
    );
    let text = stdout(&run(&[
        "check",
        "-p",
        p.to_str().unwrap(),
        "--root",
        h.path().to_str().unwrap(),
    ]));
    assert!(
        text.contains(&format!("[pass] {image} (")),
        "the text output names the image: {text}"
    );

    // Older than the profile's modprobe.d file: stale, with the hook that regenerates it.
    age(h.path(), &image, 3600);
    let (code, items) = images(h.path(), &p);
    assert_eq!(code, 0);
    assert_eq!(items[0].0, "warn");
    assert!(
        items[0]
            .2
            .contains("stale: older than /etc/modprobe.d/vfio.conf"),
        "{items:?}"
    );
    assert_eq!(items[0].3, "regenerate it (`update-initramfs -u -k all`)");
}

#[test]
fn an_image_without_the_module_or_the_ids_fails_with_the_remedy() {
    let h = host("qemu-bookworm");
    let p = profile(
        h.path(),
        "grub",
        "initramfs-tools",
        &["1234:1111", "8086:293e"],
    );
    let image = format!("/boot/initrd.img-{RELEASE}");

    // Generated before vfio-gen's files: no vfio.conf inside.
    write(
        h.path(),
        &image,
        &cpio::gzip(&cpio::main_archive(RELEASE, None)),
    );
    let (code, items) = images(h.path(), &p);
    assert_eq!(code, 1);
    let (status, _, message, remedy) = &items[0];
    assert_eq!(status, "fail");
    assert!(
        message
            .contains("holds no modprobe.d file with `options vfio-pci ids=1234:1111,8086:293e`"),
        "{message}"
    );
    assert!(remedy.contains("`update-initramfs -u -k all`"), "{remedy}");

    // An older ids line: it names what is missing.
    write(
        h.path(),
        &image,
        &cpio::xz(&cpio::main_archive(
            RELEASE,
            Some("options vfio-pci ids=1234:1111\n"),
        )),
    );
    let (_, items) = images(h.path(), &p);
    assert!(
        items[0]
            .2
            .contains("its /etc/modprobe.d/vfio.conf:1 sets ids=1234:1111 and lacks 8086:293e"),
        "{items:?}"
    );

    // No vfio-pci.ko at all.
    let bare = cpio::newc(&[
        cpio::dir("etc"),
        cpio::file("etc/modprobe.d/vfio.conf", QEMU_IDS.as_bytes()),
    ]);
    write(h.path(), &image, &cpio::lz4_legacy(&bare));
    let (_, items) = images(h.path(), &p);
    assert!(items[0].2.contains("holds no vfio-pci.ko"), "{items:?}");

    // Not an image the kernel can unpack.
    write(h.path(), &image, b"\x1f\x8bgarbage, not gzip");
    let (code, items) = images(h.path(), &p);
    assert_eq!(code, 1);
    assert!(
        items[0].2.contains("the kernel cannot unpack it")
            && items[0]
                .2
                .contains(&format!("{image}: the gzip part at offset 0")),
        "{items:?}"
    );
}

/// The ids may come from the command line GRUB passes with the image instead; when vfio-pci is
/// built into the image's kernel, they must.
#[test]
fn ids_on_the_grub_command_line_and_a_built_in_vfio_pci() {
    let h = host("qemu-bookworm");
    let p = profile(
        h.path(),
        "grub",
        "initramfs-tools",
        &["1234:1111", "8086:293e"],
    );
    let image = format!("/boot/initrd.img-{RELEASE}");
    let builtin = cpio::newc(&[
        cpio::file(
            &format!("usr/lib/modules/{RELEASE}/modules.builtin"),
            b"kernel/drivers/vfio/vfio.ko\nkernel/drivers/vfio/pci/vfio-pci.ko\n",
        ),
        cpio::file("etc/modprobe.d/vfio.conf", QEMU_IDS.as_bytes()),
    ]);
    write(h.path(), &image, &cpio::gzip(&builtin));
    let (code, items) = images(h.path(), &p);
    assert_eq!(code, 1);
    assert!(
        items[0].2.contains("vfio-pci is built into its kernel")
            && items[0].2.contains("modprobe.d options do not reach it"),
        "{items:?}"
    );

    let cfg = format!(
        "menuentry 'Debian GNU/Linux' {{\n\tlinux\t/boot/vmlinuz-{RELEASE} root=/dev/vda1 ro quiet vfio-pci.ids=1234:1111,8086:293e\n\tinitrd\t/boot/initrd.img-{RELEASE}\n}}\n"
    );
    write(h.path(), "/boot/grub/grub.cfg", cfg.as_bytes());
    let (code, items) = images(h.path(), &p);
    assert_eq!(code, 0, "{items:?}");
    assert_eq!(items[0].0, "pass");
    assert!(
        items[0]
            .2
            .contains("vfio-pci.ids= on the command line (/boot/grub/grub.cfg:2)"),
        "{items:?}"
    );
}

/// systemd-boot: the entry's initrd lines, under the ESP it lives on, are one image.
#[test]
fn a_loader_entry_with_microcode_and_main_initrds() {
    let h = host("intel-3090");
    let p = profile(
        h.path(),
        "systemd-boot",
        "mkinitcpio",
        &["10de:2204", "10de:1aef"],
    );
    let (code, items) = images(h.path(), &p);
    assert_eq!(code, 1);
    assert_eq!(
        items.len(),
        2,
        "arch.conf and arch-fallback.conf: {items:?}"
    );
    assert!(
        items.iter().all(|(s, _, m, _)| s == "warn"
            && m.contains("names /boot/intel-ucode.img and /boot/initramfs-linux")
            && m.contains(": neither is there")),
        "{items:?}"
    );

    let conf = "options vfio-pci ids=10de:2204,10de:1aef\n";
    write(h.path(), "/boot/intel-ucode.img", &cpio::microcode());
    write(
        h.path(),
        "/boot/initramfs-linux.img",
        &cpio::zstd(&cpio::main_archive("6.9.7-arch1-1", Some(conf))),
    );
    write(
        h.path(),
        "/boot/initramfs-linux-fallback.img",
        &cpio::gzip(&cpio::main_archive("6.9.7-arch1-1", None)),
    );
    let (_, items) = images(h.path(), &p);
    let arch = items
        .iter()
        .find(|i| i.1 == "/boot/initramfs-linux.img")
        .unwrap();
    assert_eq!(arch.0, "pass", "{items:?}");
    assert!(
        arch.2.starts_with(
            "/boot/intel-ucode.img + /boot/initramfs-linux.img (booted by /boot/loader/entries/arch.conf)"
        ) && arch.2.contains("cpio (early microcode) + zstd"),
        "{arch:?}"
    );
    let fallback = items
        .iter()
        .find(|i| i.1 == "/boot/initramfs-linux-fallback.img")
        .unwrap();
    assert_eq!(fallback.0, "fail", "{items:?}");
    assert!(fallback.3.contains("`mkinitcpio -P`"), "{fallback:?}");
}

/// A unified kernel image's initrd is its `.initrd` section (docs/uki.md): `check` reads it
/// like an initramfs file, and `vfio-pci.ids=` on its `.cmdline` counts as the ids.
#[test]
fn the_initrd_inside_each_uki_is_read() {
    let tmp = copy_root("arch-uki-mkinitcpio");
    std::fs::create_dir_all(tmp.path().join("sys/bus/pci/devices")).unwrap();
    let ids = "options vfio-pci ids=10de:2206,10de:1aef\n";
    let linux = "/efi/EFI/Linux";
    let with = |initrd: &[u8], line: &[u8]| {
        super::uki::uki(&[
            (".osrel", b"ID=arch\n"),
            (".cmdline", line),
            (".uname", b"6.12.9-arch1-1"),
            (".initrd", initrd),
            (".linux", b"kernel"),
        ])
    };
    let line = b"root=UUID=5b0d rw intel_iommu=on iommu=pt\0";
    write(
        tmp.path(),
        &format!("{linux}/arch-linux.efi"),
        &with(
            &cpio::zstd(&cpio::main_archive("6.12.9-arch1-1", Some(ids))),
            line,
        ),
    );
    // The fallback image lacks the modprobe.d file, but its .cmdline carries the ids.
    write(
        tmp.path(),
        &format!("{linux}/arch-linux-fallback.efi"),
        &with(
            &cpio::gzip(&cpio::main_archive("6.12.9-arch1-1", None)),
            b"root=UUID=5b0d rw intel_iommu=on iommu=pt vfio-pci.ids=10de:2206,10de:1aef\0",
        ),
    );
    let p = repo().join("profiles/arch-uki-mkinitcpio.toml");
    let (_, items) = images(tmp.path(), &p);
    let of = |name: &str| {
        items
            .iter()
            .find(|i| i.1 == format!("{linux}/{name}"))
            .unwrap_or_else(|| panic!("{name}: {items:?}"))
            .clone()
    };
    let (status, _, message, _) = of("arch-linux.efi");
    assert_eq!(status, "pass", "{message}");
    assert!(
        message.contains("vfio-pci.ko") && message.contains("ids 10de:2206,10de:1aef"),
        "{message}"
    );
    let (status, _, message, _) = of("arch-linux-fallback.efi");
    assert_eq!(status, "pass", "{message}");
    assert!(message.contains("(.cmdline)"), "{message}");

    // An image whose .initrd lacks both fails, naming the image.
    write(
        tmp.path(),
        &format!("{linux}/arch-linux-fallback.efi"),
        &with(
            &cpio::gzip(&cpio::main_archive("6.12.9-arch1-1", None)),
            line,
        ),
    );
    let (code, items) = images(tmp.path(), &p);
    let bad = items
        .iter()
        .find(|i| i.1.ends_with("arch-linux-fallback.efi"))
        .unwrap();
    assert_eq!((code, bad.0.as_str()), (1, "fail"), "{items:?}");
}
