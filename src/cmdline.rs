//! The kernel command-line model: tokenizing with the kernel's rules, and the edits that make
//! a line hold each managed option exactly once (or take them out again for `--revert`).
//!
//! The rules follow `lib/cmdline.c` (`next_arg`) and `kernel/params.c` (`parameq`):
//! arguments are separated by unquoted whitespace, `"` toggles quoting and is never escaped,
//! the name ends at the first `=`, and `-` and `_` are the same in names. A later occurrence
//! of a parameter wins, and everything after a bare `--` goes to init, not to the kernel.
//!
//! The line is a sequence of bytes that each target maps back to where they came from (a
//! GRUB variable may be spread over several assignments and files). A byte may be *opaque*
//! (`None`): text the tool cannot know, such as a shell `$VAR`. A token holding an opaque
//! byte is never matched or edited.

use std::collections::BTreeSet;

/// One byte of a command line, or `None` for text whose value is unknown.
pub type Byte = Option<u8>;

/// A kernel option vfio-gen manages: `name=value` or a bare flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    pub name: String,
    pub value: Option<String>,
}

impl Opt {
    pub fn parse(text: &str) -> Opt {
        match text.split_once('=') {
            Some((n, v)) => Opt {
                name: n.to_string(),
                value: Some(v.to_string()),
            },
            None => Opt {
                name: text.to_string(),
                value: None,
            },
        }
    }

    pub fn text(&self) -> String {
        match &self.value {
            Some(v) => format!("{}={}", self.name, v),
            None => self.name.clone(),
        }
    }

    /// The name as the kernel compares it: `-` and `_` are equal.
    pub fn key(&self) -> String {
        normalize(&self.name)
    }
}

impl std::fmt::Display for Opt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

/// The longest command line the x86 kernel keeps: COMMAND_LINE_SIZE is 2048 with the
/// terminating zero, and the rest is dropped without a word (docs/kernel-cmdline.md).
pub const COMMAND_LINE_MAX: usize = 2047;

/// Refuses a command line longer than the kernel keeps (`Err` with the message), and returns
/// a warning within 10 % of it.
pub fn length_check(place: &str, line: &str) -> Result<Option<String>, String> {
    let n = line.len();
    if n > COMMAND_LINE_MAX {
        Err(format!(
            "{place}: the kernel command line would be {n} bytes; the x86 kernel keeps at most {COMMAND_LINE_MAX} (COMMAND_LINE_SIZE 2048) and drops the rest without a word: shorten kernel.extra or the options already there"
        ))
    } else if n > COMMAND_LINE_MAX * 9 / 10 {
        Ok(Some(format!(
            "{place}: the kernel command line would be {n} bytes, close to the {COMMAND_LINE_MAX} the x86 kernel keeps (the boot loader adds its own, e.g. BOOT_IMAGE= or initrd=)"
        )))
    } else {
        Ok(None)
    }
}

pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// How repeated occurrences of a parameter combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The last occurrence wins (most parameters).
    Single,
    /// Every occurrence adds comma-separated module names (dracut's `rd.driver.*`, kmod's blacklists).
    ModuleList,
    /// `video=`: one occurrence per framebuffer driver, keyed by the text before `:`.
    Video,
    /// Every occurrence counts on its own (`console=`, `pci=`).
    Multi,
}

fn kind(key: &str) -> Kind {
    match key {
        "rd.driver.pre"
        | "rd.driver.post"
        | "rd.driver.blacklist"
        | "modprobe.blacklist"
        | "module_blacklist" => Kind::ModuleList,
        "video" => Kind::Video,
        "console" | "pci" => Kind::Multi,
        _ => Kind::Single,
    }
}

/// Whether two managed options would be the same setting (so a profile cannot hold both).
pub fn same_setting(a: &Opt, b: &Opt) -> bool {
    if a.key() != b.key() {
        return false;
    }
    match kind(&a.key()) {
        Kind::Single => true,
        Kind::Video => video_key(a.value.as_deref()) == video_key(b.value.as_deref()),
        Kind::ModuleList | Kind::Multi => a.value == b.value,
    }
}

fn video_key(value: Option<&str>) -> Option<&str> {
    value.map(|v| v.split(':').next().unwrap_or(v))
}

