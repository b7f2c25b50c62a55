//! Splicing vfio-gen's options into the GRUB sources: each change lands where the option
//! stands, quoted for the place it lands, byte for byte elsewhere.

use super::eval::GrubConfig;
use super::{Assign, Ctx, Loc, Seg};
use crate::cmdline::{self, At, Byte, Edits, Opt};
use crate::splice::{self, Splice};
use anyhow::Result;

impl GrubConfig {
    /// Edits the files so the line holds `wanted` (or not, with `revert`); returns the new bytes
    /// of every file, and findings to report.
    pub fn edit(
        &self,
        variable: &str,
        wanted: &[Opt],
        revert: bool,
    ) -> Result<(Vec<Vec<u8>>, Vec<String>)> {
        let bytes: Vec<Byte> = self.line.iter().map(|(b, _)| *b).collect();
        let (edits, findings) = cmdline::edit(&bytes, wanted, revert).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}",
                self.sources.first().map(|s| s.path.as_str()).unwrap_or("")
            )
        })?;
        let notes = findings
            .iter()
            .map(|f| f.describe("the GRUB command line"))
            .collect();
        Ok((self.apply(variable, &edits)?, notes))
    }

    fn apply(&self, variable: &str, edits: &Edits) -> Result<Vec<Vec<u8>>> {
        // Source operations per file: (start, end, text).
        let mut ops: Vec<Vec<Op>> = vec![Vec::new(); self.sources.len()];
        let mut removed = std::collections::BTreeSet::new();
        for &i in &edits.remove {
            // Never remove the blank that ends a bare `$NAME`: the next word would join the name.
            if let Some(loc) = self.line[i].1
                && !self.ends_bare_param(loc)
                && removed.insert((loc.file, loc.start))
            {
                ops[loc.file].push(Splice::delete(loc.start, loc.end));
            }
        }
        let mut new_line = false;
        for (at, text) in &edits.insert {
            match at {
                At::Before(i) => {
                    // A token starts at a byte read from a file; one that came from a
                    // default or an expansion has no place to insert before: refuse.
                    let Some(loc) = self.line.get(*i).and_then(|(_, l)| *l) else {
                        anyhow::bail!(
                            "{}: an option to change starts inside an expansion vfio-gen cannot edit in place; set {variable} to a plain quoted value",
                            self.sources.first().map(|s| s.path.as_str()).unwrap_or("")
                        );
                    };
                    ops[loc.file].push(Splice::insert(loc.start, quote_for(loc.ctx, text), 1));
                }
                At::End => match self
                    .assigns
                    .iter()
                    .rev()
                    .find(|a| a.name == variable && !a.maybe)
                {
                    Some(a) => {
                        let text = if self.variable_is_empty(variable, edits) {
                            text.trim_start().to_string()
                        } else {
                            format!(" {}", text.trim_start())
                        };
                        ops[a.file].extend(self.append_ops(a, &text))
                    }
                    None => new_line = true,
                },
            }
        }
        let mut out = Vec::new();
        for (f, src) in self.sources.iter().enumerate() {
            let mut bytes = src.bytes.clone();
            // From the end; at one position delete before inserting.
            splice::apply(&mut bytes, std::mem::take(&mut ops[f]));
            if f == 0 && new_line {
                let text = edits
                    .insert
                    .iter()
                    .find(|(at, _)| *at == At::End)
                    .map(|(_, t)| t.trim())
                    .unwrap_or("");
                // After an assignment that runs only sometimes, keep what it may have added.
                let line = if self.assigns.iter().any(|a| a.name == variable) {
                    format!("{variable}=\"${variable} {text}\"")
                } else {
                    format!("{variable}=\"{text}\"")
                };
                // After a final backslash (a line continuation) our line would join the last one:
                // end it with an empty line first.
                let body = bytes
                    .strip_suffix(b"\n")
                    .map(|b| b.strip_suffix(b"\r").unwrap_or(b))
                    .unwrap_or(&bytes);
                if body.iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1 {
                    if !bytes.ends_with(b"\n") {
                        bytes.push(b'\n');
                    }
                    bytes.push(b'\n');
                }
                crate::targets::append_line(&mut bytes, &src.bytes, &line);
            }
            out.push(bytes);
        }
        Ok(out)
    }

    fn ends_bare_param(&self, loc: Loc) -> bool {
        self.assigns.iter().filter(|a| a.file == loc.file).any(|a| {
            a.segs
                .iter()
                .any(|s| matches!(s, Seg::Param { bare_end: Some(e), .. } if *e == loc.start))
        })
    }

    /// Whether the variable's value, after the edits, holds nothing (so text appended to it
    /// needs no blank before it).
    fn variable_is_empty(&self, variable: &str, edits: &Edits) -> bool {
        let range = if variable == "GRUB_CMDLINE_LINUX" {
            0..self.linux_len
        } else {
            self.linux_len + 1..self.line.len()
        };
        let kept = range.clone().any(|i| !edits.remove.contains(&i));
        let inserted = edits
            .insert
            .iter()
            .any(|(at, t)| matches!(at, At::Before(i) if range.contains(i)) && !t.is_empty());
        !kept && !inserted
    }

    fn append_ops(&self, a: &Assign, text: &str) -> Vec<Op> {
        let src = &self.sources[a.file].bytes;
        let raw = &src[a.value_start..a.value_end];
        if raw.is_empty() {
            return vec![Splice::insert(
                a.value_start,
                format!("\"{}\"", text.trim_start()),
                1,
            )];
        }
        let last = raw[raw.len() - 1];
        if (last == b'"' || last == b'\'') && !ends_escaped(raw) {
            let ctx = if last == b'"' {
                Ctx::Double
            } else {
                Ctx::Single
            };
            let at = a.value_end - 1;
            // Right after a bare `$NAME`, a word would join the name: keep a blank between.
            let glued = self.ends_bare_param(Loc {
                file: a.file,
                start: at,
                end: at,
                ctx,
            });
            let text = if glued && !text.starts_with(' ') {
                format!(" {text}")
            } else {
                text.to_string()
            };
            return vec![Splice::insert(at, quote_for(ctx, &text), 1)];
        }
        // An unquoted value: quote it whole when that changes nothing else (the opening quote
        // goes in last, so it lands before a replacement at the same place), else a quoted tail.
        if raw
            .iter()
            .all(|&b| !matches!(b, b'\\' | b'$' | b'"' | b'\'' | b'`'))
        {
            return vec![
                Splice::insert(a.value_start, "\"".to_string(), 2),
                Splice::insert(a.value_end, format!("{text}\""), 1),
            ];
        }
        vec![Splice::insert(
            a.value_end,
            quote_for(Ctx::Unquoted, text),
            1,
        )]
    }
}

type Op = Splice;

fn ends_escaped(raw: &[u8]) -> bool {
    let backslashes = raw[..raw.len() - 1]
        .iter()
        .rev()
        .take_while(|&&b| b == b'\\')
        .count();
    backslashes % 2 == 1
}

/// Quotes plain kernel text for a quoting context. Options are validated to hold no quote,
/// `$`, backtick or backslash, so only whitespace needs care outside quotes.
fn quote_for(ctx: Ctx, text: &str) -> String {
    match ctx {
        Ctx::Double | Ctx::Single => text.to_string(),
        Ctx::Unquoted if text.bytes().any(|b| b == b' ') => format!("\"{text}\""),
        Ctx::Unquoted => text.to_string(),
    }
}
