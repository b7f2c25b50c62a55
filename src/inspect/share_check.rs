//! The `check` items of the VM's share on the running host (docs/resources.md, "What check
//! says"): `hugepages` (/proc/meminfo), `isolated-cpus` and `nohz-full` (sysfs), and `kvmfr`
//! (the module installed for the running kernel, loaded, its device and who may open it, and
//! Secure Boot). Each only when the profile has the key; a remedy with every warn and fail.
//! The reading is here; the judging is in pure functions over the text read, tested below.

use crate::check::{Item, Status};
use crate::cpulist::{self, CpuSet, MAX_CPUS};
use crate::profile::{Isolation, Profile};
use crate::resources::{HugePages, PageSize, show_bytes};
use crate::root::{Files, Root};
use anyhow::Result;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

const CPU_DIR: &str = "/sys/devices/system/cpu";
const APPLY_REBOOT: &str = "run `sudo vfio-gen apply`, then reboot";

fn item(id: &'static str, status: Status, message: String, remedy: Option<String>) -> Item {
    Item {
        id,
        status,
        message,
        remedy,
        bdf: None,
        path: None,
    }
}

fn text(root: &Root, path: &str) -> Result<Option<String>> {
    Ok(root
        .read(path)?
        .map(|b| String::from_utf8_lossy(&b).trim().to_string()))
}

/// The items of the profile's `[resources]` and `[looking-glass]` on the running host.
pub fn items(root: &Root, profile: &Profile) -> Result<Vec<Item>> {
    let mut out = Vec::new();
    if let Some(r) = &profile.resources {
        if let Some(bytes) = r.hugepages {
            out.push(hugepages_item(root, profile, bytes, r.hugepage_size)?);
        }
        if let Some(cpus) = r.isolate_cpus.as_ref() {
            if r.isolation == Isolation::Boot {
                let isolated = text(root, &format!("{CPU_DIR}/isolated"))?;
                out.push(isolated_item(isolated.as_deref(), cpus));
            } else {
                let online = text(root, &format!("{CPU_DIR}/online"))?;
                out.push(on_demand_item(online.as_deref(), cpus));
            }
        }
    }
    // Only when vfio-gen put nohz_full= on the line (left out on a kernel without it).
    if let Some(list) = profile
        .host_share
        .options
        .iter()
        .find_map(|o| o.strip_prefix("nohz_full="))
    {
        let shown = text(root, &format!("{CPU_DIR}/nohz_full"))?;
        out.push(nohz_full_item(shown.as_deref(), list));
    }
    if let Some(lg) = &profile.looking_glass {
        out.extend(kvmfr_items(root, lg.size_mb)?);
    }
    Ok(out)
}

/// The pages the profile asks for: the size vfio-gen wrote (`hugepagesz=`), else the
/// profile's, else the CPU's default.
fn wanted_pages(
    root: &Root,
    profile: &Profile,
    bytes: u64,
    size: Option<PageSize>,
) -> Result<HugePages, String> {
    let written = profile
        .host_share
        .options
        .iter()
        .find_map(|o| o.strip_prefix("hugepagesz="))
        .and_then(|s| PageSize::parse(s).ok());
    let size = match written.or(size) {
        Some(s) => s,
        None => {
            let pdpe1gb = root.read("/proc/cpuinfo").ok().flatten().is_none_or(|b| {
                String::from_utf8_lossy(&b)
                    .split_whitespace()
                    .any(|f| f == "pdpe1gb")
            });
            PageSize::default_for(pdpe1gb)
        }
    };
    HugePages::new(bytes, size)
}

