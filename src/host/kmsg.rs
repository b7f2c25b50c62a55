//! The kernel's own report on the IOMMU: its log, read the way `dmesg` reads it (`/dev/kmsg`,
//! one record per read, non-blocking until EAGAIN), and the lines of the Intel (`DMAR`,
//! `DMAR-IR`) and AMD (`AMD-Vi`) drivers in it. Under `--root` the log is the plain file
//! `ROOT/dev/kmsg` in the same record format, as the fixture host builder writes it.
//! docs/kernel-log.md gives each message and where the kernel prints it.

use crate::check::{Item, Status};
use crate::root::Root;
use std::io::Read;

/// The kernel log as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Log {
    Records(Vec<Record>),
    /// Why it could not be read, as the check item says it ("run as root", ...).
    Unreadable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub text: String,
}

/// More than any boot writes: the read stops there.
const MAX_LOG: usize = 32 << 20;

/// Reads `ROOT/dev/kmsg`.
pub fn read(root: &Root) -> Log {
    use std::os::unix::fs::OpenOptionsExt;
    let path = match root.resolve("/dev/kmsg") {
        Ok(p) => p,
        Err(e) => return Log::Unreadable(format!("{e:#}")),
    };
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(f) => f,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(nix::libc::EACCES) | Some(nix::libc::EPERM)
            ) =>
        {
            return Log::Unreadable("run as root".into());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Log::Unreadable(format!("there is no kernel log at {}", path.display()));
        }
        Err(e) => return Log::Unreadable(format!("{}: {e}", path.display())),
    };
    if f.metadata().is_ok_and(|m| m.is_dir()) {
        return Log::Unreadable(format!("{} is a directory", path.display()));
    }
    // /dev/kmsg gives one record per read and needs a buffer that holds it; a plain file gives
    // what fits. Either way the bytes are records one after the other.
    let mut all = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                all.extend_from_slice(&buf[..n]);
                if all.len() > MAX_LOG {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // Records overwritten while reading: the next read goes on with the oldest left.
            Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Log::Unreadable(format!("reading {}: {e}", path.display())),
        }
    }
    Log::Records(parse(&all))
}

/// Parses records `PRIO,SEQ,TIME,FLAGS[,...];TEXT`; continuation lines (starting with a space)
/// and lines that are no record are skipped.
pub fn parse(bytes: &[u8]) -> Vec<Record> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| {
            let (prefix, text) = l.split_once(';')?;
            let mut fields = prefix.split(',');
            fields.next()?.parse::<u32>().ok()?;
            let seq = fields.next()?.parse::<u64>().ok()?;
            Some(Record {
                seq,
                text: text.to_string(),
            })
        })
        .collect()
}

/// What the log says about the IOMMU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The line that says DMA remapping started (Intel or AMD).
    pub iommu_on: Option<String>,
    /// The line that says interrupt remapping is on.
    pub remapping_on: Option<String>,
    /// Lines that say the firmware or the kernel turned it off, in log order.
    pub remapping_off: Vec<String>,
    /// Lines that say the firmware's tables are broken or the IOMMU was turned off.
    pub iommu_off: Vec<String>,
    /// Any DMAR / AMD-Vi line at all.
    pub driver_lines: usize,
    /// The first record's sequence number: above 0 when the start of the boot was overwritten.
    pub first_seq: Option<u64>,
}

const IOMMU_ON: &[&str] = &[
    "DMAR: Intel(R) Virtualization Technology for Directed I/O",
    "AMD-Vi: Found IOMMU",
];
const REMAPPING_ON: &[&str] = &[
    "DMAR-IR: Enabled IRQ remapping in x2apic mode",
    "DMAR-IR: Enabled IRQ remapping in xapic mode",
    "AMD-Vi: Interrupt remapping enabled",
];
const REMAPPING_OFF: &[&str] = &[
    "DMAR-IR: This system BIOS has enabled interrupt remapping",
    "interrupt remapping will be disabled",
    "DMAR-IR: Not enabling interrupt remapping",
    "DMAR-IR: Failed to enable irq remapping",
    "AMD-Vi: Disabling interrupt remapping",
    "No southbridge IOAPIC found",
    "No interrupt remapping support.  Use the module param \"allow_unsafe_interrupts\"",
];
const IOMMU_OFF: &[&str] = &[
    "DMAR: IOMMU disabled",
    "[Firmware Bug]: Your BIOS is broken",
    "DMAR: [Firmware Bug]",
    "AMD-Vi: [Firmware Bug]",
];

