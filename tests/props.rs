//! Property tests for the kernel command-line editor and the files it edits (the rules in
//! docs/kernel-cmdline.md, "Tokens"): plain lines (`cmdline::edit_plain`), `/etc/default/grub`
//! (`targets::grub`) and loader entries / `/etc/kernel/cmdline` (`targets::lines`).
//!
//! Generators build realistic tokens: flags (`quiet`), `name=value` with names that vfio-gen
//! manages (also in their dash spelling) and names it does not, comma and colon values,
//! kernel-quoted values (`acpi_osi="Windows 2015"`), whitespace runs with tabs, and `--`.

// No function over 150 lines (the threshold is in clippy.toml): split it into functions with
// one job each.
#![deny(clippy::too_many_lines)]

use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::path::Path;
use std::process::Command;
use vfio_gen::cmdline::{Opt, bytes, edit_plain, normalize, tokenize};
use vfio_gen::targets::grub::{GrubConfig, Source};
use vfio_gen::targets::lines::{self, Shape};

#[path = "support/skip.rs"]
mod skip;

const PURE_CASES: u32 = 256;
const SH_CASES: u32 = 48;
const DEFAULT_VAR: &str = "GRUB_CMDLINE_LINUX_DEFAULT";

/// A proptest configuration that writes no regression files next to the sources.
fn config(cases: u32) -> Config {
    Config {
        failure_persistence: None,
        ..Config::with_cases(cases)
    }
}

// ---------------------------------------------------------------------------------------------
// Pools
// ---------------------------------------------------------------------------------------------

/// Options a profile may ask for (no two are the same setting).
const WANTED_POOL: &[&str] = &[
    "intel_iommu=on",
    "amd_iommu=on",
    "iommu=pt",
    "rd.driver.pre=vfio-pci",
    "video=efifb:off",
    "video=vesafb:off",
    "vfio-pci.ids=10de:1b80,10de:10f0",
    "kvm.ignore_msrs=1",
];

const FLAGS: &[&str] = &[
    "quiet",
    "splash",
    "rw",
    "ro",
    "nomodeset",
    "noresume",
    "single",
];

/// Names of the wanted pool, in both spellings, plus names vfio-gen never manages.
const NAMES: &[&str] = &[
    "intel_iommu",
    "intel-iommu",
    "amd_iommu",
    "amd-iommu",
    "iommu",
    "rd.driver.pre",
    "video",
    "vfio-pci.ids",
    "vfio_pci.ids",
    "kvm.ignore_msrs",
    "kvm.ignore-msrs",
    "root",
    "loglevel",
    "console",
    "acpi_osi",
    "pcie_aspm",
];

/// Names that are not in the wanted pool under any spelling.
const OTHER_NAMES: &[&str] = &[
    "root",
    "loglevel",
    "console",
    "acpi_osi",
    "pcie_aspm",
    "resume",
    "nvidia-drm.modeset",
];

const VALUES: &[&str] = &[
    "on",
    "off",
    "pt",
    "nopt",
    "soft",
    "1",
    "on,sm_on",
    "sm_on,on",
    "vfio-pci",
    "vfio_pci",
    "nvme,vfio_pci",
    "efifb:off",
    "efifb:on",
    "vesafb:off",
    "simplefb:off",
    "HDMI-A-1:1920x1080@60",
    "10de:1b80,10de:10f0",
    "10de:10f0,10de:1b80",
    "ttyS0,115200n8",
    "/dev/sda2",
    "UUID=1234-abcd",
    "PARTLABEL=PRIMARY",
];

/// Words inside a kernel-quoted value.
const WORDS: &[&str] = &["Windows", "2015", "Linux", "PRIMARY", "x"];

/// Lines of `/etc/default/grub` that do not assign the command-line variables.
const GRUB_OTHER: &[&str] = &[
    "",
    "# If you change this file, run 'update-grub' afterwards to update",
    "#GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\"",
    "GRUB_DEFAULT=0",
    "GRUB_TIMEOUT=5",
    "GRUB_TIMEOUT_STYLE=hidden",
    "GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`",
    "GRUB_DISTRIBUTOR=\"$(sed 's, release .*$,,g' /etc/system-release 2>/dev/null)\"",
    "export GRUB_COLOR_NORMAL=\"light-gray/black\"",
    "GRUB_TERMINAL=console",
    "GRUB_DISABLE_OS_PROBER=false",
    "GRUB_GFXMODE=640x480",
    "#GRUB_DISABLE_RECOVERY=\"true\"",
    "GRUB_ENABLE_BLSCFG=true",
];

