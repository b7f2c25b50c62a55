//! The VM's share of the host at boot (leaf, pure): huge pages, isolated CPUs, the size of
//! Looking Glass's kvmfr device, the option that keeps the firmware framebuffer off the boot
//! GPU, and the kernel config they depend on. Every function takes the host's facts as data
//! and returns kernel options, warnings and refusals as data; nothing here reads a file.
//! Every fact is in docs/resources.md with its source.

use crate::cpulist::CpuSet;
use std::collections::BTreeMap;

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// The least memory vfio-gen leaves to the host beside the huge pages (its own rule, not the
/// kernel's: docs/resources.md, "Huge pages").
pub const HOST_KEEPS_MIN: u64 = 2 * GIB;

/// The largest `static_size_mb` kvmfr takes: it computes `size_mb * 1024 * 1024` in an `int`,
/// which overflows from 2048 (docs/resources.md, "Looking Glass: kvmfr").
pub const KVMFR_MAX_MB: u32 = 1024;

/// The huge page sizes of x86-64: 2 MiB (PMD) always, 1 GiB (PUD) with `pdpe1gb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PageSize {
    Size2M,
    Size1G,
}

impl PageSize {
    pub fn bytes(self) -> u64 {
        match self {
            PageSize::Size2M => 2 * MIB,
            PageSize::Size1G => GIB,
        }
    }

    /// As the profile and the kernel write it (`hugepagesz=1G`).
    pub fn as_str(self) -> &'static str {
        match self {
            PageSize::Size2M => "2M",
            PageSize::Size1G => "1G",
        }
    }

    /// `Hugepagesize:` of /proc/meminfo for this size, in kB.
    pub fn meminfo_kib(self) -> u64 {
        self.bytes() / 1024
    }

    /// `hugepage_size` of the profile: `"1G"` or `"2M"`.
    pub fn parse(text: &str) -> Result<PageSize, String> {
        match text {
            "1G" => Ok(PageSize::Size1G),
            "2M" => Ok(PageSize::Size2M),
            _ => Err(format!(
                "`{}` is not a huge page size of x86-64; use \"1G\" or \"2M\"",
                text.escape_debug()
            )),
        }
    }

    /// The default when the profile names none: 1 GiB where the CPU has `pdpe1gb`.
    pub fn default_for(pdpe1gb: bool) -> PageSize {
        if pdpe1gb {
            PageSize::Size1G
        } else {
            PageSize::Size2M
        }
    }
}

/// A memory size of the profile: decimal digits and `M` or `G` (binary, as the kernel's
/// `memparse` reads them), such as `"16G"` or `"2048M"`. Zero, other suffixes, signs,
/// exponents and sizes past `u64` are refused.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let shown = text.escape_debug();
    let Some(last) = text.chars().last() else {
        return Err("the size is empty; write it as \"16G\" or \"2048M\"".to_string());
    };
    let unit = match last {
        'G' => GIB,
        'M' => MIB,
        _ => {
            return Err(format!(
                "`{shown}` has no unit; end it with M (MiB) or G (GiB), as \"16G\""
            ));
        }
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{shown}` is not a whole number of {}; write digits only, as \"16G\"",
            if unit == GIB { "GiB" } else { "MiB" }
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{shown}` is far more memory than any machine has"))?;
    if n == 0 {
        return Err("the size is zero; leave the key out to reserve no huge pages".to_string());
    }
    n.checked_mul(unit)
        .ok_or_else(|| format!("`{shown}` is far more memory than any machine has"))
}

/// Huge pages reserved at boot: how many of which size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HugePages {
    pub size: PageSize,
    pub count: u64,
}

impl HugePages {
    /// `bytes` as pages of `size`; refused unless it is a whole number of pages.
    pub fn new(bytes: u64, size: PageSize) -> Result<HugePages, String> {
        if bytes == 0 || !bytes.is_multiple_of(size.bytes()) {
            return Err(format!(
                "{} is not a whole number of {} pages; use a multiple of {}",
                show_bytes(bytes),
                size.as_str(),
                size.as_str()
            ));
        }
        Ok(HugePages {
            size,
            count: bytes / size.bytes(),
        })
    }

    pub fn bytes(&self) -> u64 {
        self.count * self.size.bytes()
    }

    /// The kernel options, in the order the kernel reads them: the default size first (it is
    /// what /proc/meminfo reports), then the size and the number of pages as a pair.
    pub fn kernel_options(&self) -> Vec<String> {
        let size = self.size.as_str();
        vec![
            format!("default_hugepagesz={size}"),
            format!("hugepagesz={size}"),
            format!("hugepages={}", self.count),
        ]
    }
}

/// `16 GiB`, `2 MiB`, or bytes when neither divides.
pub fn show_bytes(bytes: u64) -> String {
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else if bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= GIB {
        // MemTotal is never a round number: one decimal of GiB says it.
        format!("{:.1} GiB", bytes as f64 / GIB as f64)
    } else if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{bytes} bytes")
    }
}

/// What the kernel config of an installed kernel says about the options vfio-gen adds.
/// `None`: the config was not found (then options are kept, with a warning).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelConfig {
    pub symbols: BTreeMap<String, String>,
    pub found: bool,
}

