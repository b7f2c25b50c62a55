//! `vfio-gen handover start|stop`: the devices handed to vfio-pci while a VM runs, and back
//! (src/handover/, docs/handover.md). Exit 0, or 2 when refused or failed (every step taken
//! undone). Called by the libvirt hook for every domain: a domain not in `[libvirt] domains`
//! is left alone with exit 0.

use super::{Ctx, load_profile, profile_path};
use crate::cli::{Format, HandoverAction};
use crate::handover::{self, Report, Status, system::RootSystem};
use anyhow::{Result, bail};
use std::io::Write;

pub fn run(ctx: &Ctx, action: HandoverAction, out: &mut dyn Write) -> Result<u8> {
    let (starting, args) = match action {
        HandoverAction::Start(a) => (true, a),
        HandoverAction::Stop(a) => (false, a),
    };
    let root = &ctx.root;
    let path = profile_path(root, &args.profile.profile)?;
    let profile = load_profile(root, &path, false)?;
    if let Some(d) = &args.domain
        && !profile.libvirt.domains.contains(d)
    {
        let note = format!(
            "domain {:?} is not in [libvirt] domains of {}: nothing to do",
            crate::escape::one_line(d),
            path.display()
        );
        return show(
            ctx,
            args.format,
            out,
            &Report {
                note: Some(note),
                ..Report::default()
            },
        );
    }
    if root.is_host() && !nix::unistd::geteuid().is_root() {
        bail!(
            "handover writes to /sys and runs systemctl and modprobe: run it as root (sudo); nothing was changed"
        );
    }
    let bytes = std::fs::read(&path)?;
    let opts = handover::Options {
        force: args.force,
        domain: args.domain.clone(),
        profile_path: path.display().to_string(),
        profile_sha256: crate::digest::sha256(&bytes),
    };
    let _lock = handover::record::lock(root, std::time::Duration::from_secs(30))?;
    let mut sys = RootSystem { root: root.clone() };
    let report = if starting {
        handover::start(&mut sys, &profile, &opts)?
    } else {
        handover::stop(&mut sys)?
    };
    show(ctx, args.format, out, &report)
}

fn show(ctx: &Ctx, format: Format, out: &mut dyn Write, r: &Report) -> Result<u8> {
    let code = if r.error.is_some() { 2 } else { 0 };
    if format == Format::Json {
        let doc = crate::json::envelope(serde_json::json!({
            "ok": r.error.is_none(),
            "steps": r.actions,
            "error": r.error,
            "note": r.note,
        }));
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(code);
    }
    for a in &r.actions {
        let tag = match a.status {
            Status::Done => "done   ",
            Status::Skipped => "skip   ",
            Status::Undone => "undone ",
            Status::Failed => "FAIL   ",
        };
        writeln!(out, "{tag}{:<8}{}", a.kind, a.detail)?;
    }
    if let Some(n) = &r.note
        && !ctx.quiet
    {
        writeln!(out, "{n}")?;
    }
    if let Some(e) = &r.error {
        // The error is the exit reason: main prints it on stderr like every other error.
        anyhow::bail!("{e}");
    }
    Ok(code)
}