fn hugepages_item(
    root: &Root,
    profile: &Profile,
    bytes: u64,
    size: Option<PageSize>,
) -> Result<Item> {
    let want = match wanted_pages(root, profile, bytes, size) {
        Ok(w) => w,
        Err(e) => {
            return Ok(item(
                "hugepages",
                Status::Fail,
                format!("resources.hugepages: {e}"),
                Some(
                    "correct resources.hugepages in the profile (`vfio-gen plan` says more)".into(),
                ),
            ));
        }
    };
    let meminfo = text(root, "/proc/meminfo")?;
    let per_size = text(
        root,
        &format!(
            "/sys/kernel/mm/hugepages/hugepages-{}kB/nr_hugepages",
            want.size.meminfo_kib()
        ),
    )?
    .and_then(|t| t.parse::<u64>().ok());
    let on_line = crate::host::cpu::running_cmdline(root)?.is_some_and(|l| {
        l.split_whitespace()
            .any(|w| w == format!("hugepages={}", want.count))
    });
    Ok(judge_hugepages(meminfo.as_deref(), per_size, want, on_line))
}

/// `HugePages_Total` and `Hugepagesize` (kB) of /proc/meminfo.
fn meminfo_pages(meminfo: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        meminfo.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
    };
    Some((field("HugePages_Total:")?, field("Hugepagesize:")?))
}

/// `per_size`: `nr_hugepages` of the wanted size in sysfs; `on_line`: the running command
/// line already asks for the pages.
fn judge_hugepages(
    meminfo: Option<&str>,
    per_size: Option<u64>,
    want: HugePages,
    on_line: bool,
) -> Item {
    let size = want.size.as_str();
    let asked = format!(
        "{} pages of {size} ({}) that resources.hugepages asks for",
        want.count,
        show_bytes(want.bytes())
    );
    let Some((total, page_kib)) = meminfo.and_then(meminfo_pages) else {
        return item(
            "hugepages",
            Status::Warn,
            format!("/proc/meminfo has no HugePages_Total and Hugepagesize: the {asked} could not be checked"),
            Some("boot a kernel with CONFIG_HUGETLBFS (`grep Huge /proc/meminfo` shows the fields), then run `vfio-gen check` again".into()),
        );
    };
    let short_remedy = if on_line {
        format!(
            "hugepages={} is on the running command line, so the kernel could not find that much memory at boot: lower resources.hugepages (the host keeps at least {}), apply and reboot",
            want.count,
            show_bytes(crate::resources::HOST_KEEPS_MIN)
        )
    } else {
        format!("{APPLY_REBOOT}: the pages are reserved at boot, before memory fragments")
    };
    if page_kib == want.size.meminfo_kib() {
        return if total >= want.count {
            item(
                "hugepages",
                Status::Pass,
                format!("{total} huge pages of {size} are reserved (HugePages_Total), the {asked}"),
                None,
            )
        } else {
            item(
                "hugepages",
                Status::Fail,
                format!("HugePages_Total is {total}, fewer than the {asked}"),
                Some(short_remedy),
            )
        };
    }
    // Another default size: the pages of the wanted size may be there all the same.
    let default = format!("the default huge page size is {page_kib} kB (Hugepagesize), not {size}");
    match per_size {
        Some(n) if n >= want.count => item(
            "hugepages",
            Status::Warn,
            format!(
                "{n} pages of {size} are reserved, but {default}: a VM that asks for huge pages without a size gets the other ones"
            ),
            Some(format!(
                "{APPLY_REBOOT}: default_hugepagesz={size} makes them the default"
            )),
        ),
        n => item(
            "hugepages",
            Status::Fail,
            format!(
                "{} pages of {size} are reserved and {default}: fewer than the {asked}",
                n.unwrap_or(0)
            ),
            Some(short_remedy),
        ),
    }
}

/// A sysfs CPU list: empty text is no CPU (`%*pbl` of an empty mask).
fn sysfs_cpus(t: &str) -> Option<CpuSet> {
    if t.trim().is_empty() {
        Some(CpuSet::new())
    } else {
        cpulist::parse(t.trim(), MAX_CPUS).ok()
    }
}

