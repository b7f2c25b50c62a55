//! Evaluating the command-line variables over the main file and the drop-ins, in the order
//! grub-mkconfig sources them: every byte keeps the file, span and quoting it came from.

use super::assign::assignments;
use super::{Assign, Loc, Seg, Source, Value, render_value};
use crate::cmdline::{self, Byte, Opt};
use anyhow::{Result, bail};
use std::collections::BTreeMap;

/// An assignment to a command-line variable that vfio-gen cannot edit safely (a loop, a
/// condition, a command substitution...): the error of [`GrubConfig::parse`], typed so that the
/// drop-in mode, which reads the line but edits nothing, can say what it could not read.
#[derive(Debug)]
pub struct UnsafeAssignment {
    pub path: String,
    pub line: usize,
    pub reason: String,
}

impl UnsafeAssignment {
    /// Where and why, without the advice about editing.
    pub fn what(&self) -> String {
        format!("{}: line {}: {}", self.path, self.line, self.reason)
    }
}

impl std::fmt::Display for UnsafeAssignment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}. vfio-gen cannot edit the kernel command line in such a file safely: keep GRUB_CMDLINE_LINUX and GRUB_CMDLINE_LINUX_DEFAULT as plain assignments (NAME=\"...\"), or set [grub] mode = \"drop-in\" in the profile (Debian, Ubuntu)",
            self.what()
        )
    }
}

impl std::error::Error for UnsafeAssignment {}

/// What the kernel will see from a set of GRUB files, and how to edit it.
pub struct GrubConfig {
    pub(super) sources: Vec<Source>,
    pub(super) assigns: Vec<Assign>,
    /// The evaluated kernel line: `GRUB_CMDLINE_LINUX` then `GRUB_CMDLINE_LINUX_DEFAULT`.
    pub(super) line: Value,
    /// The evaluated value of each command-line variable.
    pub(super) values: BTreeMap<String, Value>,
    /// Where `GRUB_CMDLINE_LINUX` ends in `line`.
    pub(super) linux_len: usize,
}

impl GrubConfig {
    /// Reads the main file and the drop-ins (in the order grub-mkconfig sources them).
    pub fn parse(sources: Vec<Source>) -> Result<GrubConfig> {
        let mut assigns = Vec::new();
        for (i, s) in sources.iter().enumerate() {
            assigns.extend(assignments(&s.bytes, i, &s.path, &cmdline::GRUB_VARIABLES)?);
        }
        let mut values: BTreeMap<String, Value> = BTreeMap::new();
        for a in &assigns {
            if let Some(reason) = &a.unsafe_reason {
                return Err(UnsafeAssignment {
                    path: sources[a.file].path.clone(),
                    line: a.line,
                    reason: reason.clone(),
                }
                .into());
            }
            let mut v: Value = Vec::new();
            for seg in &a.segs {
                match seg {
                    // Text of an assignment that runs only sometimes: blanks still separate,
                    // everything else is opaque, and none of it is ever edited.
                    Seg::Byte { b, .. } if a.maybe => v.push((
                        if b.is_ascii_whitespace() {
                            Some(b' ')
                        } else {
                            None
                        },
                        None,
                    )),
                    Seg::Byte { b, start, end, ctx } => v.push((
                        Some(*b),
                        Some(Loc {
                            file: a.file,
                            start: *start,
                            end: *end,
                            ctx: *ctx,
                        }),
                    )),
                    // `$SAME` brings the earlier value with its origins; the other command-line
                    // variable or anything else is opaque: its bytes are never matched or edited,
                    // so one source is never edited through two copies.
                    Seg::Param { name, .. } if *name == a.name => {
                        v.extend(values.get(name).into_iter().flatten().copied())
                    }
                    // A copy of the other command-line variable once it is set: an option
                    // added to or replaced in it would reach the kernel twice.
                    Seg::Param { name, .. }
                        if cmdline::GRUB_VARIABLES.contains(&name.as_str())
                            && values.contains_key(name) =>
                    {
                        bail!(
                            "{}: line {}: {} copies ${name}, which is set above it, so every option of {name} reaches the kernel twice and vfio-gen cannot edit one without the other: write the options out in {} instead of ${name}, or set [grub] mode = \"drop-in\" in the profile (Debian, Ubuntu)",
                            sources[a.file].path,
                            a.line,
                            a.name,
                            a.name
                        );
                    }
                    Seg::Param { name, .. } => match values.get(name) {
                        Some(other) if !other.is_empty() => v.push((None, None)),
                        Some(_) => {}
                        None if cmdline::GRUB_VARIABLES.contains(&name.as_str()) => {}
                        None => v.push((None, None)),
                    },
                }
            }
            values.insert(a.name.clone(), v);
        }
        let mut line: Value = values
            .get("GRUB_CMDLINE_LINUX")
            .cloned()
            .unwrap_or_default();
        let linux_len = line.len();
        line.push((cmdline::BOUNDARY, None));
        line.extend(
            values
                .get("GRUB_CMDLINE_LINUX_DEFAULT")
                .cloned()
                .unwrap_or_default(),
        );
        Ok(GrubConfig {
            sources,
            assigns,
            line,
            values,
            linux_len,
        })
    }

    /// The kernel command line these files produce (`None` bytes shown as `$…`).
    pub fn kernel_line(&self) -> String {
        render_value(&self.line).trim().to_string()
    }

    /// The evaluated value of one variable.
    pub fn value_of(&self, name: &str) -> String {
        render_value(self.values.get(name).map(Vec::as_slice).unwrap_or(&[]))
    }

    /// The managed options missing or different in the current line, one per item.
    pub fn missing(&self, wanted: &[Opt]) -> Result<Vec<String>> {
        let bytes: Vec<Byte> = self.line.iter().map(|(b, _)| *b).collect();
        let (edits, _) =
            cmdline::edit(&bytes, wanted, false).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(edits
            .insert
            .iter()
            .flat_map(|(_, t)| t.split_whitespace().map(str::to_string))
            .collect())
    }

    /// Options in text that is added only sometimes (`if ...; then X="$X iommu=soft"; fi`) and
    /// would override a managed one when it is: ("file:line", option, managed option).
    pub fn conditional_conflicts(&self, wanted: &[Opt]) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for a in self.assigns.iter().filter(|a| a.maybe) {
            let text: Vec<u8> = a
                .segs
                .iter()
                .filter_map(|s| {
                    if let Seg::Byte { b, .. } = s {
                        Some(*b)
                    } else {
                        None
                    }
                })
                .collect();
            for token in String::from_utf8_lossy(&text).split_whitespace() {
                let found = Opt::parse(token.trim_matches('"'));
                if let Some(w) = wanted
                    .iter()
                    .find(|w| cmdline::same_setting(&found, w) && found != **w)
                {
                    out.push((
                        format!("{}:{}", self.sources[a.file].path, a.line),
                        token.to_string(),
                        w.text(),
                    ));
                }
            }
        }
        out
    }

    /// The last assignment of a variable, with the file and line it is in.
    pub fn last_assignment(&self, name: &str) -> Option<(String, usize)> {
        self.assigns
            .iter()
            .rev()
            .find(|a| a.name == name && !a.maybe)
            .map(|a| (self.sources[a.file].path.clone(), a.line))
    }
}