/// A whitespace-separated argument of a line: byte range and, when fully known, its text
/// with the kernel's quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub start: usize,
    pub end: usize,
    pub opt: Option<Opt>,
    pub raw: Option<Vec<u8>>,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Joins the parts of a line that live in different places (two GRUB variables, several
/// `options` lines). The kernel sees whitespace; edits never remove it or reach across it.
pub const BOUNDARY: Byte = Some(0x0b);

fn is_removable_space(b: Byte) -> bool {
    b != BOUNDARY && matches!(b, Some(b) if is_space(b))
}

/// Splits a line into arguments with the kernel's rules. Returns the tokens and whether a
/// `"` was left open at the end.
pub fn tokenize(line: &[Byte]) -> (Vec<Token>, bool) {
    let mut tokens = Vec::new();
    let mut i = 0;
    let mut in_quote = false;
    while i < line.len() {
        while i < line.len() && matches!(line[i], Some(b) if is_space(b)) {
            i += 1;
        }
        if i >= line.len() {
            break;
        }
        let start = i;
        while i < line.len() {
            match line[i] {
                Some(b) if is_space(b) && !in_quote => break,
                Some(b'"') => in_quote = !in_quote,
                _ => {}
            }
            i += 1;
        }
        let bytes: Option<Vec<u8>> = line[start..i].iter().copied().collect();
        let opt = bytes.as_ref().map(|raw| {
            let unquoted: Vec<u8> = raw.iter().copied().filter(|&b| b != b'"').collect();
            Opt::parse(&String::from_utf8_lossy(&unquoted))
        });
        tokens.push(Token {
            start,
            end: i,
            opt,
            raw: bytes,
        });
    }
    (tokens, in_quote)
}

/// Where new text goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// Before the byte at this index.
    Before(usize),
    /// After the last byte of the line.
    End,
}

/// The edits that bring a line to the wanted state, in terms of its byte indices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edits {
    /// Indices of bytes to delete.
    pub remove: BTreeSet<usize>,
    /// Text to insert; plain kernel text, each target quotes it for where it lands.
    pub insert: Vec<(At, String)>,
}

impl Edits {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.insert.is_empty()
    }
}

/// Why a line cannot be edited safely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    UnbalancedQuote,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::UnbalancedQuote => f.write_str(
                "the kernel command line has a '\"' that is never closed; close it by hand first",
            ),
        }
    }
}

/// A finding worth telling the user while editing a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The option as it stands in the line.
    pub found: String,
    /// What vfio-gen wants there instead (`None`: a duplicate taken out).
    pub wanted: Option<String>,
}

impl Finding {
    /// A note for the plan; `place` names the line (`/etc/kernel/cmdline`, `the GRUB command line`).
    pub fn describe(&self, place: &str) -> String {
        match &self.wanted {
            Some(w) => format!(
                "{place} holds {}; vfio-gen sets {w} in its place",
                self.found
            ),
            None => format!(
                "{place}: {} appears more than once; the earlier one is removed (the last one wins)",
                self.found
            ),
        }
    }
}

