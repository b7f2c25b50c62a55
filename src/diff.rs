//! Showing a plan: unified diffs per file, hooks, warnings, and the JSON shape for tools.

use crate::digest::sha256;
use crate::plan::{Action, Change, Plan};
use crate::style::Style;
use serde_json::json;
use similar::TextDiff;

/// A plain unified diff of two versions of a file at a system path.
pub fn unified(path: &str, old: Option<&[u8]>, new: Option<&[u8]>) -> String {
    // Shown, never written: a file's control characters are escaped so it cannot drive the
    // terminal.
    let old_text = String::from_utf8_lossy(old.unwrap_or_default());
    let old_text = crate::escape::text(&old_text);
    let new_text = String::from_utf8_lossy(new.unwrap_or_default());
    let new_text = crate::escape::text(&new_text);
    let path = crate::escape::one_line(path);
    let rel = path.trim_start_matches('/');
    let a = if old.is_some() {
        format!("a/{rel}")
    } else {
        "/dev/null".to_string()
    };
    let b = if new.is_some() {
        format!("b/{rel}")
    } else {
        "/dev/null".to_string()
    };
    TextDiff::from_lines(old_text.as_ref(), new_text.as_ref())
        .unified_diff()
        .context_radius(3)
        .header(&a, &b)
        .to_string()
}

/// Colors the lines of a unified diff.
pub fn paint_diff(diff: &str, style: Style) -> String {
    if !style.color {
        return diff.to_string();
    }
    let mut out = String::new();
    for line in diff.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let painted = if body.starts_with("+++") || body.starts_with("---") {
            style.bold(body)
        } else if body.starts_with('+') {
            style.green(body)
        } else if body.starts_with('-') {
            style.red(body)
        } else if body.starts_with("@@") {
            style.cyan(body)
        } else {
            body.to_string()
        };
        out.push_str(&painted);
        out.push_str(nl);
    }
    out
}

pub fn action_word(a: Action) -> &'static str {
    a.word()
}

fn change_diff(c: &Change) -> String {
    unified(&c.path, c.old.as_deref(), c.new.as_deref())
}

/// The text form of `plan`.
pub fn text(plan: &Plan, style: Style, quiet: bool, verbose: bool) -> String {
    let mut out = String::new();
    for c in &plan.changes {
        let action = c.action();
        if action == Action::Unchanged {
            if verbose {
                out.push_str(&format!(
                    "{} {} (in sync)\n",
                    style.bold("unchanged"),
                    c.path
                ));
            }
            continue;
        }
        let word = match action {
            Action::Create => style.green("create"),
            Action::Delete => style.red("delete"),
            Action::Replace => style.yellow("replace"),
            _ => style.yellow("modify"),
        };
        let what = match (action, c.ownership) {
            (Action::Replace, _) => {
                "owned by vfio-gen; the file there now was not written by it and is backed up"
            }
            (_, crate::plan::Ownership::Owned) => "owned by vfio-gen",
            (_, crate::plan::Ownership::Edited) => "vfio-gen's options only",
        };
        out.push_str(&format!("{} {} ({what})\n", word, style.bold(&c.path)));
        out.push_str(&paint_diff(&change_diff(c), style));
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push('\n');
    }
    if !plan.hooks.is_empty() {
        out.push_str(&style.bold("Hooks apply would run:"));
        out.push('\n');
        for h in &plan.hooks {
            out.push_str(&format!(
                "  {}    (because {} changed)\n",
                h.command.join(" "),
                h.inputs.join(", ")
            ));
        }
        out.push('\n');
    }
    // Warnings are never hidden: `-q` hides notes and the summary (README, "Global options").
    for w in &plan.warnings {
        out.push_str(&format!(
            "{} {}\n",
            style.yellow("warning:"),
            crate::escape::text(w)
        ));
    }
    if quiet && !plan.warnings.is_empty() {
        out.push('\n');
    }
    if !quiet {
        for n in &plan.notes {
            out.push_str(&format!(
                "{} {}\n",
                style.cyan("note:"),
                crate::escape::text(n)
            ));
        }
        if !plan.warnings.is_empty() || !plan.notes.is_empty() {
            out.push('\n');
        }
        let count = |a: Action| plan.changes.iter().filter(|c| c.action() == a).count();
        if plan.in_sync() {
            out.push_str(if plan.revert {
                "No changes: nothing of the profile is left to take out.\n"
            } else {
                "No changes: the files match the profile.\n"
            });
        } else {
            out.push_str(&format!(
                "Plan: {} to create, {} to modify, {} to replace, {} to delete.\n",
                count(Action::Create),
                count(Action::Modify),
                count(Action::Replace),
                count(Action::Delete)
            ));
        }
    }
    out
}

/// The JSON form of `plan` (shape documented in README.md).
pub fn json(plan: &Plan, revert: bool) -> serde_json::Value {
    let changes: Vec<serde_json::Value> = plan
        .changes
        .iter()
        .map(|c| {
            let action = c.action();
            json!({
                "path": c.path,
                "action": action,
                "ownership": c.ownership,
                "old_sha256": c.old.as_deref().map(sha256),
                "new_sha256": c.new.as_deref().map(sha256),
                "diff": if action == Action::Unchanged { serde_json::Value::Null } else { change_diff(c).into() },
            })
        })
        .collect();
    crate::json::envelope(json!({
        "revert": revert,
        "in_sync": plan.in_sync(),
        "changes": changes,
        "hooks": plan.hooks,
        "pending_hooks": plan.pending_hooks,
        "skipped_hooks": plan.skipped_hooks,
        "warnings": plan.warnings,
        "notes": plan.notes,
    }))
}