impl KernelConfig {
    /// Reads a kernel `.config` (`/boot/config-<release>`, `/lib/modules/<release>/config`, or
    /// `/proc/config.gz` decompressed): `CONFIG_X=value` lines; `# CONFIG_X is not set` and
    /// absent symbols are off.
    pub fn parse(text: &str) -> KernelConfig {
        let mut symbols = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            if let Some((name, value)) = line.split_once('=')
                && let Some(name) = name.strip_prefix("CONFIG_")
                && !name.is_empty()
            {
                symbols.insert(name.to_string(), value.to_string());
            }
        }
        KernelConfig {
            symbols,
            found: true,
        }
    }

    /// No config file was found.
    pub fn unknown() -> KernelConfig {
        KernelConfig::default()
    }

    /// Whether `CONFIG_<name>` is built in or a module; `None` without a config.
    pub fn enabled(&self, name: &str) -> Option<bool> {
        if !self.found {
            return None;
        }
        Some(matches!(
            self.symbols.get(name).map(String::as_str),
            Some("y" | "m")
        ))
    }
}

/// The host facts the checks need, read by the host layer.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// `/sys/devices/system/cpu/present`.
    pub present: CpuSet,
    /// Each core's `topology/thread_siblings_list` (one set per core; duplicates are fine).
    pub siblings: Vec<CpuSet>,
    /// Each CPU's NUMA node (`/sys/devices/system/node/nodeN/cpulist`); empty without NUMA.
    pub cpu_node: BTreeMap<u32, u32>,
    /// The passthrough GPU's `numa_node`; `None` for -1 (no NUMA information).
    pub gpu_node: Option<u32>,
    /// `pdpe1gb` in the `flags` of /proc/cpuinfo.
    pub pdpe1gb: bool,
    /// `MemTotal` of /proc/meminfo, in bytes.
    pub mem_total: Option<u64>,
    /// The config of the kernel the options are for.
    pub config: KernelConfig,
}

/// What a part of `[resources]` gives: kernel options to add, what the user should know,
/// what was left out and why, and refusals (a refusal means the plan must not be applied).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub options: Vec<String>,
    pub warnings: Vec<String>,
    pub left_out: Vec<String>,
    pub refusals: Vec<String>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.options.extend(other.options);
        self.warnings.extend(other.warnings);
        self.left_out.extend(other.left_out);
        self.refusals.extend(other.refusals);
    }
}

/// The huge pages of the profile on this host: `size` is `hugepage_size` (`None`: the
/// default for the CPU).
pub fn hugepages(bytes: u64, size: Option<PageSize>, facts: &HostFacts) -> Outcome {
    let mut out = Outcome::default();
    let size = size.unwrap_or(PageSize::default_for(facts.pdpe1gb));
    if size == PageSize::Size1G && !facts.pdpe1gb {
        out.refusals.push(
            "hugepage_size = \"1G\" needs 1 GiB pages, and this CPU has no `pdpe1gb` flag: the \
             kernel refuses hugepagesz=1G; use \"2M\""
                .to_string(),
        );
        return out;
    }
    let pages = match HugePages::new(bytes, size) {
        Ok(p) => p,
        Err(e) => {
            out.refusals.push(format!("hugepages: {e}"));
            return out;
        }
    };
    match facts.mem_total {
        Some(total) if pages.bytes() >= total || total - pages.bytes() < HOST_KEEPS_MIN => {
            out.refusals.push(format!(
                "hugepages = {} leaves the host {} of its {}; it needs at least {}",
                show_bytes(pages.bytes()),
                show_bytes(total.saturating_sub(pages.bytes())),
                show_bytes(total),
                show_bytes(HOST_KEEPS_MIN)
            ));
            return out;
        }
        Some(total) if total - pages.bytes() < total / 4 => out.warnings.push(format!(
            "hugepages = {} leaves the host {} of its {} (less than a quarter)",
            show_bytes(pages.bytes()),
            show_bytes(total - pages.bytes()),
            show_bytes(total)
        )),
        Some(_) => {}
        None => out.warnings.push(
            "MemTotal is unknown (no /proc/meminfo): the huge pages were not checked against \
             the host's memory"
                .to_string(),
        ),
    }
    match facts.config.enabled("HUGETLBFS") {
        Some(false) => out.left_out.push(
            "the huge page options: the kernel is built without CONFIG_HUGETLBFS".to_string(),
        ),
        found => {
            if found.is_none() {
                out.warnings.push(
                    "the kernel config was not found: huge pages need CONFIG_HUGETLBFS".to_string(),
                );
            }
            out.options.extend(pages.kernel_options());
        }
    }
    out
}