/// `/sys/devices/system/cpu/isolated` against `isolate_cpus`.
fn isolated_item(shown: Option<&str>, want: &CpuSet) -> Item {
    let path = format!("{CPU_DIR}/isolated");
    let Some(t) = shown else {
        return item(
            "isolated-cpus",
            Status::Warn,
            format!("{path} is missing: which CPUs the running kernel isolates could not be read"),
            Some("read isolcpus= on `cat /proc/cmdline`; on a booted Linux host the file is always there".into()),
        );
    };
    let Some(have) = sysfs_cpus(t) else {
        return item(
            "isolated-cpus",
            Status::Warn,
            format!(
                "{path} holds `{}`, which is not a CPU list",
                t.escape_debug()
            ),
            Some("report it with the kernel version (`uname -r`)".into()),
        );
    };
    if &have == want {
        return item(
            "isolated-cpus",
            Status::Pass,
            format!(
                "the running kernel isolates CPUs {have} ({path}), as resources.isolate_cpus asks"
            ),
            None,
        );
    }
    let shown = if have.is_empty() {
        "no CPU".to_string()
    } else {
        format!("CPUs {have}")
    };
    item(
        "isolated-cpus",
        Status::Fail,
        format!(
            "the running kernel isolates {shown} ({path}); resources.isolate_cpus asks for {want}"
        ),
        Some(format!("{APPLY_REBOOT}: isolcpus= takes effect at boot")),
    )
}

/// On demand nothing is isolated at boot: `isolate_cpus` against the CPUs online, which
/// `handover start` limits the host's slices to the rest of (it refuses what this fails).
fn on_demand_item(online: Option<&str>, want: &CpuSet) -> Item {
    let path = format!("{CPU_DIR}/online");
    let Some(online) = online.and_then(sysfs_cpus) else {
        return item(
            "isolated-cpus",
            Status::Warn,
            format!("{path} could not be read as a CPU list: which CPUs are online is unknown"),
            Some("`lscpu -e` lists them".into()),
        );
    };
    let missing = want.difference(&online);
    let host = online.difference(want);
    if !missing.is_empty() {
        return item(
            "isolated-cpus",
            Status::Fail,
            format!(
                "resources.isolate_cpus names CPUs that are not online: {missing} (online: {online}); `vfio-gen handover start` refuses it"
            ),
            Some("name the guest's CPUs among the online ones (`lscpu -e` lists them)".into()),
        );
    }
    if host.is_empty() {
        return item(
            "isolated-cpus",
            Status::Fail,
            format!(
                "resources.isolate_cpus takes every online CPU ({online}); `vfio-gen handover start` refuses to leave the host none"
            ),
            Some("keep at least one CPU (a core with its siblings) for the host".into()),
        );
    }
    item(
        "isolated-cpus",
        Status::Pass,
        format!(
            "{} online; while a VM runs, `vfio-gen handover start` limits the host to {} (isolation = \"on-demand\")",
            cpus_are(want),
            cpus(&host)
        ),
        None,
    )
}

/// "CPU 3" or "CPUs 2-3".
fn cpus(set: &CpuSet) -> String {
    if set.len() == 1 {
        format!("CPU {set}")
    } else {
        format!("CPUs {set}")
    }
}

/// "CPU 3 is" or "CPUs 2-3 are".
fn cpus_are(set: &CpuSet) -> String {
    format!(
        "{} {}",
        cpus(set),
        if set.len() == 1 { "is" } else { "are" }
    )
}

