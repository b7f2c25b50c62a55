//! `vfio-gen plan`: what would change, as a diff or JSON; changes nothing.

use super::{Ctx, load_plan};
use crate::cli::Format;
use crate::diff;
use crate::install;
use anyhow::Result;
use std::io::Write;
use std::path::PathBuf;

pub struct Options {
    pub profile: Option<PathBuf>,
    pub revert: bool,
    pub format: Format,
    /// Exit 1 when changes (or hooks left from an earlier apply) are pending.
    pub exit_code: bool,
}

pub fn run(ctx: &Ctx, opts: &Options, out: &mut dyn Write) -> Result<u8> {
    let root = &ctx.root;
    let mut plan = load_plan(root, &opts.profile, opts.revert)?;
    if let Some(id) = install::pending(root)? {
        plan.warnings.insert(
            0,
            format!("an apply ({id}) was interrupted; the next `vfio-gen apply` or `vfio-gen rollback` undoes it first, and this plan may change then"),
        );
    }
    if let Some(t) = super::trial::state(root)? {
        plan.warnings.insert(
            0,
            format!("a trial is in progress ({}): {}; this plan is what an ordinary apply (or `vfio-gen trial commit`) would change", t.id, t.summary()),
        );
    }
    match opts.format {
        Format::Text => write!(
            out,
            "{}",
            diff::text(&plan, ctx.style, ctx.quiet, ctx.verbose)
        )?,
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&diff::json(&plan, opts.revert))?
        )?,
    }
    Ok(
        if opts.exit_code && (!plan.in_sync() || !plan.pending_hooks.is_empty()) {
            1
        } else {
            0
        },
    )
}
