//! rEFInd (docs/refind.md): the options field of every line of `refind_linux.conf` beside the
//! kernel, and the `options` lines of the Linux stanzas (`menuentry`, `submenuentry`) in
//! `refind.conf` on the ESP and the files it includes. rEFInd reads both at every boot, so
//! there is no hook. The tokenizer follows rEFInd's own (`ReadTokenLine` in refind/config.c):
//! lines end at CR or LF, space, tab, `=` and `,` separate fields outside quotes, `#` outside
//! quotes starts a comment, `"` opens and closes a quoted field and `""` stands for one `"`.

use super::Out;
use crate::cmdline::{self, At, Byte, Opt};
use crate::root::Files;
use crate::splice::{self, Splice};
use anyhow::{Result, bail};

/// Where the ESP is mounted (docs/refind.md, "Where the files are").
pub const ESPS: [&str; 3] = ["/efi", "/boot/efi", "/boot"];
/// rEFInd's directory on the ESP: installed by `refind-install`, or as the fallback loader.
pub const CONF_DIRS: [&str; 2] = ["EFI/refind", "EFI/BOOT"];
/// The names rEFInd tries beside a kernel, in its order; the first one found is read.
pub const LINUX_CONF_NAMES: [&str; 2] = ["refind_linux.conf", "refind-linux.conf"];

/// `refind.conf` files under the ESP mount points.
pub fn configs(files: &dyn Files) -> Vec<String> {
    let mut out = Vec::new();
    for esp in ESPS {
        for dir in CONF_DIRS {
            let path = format!("{esp}/{dir}/refind.conf");
            if files.exists(&path) && !out.contains(&path) {
                out.push(path);
            }
        }
    }
    out
}

/// The `refind_linux.conf` rEFInd reads in each directory a kernel may live in: `/boot`, and
/// the directories under `EFI/` of the ESP.
pub fn linux_confs(files: &dyn Files) -> Result<Vec<String>> {
    let mut dirs = vec!["/boot".to_string()];
    for esp in ["/efi", "/boot/efi", "/boot"] {
        dirs.push(esp.to_string());
        for name in files.list(&format!("{esp}/EFI"))? {
            dirs.push(format!("{esp}/EFI/{name}"));
        }
    }
    let mut out: Vec<String> = Vec::new();
    for dir in dirs {
        if let Some(path) = LINUX_CONF_NAMES
            .iter()
            .map(|n| format!("{dir}/{n}"))
            .find(|p| files.exists(p))
            && !out.contains(&path)
        {
            out.push(path);
        }
    }
    Ok(out)
}

/// Why the root looks booted by rEFInd, if it does: its `refind.conf` on the ESP, and whether
/// a `refind_linux.conf` beside a kernel says rEFInd boots Linux here (`true`).
pub fn detect(files: &dyn Files) -> Option<(String, bool)> {
    let conf = configs(files).into_iter().next()?;
    let linux = linux_confs(files).ok()?.into_iter().next();
    Some(match linux {
        Some(l) => (format!("{conf} on the ESP and {l}"), true),
        None => (format!("{conf} on the ESP"), false),
    })
}

/// The options of the first line of the first `refind_linux.conf`: what rEFInd boots the
/// kernel beside it with by default (`check` reads the images with it).
pub fn default_options(files: &dyn Files) -> Result<Option<(String, String)>> {
    for path in linux_confs(files)? {
        let Some(text) = files.read(&path)? else {
            continue;
        };
        let Ok(lines) = tokenize(&text) else {
            continue;
        };
        if let Some(line) = lines.iter().find(|l| !l.toks.is_empty())
            && let Some(t) = line.toks.get(1)
        {
            let value: Vec<u8> = t.value.iter().map(|c| c.byte).collect();
            return Ok(Some((path, String::from_utf8_lossy(&value).into_owned())));
        }
    }
    Ok(None)
}

