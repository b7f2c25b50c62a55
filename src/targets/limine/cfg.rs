//! `limine.cfg` (Limine 7 and older, docs/limine.md "Limine 7"): `:Entry` lines and
//! `KEY=VALUE` assignments. The command line of a Linux entry is edited on its line, or in the
//! definition of the macro the line is made of (`CMDLINE=${cmdline}`); shapes where an edit
//! could change something else, or where the line is unknown, are refused.

use super::conf::{ConfEdit, line_ops};
use super::lines;
use crate::cmdline::{self, Opt};
use anyhow::{Result, bail};

/// Limine 7 copies a macro's value into a buffer of this many bytes, its end included.
const MACRO_MAX: usize = 2047;

/// What Limine 7 is called in messages.
const LIMINE7: &str = "Limine 7 or older (limine.cfg)";

/// `(number, value start, value end)`.
type Value = (usize, usize, usize);

#[derive(Default)]
struct Entry {
    title: String,
    line: usize,
    protocol: Option<String>,
    path: Option<String>,
    kernel_cmdline: Option<Value>,
    cmdline: Option<Value>,
}

/// A macro definition `${name}=value`.
struct Def {
    name: String,
    value: Value,
}

/// A use of `${name}` outside a definition.
struct Use {
    name: String,
    line: usize,
}

struct Parsed {
    entries: Vec<Entry>,
    defs: Vec<Def>,
    uses: Vec<Use>,
}

/// The `${name}` references in `text[a..b]`: (name, offset of `$`, offset after `}`).
fn refs(text: &[u8], a: usize, b: usize) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut i = a;
    while i + 1 < b {
        if text[i] == b'$'
            && text[i + 1] == b'{'
            && let Some(close) = text[i + 2..b].iter().position(|&c| c == b'}')
        {
            let name = String::from_utf8_lossy(&text[i + 2..i + 2 + close]).into_owned();
            out.push((name, i, i + 3 + close));
            i += 3 + close;
            continue;
        }
        i += 1;
    }
    out
}

fn parse(text: &[u8]) -> Parsed {
    let mut p = Parsed {
        entries: Vec::new(),
        defs: Vec::new(),
        uses: Vec::new(),
    };
    for l in lines(text) {
        let s = &text[l.start..l.end];
        // A definition: `${name}=value` at the start of a line (config.c).
        if s.starts_with(b"${")
            && let Some(close) = s.iter().position(|&c| c == b'}')
            && s.get(close + 1) == Some(&b'=')
        {
            p.defs.push(Def {
                name: String::from_utf8_lossy(&s[2..close]).into_owned(),
                value: (l.number, l.start + close + 2, l.end),
            });
            continue;
        }
        for (name, _, _) in refs(text, l.start, l.end) {
            p.uses.push(Use {
                name,
                line: l.number,
            });
        }
        if s.first() == Some(&b':') {
            let depth = s.iter().take_while(|&&b| b == b':').count();
            p.entries.push(Entry {
                title: String::from_utf8_lossy(&s[depth..])
                    .trim_start_matches('+')
                    .to_string(),
                line: l.number,
                ..Entry::default()
            });
            continue;
        }
        if s.first() == Some(&b'#') {
            continue;
        }
        let Some(e) = p.entries.last_mut() else {
            continue;
        };
        // Keys are matched exactly, `=` right after them (Limine 7's config_get_value).
        let Some(eq) = s.iter().position(|&b| b == b'=') else {
            continue;
        };
        let v = (l.number, l.start + eq + 1, l.end);
        let value = || String::from_utf8_lossy(&text[v.1..v.2]).into_owned();
        match &s[..eq] {
            b"PROTOCOL" if e.protocol.is_none() => e.protocol = Some(value()),
            b"KERNEL_PATH" | b"IMAGE_PATH" if e.path.is_none() => {
                e.path = Some(value().to_ascii_lowercase());
            }
            b"KERNEL_CMDLINE" if e.kernel_cmdline.is_none() => e.kernel_cmdline = Some(v),
            b"CMDLINE" if e.cmdline.is_none() => e.cmdline = Some(v),
            _ => {}
        }
    }
    p
}