/// The CPUs the profile keeps for the guest (`isolate_cpus`, `isolation = "boot"`) on this
/// host: `isolcpus=`, `nohz_full=`, `rcu_nocbs=` with the guest's CPUs and `irqaffinity=`
/// with the host's.
pub fn isolation(cpus: &CpuSet, facts: &HostFacts) -> Outcome {
    let mut out = Outcome::default();
    let missing = cpus.difference(&facts.present);
    if !missing.is_empty() {
        out.refusals.push(format!(
            "isolate_cpus names CPUs this host does not have: {missing} (present: {})",
            facts.present
        ));
        return out;
    }
    if cpus.is_empty() {
        out.refusals.push("isolate_cpus is empty".to_string());
        return out;
    }
    let host = cpus.complement_in(&facts.present);
    if host.is_empty() {
        out.refusals.push(format!(
            "isolate_cpus takes every CPU ({}); the host needs at least one, and its first core",
            facts.present
        ));
        return out;
    }
    if cpus.contains(0) {
        out.refusals.push(
            "isolate_cpus includes CPU 0: the boot CPU keeps the host's timekeeping and the \
             kernel takes it back from nohz_full; leave CPU 0 (and its siblings) to the host"
                .to_string(),
        );
        return out;
    }
    for core in &facts.siblings {
        if cpus.intersects(core) && !core.is_subset(cpus) {
            out.warnings.push(format!(
                "isolate_cpus splits a core: its threads are {core}, and only {} are isolated; \
                 the host and the guest would share that core",
                core.intersection(cpus)
            ));
        }
    }
    if let Some(gpu_node) = facts.gpu_node {
        let far: CpuSet = cpus
            .iter()
            .filter(|c| facts.cpu_node.get(c).is_some_and(|n| *n != gpu_node))
            .collect();
        if !far.is_empty() {
            out.warnings.push(format!(
                "CPUs {far} are on another NUMA node than the GPU (node {gpu_node})"
            ));
        }
    }
    let list = cpus.to_string();
    out.options
        .push(format!("isolcpus=managed_irq,domain,{list}"));
    match facts.config.enabled("NO_HZ_FULL") {
        Some(false) => out.left_out.push(
            "nohz_full=: the kernel is built without CONFIG_NO_HZ_FULL and ignores it".to_string(),
        ),
        found => {
            if found.is_none() {
                out.warnings.push(
                    "the kernel config was not found: nohz_full= works only with \
                     CONFIG_NO_HZ_FULL"
                        .to_string(),
                );
            }
            out.options.push(format!("nohz_full={list}"));
        }
    }
    out.options.push(format!("rcu_nocbs={list}"));
    out.options.push(format!("irqaffinity={host}"));
    out
}

/// The option that keeps the firmware framebuffer off the boot GPU: where sysfb registers
/// the framebuffer as a `simple-framebuffer` (simpledrm or simplefb drive it), only
/// `initcall_blacklist=sysfb_init` stops it; otherwise efifb drives it and
/// `video=efifb:off` stops it. Without a config both are given (each is harmless).
pub fn boot_framebuffer(config: &KernelConfig) -> Outcome {
    let mut out = Outcome::default();
    let simple = [
        config.enabled("SYSFB_SIMPLEFB"),
        config.enabled("X86_SYSFB"),
    ];
    if simple.contains(&Some(true)) {
        if config.enabled("KALLSYMS") == Some(false) {
            out.refusals.push(
                "the kernel registers the boot framebuffer through sysfb, and only \
                 initcall_blacklist=sysfb_init stops that, which needs CONFIG_KALLSYMS"
                    .to_string(),
            );
        } else {
            out.options
                .push("initcall_blacklist=sysfb_init".to_string());
        }
    } else if config.found {
        out.options.push("video=efifb:off".to_string());
    } else {
        out.warnings.push(
            "the kernel config was not found: both video=efifb:off and \
             initcall_blacklist=sysfb_init are given, one of them stops the boot framebuffer"
                .to_string(),
        );
        out.options.push("video=efifb:off".to_string());
        out.options
            .push("initcall_blacklist=sysfb_init".to_string());
    }
    out
}

/// Both parts of `[resources]` in one outcome, huge pages first.
pub fn resources(
    hugepage_bytes: Option<u64>,
    size: Option<PageSize>,
    isolate: Option<&CpuSet>,
    facts: &HostFacts,
) -> Outcome {
    let mut out = Outcome::default();
    if let Some(bytes) = hugepage_bytes {
        out.merge(hugepages(bytes, size, facts));
    }
    if let Some(cpus) = isolate {
        out.merge(isolation(cpus, facts));
    }
    out
}

/// A display resolution such as `"2560x1440"`: each side 1 to 16384 pixels.
pub fn parse_resolution(text: &str) -> Result<(u32, u32), String> {
    let shown = text.escape_debug();
    let side = |s: &str| -> Option<u32> {
        if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok().filter(|n| (1..=16384).contains(n))
    };
    let parsed = text
        .split_once('x')
        .and_then(|(w, h)| Some((side(w)?, side(h)?)));
    parsed.ok_or_else(|| {
        format!(
            "`{shown}` is not a resolution; write WIDTHxHEIGHT, as \"2560x1440\" (1 to 16384 each)"
        )
    })
}

/// kvmfr's `static_size_mb` for a resolution, as Looking Glass documents it: the frame is
/// width × height × 4 bytes (× 2 with HDR), twice; plus 10 MiB; rounded up to a power of two
/// MiB (1080p 32, 1440p 64, 2160p 128; doubled with HDR).
pub fn kvmfr_size_mb(width: u32, height: u32, hdr: bool) -> Result<u32, String> {
    let bpp: u64 = if hdr { 8 } else { 4 };
    let frame = u64::from(width) * u64::from(height) * bpp * 2;
    let required_mib = (frame + 10 * MIB).div_ceil(MIB);
    let total = required_mib.next_power_of_two();
    match u32::try_from(total) {
        Ok(mb) if mb <= KVMFR_MAX_MB => Ok(mb),
        _ => Err(format!(
            "{width}x{height}{} needs {total} MiB, more than the {KVMFR_MAX_MB} MiB kvmfr can \
             create",
            if hdr { " HDR" } else { "" }
        )),
    }
}