/// Plans the edits: every `refind_linux.conf` line and every Linux stanza's `options`.
pub fn plan(out: &mut dyn Out, wanted: &[Opt]) -> Result<()> {
    let confs = configs(out.files());
    let linux = linux_confs(out.files())?;
    if confs.is_empty() && linux.is_empty() {
        bail!(
            "host.bootloader = \"refind\", but the root has no rEFInd: no refind.conf in EFI/refind/ or EFI/BOOT/ under /efi, /boot/efi or /boot, and no /boot/refind_linux.conf; mount the ESP, or set host.bootloader to the boot loader `vfio-gen detect` names"
        );
    }
    let revert = out.revert();
    let mut edited_any = false;
    for path in &linux {
        let Some(old) = out.files().read(path)? else {
            continue;
        };
        let edit = edit_linux_conf(&old, wanted, revert, path)?;
        for n in edit.notes {
            out.note(n);
        }
        if !revert {
            for (n, line) in edit.lines {
                if let Some(w) = cmdline::length_check(&format!("{path}:{n}"), &line)
                    .map_err(anyhow::Error::msg)?
                {
                    out.warn(w);
                }
            }
        }
        edited_any |= edit.stanzas > 0;
        out.edited(path, Some(old), Some(edit.bytes))?;
    }
    // refind.conf and the files it includes (one level, relative to its directory).
    let mut stanza_files = Vec::new();
    for conf in &confs {
        let Some(text) = out.files().read(conf)? else {
            continue;
        };
        let dir = conf.rsplit_once('/').map_or("", |(d, _)| d).to_string();
        stanza_files.push((conf.clone(), text.clone()));
        for inc in includes(&text, conf)? {
            let path = format!("{dir}/{}", inc.replace('\\', "/").trim_start_matches('/'));
            if let Some(t) = out.files().read(&path)? {
                stanza_files.push((path, t));
            } else {
                out.warn(format!(
                    "{conf} includes {inc}, which is not in {dir}: its stanzas were not checked"
                ));
            }
        }
    }
    for (path, old) in stanza_files {
        let edit = edit_refind_conf(&old, wanted, revert, &path)?;
        for n in edit.notes {
            out.note(n);
        }
        for w in edit.warnings {
            out.warn(w);
        }
        if edit.stanzas == 0 {
            continue;
        }
        if !revert {
            for (n, line) in edit.lines {
                if let Some(w) = cmdline::length_check(&format!("{path}:{n}"), &line)
                    .map_err(anyhow::Error::msg)?
                {
                    out.warn(w);
                }
            }
        }
        edited_any = true;
        out.edited(&path, Some(old.clone()), Some(edit.bytes))?;
    }
    if !edited_any && !revert {
        bail!(
            "rEFInd is installed ({}), but nothing here holds the options of a Linux boot: rEFInd builds the options of a kernel it finds from refind_linux.conf beside it, and there is none, nor a manual Linux stanza with an options line. Create /boot/refind_linux.conf (rEFInd's mkrlconf writes one from /proc/cmdline), then run vfio-gen again",
            confs.join(", ")
        );
    }
    out.note("rEFInd reads refind_linux.conf and refind.conf at every boot: no command has to run after apply".into());
    Ok(())
}

/// One character of a field's value and where it stands in the file.
#[derive(Debug, Clone, Copy)]
struct Char {
    byte: u8,
    /// Offset in the file.
    at: usize,
    /// Bytes it takes there: 2 for a `""`.
    width: usize,
}

#[derive(Debug, Clone)]
struct Tok {
    /// Where the field starts (its opening quote, if any).
    start: usize,
    /// Where its value ends: the closing quote, or the byte after a bare field.
    value_end: usize,
    quoted: bool,
    /// Quotes that open or close in the middle of the field.
    mixed: bool,
    value: Vec<Char>,
}

impl Tok {
    fn text(&self) -> String {
        let v: Vec<u8> = self.value.iter().map(|c| c.byte).collect();
        String::from_utf8_lossy(&v).into_owned()
    }
}

#[derive(Debug, Clone)]
struct Line {
    number: usize,
    toks: Vec<Tok>,
}

/// Why a file cannot be edited safely.
#[derive(Debug)]
struct Bad {
    line: usize,
    what: String,
}