/// `/sys/devices/system/cpu/nohz_full` against the `nohz_full=` vfio-gen wrote.
fn nohz_full_item(shown: Option<&str>, list: &str) -> Item {
    let path = format!("{CPU_DIR}/nohz_full");
    let Some(t) = shown else {
        return item(
            "nohz-full",
            Status::Warn,
            format!("{path} is missing: the running kernel is built without CONFIG_NO_HZ_FULL and ignores nohz_full={list}"),
            Some("boot a kernel built with CONFIG_NO_HZ_FULL for full tickless guest CPUs; isolcpus= keeps the scheduler off them all the same".into()),
        );
    };
    let want = cpulist::parse(list, MAX_CPUS).unwrap_or_default();
    match sysfs_cpus(t) {
        Some(have) if have == want => item(
            "nohz-full",
            Status::Pass,
            format!(
                "the running kernel runs CPUs {have} without the periodic tick ({path}), as nohz_full= asks"
            ),
            None,
        ),
        have => item(
            "nohz-full",
            Status::Fail,
            format!(
                "{path} is `{}`; vfio-gen's nohz_full= asks for {want}",
                have.map_or_else(|| t.escape_debug().to_string(), |h| h.to_string())
            ),
            Some(format!("{APPLY_REBOOT}: nohz_full= takes effect at boot")),
        ),
    }
}

/// Where the kvmfr module of release `r` is found: built in, in `modules.dep` (modprobe can
/// load it), or a file depmod has not indexed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Module {
    BuiltIn,
    Indexed(String),
    NotIndexed(String),
    Missing,
}

/// Directories out-of-tree builders install into: DKMS (`updates/dkms`), akmods and
/// hand builds (`extra`, `extra/kvmfr`), and `updates`.
const OUT_OF_TREE_DIRS: &[&str] = &["updates/dkms", "updates", "extra", "extra/kvmfr"];

fn find_module(files: &dyn Files, release: &str) -> Result<Module> {
    for base in ["/lib/modules", "/usr/lib/modules"] {
        let dir = format!("{base}/{release}");
        let read = |name: &str| -> Result<String> {
            Ok(files
                .read(&format!("{dir}/{name}"))?
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default())
        };
        if read("modules.builtin")?
            .lines()
            .any(|l| l.ends_with("/kvmfr.ko"))
        {
            return Ok(Module::BuiltIn);
        }
        if let Some(path) = read("modules.dep")?.lines().find_map(|l| {
            let path = l.split(':').next()?;
            let name = path.rsplit('/').next()?;
            name.starts_with("kvmfr.ko")
                .then(|| format!("{dir}/{path}"))
        }) {
            return Ok(Module::Indexed(path));
        }
        for sub in OUT_OF_TREE_DIRS {
            let sub = format!("{dir}/{sub}");
            if let Some(name) = files
                .list(&sub)?
                .into_iter()
                .find(|n| n.starts_with("kvmfr.ko"))
            {
                return Ok(Module::NotIndexed(format!("{sub}/{name}")));
            }
        }
    }
    Ok(Module::Missing)
}

/// How to get kvmfr on this distribution (docs/resources.md, "Getting kvmfr").
fn how_to_get(facts: &crate::host::Facts, release: &str) -> String {
    let like = |names: &[&str]| {
        facts
            .os_release_id
            .iter()
            .chain(&facts.os_release_like)
            .any(|id| names.contains(&id.as_str()))
    };
    if like(&["arch"]) {
        "install the AUR package looking-glass-module-dkms (it builds kvmfr with DKMS; the headers of the running kernel must be installed), then `sudo modprobe kvmfr`".into()
    } else if like(&["fedora", "rhel", "centos"]) {
        format!(
            "the community COPR hikariknight/looking-glass-kvmfr has it as an akmod: `sudo dnf copr enable hikariknight/looking-glass-kvmfr`, `sudo dnf install akmod-kvmfr`, `sudo akmods --kernels {release} --kmod kvmfr`"
        )
    } else if like(&["debian", "ubuntu"]) {
        format!(
            "no Debian or Ubuntu package has it: `sudo apt install dkms linux-headers-{release}`, then in module/ of the Looking Glass source of your client's release, `sudo dkms install .`"
        )
    } else if like(&["nixos"]) {
        "add `config.boot.kernelPackages.kvmfr` to boot.extraModulePackages and rebuild".into()
    } else {
        "build it with DKMS from module/ of the Looking Glass source of your client's release (`sudo dkms install .`), with the running kernel's headers installed".into()
    }
}