/// A `size_mb` given in the profile: 1 to [`KVMFR_MAX_MB`]; a warning when it is not a power
/// of two (Looking Glass's formula always gives one).
pub fn kvmfr_size_checked(size_mb: i64) -> Result<(u32, Option<String>), String> {
    match u32::try_from(size_mb) {
        Ok(mb) if (1..=KVMFR_MAX_MB).contains(&mb) => {
            let warning = (!mb.is_power_of_two()).then(|| {
                format!(
                    "size_mb = {mb} is not a power of two; Looking Glass rounds the size up to \
                     one ({})",
                    mb.next_power_of_two()
                )
            });
            Ok((mb, warning))
        }
        _ => Err(format!(
            "size_mb = {size_mb}: kvmfr takes 1 to {KVMFR_MAX_MB} MiB"
        )),
    }
}

/// Why the kvmfr device has its size, for the comment of /etc/modprobe.d/kvmfr.conf.
pub fn kvmfr_reason(resolution: Option<(u32, u32)>, hdr: bool) -> String {
    match resolution {
        Some((w, h)) => format!(
            "the size Looking Glass's docs give for {w}x{h}{}",
            if hdr { " with HDR" } else { "" }
        ),
        None => "size_mb in the host profile".to_string(),
    }
}

/// Where the kvmfr files go (docs/resources.md, "Looking Glass: kvmfr" and "udev").
pub const KVMFR_MODPROBE: &str = "/etc/modprobe.d/kvmfr.conf";
pub const KVMFR_MODULES_LOAD: &str = "/etc/modules-load.d/kvmfr.conf";
/// Before systemd's `73-seat-late.rules`, which turns the `uaccess` tag into an ACL.
pub const KVMFR_UDEV_RULE: &str = "/etc/udev/rules.d/70-vfio-gen-kvmfr.rules";
/// The AppArmor line Looking Glass documents, for
/// `/etc/apparmor.d/local/abstractions/libvirt-qemu`.
pub const KVMFR_APPARMOR_LINE: &str = "/dev/kvmfr0 rw,";
pub const KVMFR_APPARMOR_FILE: &str = "/etc/apparmor.d/local/abstractions/libvirt-qemu";

