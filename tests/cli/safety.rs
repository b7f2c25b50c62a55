//! Reading what the user points at: a pipe is read, a FIFO nobody writes to is not waited on.

use super::*;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn a_profile_on_a_pipe_is_read() {
    let mut child = Command::new(BIN)
        .args([
            "plan",
            "-p",
            "/dev/stdin",
            "--root",
            "tests/fixtures/roots/amd-grub",
        ])
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vfio-gen runs");
    let profile = std::fs::read(repo().join("profiles/amd-grub.toml")).unwrap();
    // The writer comes late: the read must wait for it rather than see an empty profile.
    std::thread::sleep(Duration::from_millis(300));
    child.stdin.take().unwrap().write_all(&profile).unwrap();
    let o = child.wait_with_output().unwrap();
    status(&o, 0);
    assert!(
        stdout(&o).contains("amd_iommu=on iommu=pt"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_fifo_without_a_writer_is_an_empty_profile_not_a_hang() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("profile.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let mut child = Command::new(BIN)
        .args([
            "plan",
            "-p",
            fifo.to_str().unwrap(),
            "--root",
            "tests/fixtures/roots/amd-grub",
        ])
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("vfio-gen waits on a FIFO nobody writes to");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    status(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("profile.toml:1:1: the profile is empty"),
        "{err}"
    );
}