fn is_sep(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'=' | b',')
}

/// The file's lines as rEFInd reads them (docs/refind.md, "How rEFInd reads its files").
fn tokenize(text: &[u8]) -> std::result::Result<Vec<Line>, Bad> {
    if text.len() >= 4 && ((text[0] == 0xff && text[1] == 0xfe) || (text[1] == 0 && text[3] == 0)) {
        return Err(Bad {
            line: 1,
            what: "the file is UTF-16; vfio-gen edits UTF-8 and ASCII files: convert it (iconv -f UTF-16 -t UTF-8)".into(),
        });
    }
    let mut pos = if text.starts_with(&[0xef, 0xbb, 0xbf]) {
        3
    } else {
        0
    };
    let mut lines = Vec::new();
    let mut number = 1;
    while pos <= text.len() {
        let end = text[pos..]
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .map_or(text.len(), |i| pos + i);
        let line = tokenize_line(text, pos, end).map_err(|what| Bad { line: number, what })?;
        lines.push(Line { number, toks: line });
        if end >= text.len() {
            break;
        }
        // One line break: CRLF, LF or CR.
        pos = if text[end] == b'\r' && text.get(end + 1) == Some(&b'\n') {
            end + 2
        } else {
            end + 1
        };
        number += 1;
    }
    Ok(lines)
}

fn tokenize_line(text: &[u8], start: usize, end: usize) -> std::result::Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut p = start;
    let mut quoted = false;
    loop {
        while p < end && !quoted && is_sep(text[p]) {
            p += 1;
        }
        if p >= end || text[p] == b'#' {
            break;
        }
        let tok_start = p;
        let carried = quoted;
        let mut opened = false;
        if text[p] == b'"' {
            quoted = !quoted;
            opened = quoted;
            p += 1;
        }
        let mut value = Vec::new();
        let mut closed = false;
        while p < end {
            let c = text[p];
            if c == b'"' {
                if p + 1 < end && text[p + 1] == b'"' {
                    value.push(Char {
                        byte: b'"',
                        at: p,
                        width: 2,
                    });
                    p += 2;
                    continue;
                }
                quoted = !quoted;
                closed = !quoted;
                break;
            }
            if !quoted && (is_sep(c) || c == b'#') {
                break;
            }
            value.push(Char {
                byte: c,
                at: p,
                width: 1,
            });
            p += 1;
        }
        let value_end = p;
        let finished = p >= end || (text[p] == b'#' && !quoted);
        let mixed = carried || (opened != closed) || (!opened && p < end && text[p] == b'"');
        toks.push(Tok {
            start: tok_start,
            value_end,
            quoted: opened && closed,
            mixed,
            value,
        });
        if finished {
            break;
        }
        p += 1;
    }
    if quoted {
        return Err("a '\"' opens a field that is never closed on this line; rEFInd would read the rest of the line into it: close the quote".into());
    }
    Ok(toks)
}

/// The splices that make one field hold the options (or lose them, `revert`), its new value,
/// and the findings; a bare field is quoted when it changes.
fn edit_field(
    tok: &Tok,
    wanted: &[Opt],
    revert: bool,
    place: &str,
) -> Result<(Vec<Splice>, String, Vec<String>)> {
    let decoded: Vec<Byte> = tok.value.iter().map(|c| Some(c.byte)).collect();
    let (edits, findings) =
        cmdline::edit(&decoded, wanted, revert).map_err(|e| anyhow::anyhow!("{place}: {e}"))?;
    let plain: Vec<u8> = tok.value.iter().map(|c| c.byte).collect();
    let value = String::from_utf8_lossy(&cmdline::apply_plain(&plain, &edits)).into_owned();
    let notes = findings.iter().map(|f| f.describe(place)).collect();
    if edits.is_empty() {
        return Ok((Vec::new(), value, notes));
    }
    let quote = |t: &str| t.replace('"', "\"\"");
    let empty = tok.value.iter().all(|c| c.byte == b' ' || c.byte == b'\t');
    let mut ops = Vec::new();
    for &i in &edits.remove {
        let c = tok.value[i];
        ops.push(Splice::delete(c.at, c.at + c.width));
    }
    for (at, t) in &edits.insert {
        match at {
            At::Before(i) => ops.push(Splice::insert(tok.value[*i].at, quote(t), 1)),
            At::End => {
                let t = if empty { t.trim_start() } else { t.as_str() };
                ops.push(Splice::insert(tok.value_end, quote(t), 2));
            }
        }
    }
    if !tok.quoted {
        ops.push(Splice::insert(tok.start, "\"".into(), 3));
        ops.push(Splice::insert(tok.value_end, "\"".into(), 1));
    }
    Ok((ops, value, notes))
}