/// `limine.cfg`: the command line of every Linux entry (and of every UKI chainloaded with
/// `efi_chainload` from `/EFI/Linux/`).
pub fn edit_cfg(text: &[u8], wanted: &[Opt], revert: bool, path: &str) -> Result<ConfEdit> {
    let p = parse(text);
    let mut out = ConfEdit::default();
    let mut ops = Vec::new();
    // The macros whose definitions hold an entry's whole line, with the lines using them.
    let mut macros: Vec<(String, Vec<usize>)> = Vec::new();
    for e in &p.entries {
        let used = e.kernel_cmdline.or(e.cmdline);
        let uki = e.protocol.as_deref() == Some("efi_chainload")
            && e.path.as_deref().is_some_and(|p| p.contains("/efi/linux/"));
        if e.protocol.as_deref() != Some("linux") && !uki {
            if used.is_some() {
                out.notes.push(format!(
                    "{path}:{}: the entry \"{}\" does not boot a Linux kernel (PROTOCOL={}), so its command line is left alone",
                    e.line,
                    e.title,
                    e.protocol.as_deref().unwrap_or("none")
                ));
            }
            continue;
        }
        let Some((n, v, ve)) = used else {
            out.warnings.push(format!(
                "{path}:{}: the Linux entry \"{}\" has no CMDLINE=, so {LIMINE7} boots it with an empty command line; vfio-gen leaves it alone: add `CMDLINE=` with the options the system boots with, then run vfio-gen again",
                e.line, e.title
            ));
            continue;
        };
        if uki {
            out.ukis += 1;
        } else {
            out.entries += 1;
        }
        let inside = refs(text, v, ve);
        let whole = String::from_utf8_lossy(&text[v..ve]);
        match inside.as_slice() {
            [] => {
                if let Some(o) =
                    line_ops(text, (n, v, ve), wanted, revert, path, &mut out.warnings)?
                {
                    ops.extend(o);
                }
            }
            [(name, _, _)] if whole.trim() == format!("${{{name}}}") => {
                match macros.iter_mut().find(|(m, _)| m == name) {
                    Some((_, at)) => at.push(n),
                    None => macros.push((name.clone(), vec![n])),
                }
            }
            _ => ops.extend(mixed(text, &p, (n, v, ve), &inside, wanted, revert, path)?),
        }
    }
    for (name, at) in &macros {
        ops.extend(macro_ops(
            text, &p, name, at, wanted, revert, path, &mut out,
        )?);
    }
    out.bytes = text.to_vec();
    crate::splice::apply(&mut out.bytes, ops);
    Ok(out)
}

/// The last definition of a macro: the one Limine 7 expands (docs/limine.md).
fn last_def<'a>(p: &'a Parsed, name: &str) -> Option<&'a Def> {
    p.defs.iter().rev().find(|d| d.name == name)
}