/// Computes the edits that make `line` hold every option of `wanted` exactly once
/// (`revert == false`), or that take out every occurrence equal to one of them (`revert`).
///
/// Tokens vfio-gen does not manage are never touched. A conflicting value is replaced where it
/// stands; earlier duplicates of a last-wins option are removed; missing options are added in
/// the order of `wanted`, before a `--` if the line has one, else at `At::End`.
pub fn edit(
    line: &[Byte],
    wanted: &[Opt],
    revert: bool,
) -> Result<(Edits, Vec<Finding>), LineError> {
    let (all, open) = tokenize(line);
    if open {
        return Err(LineError::UnbalancedQuote);
    }
    let init_args = all.iter().position(|t| t.raw.as_deref() == Some(b"--"));
    let tokens = &all[..init_args.unwrap_or(all.len())];
    let mut edits = Edits::default();
    let mut findings = Vec::new();
    let mut drop = BTreeSet::new();
    let mut add = Vec::new();

    for want in wanted {
        let key = want.key();
        let k = kind(&key);
        let same: Vec<usize> = tokens
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match &t.opt {
                Some(o) if o.key() == key => match k {
                    Kind::Video
                        if video_key(o.value.as_deref()) != video_key(want.value.as_deref()) =>
                    {
                        None
                    }
                    _ => Some(i),
                },
                _ => None,
            })
            .collect();
        let exact = |i: &usize| {
            tokens[*i]
                .opt
                .as_ref()
                .map(|o| o.value == want.value)
                .unwrap_or(false)
        };
        if revert {
            drop.extend(same.iter().copied().filter(|i| exact(i)));
            continue;
        }
        match k {
            Kind::Single | Kind::Video => {
                let Some((&last, earlier)) = same.split_last() else {
                    add.push(want.text());
                    continue;
                };
                for &i in earlier {
                    findings.push(Finding {
                        found: opt_text(&tokens[i]),
                        wanted: None,
                    });
                    drop.insert(i);
                }
                if !satisfies(tokens[last].opt.as_ref(), want) {
                    findings.push(Finding {
                        found: opt_text(&tokens[last]),
                        wanted: Some(want.text()),
                    });
                    let t = &tokens[last];
                    edits.remove.extend(t.start..t.end);
                    edits.insert.push((At::Before(t.start), want.text()));
                }
            }
            Kind::ModuleList => {
                let wanted_module = want.value.as_deref().map(normalize);
                let present = same.iter().any(|&i| {
                    let v = tokens[i]
                        .opt
                        .as_ref()
                        .and_then(|o| o.value.clone())
                        .unwrap_or_default();
                    v.split(',').any(|m| Some(normalize(m)) == wanted_module)
                });
                if !present {
                    add.push(want.text());
                }
            }
            Kind::Multi => {
                if !same.iter().any(exact) {
                    add.push(want.text());
                }
            }
        }
    }

    for &i in &drop {
        let t = &tokens[i];
        edits.remove.extend(t.start..t.end);
        // Take one blank with it, the inverse of the one blank an append adds: the one before
        // it, or the one after when there is none (or another removal took it).
        let free = |b: usize| is_removable_space(line[b]) && !edits.remove.contains(&b);
        let before = t.start.checked_sub(1).filter(|&b| free(b));
        let after = Some(t.end).filter(|&a| a < line.len() && free(a));
        edits.remove.extend(before.or(after));
    }

    if !add.is_empty() {
        let text = add.join(" ");
        match init_args {
            Some(i) => edits
                .insert
                .push((At::Before(all[i].start), format!("{text} "))),
            None => {
                let needs_space = !empty_after(line, &edits);
                let sep = if needs_space { " " } else { "" };
                edits.insert.push((At::End, format!("{sep}{text}")));
            }
        }
    }
    Ok((edits, findings))
}

/// Whether the line, after the edits so far, holds nothing (so an append needs no blank).
fn empty_after(line: &[Byte], edits: &Edits) -> bool {
    let kept = (0..line.len()).any(|i| !edits.remove.contains(&i) && line[i] != BOUNDARY);
    !kept && edits.insert.iter().all(|(_, t)| t.is_empty())
}

fn opt_text(t: &Token) -> String {
    t.raw
        .as_ref()
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .unwrap_or_default()
}

/// Whether `found` gives what `want` asks for: the same setting with the same value, or a
/// comma list that holds every item of the wanted one (`intel_iommu=on,igfx_off` holds
/// `intel_iommu=on`).
pub fn holds(found: &Opt, want: &Opt) -> bool {
    same_setting(found, want) && satisfies(Some(found), want)
}

/// Whether an option found in the line already gives what `want` asks for. Comma-separated
/// flag lists hold it when they contain every wanted item (`intel_iommu=on,sm_on` holds `on`).
fn satisfies(found: Option<&Opt>, want: &Opt) -> bool {
    let Some(found) = found else { return false };
    match (&found.value, &want.value) {
        (None, None) => true,
        (Some(f), Some(w)) => f == w || w.split(',').all(|item| f.split(',').any(|x| x == item)),
        _ => false,
    }
}

/// The bytes of a known line, for editing plain text.
pub fn bytes(text: &[u8]) -> Vec<Byte> {
    text.iter().map(|&b| Some(b)).collect()
}

/// Applies edits to a plain text line (no quoting context): for `/etc/kernel/cmdline`,
/// loader entries and tests.
pub fn apply_plain(text: &[u8], edits: &Edits) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 64);
    for (i, &b) in text.iter().enumerate() {
        for (at, s) in &edits.insert {
            if *at == At::Before(i) {
                out.extend_from_slice(s.as_bytes());
            }
        }
        if !edits.remove.contains(&i) {
            out.push(b);
        }
    }
    for (at, s) in &edits.insert {
        if *at == At::End {
            out.extend_from_slice(s.as_bytes());
        }
    }
    out
}