pub fn classify(records: &[Record]) -> Report {
    let mut r = Report {
        first_seq: records.first().map(|x| x.seq),
        ..Report::default()
    };
    let has = |t: &str, list: &[&str]| list.iter().any(|m| t.contains(m));
    for rec in records {
        let t = rec.text.trim_end();
        if t.contains("DMAR") || t.contains("AMD-Vi") {
            r.driver_lines += 1;
        }
        if r.iommu_on.is_none() && has(t, IOMMU_ON) {
            r.iommu_on = Some(t.to_string());
        }
        if r.remapping_on.is_none() && has(t, REMAPPING_ON) {
            r.remapping_on = Some(t.to_string());
        }
        if has(t, REMAPPING_OFF) {
            r.remapping_off.push(t.to_string());
        } else if has(t, IOMMU_OFF) {
            r.iommu_off.push(t.to_string());
        }
    }
    r
}

const REMAPPING_REMEDY: &str = "turn interrupt remapping on in the firmware setup (with VT-d / AMD-Vi; some boards call it \"Interrupt Remapping\" or tie it to x2APIC), and leave intremap= off the kernel command line; only as a last resort load vfio_iommu_type1 with allow_unsafe_interrupts=1 (options vfio_iommu_type1 allow_unsafe_interrupts=1 in modprobe.d): without remapping a guest's device can send interrupts (MSI writes) the host takes as its own, so the guest is no longer isolated from the host";
const ROOT_REMEDY: &str =
    "run `sudo vfio-gen check`: the kernel log is readable by root only (kernel.dmesg_restrict)";

fn item(id: &'static str, status: Status, message: String, remedy: Option<&str>) -> Item {
    Item {
        id,
        status,
        message,
        remedy: remedy.map(str::to_string),
        bdf: None,
        path: None,
    }
}