/// Edits the definition of a macro that is the whole line of one or more entries.
#[allow(clippy::too_many_arguments)]
fn macro_ops(
    text: &[u8],
    p: &Parsed,
    name: &str,
    lines: &[usize],
    wanted: &[Opt],
    revert: bool,
    path: &str,
    out: &mut ConfEdit,
) -> Result<Vec<crate::splice::Splice>> {
    let Some(def) = last_def(p, name) else {
        bail!(
            "{path}:{}: the command line is ${{{name}}}, a macro that is not defined: {LIMINE7} boots this entry with an empty command line. Define it (`${{{name}}}=<the options the system boots with>`) or write the options on the line, then run vfio-gen again; nothing was written",
            lines[0]
        );
    };
    // Every other use would change with the definition.
    if let Some(u) = p
        .uses
        .iter()
        .find(|u| u.name == name && !lines.contains(&u.line))
    {
        bail!(
            "{path}:{}: ${{{name}}} is used here too, not only as the command line of Linux entries (line {}): editing its definition (line {}) would change this line as well. Give the entries a macro of their own or write their options on the CMDLINE= line, then run vfio-gen again; nothing was written",
            u.line,
            lines[0],
            def.value.0
        );
    }
    let (n, v, ve) = def.value;
    if !refs(text, v, ve).is_empty() || text[v..ve].windows(2).any(|w| w == b"${") {
        bail!(
            "{path}:{n}: the definition of ${{{name}}} uses another macro: {LIMINE7} does not expand macros inside a macro's value, so the kernel would get the text `${{...}}`. Write the options into the definition, then run vfio-gen again; nothing was written"
        );
    }
    if p.defs.iter().filter(|d| d.name == name).count() > 1 {
        out.notes.push(format!(
            "{path}:{n}: ${{{name}}} is defined more than once; {LIMINE7} uses the last definition, so that one is edited"
        ));
    }
    let Some(ops) = line_ops(text, def.value, wanted, revert, path, &mut out.warnings)? else {
        return Ok(Vec::new());
    };
    let new = cmdline::edit_plain(&String::from_utf8_lossy(&text[v..ve]), wanted, revert)
        .map_err(|err| anyhow::anyhow!("{path}:{n}: {err}; nothing was written"))?;
    if !revert && new.len() > MACRO_MAX {
        bail!(
            "{path}:{n}: ${{{name}}} would be {} characters; {LIMINE7} holds at most {MACRO_MAX} in a macro: shorten it; nothing was written",
            new.len()
        );
    }
    out.notes.push(format!(
        "{path}:{n}: the Linux entries take their command line from ${{{name}}} (lines {}), so its definition is edited",
        lines.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    ));
    Ok(ops)
}

