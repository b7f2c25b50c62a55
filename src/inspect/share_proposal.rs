//! What `detect` proposes for `[resources]`, as comments only (docs/resources.md, "What detect
//! proposes"): the CPUs on the GPU's NUMA node minus the host's first core and its SMT
//! siblings, and half of MemTotal as huge pages, each with where its numbers come from.

use crate::cpulist::{self, CpuSet, MAX_CPUS};
use crate::resources::{GIB, show_bytes};
use crate::root::Files;
use minijinja::{Value, context};

/// The least memory the proposal leaves the host (more than the 2 GiB `plan` insists on:
/// a desktop with a browser needs more).
const HOST_KEEPS: u64 = 4 * GIB;

fn text(files: &dyn Files, path: &str) -> Option<String> {
    files
        .read(path)
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
}

fn cpus(files: &dyn Files, path: &str) -> Option<CpuSet> {
    text(files, path).and_then(|t| cpulist::parse(&t, MAX_CPUS).ok())
}

/// The proposal for the GPU at `gpu` (its address): `None` when nothing can be proposed.
/// Keys: `cpus`, `cpus_why`, `hugepages`, `hugepages_why`, `page_size`.
pub fn proposal(files: &dyn Files, gpu: Option<&str>) -> Option<Value> {
    let (cpus, cpus_why) = isolate(files, gpu).unzip();
    let (pages, pages_why, size) = match hugepages(files) {
        Some((p, w, s)) => (Some(p), Some(w), Some(s)),
        None => (None, None, None),
    };
    if cpus.is_none() && pages.is_none() {
        return None;
    }
    Some(context! {
        cpus,
        cpus_why => cpus_why.map(|w| wrap(&format!("isolate_cpus: {w}."))),
        hugepages => pages,
        hugepages_why => pages_why.map(|w| wrap(&format!("hugepages: {w}."))),
        page_size => size,
    })
}

/// `text` in lines of at most 92 characters, for `# ` comments.
fn wrap(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in text.split(' ') {
        match out.last_mut() {
            Some(line) if line.len() + 1 + word.len() <= 92 => {
                line.push(' ');
                line.push_str(word);
            }
            _ => out.push(word.to_string()),
        }
    }
    out
}

/// The guest's CPUs and why.
fn isolate(files: &dyn Files, gpu: Option<&str>) -> Option<(String, String)> {
    let present = cpus(files, "/sys/devices/system/cpu/present")?;
    let node = gpu
        .and_then(|g| text(files, &format!("/sys/bus/pci/devices/{g}/numa_node")))
        .and_then(|n| n.parse::<u32>().ok());
    let (pool, from) = match node.and_then(|n| {
        let path = format!("/sys/devices/system/node/node{n}/cpulist");
        cpus(files, &path).map(|c| {
            (
                c,
                format!("the CPUs of NUMA node {n}, the GPU's (numa_node), {path}"),
            )
        })
    }) {
        Some((c, why)) => (c.intersection(&present), why),
        None => (
            present.clone(),
            "every present CPU (/sys/devices/system/cpu/present; the GPU has no NUMA node)".into(),
        ),
    };
    let first = present.first()?;
    let core: CpuSet = cpus(
        files,
        &format!("/sys/devices/system/cpu/cpu{first}/topology/thread_siblings_list"),
    )
    .unwrap_or_else(|| [first].into_iter().collect());
    let guest = pool.difference(&core);
    if guest.is_empty() || guest == present {
        return None;
    }
    Some((
        guest.to_string(),
        format!(
            "{from}: {pool}, minus the host's first core, CPUs {core} (cpu{first}/topology/thread_siblings_list)"
        ),
    ))
}