/// Lines of a loader entry other than `options`.
const ENTRY_OTHER: &[&str] = &[
    "title Arch Linux",
    "linux /vmlinuz-linux",
    "initrd /intel-ucode.img",
    "initrd /initramfs-linux.img",
    "# edited by hand",
    "sort-key arch",
    "machine-id 6a9857a393724b7a981ebb5b8495b9ea",
    "version 6.9.1-arch1-1",
    "",
];

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// A non-empty subset of the wanted pool, in random order.
fn wanted() -> impl Strategy<Value = Vec<Opt>> {
    subsequence(WANTED_POOL, 1..=4)
        .prop_shuffle()
        .prop_map(|v| v.iter().map(|s| Opt::parse(s)).collect())
}

/// A run of blanks (spaces and tabs), possibly empty when `min` is 0.
fn blanks(min: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(select(&[" ", "\t"][..]), min..=3).prop_map(|v| v.concat())
}

/// A token with no `"` in it: a flag, `name=value` or a bare name.
fn word_token() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(FLAGS).prop_map(String::from),
        5 => (select(NAMES), select(VALUES)).prop_map(|(n, v)| format!("{n}={v}")),
        1 => select(NAMES).prop_map(String::from),
    ]
}

/// Any token, kernel-quoted values included (`acpi_osi="Windows 2015"`, `iommu="pt"`).
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => word_token(),
        1 => (select(NAMES), select(WORDS), select(WORDS))
            .prop_map(|(n, a, b)| format!("{n}=\"{a} {b}\"")),
        1 => (select(NAMES), select(VALUES)).prop_map(|(n, v)| format!("{n}=\"{v}\"")),
    ]
}

/// A token with no `"` whose name is outside the wanted pool (or a `video=` for another
/// driver).
fn unmanaged_word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(FLAGS).prop_map(String::from),
        4 => (select(OTHER_NAMES), select(VALUES)).prop_map(|(n, v)| format!("{n}={v}")),
        1 => select(&["video=simplefb:off", "video=HDMI-A-1:1920x1080@60"][..])
            .prop_map(String::from),
    ]
}

/// An unmanaged token, kernel-quoted values included.
fn unmanaged_token() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => unmanaged_word(),
        1 => (select(WORDS), select(WORDS)).prop_map(|(a, b)| format!("acpi_osi=\"{a} {b}\"")),
    ]
}

/// Tokens from `tok` separated by blank runs, with optional leading and trailing blanks.
fn line_of(tok: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    (
        blanks(0),
        prop::collection::vec((tok, blanks(1)), 0..7),
        blanks(0),
    )
        .prop_map(|(lead, toks, trail)| {
            let mut s = lead;
            for (i, (t, gap)) in toks.iter().enumerate() {
                s.push_str(t);
                if i + 1 < toks.len() {
                    s.push_str(gap);
                }
            }
            s.push_str(&trail);
            s
        })
}

/// A plain kernel line of any tokens, sometimes with a `--` (init arguments follow).
fn plain_line() -> impl Strategy<Value = String> {
    line_of(prop_oneof![20 => token(), 1 => Just("--".to_string())])
}

/// A line whose kernel part names no option of the wanted pool; what follows a `--` may.
fn unmanaged_line() -> impl Strategy<Value = String> {
    (
        line_of(unmanaged_token()),
        prop::option::weighted(0.2, line_of(token())),
    )
        .prop_map(|(kernel, init)| match init {
            Some(init) => format!("{kernel} -- {init}"),
            None => kernel,
        })
}

/// `#` comment lines and other assignments, each ending in a newline.
fn grub_other_lines() -> impl Strategy<Value = String> {
    prop::collection::vec(select(GRUB_OTHER), 0..5)
        .prop_map(|v| v.iter().map(|l| format!("{l}\n")).collect())
}

/// A shell value: the kernel tokens of `tok` double-quoted (kernel quotes escaped) or
/// single-quoted, one unquoted word from `bare`, or empty.
fn grub_value(
    tok: impl Strategy<Value = String> + Clone,
    bare: impl Strategy<Value = String>,
) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => line_of(tok.clone()).prop_map(|l| format!("\"{}\"", l.replace('"', "\\\""))),
        2 => line_of(tok).prop_map(|l| format!("'{l}'")),
        1 => bare,
        1 => select(&["", "\"\"", "''"][..]).prop_map(String::from),
    ]
}

/// One assignment split into the text before the value (`export NAME=`), the value, and the
/// text after it up to and including the newline (`  # comment\n`).
fn grub_assignment(
    name: &'static str,
    value: impl Strategy<Value = String>,
) -> impl Strategy<Value = (String, String, String)> {
    (
        any::<bool>(),
        value,
        select(&["", " # added by hand", "\t#comment"][..]),
    )
        .prop_map(move |(export, value, comment)| {
            let head = format!("{}{name}=", if export { "export " } else { "" });
            (head, value, format!("{comment}\n"))
        })
}

/// A GRUB file for the byte-preservation property: prefix, the one assignment of
/// `GRUB_CMDLINE_LINUX_DEFAULT` as (head, value, tail), suffix. The prefix may assign
/// `GRUB_CMDLINE_LINUX` with tokens vfio-gen never manages.
#[derive(Debug, Clone)]
struct GrubSplit {
    prefix: String,
    head: String,
    value: String,
    tail: String,
    suffix: String,
}

