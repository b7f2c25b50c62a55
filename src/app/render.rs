//! `vfio-gen render`: the files apply would install, written under a staging directory
//! (`--out`) or compared with one (`--check`, exit 1 on drift).

use super::Ctx;
use crate::diff;
use crate::plan::{self, Plan};
use crate::root::{Files, Root};
use crate::style::Style;
use anyhow::{Result, bail};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Options {
    pub profile: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub check: Option<PathBuf>,
    /// `--format nix`: print a NixOS module instead (docs/distributions.md, "NixOS").
    pub nix: bool,
    /// `--format libvirt`: print the `<hostdev>` elements (docs/libvirt.md section 2).
    pub libvirt: bool,
}

pub fn run(ctx: &Ctx, opts: &Options, out: &mut dyn Write) -> Result<u8> {
    let root = &ctx.root;
    if opts.libvirt {
        let path = super::profile_path(root, &opts.profile)?;
        let profile = super::load_profile(root, &path, false)?;
        let (xml, warnings) = crate::handover::hostdev::render(root, &profile)?;
        // Warnings as XML comments: the output stays one piece to paste into <devices>.
        for w in warnings {
            writeln!(out, "<!-- warning: {} -->", w.replace("--", "- -"))?;
        }
        write!(out, "{xml}")?;
        return Ok(0);
    }
    if opts.nix {
        let path = super::profile_path(root, &opts.profile)?;
        let profile = super::load_profile(root, &path, false)?;
        let module = plan::nix_module(&profile, root, &path.display().to_string())?;
        write!(out, "{module}")?;
        return Ok(0);
    }
    let path = super::profile_path(root, &opts.profile)?;
    let profile = super::load_profile(root, &path, false)?;
    let plan = super::plan_for(root, &profile, false)?;
    let mut files = desired_files(&plan);
    // For a bootc image build, the options also go into the image (docs/distributions.md).
    if let Some(extra) = plan::bootc_kargs(&profile, root)? {
        files.push(extra);
        files.sort();
    }
    if let Some(dir) = &opts.out {
        refuse_live_tree(root, dir, &files)?;
        crate::install::write_tree(dir, &files)?;
        // What an earlier render wrote and this profile no longer produces goes away.
        let produced: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
        for (path, _) in plan::stale_owned(&Root::new(dir), &produced)? {
            fs_err::remove_file(Root::new(dir).resolve(&path)?)?;
            if !ctx.quiet {
                writeln!(out, "removed {path} (no longer produced)")?;
            }
        }
        if !ctx.quiet {
            writeln!(out, "wrote {} files under {}", files.len(), dir.display())?;
        }
        Ok(0)
    } else {
        let Some(dir) = &opts.check else {
            bail!("render needs --out DIR or --check DIR");
        };
        render_check(dir, &files, ctx.style, (ctx.quiet, ctx.verbose), out)
    }
}

/// `render --out` writes with no backup, lock or journal: it is for staging trees. Refuses
/// an output directory that is the root (or `/`), or that holds one of the root's own files
/// at a path it would write (the same file: a bind mount or a link into the root).
fn refuse_live_tree(root: &Root, dir: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let same = |a: &Path, b: &Path| match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    let live = if same(dir, Path::new("/")) {
        Some("it is /".to_string())
    } else if same(dir, root.dir()) {
        Some(format!("it is the root {}", root.dir().display()))
    } else {
        files.iter().find_map(|(path, _)| {
            let ours = Root::new(dir).join(path).ok()?;
            let theirs = root.join(path).ok()?;
            same(&ours, &theirs).then(|| format!("it holds the root's own {path}"))
        })
    };
    match live {
        Some(what) => bail!(
            "refusing to render into {}: {what}, and render rewrites boot files with no backup, lock or journal; render into an empty staging directory, or use `vfio-gen apply` to change a system",
            dir.display()
        ),
        None => Ok(()),
    }
}

/// The files apply would leave in place: every managed file with its desired bytes.
pub fn desired_files(plan: &Plan) -> Vec<(String, Vec<u8>)> {
    plan.changes
        .iter()
        .filter_map(|c| c.new.clone().map(|n| (c.path.clone(), n)))
        .collect()
}

fn render_check(
    dir: &Path,
    files: &[(String, Vec<u8>)],
    style: Style,
    (quiet, verbose): (bool, bool),
    out: &mut dyn Write,
) -> Result<u8> {
    let tree = Root::new(dir);
    if !dir.is_dir() {
        bail!(
            "{} is not a directory; render into it first with `vfio-gen render --out {}`",
            dir.display(),
            dir.display()
        );
    }
    let mut drift = 0;
    for (path, want) in files {
        let have = tree.read(path)?;
        if verbose && have.as_deref() == Some(want.as_slice()) {
            writeln!(out, "{} {path} (in sync)", style.bold("unchanged"))?;
        }
        if have.as_deref() != Some(want.as_slice()) {
            drift += 1;
            let what = if have.is_none() { "missing" } else { "differs" };
            writeln!(
                out,
                "{} {} ({what})",
                style.yellow("drift:"),
                style.bold(path)
            )?;
            write!(
                out,
                "{}",
                diff::paint_diff(&diff::unified(path, have.as_deref(), Some(want)), style)
            )?;
        }
    }
    let produced: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
    for (path, bytes) in plan::stale_owned(&tree, &produced)? {
        drift += 1;
        writeln!(
            out,
            "{} {} (generated by vfio-gen, but the profile no longer produces it)",
            style.yellow("drift:"),
            style.bold(&path)
        )?;
        write!(
            out,
            "{}",
            diff::paint_diff(&diff::unified(&path, Some(&bytes), None), style)
        )?;
    }
    if drift == 0 {
        if !quiet {
            writeln!(
                out,
                "{} files under {} match the profile",
                files.len(),
                dir.display()
            )?;
        }
        Ok(0)
    } else {
        if !quiet {
            writeln!(
                out,
                "{drift} of the files under {} drifted; `vfio-gen render --out {}` writes them",
                dir.display(),
                dir.display()
            )?;
        }
        Ok(1)
    }
}