fn bad(path: &str, b: Bad) -> anyhow::Error {
    anyhow::anyhow!("{path}:{}: {}; nothing was written", b.line, b.what)
}

/// `refind_linux.conf`: the options field of every line (`stanzas` counts the lines).
fn edit_linux_conf(text: &[u8], wanted: &[Opt], revert: bool, path: &str) -> Result<ConfEdit> {
    let lines = tokenize(text).map_err(|b| bad(path, b))?;
    let mut ops = Vec::new();
    let mut notes = Vec::new();
    let mut values = Vec::new();
    for line in &lines {
        let n = line.number;
        if let Some(t) = line.toks.iter().find(|t| t.mixed) {
            bail!(
                "{path}:{n}: the field starting `{}` has a quote in its middle; rEFInd splits it there: write each field whole in quotes (\"label\" \"options\"); nothing was written",
                t.text()
            );
        }
        match line.toks.len() {
            0 => continue,
            1 => bail!(
                "{path}:{n}: the line has one field (\"{}\") and no options; rEFInd reads each line as \"label\" \"options\", and a line with one field ends its list of boot entries: add the options in quotes, or comment the line out with #; nothing was written",
                line.toks[0].text()
            ),
            2 => {}
            k => bail!(
                "{path}:{n}: the line has {k} fields; rEFInd reads two (\"label\" \"options\") and drops the rest, so options outside the quotes never reach the kernel: put all the options in one quoted field; nothing was written"
            ),
        }
        let (o, value, found) = edit_field(&line.toks[1], wanted, revert, &format!("{path}:{n}"))?;
        ops.extend(o);
        notes.extend(found);
        values.push((n, value));
    }
    let mut bytes = text.to_vec();
    splice::apply(&mut bytes, ops);
    Ok(ConfEdit {
        bytes,
        notes,
        warnings: Vec::new(),
        stanzas: values.len(),
        lines: values,
    })
}

/// `include` lines of a `refind.conf` outside its stanzas (rEFInd follows them from the main
/// file only).
fn includes(text: &[u8], path: &str) -> Result<Vec<String>> {
    let lines = tokenize(text).map_err(|b| bad(path, b))?;
    let mut depth = 0;
    let mut out = Vec::new();
    for l in &lines {
        let Some(first) = l.toks.first() else {
            continue;
        };
        let key = first.text();
        if key.eq_ignore_ascii_case("menuentry") && l.toks.len() > 1 && depth == 0 {
            depth = 1;
        } else if key.eq_ignore_ascii_case("submenuentry") && l.toks.len() > 1 && depth == 1 {
            depth = 2;
        } else if key == "}" && depth > 0 {
            depth -= 1;
        } else if depth == 0 && l.toks.len() == 2 && key.eq_ignore_ascii_case("include") {
            out.push(l.toks[1].text());
        }
    }
    Ok(out)
}

/// What editing a `refind.conf` found.
#[derive(Debug)]
struct ConfEdit {
    bytes: Vec<u8>,
    notes: Vec<String>,
    warnings: Vec<String>,
    /// Linux stanzas with options lines.
    stanzas: usize,
    lines: Vec<(usize, String)>,
}

/// A stanza being read: its title, first line, loader, OS type and `options` lines.
#[derive(Default)]
struct Stanza {
    title: String,
    line: usize,
    loader: Option<String>,
    ostype: Option<String>,
    /// (line number, field, in a submenu)
    options: Vec<(usize, Tok, bool)>,
}