/// A line of text and macros: the text is edited, the macros are opaque; refused when a macro
/// holds an option vfio-gen manages (vfio-gen could neither see nor change its value there).
fn mixed(
    text: &[u8],
    p: &Parsed,
    (n, v, ve): (usize, usize, usize),
    inside: &[(String, usize, usize)],
    wanted: &[Opt],
    revert: bool,
    path: &str,
) -> Result<Vec<crate::splice::Splice>> {
    for (name, _, _) in inside {
        let Some(def) = last_def(p, name) else {
            continue;
        };
        let value = String::from_utf8_lossy(&text[def.value.1..def.value.2]).into_owned();
        let (tokens, _) = cmdline::tokenize(&cmdline::bytes(value.as_bytes()));
        for t in tokens {
            let Some(raw) = &t.raw else { continue };
            let found = Opt::parse(&String::from_utf8_lossy(raw));
            if wanted.iter().any(|w| cmdline::same_setting(&found, w)) {
                bail!(
                    "{path}:{n}: the command line uses ${{{name}}}, whose definition (line {}) holds {}, an option vfio-gen manages: vfio-gen edits either the line or the macro, not both. Move the option onto the CMDLINE= line or make the line only `${{{name}}}`, then run vfio-gen again; nothing was written",
                    def.value.0,
                    found.text()
                );
            }
        }
    }
    let mut line = cmdline::bytes(&text[v..ve]);
    for (_, a, b) in inside {
        for byte in &mut line[a - v..b - v] {
            *byte = None;
        }
    }
    let (edits, _) = cmdline::edit(&line, wanted, revert)
        .map_err(|err| anyhow::anyhow!("{path}:{n}: {err}; nothing was written"))?;
    let new = cmdline::apply_plain(&text[v..ve], &edits);
    if new == text[v..ve] {
        return Ok(Vec::new());
    }
    Ok(vec![
        crate::splice::Splice::delete(v, ve),
        crate::splice::Splice::insert(v, String::from_utf8_lossy(&new).into_owned(), 1),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted() -> Vec<Opt> {
        vec![Opt::parse("amd_iommu=on"), Opt::parse("iommu=pt")]
    }

    fn edit(text: &str, revert: bool) -> Result<String> {
        let e = edit_cfg(text.as_bytes(), &wanted(), revert, "c")?;
        Ok(String::from_utf8(e.bytes).unwrap())
    }

    #[test]
    fn a_plain_line_and_a_kernel_cmdline_first() {
        let text = "TIMEOUT=5\n\n:Arch Linux\n    PROTOCOL=linux\n    KERNEL_PATH=boot:///vmlinuz-linux\n    CMDLINE=root=UUID=1 rw\n    KERNEL_CMDLINE=root=UUID=1 rw iommu=soft\n";
        let got = edit(text, false).unwrap();
        assert!(got.contains("    CMDLINE=root=UUID=1 rw\n"), "{got}");
        assert!(
            got.contains("    KERNEL_CMDLINE=root=UUID=1 rw iommu=pt amd_iommu=on\n"),
            "{got}"
        );
    }

    #[test]
    fn a_macro_line_is_edited_in_its_definition() {
        let text = "${cmdline}=root=UUID=1 rw quiet\nTIMEOUT=5\n:Arch\nPROTOCOL=linux\nCMDLINE=${cmdline}\n::Fallback\nPROTOCOL=linux\nCMDLINE=${cmdline}\n:Windows\nPROTOCOL=efi_chainload\nIMAGE_PATH=boot:///EFI/Microsoft/Boot/bootmgfw.efi\n";
        let got = edit(text, false).unwrap();
        assert!(
            got.starts_with("${cmdline}=root=UUID=1 rw quiet amd_iommu=on iommu=pt\n"),
            "{got}"
        );
        assert_eq!(got.matches("CMDLINE=${cmdline}\n").count(), 2);
        assert_eq!(edit(&got, true).unwrap(), text);
        assert_eq!(
            edit(&got, false).unwrap(),
            got,
            "a second edit changes nothing"
        );
    }

    #[test]
    fn a_mixed_line_edits_the_text_around_macros() {
        let text = "${root}=root=UUID=1 rw\n:Arch\nPROTOCOL=linux\nCMDLINE=${root} quiet\n";
        let got = edit(text, false).unwrap();
        assert!(
            got.contains("CMDLINE=${root} quiet amd_iommu=on iommu=pt\n"),
            "{got}"
        );
        assert_eq!(edit(&got, true).unwrap(), text);
    }

    #[test]
    fn unsafe_shapes_are_refused_with_their_line() {
        let undefined = ":Arch\nPROTOCOL=linux\nCMDLINE=${cmdline}\n";
        let e = format!("{:#}", edit(undefined, false).unwrap_err());
        assert!(
            e.starts_with("c:3: ") && e.contains("not defined") && e.contains("Limine 7"),
            "{e}"
        );
        let shared = "${x}=root=UUID=1\n:Arch\nPROTOCOL=linux\nCMDLINE=${x}\n:Other\nPROTOCOL=multiboot2\nCMDLINE=${x} debug\n";
        let e = format!("{:#}", edit(shared, false).unwrap_err());
        assert!(e.starts_with("c:7: ") && e.contains("line 1"), "{e}");
        let nested = "${a}=root=UUID=1\n${x}=${a} rw\n:Arch\nPROTOCOL=linux\nCMDLINE=${x}\n";
        let e = format!("{:#}", edit(nested, false).unwrap_err());
        assert!(
            e.starts_with("c:2: ") && e.contains("does not expand"),
            "{e}"
        );
        let hidden = "${x}=root=UUID=1 iommu=soft\n:Arch\nPROTOCOL=linux\nCMDLINE=${x} quiet\n";
        let e = format!("{:#}", edit(hidden, false).unwrap_err());
        assert!(e.starts_with("c:4: ") && e.contains("iommu=soft"), "{e}");
    }
}
