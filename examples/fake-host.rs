//! Builds one fake host root (sysfs, procfs, /lib/modules, pci.ids, config files) from a
//! description in `tests/fixtures/hosts/`, to try `vfio-gen --root` by hand:
//!
//! ```sh
//! cargo run --example fake-host -- tests/fixtures/hosts/intel-3090.toml /tmp/intel-3090
//! cargo run -- --root /tmp/intel-3090 iommu
//! cargo run -- --root /tmp/intel-3090 detect
//! ```
//!
//! Refuses a target directory that exists and is not empty. Writes nothing outside it.

// No function over 150 lines (the threshold is in clippy.toml): split it into functions with
// one job each.
#![deny(clippy::too_many_lines)]

#[path = "../tests/support/fake_host.rs"]
mod fake_host;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [description, root] = args.as_slice() else {
        eprintln!(
            "usage: cargo run --example fake-host -- tests/fixtures/hosts/<name>.toml TARGET_DIR"
        );
        return ExitCode::from(2);
    };
    let root = PathBuf::from(root);
    match std::fs::read_dir(&root) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                eprintln!(
                    "fake-host: {} exists and is not empty; give a new or empty directory",
                    root.display()
                );
                return ExitCode::from(2);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            eprintln!("fake-host: {}: {e}", root.display());
            return ExitCode::from(2);
        }
    }
    match fake_host::build(description.as_ref(), &root) {
        Ok(()) => {
            println!("{}", root.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fake-host: {e}");
            ExitCode::from(2)
        }
    }
}
