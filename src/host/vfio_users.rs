//! Which processes hold a VFIO group open (`/dev/vfio/N`), read from `ROOT/proc/*/fd`: a
//! device whose group a VM holds must not be unbound (the write to `unbind` waits until the
//! VM lets go; docs/binding.md).

use crate::root::{Files, Root};
use anyhow::Result;

/// One process that holds `/dev/vfio/<group>` open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub pid: u32,
    /// `comm`, with control characters replaced.
    pub name: String,
}

/// The processes that hold `/dev/vfio/<group>` open. Processes whose `fd` directory cannot be
/// read (another user's, without root) are not seen; `unreadable` counts them.
pub fn users(root: &Root, group: u32) -> Result<(Vec<User>, usize)> {
    let want = format!("/dev/vfio/{group}");
    let mut out = Vec::new();
    let mut unreadable = 0;
    for entry in root.list("/proc")? {
        let Ok(pid) = entry.parse::<u32>() else {
            continue;
        };
        let dir = root.resolve(&format!("/proc/{pid}/fd"))?;
        let Ok(fds) = std::fs::read_dir(&dir) else {
            unreadable += 1;
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == want.as_str()));
        if holds {
            let name = root
                .read(&format!("/proc/{pid}/comm"))?
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .trim()
                        .chars()
                        .map(|c| if c.is_control() { '?' } else { c })
                        .collect()
                })
                .unwrap_or_default();
            out.push(User { pid, name });
        }
    }
    Ok((out, unreadable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_process_that_holds_the_group() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path();
        for (pid, target, comm) in [
            ("4242", "/dev/vfio/14", "qemu-system-x86\n"),
            ("7", "/dev/null", "bash\n"),
        ] {
            std::fs::create_dir_all(p.join(format!("proc/{pid}/fd"))).unwrap();
            std::os::unix::fs::symlink(target, p.join(format!("proc/{pid}/fd/3"))).unwrap();
            std::fs::write(p.join(format!("proc/{pid}/comm")), comm).unwrap();
        }
        std::fs::create_dir_all(p.join("proc/self")).unwrap();
        let root = Root::new(p);
        let (users, _) = users(&root, 14).unwrap();
        assert_eq!(
            users,
            [User {
                pid: 4242,
                name: "qemu-system-x86".into()
            }]
        );
        assert!(super::users(&root, 15).unwrap().0.is_empty());
    }
}