/// The templates of the kvmfr files, with their paths; rendered with `size_mb` and `user`.
pub const KVMFR_TEMPLATES: &[(&str, &str)] = &[
    ("kvmfr-modprobe.conf.j2", KVMFR_MODPROBE),
    ("kvmfr-modules-load.conf.j2", KVMFR_MODULES_LOAD),
    ("kvmfr-udev.rules.j2", KVMFR_UDEV_RULE),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpulist::{self, MAX_CPUS};

    fn cpus(text: &str) -> CpuSet {
        cpulist::parse(text, MAX_CPUS).unwrap()
    }

    /// An 8-core, 16-thread host (thread siblings n and n+8), one NUMA node, 32 GiB.
    fn host() -> HostFacts {
        HostFacts {
            present: cpus("0-15"),
            siblings: (0..8).map(|c| [c, c + 8].into_iter().collect()).collect(),
            cpu_node: (0..16).map(|c| (c, 0)).collect(),
            gpu_node: Some(0),
            pdpe1gb: true,
            mem_total: Some(32 * GIB - 300 * MIB),
            config: KernelConfig::parse("CONFIG_NO_HZ_FULL=y\nCONFIG_HUGETLBFS=y\n"),
        }
    }

    #[test]
    fn sizes_parse_in_binary_units_and_hostile_ones_are_refused() {
        assert_eq!(parse_size("16G"), Ok(16 * GIB));
        assert_eq!(parse_size("2048M"), Ok(2 * GIB));
        for bad in [
            "",
            "G",
            "16",
            "16g",
            "16GB",
            "1e9G",
            "-1G",
            "+1G",
            " 1G",
            "1.5G",
            "0G",
            "0M",
            "18446744073709551616G",
            "99999999999999999999M",
            "17179869184G",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert!(parse_size("1e9G").unwrap_err().contains("digits only"));
        assert!(
            parse_size("17179869184G")
                .unwrap_err()
                .contains("more memory")
        );
    }

    #[test]
    fn huge_page_options_come_in_the_documented_order() {
        let p = HugePages::new(16 * GIB, PageSize::Size1G).unwrap();
        assert_eq!(
            p.kernel_options(),
            ["default_hugepagesz=1G", "hugepagesz=1G", "hugepages=16"]
        );
        let p = HugePages::new(2 * GIB, PageSize::Size2M).unwrap();
        assert_eq!(p.kernel_options()[2], "hugepages=1024");
        let e = HugePages::new(2049 * MIB, PageSize::Size1G).unwrap_err();
        assert!(
            e.contains("2049 MiB") && e.contains("multiple of 1G"),
            "{e}"
        );
        assert!(HugePages::new(3 * MIB, PageSize::Size2M).is_err());
        assert_eq!(PageSize::Size2M.meminfo_kib(), 2048);
        assert_eq!(PageSize::parse("1G"), Ok(PageSize::Size1G));
        assert!(PageSize::parse("1g").is_err() && PageSize::parse("4K").is_err());
    }

    #[test]
    fn huge_pages_are_checked_against_the_host() {
        let h = host();
        let o = hugepages(16 * GIB, None, &h);
        assert_eq!(
            o.options,
            ["default_hugepagesz=1G", "hugepagesz=1G", "hugepages=16"]
        );
        assert!(o.warnings.is_empty() && o.refusals.is_empty(), "{o:?}");
        // Without pdpe1gb the default is 2M, and 1G is refused.
        let mut no1g = host();
        no1g.pdpe1gb = false;
        assert_eq!(
            hugepages(16 * GIB, None, &no1g).options[2],
            "hugepages=8192"
        );
        assert!(hugepages(16 * GIB, Some(PageSize::Size1G), &no1g).refusals[0].contains("pdpe1gb"));
        // More than the host can spare, and close to it.
        let o = hugepages(31 * GIB, None, &h);
        assert!(o.refusals[0].contains("at least 2 GiB"), "{o:?}");
        assert!(o.options.is_empty());
        let o = hugepages(26 * GIB, None, &h);
        assert!(
            o.refusals.is_empty() && o.warnings[0].contains("less than a quarter"),
            "{o:?}"
        );
        // A kernel without hugetlbfs: left out and said.
        let mut nohuge = host();
        nohuge.config = KernelConfig::parse("# CONFIG_HUGETLBFS is not set\n");
        let o = hugepages(16 * GIB, None, &nohuge);
        assert!(
            o.options.is_empty() && o.left_out[0].contains("CONFIG_HUGETLBFS"),
            "{o:?}"
        );
        // Unknown config and memory: options kept, both said.
        let mut unknown = host();
        unknown.config = KernelConfig::unknown();
        unknown.mem_total = None;
        let o = hugepages(16 * GIB, None, &unknown);
        assert_eq!(o.options.len(), 3);
        assert_eq!(o.warnings.len(), 2, "{o:?}");
    }

    #[test]
    fn isolation_gives_the_guest_cpus_and_the_host_the_rest() {
        let o = isolation(&cpus("2-7,10-15"), &host());
        assert_eq!(
            o.options,
            [
                "isolcpus=managed_irq,domain,2-7,10-15",
                "nohz_full=2-7,10-15",
                "rcu_nocbs=2-7,10-15",
                "irqaffinity=0-1,8-9",
            ]
        );
        assert!(o.warnings.is_empty() && o.refusals.is_empty(), "{o:?}");
    }

    #[test]
    fn isolation_refuses_and_warns_as_the_issue_lists() {
        let h = host();
        assert!(isolation(&cpus("2-16"), &h).refusals[0].contains("does not have: 16"));
        assert!(isolation(&cpus("0-15"), &h).refusals[0].contains("every CPU"));
        assert!(isolation(&cpus("0-3"), &h).refusals[0].contains("CPU 0"));
        let o = isolation(&cpus("2-7"), &h);
        assert_eq!(o.warnings.len(), 6, "{o:?}");
        assert!(o.warnings[0].contains("threads are 2,10"), "{o:?}");
        let mut numa = host();
        numa.cpu_node = (0..16).map(|c| (c, u32::from(c % 8 >= 4))).collect();
        let o = isolation(&cpus("2-7,10-15"), &numa);
        assert!(
            o.warnings[0].contains("4-7,12-15") && o.warnings[0].contains("node 0"),
            "{o:?}"
        );
        let mut nohz = host();
        nohz.config = KernelConfig::parse("# CONFIG_NO_HZ_FULL is not set\nCONFIG_NO_HZ_IDLE=y\n");
        let o = isolation(&cpus("2-7,10-15"), &nohz);
        assert!(
            !o.options.iter().any(|x| x.starts_with("nohz_full=")),
            "{o:?}"
        );
        assert!(o.left_out[0].contains("CONFIG_NO_HZ_FULL"));
    }

    #[test]
    fn kernel_config_reads_set_module_and_unset_symbols() {
        let c = KernelConfig::parse(
            "#\n# Automatically generated file; DO NOT EDIT.\nCONFIG_NO_HZ_FULL=y\nCONFIG_X=m\n# CONFIG_HUGETLBFS is not set\nCONFIG_LOCALVERSION=\"\"\n",
        );
        assert_eq!(c.enabled("NO_HZ_FULL"), Some(true));
        assert_eq!(c.enabled("X"), Some(true));
        assert_eq!(c.enabled("HUGETLBFS"), Some(false));
        assert_eq!(c.enabled("ABSENT"), Some(false));
        assert_eq!(KernelConfig::unknown().enabled("NO_HZ_FULL"), None);
    }

    #[test]
    fn boot_framebuffer_follows_sysfb() {
        let sysfb = KernelConfig::parse("CONFIG_SYSFB_SIMPLEFB=y\nCONFIG_KALLSYMS=y\n");
        assert_eq!(
            boot_framebuffer(&sysfb).options,
            ["initcall_blacklist=sysfb_init"]
        );
        let old = KernelConfig::parse("CONFIG_X86_SYSFB=y\nCONFIG_KALLSYMS=y\n");
        assert_eq!(
            boot_framebuffer(&old).options,
            ["initcall_blacklist=sysfb_init"]
        );
        let efifb = KernelConfig::parse("CONFIG_FB_EFI=y\n");
        assert_eq!(boot_framebuffer(&efifb).options, ["video=efifb:off"]);
        let nokallsyms = KernelConfig::parse("CONFIG_SYSFB_SIMPLEFB=y\n");
        assert!(boot_framebuffer(&nokallsyms).refusals[0].contains("KALLSYMS"));
        let o = boot_framebuffer(&KernelConfig::unknown());
        assert_eq!(o.options.len(), 2);
        assert_eq!(o.warnings.len(), 1);
    }

    #[test]
    fn kvmfr_sizes_match_looking_glass_table() {
        // The table of Looking Glass's install_libvirt.rst, "Determining memory".
        for (w, h, sdr, hdr) in [
            (1920, 1080, 32, 64),
            (1920, 1200, 32, 64),
            (2560, 1440, 64, 128),
            (3840, 2160, 128, 256),
        ] {
            assert_eq!(kvmfr_size_mb(w, h, false), Ok(sdr), "{w}x{h}");
            assert_eq!(kvmfr_size_mb(w, h, true), Ok(hdr), "{w}x{h} HDR");
        }
        // 2560x1600 (the "IVSHMEM too small" report): 31.25 MiB + 10 = 41.25 -> 64.
        assert_eq!(kvmfr_size_mb(2560, 1600, false), Ok(64));
        // The +10 MiB comes before the rounding: 1x1 needs 10 MiB -> 16, not 1 + 10.
        assert_eq!(kvmfr_size_mb(1, 1, false), Ok(16));
        assert_eq!(kvmfr_size_mb(7680, 4320, true), Ok(1024));
        assert!(
            kvmfr_size_mb(16384, 16384, true)
                .unwrap_err()
                .contains("1024")
        );
    }

    #[test]
    fn resolutions_and_sizes_are_checked() {
        assert_eq!(
            kvmfr_reason(Some((2560, 1440)), true),
            "the size Looking Glass's docs give for 2560x1440 with HDR"
        );
        assert_eq!(parse_resolution("2560x1440"), Ok((2560, 1440)));
        for bad in [
            "",
            "2560",
            "2560X1440",
            "2560x",
            "x1440",
            "0x1440",
            "99999x1",
            "1e3x2",
            "+1x1",
            "2560 x 1440",
        ] {
            assert!(parse_resolution(bad).is_err(), "{bad:?}");
        }
        assert_eq!(kvmfr_size_checked(64), Ok((64, None)));
        assert!(kvmfr_size_checked(48).unwrap().1.unwrap().contains("64"));
        assert!(kvmfr_size_checked(0).is_err());
        assert!(kvmfr_size_checked(2048).is_err());
        assert!(kvmfr_size_checked(-1).is_err());
    }

    /// The kvmfr templates rendered as `targets::render` renders every template (same syntax
    /// settings), until the lead adds them to `targets::TEMPLATES`.
    fn render(name: &str, size_mb: u32) -> String {
        let mut env = minijinja::Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .keep_trailing_newline(true)
                .build()
                .unwrap(),
        );
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        for file in [
            "header.j2",
            "kvmfr-modprobe.conf.j2",
            "kvmfr-modules-load.conf.j2",
            "kvmfr-udev.rules.j2",
        ] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            env.add_template_owned(file.to_string(), text).unwrap();
        }
        let ctx = minijinja::context! {
            size_mb, user => "alice", reason => kvmfr_reason(Some((2560, 1440)), false),
        };
        env.get_template(name).unwrap().render(ctx).unwrap()
    }

    /// The program a test runs, by the skip policy (tests/support/skip.rs).
    #[track_caller]
    fn tool(name: &str) -> Option<std::path::PathBuf> {
        crate::skip::program(name)
    }

    /// The skip policy itself (tests/support/skip.rs), run in a child of this test binary with
    /// each setting of the two variables: a program that cannot exist fails the test by default
    /// and under VFIO_GEN_REQUIRE_ALL_TESTS=1 (whatever VFIO_GEN_ALLOW_SKIPS says), and is a
    /// printed skip with VFIO_GEN_ALLOW_SKIPS=1. Only `1` counts.
    #[test]
    fn a_missing_program_follows_the_skip_policy() {
        // VFIO_GEN_REQUIRE_ALL_TESTS, VFIO_GEN_ALLOW_SKIPS (None: unset), what the child says.
        const FAILS: &str = "or run with VFIO_GEN_ALLOW_SKIPS=1 to skip it";
        const CI: &str = "VFIO_GEN_REQUIRE_ALL_TESTS=1 (as in CI)";
        const SKIPS: &str = "SKIPPED: this test needs vfio-gen-no-such-program";
        let cases = [
            (None, None, Err(FAILS)),
            (None, Some("0"), Err(FAILS)),
            (None, Some("1"), Ok(SKIPS)),
            (Some("1"), None, Err(CI)),
            (Some("1"), Some("1"), Err(CI)),
            (Some("yes"), Some("1"), Ok(SKIPS)),
        ];
        for (require, allow, want) in cases {
            let mut child = std::process::Command::new(std::env::current_exe().unwrap());
            child
                .args(["--exact", "resources::tests::skip_policy_child"])
                .args(["--nocapture", "--test-threads=1"])
                .env("VFIO_GEN_SKIP_POLICY_CHILD", "1")
                .env_remove("VFIO_GEN_REQUIRE_ALL_TESTS")
                .env_remove("VFIO_GEN_ALLOW_SKIPS");
            for (var, value) in [
                ("VFIO_GEN_REQUIRE_ALL_TESTS", require),
                ("VFIO_GEN_ALLOW_SKIPS", allow),
            ] {
                if let Some(v) = value {
                    child.env(var, v);
                }
            }
            let o = child.output().unwrap();
            let out = String::from_utf8_lossy(&o.stdout);
            let err = String::from_utf8_lossy(&o.stderr);
            let case = format!("{require:?} {allow:?}\n{out}\n{err}");
            match want {
                Ok(says) => {
                    assert!(o.status.success(), "{case}");
                    assert!(out.contains("the child ran to its end"), "{case}");
                    assert!(err.contains(says), "{case}");
                }
                Err(says) => {
                    assert!(!o.status.success() && out.contains("1 failed"), "{case}");
                    assert!(!out.contains("the child ran to its end"), "{case}");
                    assert!(err.contains(says) && err.contains("install it"), "{case}");
                }
            }
        }
    }

    /// The child of the test above; nothing unless that test runs it.
    #[test]
    fn skip_policy_child() {
        if std::env::var_os("VFIO_GEN_SKIP_POLICY_CHILD").is_none() {
            return;
        }
        assert_eq!(tool("vfio-gen-no-such-program"), None);
        println!("the child ran to its end");
    }

    #[test]
    fn kvmfr_templates_render_whole_files() {
        for (name, path) in KVMFR_TEMPLATES {
            let out = render(name, 64);
            assert!(out.starts_with("# Generated by vfio-gen"), "{name}");
            assert!(
                out.ends_with('\n') && !out.ends_with("\n\n"),
                "{name}: {out:?}"
            );
            assert!(path.starts_with("/etc/"));
        }
        let modprobe = render("kvmfr-modprobe.conf.j2", 64);
        assert!(
            modprobe
                .lines()
                .any(|l| l == "options kvmfr static_size_mb=64"),
            "{modprobe}"
        );
        assert!(modprobe.contains("for 2560x1440."), "{modprobe}");
        let load = render("kvmfr-modules-load.conf.j2", 64);
        let load: Vec<&str> = load.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(load, ["kvmfr"]);
        let rules = render("kvmfr-udev.rules.j2", 64);
        let active: Vec<&str> = rules.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            active,
            [
                r#"SUBSYSTEM=="kvmfr", KERNEL=="kvmfr[0-9]*", GROUP="kvm", MODE="0660""#,
                r#"SUBSYSTEM=="kvmfr", KERNEL=="kvmfr[0-9]*", TAG+="uaccess""#,
            ]
        );
        assert!(!active.iter().any(|l| l.contains("OWNER")));
        // Sorts before systemd's 73-seat-late.rules, which applies the uaccess tag.
        let file = KVMFR_UDEV_RULE.rsplit('/').next().unwrap();
        assert!(file < "73-seat-late.rules" && file.ends_with(".rules"));
    }

    /// modprobe reads the generated kvmfr.conf with nothing on stderr and keeps the option.
    #[test]
    fn modprobe_reads_the_kvmfr_options() {
        let Some(modprobe) = tool("modprobe") else {
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("kvmfr.conf"),
            render("kvmfr-modprobe.conf.j2", 128),
        )
        .unwrap();
        let o = std::process::Command::new(modprobe)
            .arg("-C")
            .arg(tmp.path())
            .arg("--showconfig")
            .output()
            .unwrap();
        assert!(o.status.success());
        assert_eq!(String::from_utf8_lossy(&o.stderr), "");
        let config = String::from_utf8_lossy(&o.stdout);
        assert!(
            config
                .lines()
                .any(|l| l == "options kvmfr static_size_mb=128"),
            "{config}"
        );
    }

    /// The kvmfr rule as udev itself reads it. Where udevadm has `verify` (systemd 253 and
    /// later) it must accept the rule. udev 252 (Debian 12, CI) has no such verb: there
    /// `udevadm test` applies the rule to a fake kvmfr device ([`udev_252_test`]). Either way
    /// broken copies of the rule must be refused, so that the check is seen to fail
    /// (docs/resources.md, "udev").
    #[test]
    fn udev_reads_and_applies_the_kvmfr_rule() {
        let Some(udevadm) = tool("udevadm") else {
            return;
        };
        let good = render("kvmfr-udev.rules.j2", 64);
        let broken = [
            (good.replace("GROUP=", "GRUOP="), "Invalid key 'GRUOP'"),
            (
                good.replace(r#"MODE="0660""#, r#"MODE="0660"#),
                "Invalid key/value pair, ignoring.",
            ),
        ];
        if let Some(verified) = udevadm_verify(&udevadm, &good) {
            verified.unwrap();
            for (text, _) in &broken {
                let refused = udevadm_verify(&udevadm, text).unwrap();
                assert!(refused.is_err(), "udevadm verify accepts:\n{text}");
            }
            return;
        }
        let why = "udevadm test of udev 252 runs in a private mount namespace";
        if !crate::skip::root(why) || tool("unshare").is_none() {
            return;
        }
        match udev_252_test(&udevadm, &good) {
            Ok(out) => eprintln!("{out}"),
            Err(e) => panic!("udevadm test, the rendered rule: {e}"),
        }
        for (text, says) in broken {
            let e = udev_252_test(&udevadm, &text).expect_err(&text);
            assert!(e.contains(says), "{says}: {e}");
        }
    }

    /// `udevadm verify` of the rule: `None` when this udevadm has no such verb (before 253).
    fn udevadm_verify(
        udevadm: &std::path::Path,
        rule: &str,
    ) -> Option<std::result::Result<(), String>> {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("70-vfio-gen-kvmfr.rules");
        std::fs::write(&file, rule).unwrap();
        let o = std::process::Command::new(udevadm)
            .arg("verify")
            .arg("--resolve-names=never")
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        if stderr.contains("Unknown command verb") || stderr.contains("unrecognized") {
            return None;
        }
        Some(if o.status.success() && stderr.is_empty() {
            Ok(())
        } else {
            Err(format!("udevadm verify ({}): {stderr}", o.status))
        })
    }

    /// Where [`udev_252_test`] puts the rule: udev's runtime rules directory (on a tmpfs).
    const UDEV_TEST_RULE: &str = "/run/udev/rules.d/70-vfio-gen-kvmfr.rules";

    /// Run by `unshare -m --propagation private sh -c`, as root: the rule (stdin) alone in
    /// udev's rules directories, a fake kvmfr device in a fake sysfs, then `udevadm test` on it
    /// and the node's mode and group. udev 252's `udevadm test` applies what it finds to the
    /// node (mode, owner, `/dev/char` links) and writes its database under /run/udev: every
    /// place it reads or writes is a tmpfs of this namespace, so nothing real is touched.
    /// `SYSTEMD_DEVICE_VERIFY_SYSFS=0` lets sd-device take a syspath that is not on sysfs.
    const UDEV_TEST_SCRIPT: &str = r#"set -eu
udevadm=$1
for d in /etc/udev/rules.d /usr/local/lib/udev/rules.d /usr/lib/udev/rules.d /lib/udev/rules.d; do
    if [ -d "$d" ]; then mount -t tmpfs none "$d"; fi
done
mount -t tmpfs none /run
mount -t tmpfs none /dev
mount -t tmpfs none /sys
mkdir -p /run/udev/rules.d
cat >/run/udev/rules.d/70-vfio-gen-kvmfr.rules
dev=/sys/devices/virtual/kvmfr/kvmfr0
mkdir -p "$dev" /sys/class/kvmfr
printf 'MAJOR=240\nMINOR=0\nDEVNAME=kvmfr0\n' >"$dev/uevent"
printf '240:0\n' >"$dev/dev"
ln -s ../../../../class/kvmfr "$dev/subsystem"
ln -s ../../devices/virtual/kvmfr/kvmfr0 /sys/class/kvmfr/kvmfr0
mknod -m 0600 /dev/kvmfr0 c 240 0
SYSTEMD_DEVICE_VERIFY_SYSFS=0 "$udevadm" test --action=add "$dev" 2>&1
stat -c 'node: %a %G' /dev/kvmfr0
"#;

    /// udev 252 reads the rule and applies it to a kvmfr device: the only rules file read is
    /// the rule, no line names it but `GROUP <gid>` and `MODE 0660` as they are applied, the
    /// device gets the `uaccess` tag and its node mode 0660 and group kvm. The output, or what
    /// is wrong with it.
    fn udev_252_test(udevadm: &std::path::Path, rule: &str) -> std::result::Result<String, String> {
        use std::io::Write;
        let mut child = std::process::Command::new("unshare")
            .args([
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                UDEV_TEST_SCRIPT,
                "sh",
            ])
            .arg(udevadm)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rule.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let mut wrong = Vec::new();
        if !o.status.success() {
            wrong.push(format!("exit status {}", o.status));
        }
        let read = format!("Reading rules file: {UDEV_TEST_RULE}");
        let reads: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("Reading rules file:"))
            .collect();
        if reads != [read.as_str()] {
            wrong.push(format!(
                "rules files read: {reads:?}, not only {UDEV_TEST_RULE}"
            ));
        }
        // What udev says as it applies the rule: `kvmfr0: FILE:LINE GROUP 108`, `... MODE 0660`
        // (log_rule_debug in udev-rules.c); anything else naming the file is a complaint.
        let applied = |l: &str| {
            let said = l
                .strip_prefix(&format!("kvmfr0: {UDEV_TEST_RULE}:"))
                .and_then(|r| r.split_once(' '))
                .map(|(_, said)| said);
            said.is_some_and(|s| {
                s == "MODE 0660"
                    || s.strip_prefix("GROUP ")
                        .and_then(|g| g.parse::<u32>().ok())
                        .is_some_and(|g| g != u32::MAX)
            })
        };
        wrong.extend(
            out.lines()
                .filter(|l| l.contains(UDEV_TEST_RULE) && *l != read && !applied(l))
                .map(str::to_string),
        );
        for want in ["SUBSYSTEM=kvmfr", "TAGS=:uaccess:", "node: 660 kvm"] {
            if !out.lines().any(|l| l == want) {
                wrong.push(format!("no line `{want}`"));
            }
        }
        if wrong.is_empty() {
            Ok(out)
        } else {
            Err(format!("{}\n--- output ---\n{out}", wrong.join("\n")))
        }
    }
}