/// The gid of `name` in the root's /etc/group.
fn group_gid(root: &Root, name: &str) -> Result<Option<u32>> {
    Ok(text(root, "/etc/group")?.and_then(|t| {
        t.lines().find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(name))
                .then(|| f.nth(1).and_then(|g| g.parse().ok()))
                .flatten()
        })
    }))
}

fn kvmfr_items(root: &Root, size_mb: u32) -> Result<Vec<Item>> {
    let mut out = Vec::new();
    let loaded = root.exists("/sys/module/kvmfr");
    let release = crate::host::cpu::release(root)?;
    let module = match &release {
        Some(r) => find_module(root, r)?,
        None => Module::Missing,
    };
    let r = release.as_deref().unwrap_or("(unknown)");
    let facts = crate::host::Facts::read(root)?;
    match (&module, loaded) {
        (Module::Missing, false) => out.push(item(
            "kvmfr",
            Status::Fail,
            format!("Looking Glass's kvmfr module is not installed for the running kernel {r}: no kvmfr.ko under /lib/modules/{r} and not built in (it is out of tree; no distribution kernel has it)"),
            Some(how_to_get(&facts, r)),
        )),
        (Module::NotIndexed(path), false) => out.push(item(
            "kvmfr",
            Status::Fail,
            format!("{path} is there but not in modules.dep, so modprobe cannot find kvmfr"),
            Some(format!("`sudo depmod {r}`, then `sudo modprobe kvmfr`")),
        )),
        (_, false) => out.push(item(
            "kvmfr",
            Status::Fail,
            format!("kvmfr is installed for {r} but not loaded, so there is no /dev/kvmfr0"),
            Some("`sudo modprobe kvmfr` loads it now; after `sudo vfio-gen apply`, /etc/modules-load.d/kvmfr.conf loads it at every boot".into()),
        )),
        (_, true) => out.push(loaded_item(root, size_mb)?),
    }
    if loaded {
        out.push(device_item(root)?);
    } else if module != Module::BuiltIn && crate::targets::uki::secure_boot(root) == Some(true) {
        out.push(item(
            "kvmfr",
            Status::Warn,
            "Secure Boot is on (the firmware's SecureBoot variable is 1): the kernel loads an out-of-tree module such as kvmfr only when it is signed with a key it trusts".into(),
            Some("sign the DKMS or akmod build with a Machine Owner Key and enroll it (`sudo mokutil --import KEY.der`, then confirm at the next boot); DKMS and akmods can sign with their own key once it is enrolled".into()),
        ));
    }
    Ok(out)
}

/// kvmfr is loaded: its size where the module shows it (docs/resources.md: kvmfr keeps
/// `static_size_mb` out of sysfs, mode 0000, so usually it cannot be read back).
fn loaded_item(root: &Root, size_mb: u32) -> Result<Item> {
    let param = text(root, "/sys/module/kvmfr/parameters/static_size_mb")?;
    let first = param
        .as_deref()
        .and_then(|p| p.split(',').next())
        .and_then(|v| v.trim().parse::<u32>().ok());
    Ok(match first {
        Some(n) if n != size_mb => item(
            "kvmfr",
            Status::Fail,
            format!("kvmfr is loaded with static_size_mb={n}; [looking-glass] asks for {size_mb} MiB"),
            Some("stop the VMs and the Looking Glass client, then `sudo modprobe -r kvmfr` and `sudo modprobe kvmfr` (after `sudo vfio-gen apply`, /etc/modprobe.d/kvmfr.conf gives the size)".into()),
        ),
        Some(n) => item(
            "kvmfr",
            Status::Pass,
            format!("kvmfr is loaded with static_size_mb={n}, as [looking-glass] asks"),
            None,
        ),
        None => item(
            "kvmfr",
            Status::Pass,
            format!("kvmfr is loaded (the module does not show its size in sysfs: /etc/modprobe.d/kvmfr.conf gives {size_mb} MiB from the next load on)"),
            None,
        ),
    })
}