/// The `kernel-iommu` and `interrupt-remapping` check items. `iommu_active`: sysfs shows IOMMU
/// groups. Nothing the log does not say is a pass.
pub fn items(log: &Log, iommu_active: bool) -> Vec<Item> {
    let records = match log {
        Log::Records(r) => r,
        Log::Unreadable(why) => {
            let remedy = (why == "run as root").then_some(ROOT_REMEDY);
            return ["kernel-iommu", "interrupt-remapping"]
                .into_iter()
                .map(|id| item(id, Status::Warn, format!("unknown: {why}"), remedy))
                .collect();
        }
    };
    let r = classify(records);
    let lost = r.first_seq.is_some_and(|s| s > 0);
    let lost_note = |what: &str| {
        format!(
            "unknown: the kernel log no longer holds the boot's first messages (it starts at record {}), so {what} cannot be read from it",
            r.first_seq.unwrap_or(0)
        )
    };
    let lost_remedy = "read the boot's log instead: `journalctl -k -b | grep -e DMAR -e AMD-Vi`";
    let mut out = Vec::new();
    out.push(if let Some(line) = &r.iommu_on {
        item(
            "kernel-iommu",
            Status::Pass,
            format!("the kernel log says the IOMMU driver started: \"{line}\""),
            None,
        )
    } else if let Some(line) = r.iommu_off.first() {
        item(
            "kernel-iommu",
            Status::Warn,
            format!("the kernel log says the IOMMU is off or its firmware table broken: \"{line}\""),
            Some("enable VT-d / AMD-Vi in the firmware setup, update the firmware if it says [Firmware Bug], and remove intel_iommu=off / amd_iommu=off from the command line"),
        )
    } else if lost {
        item("kernel-iommu", Status::Warn, lost_note("the IOMMU driver's start"), Some(lost_remedy))
    } else {
        item(
            "kernel-iommu",
            Status::Warn,
            "the kernel log has no line of the IOMMU driver starting (DMAR / AMD-Vi)".into(),
            Some(if iommu_active {
                "check `dmesg | grep -e DMAR -e AMD-Vi` by hand"
            } else {
                "enable VT-d / AMD-Vi in the firmware setup; on Intel boot with intel_iommu=on (vfio-gen apply adds it)"
            }),
        )
    });
    out.push(if let Some(line) = &r.remapping_on {
        item(
            "interrupt-remapping",
            Status::Pass,
            format!("the kernel enabled interrupt remapping: \"{line}\""),
            None,
        )
    } else if let Some(line) = r.remapping_off.first() {
        item(
            "interrupt-remapping",
            Status::Warn,
            format!("interrupt remapping is off: \"{line}\""),
            Some(REMAPPING_REMEDY),
        )
    } else if lost {
        item(
            "interrupt-remapping",
            Status::Warn,
            lost_note("interrupt remapping"),
            Some(lost_remedy),
        )
    } else if r.iommu_on.is_some() || iommu_active {
        item(
            "interrupt-remapping",
            Status::Warn,
            "interrupt remapping is off: the IOMMU is on, but the kernel log has no line enabling interrupt remapping (DMAR-IR: Enabled IRQ remapping / AMD-Vi: Interrupt remapping enabled)".into(),
            Some(REMAPPING_REMEDY),
        )
    } else {
        item(
            "interrupt-remapping",
            Status::Warn,
            "interrupt remapping is off: no IOMMU driver line in the kernel log".into(),
            Some("turn the IOMMU on first (VT-d / AMD-Vi in the firmware setup)"),
        )
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(lines: &[&str]) -> Vec<Record> {
        let text: String = lines
            .iter()
            .enumerate()
            .map(|(n, l)| format!("6,{n},{},-;{l}\n", n * 1000))
            .collect();
        parse(text.as_bytes())
    }

    #[test]
    fn records_parse_and_continuations_are_skipped() {
        let r = parse(b"7,160,424069,-;pci_root PNP0A03:00: host bridge\n SUBSYSTEM=acpi\n DEVICE=+acpi:PNP0A03:00\n6,339,5140900,-;NET: Registered protocol family 10\nnot a record\n4,340,1,c,more;x;y\n");
        assert_eq!(
            r,
            vec![
                Record {
                    seq: 160,
                    text: "pci_root PNP0A03:00: host bridge".into()
                },
                Record {
                    seq: 339,
                    text: "NET: Registered protocol family 10".into()
                },
                Record {
                    seq: 340,
                    text: "x;y".into()
                },
            ]
        );
    }

    #[test]
    fn intel_with_remapping_passes() {
        let l = log(&[
            "Linux version 6.1.0-28-amd64",
            "DMAR: IOMMU enabled",
            "DMAR-IR: Enabled IRQ remapping in x2apic mode",
            "DMAR: Intel(R) Virtualization Technology for Directed I/O",
        ]);
        let items = items(&Log::Records(l), true);
        assert_eq!(items[0].status, Status::Pass);
        assert_eq!(items[1].status, Status::Pass);
        assert!(items[1].message.contains("x2apic mode"));
    }

    #[test]
    fn amd_with_remapping_passes() {
        let l = log(&[
            "Linux version 6.1.0-28-amd64",
            "pci 0000:00:00.2: AMD-Vi: Found IOMMU cap 0x40",
            "AMD-Vi: Interrupt remapping enabled",
        ]);
        let items = items(&Log::Records(l), true);
        assert_eq!(
            (items[0].status, items[1].status),
            (Status::Pass, Status::Pass)
        );
    }

    #[test]
    fn remapping_off_is_a_warn_with_the_remedy() {
        let l = log(&[
            "Linux version 6.1.0-28-amd64",
            "DMAR: Intel(R) Virtualization Technology for Directed I/O",
        ]);
        let items = items(&Log::Records(l), true);
        assert_eq!(items[0].status, Status::Pass);
        assert_eq!(items[1].status, Status::Warn);
        assert!(items[1].message.starts_with("interrupt remapping is off"));
        assert!(
            items[1]
                .remedy
                .as_deref()
                .unwrap()
                .contains("allow_unsafe_interrupts=1")
        );
    }

    #[test]
    fn firmware_disabled_remapping_is_named() {
        let l = log(&[
            "Linux version 6.1.0-28-amd64",
            "AMD-Vi: [Firmware Bug]: : No southbridge IOAPIC found",
            "AMD-Vi: Disabling interrupt remapping",
            "pci 0000:00:00.2: AMD-Vi: Found IOMMU cap 0x40",
        ]);
        let items = items(&Log::Records(l), true);
        assert_eq!(items[1].status, Status::Warn);
        assert_eq!(
            items[1].message,
            "interrupt remapping is off: \"AMD-Vi: [Firmware Bug]: : No southbridge IOAPIC found\""
        );
        let l = log(&["Linux version", "DMAR: IOMMU disabled"]);
        let items = super::items(&Log::Records(l), false);
        assert_eq!(items[0].status, Status::Warn);
        assert!(items[0].message.contains("DMAR: IOMMU disabled"));
    }

    #[test]
    fn an_unreadable_or_overwritten_log_is_never_a_pass() {
        let items = items(&Log::Unreadable("run as root".into()), true);
        assert!(
            items
                .iter()
                .all(|i| i.status == Status::Warn && i.message == "unknown: run as root")
        );
        // The command a user types, with sudo (the remedy gets --root and -p in app/check.rs).
        assert!(items.iter().all(|i| {
            i.remedy
                .as_deref()
                .is_some_and(|r| r.starts_with("run `sudo vfio-gen check`"))
        }));
        let late = parse(b"6,90210,1,-;usb 1-1: new device\n");
        let items = super::items(&Log::Records(late), true);
        assert!(items.iter().all(|i| {
            i.status == Status::Warn
                && i.message
                    .contains("no longer holds the boot's first messages")
        }));
    }
}
