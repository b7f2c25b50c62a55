//! Writing files: atomically (temporary file in the target's directory, fsync, rename, fsync of
//! the directory). The transactional `apply` builds on these.

use crate::root::Root;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// Writes bytes to a path atomically, creating missing parent directories (0755).
pub fn write_atomic(target: &Path, bytes: &[u8]) -> Result<()> {
    let dir = target
        .parent()
        .context("a file path has a parent directory")?;
    fs_err::create_dir_all(dir)?;
    let name = target
        .file_name()
        .context("a file path has a name")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.vfio-gen-tmp"));
    let result = (|| -> Result<()> {
        let mut f = fs_err::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs_err::rename(&tmp, target)?;
        fs_err::File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", target.display()))
}

/// Writes a set of files under a directory (DESTDIR layout), for `render --out`.
pub fn write_tree(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    let root = Root::new(dir);
    for (path, bytes) in files {
        let target = root.resolve(path)?;
        write_atomic(&target, bytes)?;
    }
    Ok(())
}
