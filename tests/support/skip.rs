//! The one skip policy of every test suite (README.md, "Tests"), for a test that needs something
//! this machine may lack: a program, root, a kernel feature.
//!
//! - With `VFIO_GEN_REQUIRE_ALL_TESTS=1` (CI, `.ci/run`) the test fails, naming what is missing
//!   and how to get it, whatever `VFIO_GEN_ALLOW_SKIPS` says.
//! - Otherwise, unless `VFIO_GEN_ALLOW_SKIPS=1`, it fails too, so a plain `cargo test` shows it
//!   in its summary, with the remedy and "or run with VFIO_GEN_ALLOW_SKIPS=1 to skip it".
//! - With `VFIO_GEN_ALLOW_SKIPS=1` it prints `SKIPPED: ...` and the caller returns.
//!
//! Self-contained (std, and nix for the user id): `src/lib.rs` includes it once with `#[path]`
//! for the unit tests, and so does each test crate under `tests/` that needs it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Whether the environment variable is exactly `1`.
fn set(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| v == "1")
}

/// The policy: `true` when `found`; else a panic naming `what` and `remedy` (how to get it),
/// or, with `VFIO_GEN_ALLOW_SKIPS=1` and without `VFIO_GEN_REQUIRE_ALL_TESTS=1`, a printed
/// `SKIPPED: ...` and `false`.
#[track_caller]
pub fn need(found: bool, what: &str, remedy: &str) -> bool {
    if found {
        return true;
    }
    if set("VFIO_GEN_REQUIRE_ALL_TESTS") {
        panic!(
            "this test needs {what}, which this machine lacks, and VFIO_GEN_REQUIRE_ALL_TESTS=1 \
             (as in CI) makes that a failure: {remedy}"
        );
    }
    if !set("VFIO_GEN_ALLOW_SKIPS") {
        panic!(
            "this test needs {what}, which this machine lacks: {remedy}; or run with \
             VFIO_GEN_ALLOW_SKIPS=1 to skip it"
        );
    }
    eprintln!("SKIPPED: this test needs {what}, which this machine lacks ({remedy})");
    false
}

/// How to get a missing program.
pub const INSTALL: &str = "install it (README.md, \"Tests\", lists every program the tests run \
                           in one apt line; .ci/run installs them)";

/// Where a program is: on PATH, or in /usr/sbin or /sbin (a user's PATH may lack them).
pub fn find_program(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The program a test runs, or `None` after the policy said SKIPPED (it panics otherwise).
#[track_caller]
pub fn program(name: &str) -> Option<PathBuf> {
    let found = find_program(name);
    need(found.is_some(), name, INSTALL);
    found
}

/// A file the test runs or reads (klibc's sh, /bin/sh), with how to get it.
#[track_caller]
pub fn file(path: &str, remedy: &str) -> Option<PathBuf> {
    let found = Path::new(path).is_file();
    need(found, path, remedy).then(|| PathBuf::from(path))
}

/// Whether the tests run as root (mount namespaces, `udevadm test`); the policy otherwise.
#[track_caller]
pub fn root(why: &str) -> bool {
    need(
        nix::unistd::geteuid().is_root(),
        &format!("root ({why})"),
        "run the tests as root, as CI does",
    )
}