impl Stanza {
    /// rEFInd's OS type `L`, or a loader that is a Linux kernel or a unified kernel image
    /// under EFI/Linux (docs/refind.md, "Manual stanzas").
    fn is_linux(&self) -> bool {
        if let Some(t) = &self.ostype {
            return t.starts_with('L') || t.starts_with('l');
        }
        self.loader.as_deref().is_some_and(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("vmlinuz") || l.contains("bzimage") || l.contains("linux")
        })
    }
}

/// `refind.conf`: the `options` lines of the Linux stanzas and their submenus.
fn edit_refind_conf(text: &[u8], wanted: &[Opt], revert: bool, path: &str) -> Result<ConfEdit> {
    let lines = tokenize(text).map_err(|b| bad(path, b))?;
    let mut stanzas: Vec<Stanza> = Vec::new();
    let mut current: Option<Stanza> = None;
    let mut depth = 0;
    for line in &lines {
        let Some(first) = line.toks.first() else {
            continue;
        };
        let key = first.text();
        let n = line.number;
        match current.as_mut() {
            None => {
                if key.eq_ignore_ascii_case("menuentry") && line.toks.len() > 1 {
                    current = Some(Stanza {
                        title: line.toks[1].text(),
                        line: n,
                        ..Stanza::default()
                    });
                    depth = 1;
                }
            }
            Some(s) => {
                if key == "}" {
                    depth -= 1;
                    if depth == 0
                        && let Some(s) = current.take()
                    {
                        stanzas.push(s);
                    }
                } else if key.eq_ignore_ascii_case("submenuentry") && line.toks.len() > 1 {
                    depth = 2;
                } else if key.eq_ignore_ascii_case("loader") && line.toks.len() > 1 && depth == 1 {
                    s.loader = Some(line.toks[1].text());
                } else if key.eq_ignore_ascii_case("ostype") && line.toks.len() > 1 {
                    s.ostype = Some(line.toks[1].text());
                } else if key.eq_ignore_ascii_case("options") && line.toks.len() > 1 {
                    if let Some(t) = line.toks.iter().find(|t| t.mixed) {
                        bail!(
                            "{path}:{n}: the field starting `{}` has a quote in its middle; rEFInd splits it there: write the options as one quoted field; nothing was written",
                            t.text()
                        );
                    }
                    if line.toks.len() > 2 {
                        bail!(
                            "{path}:{n}: `options` has {} fields; rEFInd passes only the first, so the rest never reach the kernel: put all the options in one quoted field (options \"root=... ro\"); nothing was written",
                            line.toks.len() - 1
                        );
                    }
                    s.options.push((n, line.toks[1].clone(), depth == 2));
                }
            }
        }
    }
    if let Some(s) = current.take() {
        stanzas.push(s);
    }
    let mut out = ConfEdit {
        bytes: text.to_vec(),
        notes: Vec::new(),
        warnings: Vec::new(),
        stanzas: 0,
        lines: Vec::new(),
    };
    let mut ops = Vec::new();
    for s in &stanzas {
        if !s.is_linux() {
            if !s.options.is_empty() {
                out.notes.push(format!(
                    "{path}:{}: the stanza \"{}\" does not boot Linux (loader {}), so its options are left alone",
                    s.line,
                    s.title,
                    s.loader.as_deref().unwrap_or("none")
                ));
            }
            continue;
        }
        if !s.options.iter().any(|(_, _, sub)| !sub) {
            out.warnings.push(format!(
                "{path}:{}: the Linux stanza \"{}\" has no options line, so rEFInd passes its kernel no command line (a unified kernel image keeps the one built into it); vfio-gen leaves it alone: add an options line with the options the system boots with, then run vfio-gen again",
                s.line, s.title
            ));
        }
        if s.options.is_empty() {
            continue;
        }
        out.stanzas += 1;
        for (n, tok, _) in &s.options {
            let (o, value, found) = edit_field(tok, wanted, revert, &format!("{path}:{n}"))?;
            ops.extend(o);
            out.notes.extend(found);
            out.lines.push((*n, value));
        }
    }
    splice::apply(&mut out.bytes, ops);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted() -> Vec<Opt> {
        vec![Opt::parse("intel_iommu=on"), Opt::parse("iommu=pt")]
    }

    fn linux(text: &str, revert: bool) -> String {
        let out = edit_linux_conf(text.as_bytes(), &wanted(), revert, "f").unwrap();
        String::from_utf8(out.bytes).unwrap()
    }

    fn linux_err(text: &str) -> String {
        format!(
            "{:#}",
            edit_linux_conf(text.as_bytes(), &wanted(), false, "/boot/refind_linux.conf")
                .unwrap_err()
        )
    }

    fn conf(text: &str, revert: bool) -> ConfEdit {
        edit_refind_conf(text.as_bytes(), &wanted(), revert, "r").unwrap()
    }

    #[test]
    fn every_line_of_refind_linux_conf_gets_the_options() {
        let text = "\"Boot with standard options\"  \"root=UUID=0b1c ro quiet splash\"\n\"Boot to single-user mode\"    \"root=UUID=0b1c ro single\"\n# \"Old\" \"root=/dev/sda1\"\n\n\"Boot with minimal options\"   \"ro root=UUID=0b1c\"\n";
        let want = "\"Boot with standard options\"  \"root=UUID=0b1c ro quiet splash intel_iommu=on iommu=pt\"\n\"Boot to single-user mode\"    \"root=UUID=0b1c ro single intel_iommu=on iommu=pt\"\n# \"Old\" \"root=/dev/sda1\"\n\n\"Boot with minimal options\"   \"ro root=UUID=0b1c intel_iommu=on iommu=pt\"\n";
        assert_eq!(linux(text, false), want);
        assert_eq!(linux(want, true), text);
        assert_eq!(linux(want, false), want, "a second apply changes nothing");
    }

    #[test]
    fn crlf_comments_tabs_and_doubled_quotes_stay() {
        let text = "\"Boot\"\t\"root=/dev/sdb9 my_opt=\"\"this is it\"\" iommu=soft\" # mine\r\n";
        assert_eq!(
            linux(text, false),
            "\"Boot\"\t\"root=/dev/sdb9 my_opt=\"\"this is it\"\" iommu=pt intel_iommu=on\" # mine\r\n"
        );
        // Without a line break at the end, and with an empty options field.
        assert_eq!(
            linux("\"Boot\" \"\"", false),
            "\"Boot\" \"intel_iommu=on iommu=pt\""
        );
        // A bare one-word field is quoted when it changes.
        assert_eq!(
            linux("Boot quiet\n", false),
            "Boot \"quiet intel_iommu=on iommu=pt\"\n"
        );
    }

    #[test]
    fn hostile_refind_linux_conf_lines_are_refused() {
        let e = linux_err("\"Boot\" \"root=/dev/sda1 ro\n");
        assert!(
            e.starts_with("/boot/refind_linux.conf:1: a '\"' opens a field that is never closed"),
            "{e}"
        );
        let e = linux_err("\"ok\" \"ro\"\n\"Boot with standard options\"\n");
        assert!(
            e.starts_with("/boot/refind_linux.conf:2: the line has one field"),
            "{e}"
        );
        let e = linux_err("\"Boot\" root=/dev/sda1 ro\n");
        assert!(e.contains(":1: the line has 4 fields"), "{e}");
        // A quote closed in the middle of a word: rEFInd reads a third field after it.
        let e = linux_err("\"Boot\" \"ro\"quiet\n");
        assert!(e.contains(":1: the line has 3 fields"), "{e}");
        let e = linux_err("Boot ro\"quiet\"\n");
        assert!(e.contains(":1: the field starting `ro`"), "{e}");
        let e = linux_err("\u{feff}\"a\" \"b\"\n\"c\"\n");
        assert!(e.contains(":2: "), "a UTF-8 BOM is skipped: {e}");
        let mut utf16 = vec![0xff, 0xfe];
        for b in b"\"a\" \"b\"\n" {
            utf16.extend([*b, 0]);
        }
        let e = format!(
            "{:#}",
            edit_linux_conf(&utf16, &wanted(), false, "f").unwrap_err()
        );
        assert!(e.contains("UTF-16"), "{e}");
    }

    #[test]
    fn the_tokenizer_reads_fields_as_refind_does() {
        let lines = tokenize(b"timeout=5 # x\n  \"a b\",c\r\rd\"\"e").unwrap();
        let text: Vec<Vec<String>> = lines
            .iter()
            .map(|l| l.toks.iter().map(|t| t.text()).collect())
            .collect();
        assert_eq!(
            text,
            vec![
                vec!["timeout".to_string(), "5".into()],
                vec!["a b".into(), "c".into()],
                vec![],
                vec!["d\"e".into()],
            ]
        );
    }

    #[test]
    fn linux_stanzas_and_their_submenus_get_the_options() {
        let text = "timeout 5\n\nmenuentry \"Arch Linux\" {\n    icon     /EFI/refind/icons/os_arch.png\n    volume   \"Arch Linux\"\n    loader   /boot/vmlinuz-linux\n    initrd   /boot/initramfs-linux.img\n    options  \"root=PARTUUID=5028fa50 rw add_efi_memmap\"\n    submenuentry \"Boot using fallback initramfs\" {\n        initrd /boot/initramfs-linux-fallback.img\n    }\n    submenuentry \"Boot to terminal\" {\n        add_options \"systemd.unit=multi-user.target\"\n    }\n    submenuentry \"Single user\" {\n        options \"root=PARTUUID=5028fa50 ro single\"\n    }\n}\n\nmenuentry \"Windows\" {\n    loader \\EFI\\Microsoft\\Boot\\bootmgfw.efi\n    options \"quiet\"\n}\n";
        let e = conf(text, false);
        let got = String::from_utf8(e.bytes.clone()).unwrap();
        assert!(got.contains("    options  \"root=PARTUUID=5028fa50 rw add_efi_memmap intel_iommu=on iommu=pt\"\n"), "{got}");
        assert!(
            got.contains(
                "        options \"root=PARTUUID=5028fa50 ro single intel_iommu=on iommu=pt\"\n"
            ),
            "{got}"
        );
        assert!(
            got.contains("    options \"quiet\"\n"),
            "Windows is left: {got}"
        );
        assert!(got.contains("add_options \"systemd.unit=multi-user.target\"\n"));
        assert_eq!(e.stanzas, 1);
        assert!(
            e.notes
                .iter()
                .any(|n| n.contains("\"Windows\" does not boot Linux")),
            "{:?}",
            e.notes
        );
        let back = conf(&got, true);
        assert_eq!(String::from_utf8(back.bytes).unwrap(), text);
    }

    #[test]
    fn a_linux_stanza_without_options_is_left_with_a_warning() {
        let text = "menuentry \"Arch (UKI)\" {\n    loader /EFI/Linux/arch-linux.efi\n}\n";
        let e = conf(text, false);
        assert_eq!(e.bytes, text.as_bytes());
        assert_eq!(e.stanzas, 0);
        assert!(
            e.warnings
                .iter()
                .any(|w| w.starts_with("r:1: the Linux stanza \"Arch (UKI)\" has no options line")),
            "{:?}",
            e.warnings
        );
        let err = format!(
            "{:#}",
            edit_refind_conf(
                b"menuentry Arch {\n loader /vmlinuz\n options root=/dev/sda1 ro\n}\n",
                &wanted(),
                false,
                "r"
            )
            .unwrap_err()
        );
        assert!(err.starts_with("r:3: `options` has 3 fields"), "{err}");
    }

    #[test]
    fn includes_are_found_outside_stanzas_only() {
        let text = b"include others.conf\nmenuentry x {\n include no.conf\n}\n";
        assert_eq!(
            includes(text, "r").unwrap(),
            vec!["others.conf".to_string()]
        );
    }
}