/// Ensures (or with `revert` removes) the options in a plain line.
pub fn edit_plain(text: &str, wanted: &[Opt], revert: bool) -> Result<String, LineError> {
    let (edits, _) = edit(&bytes(text.as_bytes()), wanted, revert)?;
    Ok(String::from_utf8_lossy(&apply_plain(text.as_bytes(), &edits)).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Vec<Opt> {
        list.iter().map(|s| Opt::parse(s)).collect()
    }

    fn ensure(line: &str, list: &[&str]) -> String {
        edit_plain(line, &opts(list), false).unwrap()
    }

    fn revert(line: &str, list: &[&str]) -> String {
        edit_plain(line, &opts(list), true).unwrap()
    }

    const SEED: &[&str] = &["intel_iommu=on", "iommu=pt", "rd.driver.pre=vfio-pci"];

    #[test]
    fn appends_missing_options_in_order() {
        assert_eq!(
            ensure(
                r#"root=PARTLABEL="PRIMARY" rootfstype=xfs add_efi_memmap"#,
                SEED
            ),
            r#"root=PARTLABEL="PRIMARY" rootfstype=xfs add_efi_memmap intel_iommu=on iommu=pt rd.driver.pre=vfio-pci"#
        );
        assert_eq!(
            ensure("", SEED),
            "intel_iommu=on iommu=pt rd.driver.pre=vfio-pci"
        );
        assert_eq!(ensure("quiet ", &["iommu=pt"]), "quiet  iommu=pt");
        assert_eq!(revert("quiet  iommu=pt", &["iommu=pt"]), "quiet ");
    }

    #[test]
    fn replaces_a_conflicting_value_where_it_stands() {
        assert_eq!(
            ensure("quiet iommu=nopt splash", &["iommu=pt"]),
            "quiet iommu=pt splash"
        );
        assert_eq!(
            ensure("intel-iommu=off quiet", &["intel_iommu=on"]),
            "intel_iommu=on quiet"
        );
    }

    #[test]
    fn keeps_present_options_and_comma_forms() {
        assert_eq!(
            ensure("intel-iommu=on quiet", &["intel_iommu=on"]),
            "intel-iommu=on quiet"
        );
        assert_eq!(
            ensure("intel_iommu=on,sm_on", &["intel_iommu=on"]),
            "intel_iommu=on,sm_on"
        );
        assert_eq!(
            ensure("rd.driver.pre=nvme,vfio_pci", &["rd.driver.pre=vfio-pci"]),
            "rd.driver.pre=nvme,vfio_pci"
        );
    }

    #[test]
    fn removes_earlier_duplicates_of_last_wins_options() {
        assert_eq!(
            ensure("iommu=pt quiet iommu=soft", &["iommu=pt"]),
            "quiet iommu=pt"
        );
    }

    #[test]
    fn video_options_are_per_driver() {
        assert_eq!(
            ensure("video=vesafb:off", &["video=efifb:off"]),
            "video=vesafb:off video=efifb:off"
        );
        assert_eq!(
            ensure("video=efifb:on", &["video=efifb:off"]),
            "video=efifb:off"
        );
    }

    #[test]
    fn inserts_before_init_arguments() {
        assert_eq!(
            ensure("quiet -- single iommu=x", &["iommu=pt"]),
            "quiet iommu=pt -- single iommu=x"
        );
    }

    #[test]
    fn quoted_values_are_one_token() {
        let line = r#"acpi_osi="Windows 2015" quiet"#;
        assert_eq!(ensure(line, &["iommu=pt"]), format!("{line} iommu=pt"));
        assert!(edit_plain("foo=\"bar baz", &opts(&["iommu=pt"]), false).is_err());
    }

    #[test]
    fn revert_takes_out_exactly_the_managed_options() {
        let before = "quiet splash";
        let after = ensure(before, SEED);
        assert_eq!(revert(&after, SEED), before);
        assert_eq!(revert("intel_iommu=on quiet iommu=pt", SEED), "quiet");
        assert_eq!(revert("intel_iommu=on iommu=pt", SEED), "");
        assert_eq!(revert("iommu=soft quiet", SEED), "iommu=soft quiet");
    }

    #[test]
    fn opaque_bytes_are_never_matched() {
        let mut line = bytes(b"iommu=");
        line.push(None);
        let (edits, _) = edit(&line, &opts(&["iommu=pt"]), false).unwrap();
        assert!(edits.remove.is_empty());
        assert_eq!(edits.insert, vec![(At::End, " iommu=pt".to_string())]);
    }
}