impl GrubSplit {
    fn text(&self) -> String {
        format!(
            "{}{}{}{}{}",
            self.prefix, self.head, self.value, self.tail, self.suffix
        )
    }
}

/// With `linux_blank_end` false, a `GRUB_CMDLINE_LINUX` value, if any, never ends in blanks
/// inside its quotes; with it true, there always is one and it always does (the case of
/// `grub_edit_keeps_linux_trailing_blank`).
fn grub_split(linux_blank_end: bool) -> impl Strategy<Value = GrubSplit> {
    let linux = if linux_blank_end {
        (line_of(unmanaged_token()), blanks(1))
            .prop_map(|(l, end)| {
                Some(format!(
                    "GRUB_CMDLINE_LINUX=\"{}{end}\"\n",
                    l.replace('"', "\\\"")
                ))
            })
            .boxed()
    } else {
        prop::option::of(
            grub_assignment(
                "GRUB_CMDLINE_LINUX",
                grub_value(unmanaged_token().boxed(), unmanaged_word())
                    .prop_map(|v| trim_quoted_end(&v)),
            )
            .prop_map(|(h, v, t)| format!("{h}{v}{t}")),
        )
        .boxed()
    };
    (
        grub_other_lines(),
        linux,
        grub_other_lines(),
        grub_assignment(DEFAULT_VAR, default_value()),
        grub_other_lines(),
    )
        .prop_map(|(a, linux, b, (head, value, tail), suffix)| GrubSplit {
            prefix: format!("{a}{}{b}", linux.unwrap_or_default()),
            head,
            value,
            tail,
            suffix,
        })
}

/// A value for `GRUB_CMDLINE_LINUX_DEFAULT`. An unquoted word is one vfio-gen does not manage:
/// see `grub_unquoted_managed_word` for the other case.
fn default_value() -> BoxedStrategy<String> {
    grub_value(token().boxed(), unmanaged_word()).boxed()
}

/// Drops the blanks just before the closing quote of a quoted value: `"quiet "` -> `"quiet"`.
fn trim_quoted_end(value: &str) -> String {
    match value.chars().last() {
        Some(q @ ('"' | '\'')) if value.len() >= 2 => {
            let inner = value[..value.len() - 1].trim_end_matches([' ', '\t']);
            format!("{inner}{q}")
        }
        _ => value.to_string(),
    }
}

/// A whole GRUB file: other lines, `GRUB_CMDLINE_LINUX` (any tokens) before or after or not at
/// all, the `GRUB_CMDLINE_LINUX_DEFAULT` assignment, and sometimes a second assignment that
/// appends to it through `$GRUB_CMDLINE_LINUX_DEFAULT` or `${...}`.
fn grub_file() -> impl Strategy<Value = String> {
    grub_file_with(default_value())
}

/// `grub_file` with the value of the first `GRUB_CMDLINE_LINUX_DEFAULT` assignment from `value`.
fn grub_file_with(value: BoxedStrategy<String>) -> impl Strategy<Value = String> {
    let assign = |name, value| grub_assignment(name, value).prop_map(|(h, v, t)| h + &v + &t);
    let self_ref = (
        select(
            &[
                "$GRUB_CMDLINE_LINUX_DEFAULT",
                "${GRUB_CMDLINE_LINUX_DEFAULT}",
            ][..],
        ),
        line_of(token()),
    )
        .prop_map(|(r, l)| format!("{DEFAULT_VAR}=\"{r} {}\"\n", l.replace('"', "\\\"")));
    (
        grub_other_lines(),
        prop::option::of(assign(
            "GRUB_CMDLINE_LINUX",
            grub_value(token().boxed(), word_token()).boxed(),
        )),
        any::<bool>(),
        assign(DEFAULT_VAR, value),
        prop::option::weighted(0.25, self_ref),
        grub_other_lines(),
    )
        .prop_map(|(pre, linux, linux_first, default, again, post)| {
            let linux = linux.unwrap_or_default();
            let (before, after) = if linux_first {
                (linux, String::new())
            } else {
                (String::new(), linux)
            };
            format!(
                "{pre}{before}{default}{}{after}{post}",
                again.unwrap_or_default()
            )
        })
}

