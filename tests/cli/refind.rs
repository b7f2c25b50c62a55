//! rEFInd (docs/refind.md) through the binary: detection's refusal, hostile refind_linux.conf
//! and refind.conf files refused with one error naming the file and line and nothing written,
//! and the way back by rollback. The golden files and the apply/revert round trip of the
//! `ubuntu-refind` fixture are in `golden`.

use super::*;

const PROFILE: &str = "profiles/ubuntu-refind.toml";

/// Plans on a copy of the fixture with one file replaced; returns the output, and asserts that
/// the root is unchanged.
fn plan_with(path: &str, bytes: &[u8]) -> Output {
    let tmp = copy_root("ubuntu-refind");
    let file = tmp.path().join(path);
    std::fs::write(&file, bytes).unwrap();
    let before = tree(tmp.path());
    let o = run(&[
        "apply",
        "-p",
        PROFILE,
        "--root",
        tmp.path().to_str().unwrap(),
        "--yes",
        "--no-hooks",
    ]);
    assert_eq!(tree(tmp.path()), before, "a refused apply writes nothing");
    o
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
fn hostile_refind_files_are_refused_with_their_line() {
    let linux = "boot/refind_linux.conf";
    refused(
        &plan_with(
            linux,
            b"\"Boot with standard options\" \"root=UUID=3f1c ro quiet\n",
        ),
        &[
            "/boot/refind_linux.conf:1:",
            "never closed",
            "close the quote",
        ],
    );
    refused(
        &plan_with(
            linux,
            b"\"Boot\" \"ro quiet\"\r\n\"Boot with standard options\"\r\n",
        ),
        &[
            "/boot/refind_linux.conf:2:",
            "one field",
            "comment the line out",
        ],
    );
    refused(
        &plan_with(linux, b"\"Boot\" root=UUID=3f1c ro\n"),
        &["/boot/refind_linux.conf:1:", "5 fields", "one quoted field"],
    );
    refused(
        &plan_with(
            "boot/efi/EFI/refind/refind.conf",
            b"menuentry \"Ubuntu\" {\n    loader /boot/vmlinuz\n    options root=UUID=3f1c ro\n}\n",
        ),
        &[
            "/boot/efi/EFI/refind/refind.conf:3:",
            "`options` has 4 fields",
            "one quoted field",
        ],
    );
}

#[test]
fn crlf_and_a_stanza_without_options_are_edited_and_warned_about() {
    let tmp = copy_root("ubuntu-refind");
    let root = tmp.path().to_str().unwrap();
    std::fs::write(
        tmp.path().join("boot/refind_linux.conf"),
        b"\"Boot with standard options\"  \"ro root=UUID=3f1c\"\r\n\"Boot to single-user mode\"  \"ro root=UUID=3f1c single\"\r\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("boot/efi/EFI/refind/refind.conf"),
        b"timeout 5\nmenuentry \"Ubuntu UKI\" {\n    loader /EFI/Linux/ubuntu.efi\n}\n",
    )
    .unwrap();
    let o = run(&[
        "apply",
        "-p",
        PROFILE,
        "--root",
        root,
        "--yes",
        "--no-hooks",
    ]);
    status(&o, 0);
    assert!(
        stdout(&o).contains("/boot/efi/EFI/refind/refind.conf:2: the Linux stanza \"Ubuntu UKI\" has no options line")
            || stderr(&o).contains("the Linux stanza \"Ubuntu UKI\" has no options line"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(tmp.path().join("boot/refind_linux.conf")).unwrap(),
        b"\"Boot with standard options\"  \"ro root=UUID=3f1c intel_iommu=on iommu=pt\"\r\n\"Boot to single-user mode\"  \"ro root=UUID=3f1c single intel_iommu=on iommu=pt\"\r\n"
    );
    assert_eq!(
        std::fs::read(tmp.path().join("boot/efi/EFI/refind/refind.conf")).unwrap(),
        b"timeout 5\nmenuentry \"Ubuntu UKI\" {\n    loader /EFI/Linux/ubuntu.efi\n}\n",
        "the stanza without options is left alone"
    );
}

#[test]
fn a_root_without_refind_is_refused_with_what_to_do() {
    let tmp = copy_root("ubuntu-grub-dropin");
    let o = plan_on(PROFILE, tmp.path().to_str().unwrap());
    refused(
        &o,
        &[
            "host.bootloader = \"refind\"",
            "no refind.conf",
            "vfio-gen detect",
        ],
    );

    // rEFInd installed, but nothing holds a Linux command line.
    let tmp = copy_root("ubuntu-refind");
    std::fs::remove_file(tmp.path().join("boot/refind_linux.conf")).unwrap();
    std::fs::write(
        tmp.path().join("boot/efi/EFI/refind/refind.conf"),
        b"timeout 20\nscan_all_linux_kernels true\n",
    )
    .unwrap();
    let o = plan_on(PROFILE, tmp.path().to_str().unwrap());
    refused(&o, &["/boot/refind_linux.conf", "mkrlconf"]);
}

#[test]
fn rollback_puts_the_refind_files_back() {
    let tmp = copy_root("ubuntu-refind");
    let root = tmp.path().to_str().unwrap();
    status(&apply_over(PROFILE, tmp.path(), false), 0);
    assert_ne!(
        std::fs::read(tmp.path().join("boot/refind_linux.conf")).unwrap(),
        std::fs::read(fixture_root("ubuntu-refind").join("boot/refind_linux.conf")).unwrap()
    );
    status(&run(&["rollback", "--root", root, "--no-hooks"]), 0);
    let after: BTreeMap<String, Vec<u8>> = tree(tmp.path())
        .into_iter()
        .filter(|(k, _)| !k.starts_with("var/lib/vfio-gen"))
        .collect();
    assert!(
        after == tree(&fixture_root("ubuntu-refind")),
        "not back byte for byte"
    );
}

/// Limine (docs/limine.md), on the `cachyos-limine` fixture.
mod limine {
    use super::*;

    const PROFILE: &str = "profiles/cachyos-limine.toml";

    #[test]
    fn an_enrolled_config_hash_is_warned_about() {
        let tmp = copy_root("cachyos-limine");
        let root = tmp.path().to_str().unwrap();
        let bin = tmp.path().join("boot/EFI/limine/limine_x64.efi");
        std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
        let mut bytes = b"MZ\0\0limine.conf\0++CONFIG_B2SUM_SIGNATURE++".to_vec();
        bytes.extend_from_slice(&[b'0'; 128]);
        std::fs::write(&bin, &bytes).unwrap();
        let o = plan_on(PROFILE, root);
        status(&o, 0);
        assert!(!stderr(&o).contains("enrolled") && !stdout(&o).contains("enrolled"));
        let at = bytes.len() - 100;
        bytes[at] = b'c';
        std::fs::write(&bin, &bytes).unwrap();
        let o = plan_on(PROFILE, root);
        status(&o, 0);
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert!(
            all.contains("/boot/EFI/limine/limine_x64.efi has the BLAKE2B of limine.conf enrolled")
                && all.contains("CHECKSUM MISMATCH FOR CONFIG FILE")
                && all.contains("limine enroll-config"),
            "{all}"
        );
    }

    #[test]
    fn a_root_without_limine_is_refused() {
        let tmp = copy_root("ubuntu-grub-dropin");
        let o = plan_on(PROFILE, tmp.path().to_str().unwrap());
        refused(
            &o,
            &[
                "host.bootloader = \"limine\"",
                "no limine.conf",
                "vfio-gen detect",
            ],
        );
        let tmp = copy_root("cachyos-limine");
        std::fs::write(
            tmp.path().join("boot/limine.conf"),
            "timeout: 5\n/CachyOS\n    protocol: linux\n    kernel_cmdline: root=UUID=9e2c \"quiet\n",
        )
        .unwrap();
        let before = tree(tmp.path());
        let o = run(&[
            "apply",
            "-p",
            PROFILE,
            "--root",
            tmp.path().to_str().unwrap(),
            "--yes",
            "--no-hooks",
        ]);
        refused(&o, &["/boot/limine.conf:4:", "never closed"]);
        assert_eq!(tree(tmp.path()), before);
    }
}