/// /dev/kvmfr0: there, a character device, group kvm, mode 0660 (the udev rule's).
fn device_item(root: &Root) -> Result<Item> {
    let dev = "/dev/kvmfr0";
    let rule = crate::resources::KVMFR_UDEV_RULE;
    let meta = std::fs::metadata(root.resolve(dev)?).ok();
    let Some(meta) = meta else {
        return Ok(item(
            "kvmfr",
            Status::Fail,
            format!("kvmfr is loaded but {dev} is missing: it was loaded without static_size_mb"),
            Some("stop the VMs, then `sudo modprobe -r kvmfr` and `sudo modprobe kvmfr` after `sudo vfio-gen apply` (/etc/modprobe.d/kvmfr.conf gives the size)".into()),
        ));
    };
    if root.is_host() && !meta.file_type().is_char_device() {
        return Ok(item(
            "kvmfr",
            Status::Fail,
            format!(
                "{dev} is not a character device: something created it as a file before the module"
            ),
            Some(format!(
                "stop the VMs, `sudo rm {dev}`, then reload kvmfr (`sudo modprobe -r kvmfr`, `sudo modprobe kvmfr`)"
            )),
        ));
    }
    let kvm = group_gid(root, "kvm")?;
    let mode = meta.mode() & 0o7777;
    let group_ok = kvm == Some(meta.gid());
    if mode == 0o660 && group_ok {
        return Ok(item(
            "kvmfr",
            Status::Pass,
            format!("{dev} is there, group kvm, mode 0660, as {rule} gives it"),
            None,
        ));
    }
    let group = match kvm {
        Some(_) if group_ok => "kvm".to_string(),
        _ => format!("gid {}", meta.gid()),
    };
    Ok(item(
        "kvmfr",
        Status::Fail,
        format!(
            "{dev} has group {group} and mode {mode:04o}; {rule} gives group kvm and mode 0660{}",
            if kvm.is_none() {
                " (and /etc/group has no kvm group)"
            } else {
                ""
            }
        ),
        Some(format!(
            "`sudo vfio-gen apply` installs the rule; then `sudo udevadm trigger --subsystem-match=kvmfr` applies it to {dev}"
        )),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(count: u64, size: PageSize) -> HugePages {
        HugePages::new(count * size.bytes(), size).unwrap()
    }

    const MEMINFO: &str = "MemTotal:       65758720 kB\nHugePages_Total:      16\nHugePages_Free:       16\nHugepagesize:    1048576 kB\nHugetlb:        16777216 kB\n";

    #[test]
    fn huge_pages_pass_when_all_are_reserved_and_fail_with_a_remedy_when_fewer() {
        let want = pages(16, PageSize::Size1G);
        let i = judge_hugepages(Some(MEMINFO), None, want, true);
        assert_eq!(i.status, Status::Pass, "{i:?}");
        let fewer = MEMINFO.replace("HugePages_Total:      16", "HugePages_Total:      11");
        let i = judge_hugepages(Some(&fewer), None, want, false);
        assert_eq!(i.status, Status::Fail);
        assert!(
            i.message
                .contains("HugePages_Total is 11, fewer than the 16 pages of 1G (16 GiB)"),
            "{}",
            i.message
        );
        assert!(i.remedy.unwrap().contains("apply"));
        // Already on the line: the host could not give them; the remedy says to ask less.
        let i = judge_hugepages(Some(&fewer), None, want, true);
        assert!(i.remedy.unwrap().contains("lower resources.hugepages"));
    }

    #[test]
    fn another_default_size_is_judged_by_the_per_size_count() {
        let want = pages(16, PageSize::Size1G);
        let two_m = "HugePages_Total:       0\nHugepagesize:       2048 kB\n";
        assert_eq!(
            judge_hugepages(Some(two_m), Some(16), want, true).status,
            Status::Warn
        );
        let i = judge_hugepages(Some(two_m), Some(3), want, true);
        assert_eq!(i.status, Status::Fail);
        assert!(i.message.contains("3 pages of 1G"), "{}", i.message);
        assert_eq!(judge_hugepages(None, None, want, true).status, Status::Warn);
    }

    #[test]
    fn on_demand_cpus_are_judged_against_the_online_ones() {
        let want = cpulist::parse("2-3", MAX_CPUS).unwrap();
        let i = on_demand_item(Some("0-7\n"), &want);
        assert_eq!(i.status, Status::Pass, "{}", i.message);
        assert!(
            i.message.starts_with("CPUs 2-3 are online")
                && i.message.contains("limits the host to CPUs 0-1,4-7"),
            "{}",
            i.message
        );
        let one = cpulist::parse("1", MAX_CPUS).unwrap();
        let i = on_demand_item(Some("0-1\n"), &one);
        assert!(
            i.message.starts_with("CPU 1 is online")
                && i.message.contains("limits the host to CPU 0 "),
            "{}",
            i.message
        );
        let i = on_demand_item(Some("0-2\n"), &want);
        assert_eq!(i.status, Status::Fail);
        assert!(
            i.message.contains("not online: 3 (online: 0-2)"),
            "{}",
            i.message
        );
        let i = on_demand_item(Some("2-3\n"), &want);
        assert_eq!(i.status, Status::Fail);
        assert!(
            i.message.contains("takes every online CPU"),
            "{}",
            i.message
        );
        assert_eq!(on_demand_item(None, &want).status, Status::Warn);
    }

    #[test]
    fn isolated_and_nohz_full_compare_whole_lists() {
        let want = cpulist::parse("2-7,10-15", MAX_CPUS).unwrap();
        assert_eq!(isolated_item(Some("2-7,10-15"), &want).status, Status::Pass);
        let i = isolated_item(Some(""), &want);
        assert_eq!(i.status, Status::Fail);
        assert!(i.message.contains("isolates no CPU"), "{}", i.message);
        assert_eq!(isolated_item(Some("2-7"), &want).status, Status::Fail);
        assert_eq!(isolated_item(None, &want).status, Status::Warn);
        assert_eq!(
            nohz_full_item(Some("2-7,10-15"), "2-7,10-15").status,
            Status::Pass
        );
        assert_eq!(nohz_full_item(Some(""), "2-7,10-15").status, Status::Fail);
        let i = nohz_full_item(None, "2-7,10-15");
        assert_eq!(i.status, Status::Warn);
        assert!(i.message.contains("CONFIG_NO_HZ_FULL"));
    }

    #[test]
    fn the_module_is_found_built_in_indexed_or_not_yet_indexed() {
        use crate::root::MemFiles;
        let r = "6.9.7-arch1-1";
        let dir = format!("/lib/modules/{r}");
        let empty =
            MemFiles::new().with(&format!("{dir}/modules.dep"), "kernel/fs/fat/fat.ko.zst:\n");
        assert_eq!(find_module(&empty, r).unwrap(), Module::Missing);
        let indexed = MemFiles::new().with(
            &format!("{dir}/modules.dep"),
            "kernel/fs/fat/fat.ko.zst:\nupdates/dkms/kvmfr.ko.zst:\n",
        );
        assert_eq!(
            find_module(&indexed, r).unwrap(),
            Module::Indexed(format!("{dir}/updates/dkms/kvmfr.ko.zst"))
        );
        let loose = MemFiles::new().with(&format!("{dir}/extra/kvmfr/kvmfr.ko.xz"), "");
        assert_eq!(
            find_module(&loose, r).unwrap(),
            Module::NotIndexed(format!("{dir}/extra/kvmfr/kvmfr.ko.xz"))
        );
        let builtin = MemFiles::new().with(
            &format!("{dir}/modules.builtin"),
            "kernel/drivers/misc/kvmfr.ko\n",
        );
        assert_eq!(find_module(&builtin, r).unwrap(), Module::BuiltIn);
    }
}