/// The huge pages, why, and the page size.
fn hugepages(files: &dyn Files) -> Option<(String, String, &'static str)> {
    let total = text(files, "/proc/meminfo")?.lines().find_map(|l| {
        l.strip_prefix("MemTotal:")
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    })? * 1024;
    let half = total / 2 / GIB;
    let spare = total.saturating_sub(HOST_KEEPS) / GIB;
    let gib = half.min(spare);
    if gib == 0 {
        return None;
    }
    let pdpe1gb =
        text(files, "/proc/cpuinfo").is_some_and(|t| t.split_whitespace().any(|f| f == "pdpe1gb"));
    let size = if pdpe1gb { "1G" } else { "2M" };
    Some((
        format!("{gib}G"),
        format!(
            "half of MemTotal ({} in /proc/meminfo), rounded down to whole GiB and leaving the host at least {}; {size} pages{}",
            show_bytes(total),
            show_bytes(HOST_KEEPS),
            if pdpe1gb {
                " (the CPU has pdpe1gb)"
            } else {
                " (no pdpe1gb in /proc/cpuinfo)"
            }
        ),
        size,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::MemFiles;

    fn host() -> MemFiles {
        let mut f = MemFiles::new()
            .with("/sys/devices/system/cpu/present", "0-15\n")
            .with("/sys/devices/system/node/node0/cpulist", "0-7\n")
            .with("/sys/devices/system/node/node1/cpulist", "8-15\n")
            .with("/sys/bus/pci/devices/0000:41:00.0/numa_node", "1\n")
            .with("/proc/meminfo", "MemTotal:       65777312 kB\n")
            .with("/proc/cpuinfo", "flags\t\t: fpu vme pdpe1gb lm\n");
        for c in 0..16 {
            let core = c % 8;
            f.put(
                &format!("/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list"),
                format!("{core},{}\n", core + 8),
            );
        }
        f
    }

    fn get(v: &Value, key: &str) -> String {
        v.get_attr(key).unwrap().to_string()
    }

    #[test]
    fn the_gpu_s_node_less_the_host_s_first_core_and_half_the_memory() {
        let f = host();
        // A GPU on node 1 (8-15; the core of CPU 0 is 0,8): 9-15.
        let v = proposal(&f, Some("0000:41:00.0")).unwrap();
        assert_eq!(get(&v, "cpus"), "9-15");
        assert!(
            get(&v, "cpus_why").contains("NUMA node 1"),
            "{}",
            get(&v, "cpus_why")
        );
        let lines: Vec<String> = v
            .get_attr("hugepages_why")
            .unwrap()
            .try_iter()
            .unwrap()
            .map(|l| l.to_string())
            .collect();
        assert!(
            lines.len() > 1 && lines.iter().all(|l| l.len() <= 92),
            "{lines:?}"
        );
        // 62.7 GiB: half is 31 GiB.
        assert_eq!(get(&v, "hugepages"), "31G");
        assert_eq!(get(&v, "page_size"), "1G");
        // No NUMA node: every CPU but the first core.
        let v = proposal(&f, None).unwrap();
        assert_eq!(get(&v, "cpus"), "1-7,9-15");
    }

    #[test]
    fn a_small_host_keeps_four_gib_and_a_one_core_host_gets_no_cpus() {
        let f = MemFiles::new()
            .with("/sys/devices/system/cpu/present", "0-1\n")
            .with(
                "/sys/devices/system/cpu/cpu0/topology/thread_siblings_list",
                "0-1\n",
            )
            .with("/proc/meminfo", "MemTotal:        7990000 kB\n");
        let v = proposal(&f, None).unwrap();
        assert!(v.get_attr("cpus").unwrap().is_none());
        // 7.6 GiB: half is 3, but the host keeps 4: 3 GiB; 2M pages without pdpe1gb.
        assert_eq!(get(&v, "hugepages"), "3G");
        assert_eq!(get(&v, "page_size"), "2M");
        let tiny = MemFiles::new().with("/proc/meminfo", "MemTotal:        4000000 kB\n");
        assert!(proposal(&tiny, None).is_none());
    }
}