/// A loader entry: other lines and 1..=3 `options` lines in random order, LF or CRLF, with or
/// without a final newline.
fn entry() -> impl Strategy<Value = String> {
    let options = (
        select(&["options ", "options\t", "options  ", "  options "][..]),
        plain_line(),
    )
        .prop_map(|(key, line)| {
            if line.is_empty() && key == "options " {
                "options".to_string()
            } else {
                format!("{key}{line}")
            }
        });
    (
        prop::collection::vec(select(ENTRY_OTHER).prop_map(String::from), 1..5),
        prop::collection::vec(options, 1..=3),
        select(&["\n", "\r\n"][..]),
        any::<bool>(),
    )
        .prop_flat_map(|(other, options, eol, final_eol)| {
            let mut all = other;
            all.extend(options);
            (Just(all).prop_shuffle(), Just(eol), Just(final_eol))
        })
        .prop_map(|(lines, eol, final_eol)| {
            let mut s = lines.join(eol);
            if final_eol {
                s.push_str(eol);
            }
            s
        })
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

fn ensure(line: &str, wanted: &[Opt]) -> Result<String, TestCaseError> {
    edit_plain(line, wanted, false).map_err(fail)
}

fn revert(line: &str, wanted: &[Opt]) -> Result<String, TestCaseError> {
    edit_plain(line, wanted, true).map_err(fail)
}

/// The kernel tokens of a line (raw text and parsed option), and where a `--` cuts off the
/// kernel's part (`len` when there is none).
fn kernel_tokens(line: &str) -> (Vec<(String, Opt)>, usize) {
    let (toks, open) = tokenize(&bytes(line.as_bytes()));
    assert!(!open, "generated line has an open quote: {line:?}");
    let toks: Vec<(String, Opt)> = toks
        .into_iter()
        .map(|t| {
            (
                String::from_utf8(t.raw.expect("plain text is known")).unwrap(),
                t.opt.expect("plain text is known"),
            )
        })
        .collect();
    let cut = toks
        .iter()
        .position(|(raw, _)| raw == "--")
        .unwrap_or(toks.len());
    (toks, cut)
}

fn video_driver(o: &Opt) -> Option<&str> {
    o.value.as_deref().map(|v| v.split(':').next().unwrap_or(v))
}

fn is_module_list(want: &Opt) -> bool {
    want.key() == "rd.driver.pre"
}

/// Whether `found` is the same setting as `want` (same normalized name; for `video`, the same
/// driver).
fn same_setting(found: &Opt, want: &Opt) -> bool {
    normalize(&found.name) == want.key()
        && (want.key() != "video" || video_driver(found) == video_driver(want))
}

/// Whether a token is one vfio-gen may touch for this wanted set.
fn managed(found: &Opt, wanted: &[Opt]) -> bool {
    wanted.iter().any(|w| same_setting(found, w))
}

/// Whether `found` gives what `want` asks for: equal, or a comma list holding every item.
fn holds(found: &Opt, want: &Opt) -> bool {
    match (&found.value, &want.value) {
        (None, None) => true,
        (Some(f), Some(w)) => f == w || w.split(',').all(|i| f.split(',').any(|x| x == i)),
        _ => false,
    }
}

/// The raw text of every token vfio-gen must leave alone, in order: unmanaged kernel tokens
/// and everything after `--`.
fn untouched(line: &str, wanted: &[Opt]) -> Vec<String> {
    let (toks, cut) = kernel_tokens(line);
    toks.into_iter()
        .enumerate()
        .filter(|(i, (_, o))| *i >= cut || !managed(o, wanted))
        .map(|(_, (raw, _))| raw)
        .collect()
}

/// Checks that every wanted option is in the kernel part of `line` exactly once (last-wins
/// names and `video=` per driver) or at least once (module lists).
fn check_exactly_once(line: &str, wanted: &[Opt]) -> Result<(), TestCaseError> {
    let (toks, cut) = kernel_tokens(line);
    let kernel = &toks[..cut];
    for want in wanted {
        if is_module_list(want) {
            let module = normalize(want.value.as_deref().unwrap_or_default());
            let present = kernel.iter().any(|(_, o)| {
                o.key() == want.key()
                    && o.value
                        .as_deref()
                        .unwrap_or_default()
                        .split(',')
                        .any(|m| normalize(m) == module)
            });
            prop_assert!(present, "{want} missing from {line:?}");
            continue;
        }
        let same: Vec<&(String, Opt)> = kernel
            .iter()
            .filter(|(_, o)| same_setting(o, want))
            .collect();
        prop_assert_eq!(same.len(), 1, "{} in {:?}", want, line);
        prop_assert!(holds(&same[0].1, want), "{want} not held by {line:?}");
    }
    Ok(())
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn grub(text: &str) -> Result<GrubConfig, TestCaseError> {
    GrubConfig::parse(vec![Source {
        path: "/etc/default/grub".into(),
        bytes: text.as_bytes().to_vec(),
    }])
    .map_err(|e| fail(format!("{e:#}\n--- file ---\n{text}")))
}

fn grub_edit(text: &str, wanted: &[Opt], revert: bool) -> Result<String, TestCaseError> {
    let (files, _) = grub(text)?
        .edit(DEFAULT_VAR, wanted, revert)
        .map_err(|e| fail(format!("{e:#}")))?;
    prop_assert_eq!(files.len(), 1);
    String::from_utf8(files[0].clone()).map_err(fail)
}

/// What `sh` makes of the kernel line of a GRUB file: `$GRUB_CMDLINE_LINUX
/// $GRUB_CMDLINE_LINUX_DEFAULT` after sourcing it, split on whitespace. Also checks `sh -n`.
fn sh_kernel_words(sh: &Path, file: &Path, text: &str) -> Result<Vec<String>, TestCaseError> {
    std::fs::write(file, text).map_err(fail)?;
    let syntax = Command::new(sh)
        .arg("-n")
        .arg(file)
        .output()
        .map_err(fail)?;
    prop_assert!(
        syntax.status.success(),
        "sh -n fails: {}\n--- file ---\n{}",
        String::from_utf8_lossy(&syntax.stderr),
        text
    );
    let out = Command::new(sh)
        .arg("-c")
        .arg(r#". "$1"; printf %s "$GRUB_CMDLINE_LINUX $GRUB_CMDLINE_LINUX_DEFAULT""#)
        .arg("sh")
        .arg(file)
        .output()
        .map_err(fail)?;
    prop_assert!(
        out.status.success(),
        "sourcing fails: {}\n--- file ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        text
    );
    Ok(words(&String::from_utf8_lossy(&out.stdout)))
}

/// Checks property (5) for one split file, ensuring and reverting.
fn check_split(split: &GrubSplit, wanted: &[Opt]) -> Result<(), TestCaseError> {
    let text = split.text();
    let before = format!("{}{}", split.prefix, split.head);
    let after = format!("{}{}", split.tail, split.suffix);
    for revert in [false, true] {
        let out = grub_edit(&text, wanted, revert)?;
        prop_assert!(
            out.starts_with(&before),
            "revert={}: prefix changed:\n{}",
            revert,
            out
        );
        prop_assert!(
            out.ends_with(&after),
            "revert={}: suffix changed:\n{}",
            revert,
            out
        );
        prop_assert!(out.len() >= before.len() + after.len());
    }
    Ok(())
}

fn is_options_line(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let start = line
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(line.len());
    let rest = &line[start..];
    rest.starts_with(b"options") && matches!(rest.get(7), None | Some(b' ' | b'\t'))
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(PURE_CASES))]

    /// (1) Ensuring is idempotent on plain lines: a second run changes nothing.
    #[test]
    fn plain_ensure_is_idempotent(line in plain_line(), wanted in wanted()) {
        let once = ensure(&line, &wanted)?;
        let twice = ensure(&once, &wanted)?;
        prop_assert_eq!(twice, once);
    }

    /// (2) Every token vfio-gen does not manage (other name under `-`/`_` folding, `video=` for
    /// another driver, anything after `--`) keeps its exact text and relative order, and no
    /// unmanaged token appears or disappears.
    #[test]
    fn plain_ensure_keeps_unmanaged_tokens(line in plain_line(), wanted in wanted()) {
        let out = ensure(&line, &wanted)?;
        prop_assert_eq!(untouched(&out, &wanted), untouched(&line, &wanted), "out: {:?}", out);
    }

    /// (3) After ensuring, each managed option is in the kernel part exactly once (last-wins
    /// names, `video=` per driver) with the wanted value, or a comma list holding it; module
    /// lists (`rd.driver.pre`) hold the module at least once.
    #[test]
    fn plain_ensure_holds_each_option_once(line in plain_line(), wanted in wanted()) {
        let out = ensure(&line, &wanted)?;
        check_exactly_once(&out, &wanted)?;
    }

    /// (4a) Revert after ensure gives back the original line byte for byte when the original's
    /// kernel part names no managed option.
    #[test]

    fn plain_revert_restores_unmanaged_line(line in unmanaged_line(), wanted in wanted()) {
        let ensured = ensure(&line, &wanted)?;
        prop_assert_eq!(revert(&ensured, &wanted)?, line, "ensured: {:?}", ensured);
    }

    /// (4b) Revert after ensure gives back the line the kernel saw (the same tokens, text and
    /// order) when the original's kernel part names no managed option. Weaker than (4a): the
    /// blanks between tokens may differ.
    #[test]
    fn plain_revert_restores_unmanaged_tokens(line in unmanaged_line(), wanted in wanted()) {
        let ensured = ensure(&line, &wanted)?;
        let back = revert(&ensured, &wanted)?;
        prop_assert_eq!(kernel_tokens(&back), kernel_tokens(&line), "ensured: {:?}", ensured);
    }

    /// (4c) For any line, revert of the ensured line leaves no token equal to a wanted option
    /// (same normalized name and exactly the same value) in the kernel part.
    #[test]
    fn plain_revert_leaves_no_wanted_option(line in plain_line(), wanted in wanted()) {
        let back = revert(&ensure(&line, &wanted)?, &wanted)?;
        let (toks, cut) = kernel_tokens(&back);
        for (raw, o) in &toks[..cut] {
            for w in &wanted {
                prop_assert!(
                    !(o.key() == w.key() && o.value == w.value),
                    "{} left as {:?} in {:?}", w, raw, back
                );
            }
        }
    }

    /// A `"` left open makes the line an error, never an edit.
    #[test]
    fn plain_open_quote_is_refused(line in plain_line(), wanted in wanted()) {
        let broken = format!("{line} acpi_osi=\"Windows");
        prop_assert!(edit_plain(&broken, &wanted, false).is_err());
        prop_assert!(edit_plain(&broken, &wanted, true).is_err());
    }

    /// (1) Ensuring is idempotent on GRUB files, and the resulting kernel line holds each
    /// managed option exactly once.
    #[test]
    fn grub_ensure_is_idempotent(text in grub_file(), wanted in wanted()) {
        let once = grub_edit(&text, &wanted, false)?;
        let twice = grub_edit(&once, &wanted, false)?;
        prop_assert_eq!(&twice, &once);
        check_exactly_once(&grub(&once)?.kernel_line(), &wanted)?;
    }

    /// (5) A GRUB edit keeps every byte outside the value of `GRUB_CMDLINE_LINUX_DEFAULT`: the
    /// lines before it (including a `GRUB_CMDLINE_LINUX` of unmanaged tokens), `export NAME=`,
    /// a trailing comment and the lines after it.
    #[test]
    fn grub_edit_keeps_bytes_outside_the_value(split in grub_split(false), wanted in wanted()) {
        check_split(&split, &wanted)?;
    }

    /// (5) As above, with a `GRUB_CMDLINE_LINUX` value that ends in blanks (`"quiet "`).
    #[test]
    fn grub_edit_keeps_linux_trailing_blank(split in grub_split(true), wanted in wanted()) {
        check_split(&split, &wanted)?;
    }

    /// (1, 5) Same as `grub_ensure_is_idempotent` and the byte checks, for a
    /// `GRUB_CMDLINE_LINUX_DEFAULT` written as one unquoted word that vfio-gen manages
    /// (`GRUB_CMDLINE_LINUX_DEFAULT=iommu=soft`): the edit must not panic, must keep the
    /// lines after it, and must be idempotent.
    #[test]
    fn grub_unquoted_managed_word(
        text in grub_file_with(word_token().boxed()),
        suffix in grub_other_lines(),
        wanted in wanted(),
    ) {
        let text = format!("{text}{suffix}");
        let once = grub_edit(&text, &wanted, false)?;
        prop_assert!(once.ends_with(&suffix), "suffix changed:\n{}", once);
        let expected = edit_plain(&grub(&text)?.kernel_line(), &wanted, false).map_err(fail)?;
        prop_assert_eq!(words(&grub(&once)?.kernel_line()), words(&expected));
        prop_assert_eq!(grub_edit(&once, &wanted, false)?, once);
    }

    /// (7) On loader entries, ensuring changes only the `options` lines (every other line,
    /// the line count and each line's CR stay), the options hold the line `edit_plain` gives,
    /// and a second run changes nothing.
    #[test]
    fn entry_edit_touches_only_options_lines(text in entry(), wanted in wanted()) {
        let (out, _) = lines::edit(text.as_bytes(), Shape::Entry, &wanted, false, "entry.conf")
            .map_err(fail)?;
        let before: Vec<&[u8]> = text.as_bytes().split(|&b| b == b'\n').collect();
        let after: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
        prop_assert_eq!(before.len(), after.len(), "{}", String::from_utf8_lossy(&out));
        for (a, b) in before.iter().zip(&after) {
            if is_options_line(a) {
                prop_assert!(is_options_line(b), "{:?} -> {:?}", a, b);
                prop_assert_eq!(a.ends_with(b"\r"), b.ends_with(b"\r"));
            } else {
                prop_assert_eq!(a, b);
            }
        }
        let expected = ensure(&lines::line(text.as_bytes(), Shape::Entry), &wanted)?;
        prop_assert_eq!(words(&lines::line(&out, Shape::Entry)), words(&expected));
        let (again, _) = lines::edit(&out, Shape::Entry, &wanted, false, "entry.conf")
            .map_err(fail)?;
        prop_assert_eq!(
            String::from_utf8_lossy(&again),
            String::from_utf8_lossy(&out)
        );
    }

    /// (7) `/etc/kernel/cmdline` gets the line `edit_plain` gives, and a second run changes
    /// nothing.
    #[test]
    fn kernel_cmdline_edit_is_idempotent(
        line in plain_line(),
        eol in select(&["", "\n", "\r\n"][..]),
        wanted in wanted(),
    ) {
        let text = format!("{line}{eol}");
        let (out, _) = lines::edit(text.as_bytes(), Shape::KernelCmdline, &wanted, false, "cmdline")
            .map_err(fail)?;
        let expected = ensure(&lines::line(text.as_bytes(), Shape::KernelCmdline), &wanted)?;
        prop_assert_eq!(words(&lines::line(&out, Shape::KernelCmdline)), words(&expected));
        let (again, _) = lines::edit(&out, Shape::KernelCmdline, &wanted, false, "cmdline")
            .map_err(fail)?;
        prop_assert_eq!(again, out);
    }
}

/// (6) For generated GRUB files, the kernel line `sh` reads after the edit is the one
/// `edit_plain` makes of the original kernel line, the original reads as `kernel_line()` says,
/// and both files pass `sh -n`. Same for revert.
#[test]
fn grub_edit_matches_what_sh_reads() {
    let Some(sh) = skip::file("/bin/sh", "install a POSIX sh as /bin/sh (dash)") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grub");
    let mut runner = TestRunner::new(config(SH_CASES));
    let result = runner.run(&(grub_file(), wanted()), |(text, wanted)| {
        let config = grub(&text)?;
        let line = config.kernel_line();
        prop_assert_eq!(
            sh_kernel_words(&sh, &file, &text)?,
            words(&line),
            "the original as sh reads it"
        );
        for revert in [false, true] {
            let out = grub_edit(&text, &wanted, revert)?;
            let expected = edit_plain(&line, &wanted, revert).map_err(fail)?;
            prop_assert_eq!(
                sh_kernel_words(&sh, &file, &out)?,
                words(&expected),
                "revert={}\n--- edited ---\n{}",
                revert,
                out
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// The kernel's cpu-list syntax and the sizes of `[resources]` (src/cpulist.rs,
// src/resources.rs; docs/resources.md)
// ---------------------------------------------------------------------------------------------

mod resources_props {
    use super::config;
    use proptest::prelude::*;
    use vfio_gen::cpulist::{self, CpuSet, MAX_CPUS};
    use vfio_gen::resources::{self, GIB, MIB, PageSize};

    /// Sets of CPUs below 512, in clumps as real lists are (runs and single CPUs).
    fn cpu_set() -> impl Strategy<Value = CpuSet> {
        prop::collection::vec((0u32..512, 1u32..24), 0..12).prop_map(|runs| {
            runs.into_iter()
                .flat_map(|(start, len)| start..start + len)
                .collect()
        })
    }

    /// Any text built from the characters of cpu-lists, and a few others.
    fn list_text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec![
                "0",
                "1",
                "7",
                "9",
                "-",
                ",",
                ":",
                "/",
                "N",
                "all",
                "e",
                " ",
                "99999",
                "8191",
                "4294967296",
                "18446744073709551616",
            ]),
            0..16,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(config(256))]

        /// parse(format(set)) == set, and the formatted list is canonical (formatting the
        /// parsed text gives it back).
        #[test]
        fn cpu_lists_round_trip(set in cpu_set()) {
            let text = set.to_string();
            if set.is_empty() {
                prop_assert!(cpulist::parse(&text, MAX_CPUS).is_err());
            } else {
                let parsed = cpulist::parse(&text, MAX_CPUS).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&parsed, &set);
                prop_assert_eq!(parsed.to_string(), text);
            }
        }

        /// A stride `a-b:u/g` is the CPUs c in a..=b with (c - a) % g < u, as the kernel's
        /// bitmap_set_region() sets them.
        #[test]
        fn strides_take_the_first_cpus_of_each_group(a in 0u32..300, len in 0u32..300, g in 1u32..40, u in 0u32..41) {
            let b = a + len;
            let text = format!("{a}-{b}:{u}/{g}");
            match cpulist::parse(&text, MAX_CPUS) {
                Ok(set) => {
                    prop_assert!(u <= g);
                    let want: CpuSet = (a..=b).filter(|c| (c - a) % g < u).collect();
                    prop_assert_eq!(set, want);
                }
                Err(e) => {
                    prop_assert!(u > g, "{}: {}", text, e);
                    prop_assert_eq!(e.column, text.find(':').unwrap() + 1);
                }
            }
        }

        /// Any text parses or is refused with a column inside it (or just past its end), never
        /// a panic, and a parsed set stays below the possible CPUs.
        #[test]
        fn hostile_cpu_lists_are_refused_cleanly(text in list_text(), possible in 1u32..=9000) {
            match cpulist::parse(&text, possible) {
                Ok(set) => prop_assert!(set.last().is_none_or(|c| c < possible.min(MAX_CPUS))),
                Err(e) => {
                    prop_assert!(e.column >= 1 && e.column <= text.chars().count() + 1, "{:?}: {}", text, e);
                    prop_assert!(!e.message.is_empty());
                }
            }
        }

        /// The complement and the set share nothing and make up the present CPUs together.
        #[test]
        fn complement_splits_the_present_cpus(guest in cpu_set(), present in cpu_set()) {
            let host = guest.complement_in(&present);
            prop_assert!(!host.intersects(&guest));
            prop_assert_eq!(host.union(&guest.intersection(&present)), present);
        }

        /// Sizes: "<n>G" and "<n>M" are n GiB / MiB; a whole number of pages gives the pages.
        #[test]
        fn sizes_parse_and_divide_into_pages(n in 1u64..100_000, gib in any::<bool>()) {
            let (text, bytes) = if gib { (format!("{n}G"), n * GIB) } else { (format!("{n}M"), n * MIB) };
            prop_assert_eq!(resources::parse_size(&text), Ok(bytes));
            for size in [PageSize::Size2M, PageSize::Size1G] {
                match resources::HugePages::new(bytes, size) {
                    Ok(p) => {
                        prop_assert_eq!(p.bytes(), bytes);
                        prop_assert_eq!(p.kernel_options()[2].clone(), format!("hugepages={}", bytes / size.bytes()));
                    }
                    Err(_) => prop_assert!(bytes % size.bytes() != 0),
                }
            }
        }

        /// Any other text is refused without a panic.
        #[test]
        fn hostile_sizes_are_refused_cleanly(text in "[0-9eE+. -]{0,24}[GMKgmb]?") {
            if let Ok(bytes) = resources::parse_size(&text) {
                prop_assert!(bytes > 0 && text.bytes().all(|b| b.is_ascii_digit() || b == b'G' || b == b'M'));
            }
        }

        /// kvmfr: a power of two MiB at or above the frame twice plus 10 MiB, and the smallest one.
        #[test]
        fn kvmfr_size_is_the_next_power_of_two(w in 1u32..=8192, h in 1u32..=8192, hdr in any::<bool>()) {
            let need = u64::from(w) * u64::from(h) * if hdr { 8 } else { 4 } * 2 + 10 * MIB;
            match resources::kvmfr_size_mb(w, h, hdr) {
                Ok(mb) => {
                    let bytes = u64::from(mb) * MIB;
                    prop_assert!(mb.is_power_of_two() && bytes >= need && bytes / 2 < need);
                }
                Err(_) => prop_assert!(need > 1024 * MIB),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// libvirt's qemu.conf and the AppArmor rule for /dev/kvmfr0: vfio-gen's marked lines
// (src/targets/libvirt_kvmfr.rs; docs/resources.md)
// ---------------------------------------------------------------------------------------------

mod libvirt_kvmfr_props {
    use super::config;
    use proptest::prelude::*;
    use vfio_gen::targets::libvirt_kvmfr::{apparmor_rules, qemu_conf};

    /// qemu.conf-like lines: comments, settings, the commented default list, blank lines.
    fn conf_text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec![
                "# Master configuration file for the QEMU driver.",
                "#user = \"root\"",
                "",
                "#cgroup_device_acl = [",
                "#    \"/dev/null\", \"/dev/full\", \"/dev/zero\",",
                "#    \"/dev/ptmx\", \"/dev/kvm\",",
                "#]",
                "security_driver = \"none\"",
                "   # indented comment",
                "vnc_listen = \"0.0.0.0\"",
                "/dev/input/* rw,",
            ]),
            0..14,
        )
        .prop_map(|lines| lines.join("\n"))
    }

    proptest! {
        #![proptest_config(config(256))]

        /// Adding is idempotent, keeps every line of the file before its block, and taking the
        /// block out gives back the file (with a final newline where it had none).
        #[test]
        fn qemu_conf_edits_are_exactly_undone(text in conf_text(), final_newline in any::<bool>()) {
            let text = if final_newline && !text.is_empty() { format!("{text}\n") } else { text };
            let (added, warning) = qemu_conf(&text, true);
            prop_assert!(warning.is_none());
            prop_assert_eq!(qemu_conf(&added, true).0, added.clone());
            prop_assert!(added.contains("    \"/dev/kvmfr0\"\n]\n"), "{}", added);
            prop_assert!(added.contains("\"/dev/kvm\""));
            let back = qemu_conf(&added, false).0;
            let want = if text.is_empty() || text.ends_with('\n') { text.clone() } else { format!("{text}\n") };
            prop_assert_eq!(back, want);
        }

        /// A user's own uncommented list is never rewritten, whatever else the file holds.
        #[test]
        fn a_users_list_is_never_rewritten(text in conf_text(), listed in any::<bool>()) {
            let own = format!(
                "{text}\ncgroup_device_acl = [ \"/dev/null\", \"/dev/kvm\"{} ]\n",
                if listed { ", \"/dev/kvmfr0\"" } else { "" }
            );
            let (new, warning) = qemu_conf(&own, true);
            prop_assert_eq!(new, own);
            prop_assert_eq!(warning.is_some(), !listed);
        }

        /// The AppArmor rule: once, and taken out whole.
        #[test]
        fn apparmor_rule_is_added_once_and_removed(text in conf_text()) {
            let added = apparmor_rules(&text, true);
            prop_assert_eq!(apparmor_rules(&added, true), added.clone());
            prop_assert_eq!(added.lines().filter(|l| *l == "/dev/kvmfr0 rw,").count(), 1);
            let back = apparmor_rules(&added, false);
            prop_assert!(back == text || back == format!("{text}\n"), "{:?}", back);
        }
    }
}
