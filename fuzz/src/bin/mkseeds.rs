//! Writes the generated seeds: `cargo run --release --bin mkseeds` from fuzz/ (re)writes
//! corpus/initramfs/ (tiny newc archives, plain, gzip and concatenated) and
//! corpus/cmdline/ (a wanted-set byte and a command line). The other corpora are copies of
//! files in tests/fixtures/ and profiles/ (docs/fuzzing.md).
use std::io::Write;
use vfio_gen_fuzz::newc;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn main() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let dir = corpus.join("initramfs");
    std::fs::create_dir_all(&dir).unwrap();
    let microcode = newc(&[
        ("kernel", 0o040755, b""),
        ("kernel/x86", 0o040755, b""),
        ("kernel/x86/microcode", 0o040755, b""),
        ("kernel/x86/microcode/GenuineIntel.bin", 0o100644, b"\x01\x00\x00\x00ucode"),
    ]);
    let main = newc(&[
        ("etc", 0o040755, b""),
        ("etc/modprobe.d", 0o040755, b""),
        ("etc/modprobe.d/vfio.conf", 0o100644, b"options vfio-pci ids=10de:2204,10de:1aef\n"),
        ("usr/lib/modules/6.9.7-arch1-1/modules.dep", 0o100644, b"kernel/drivers/vfio/pci/vfio-pci.ko.zst:\n"),
        ("init", 0o120777, b"usr/lib/systemd/systemd"),
    ]);
    let mut early_late = microcode.clone();
    early_late.extend_from_slice(&[0u8; 512]);
    early_late.extend(gzip(&main));
    let seeds: &[(&str, Vec<u8>)] = &[
        ("plain.cpio", main.clone()),
        ("gzip.cpio.gz", gzip(&main)),
        ("microcode-then-gzip.img", early_late),
        ("empty-archive.cpio", newc(&[])),
    ];
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    let dir = corpus.join("cmdline");
    std::fs::create_dir_all(&dir).unwrap();
    let lines: &[(u8, &str)] = &[
        (0, r#"root=PARTLABEL="PRIMARY" rootfstype=xfs add_efi_memmap"#),
        (0, "quiet iommu=nopt intel-iommu=off splash -- single"),
        (0, "intel_iommu=on,sm_on iommu=pt iommu=pt rd.driver.pre=nvidia"),
        (1, "loglevel=3 quiet amd_iommu=on"),
        (2, r#"video=vesafb:off video=efifb:off acpi_osi="Windows 2020" vfio_pci.ids=10de:1b80"#),
        (3, "\tresume=UUID=0 rd.lvm.lv=fedora/root rhgb quiet "),
        (3, ""),
    ];
    for (i, (pick, line)) in lines.iter().enumerate() {
        let mut bytes = vec![*pick];
        bytes.extend_from_slice(line.as_bytes());
        std::fs::write(dir.join(format!("line-{i}")), bytes).unwrap();
    }
}
