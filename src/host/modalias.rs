//! The modules that would drive a device: its sysfs `modalias` looked up in
//! `ROOT/lib/modules/<release>/modules.alias` the way `modprobe -R` resolves it (kmod's wildcard
//! index: every `alias PATTERN MODULE` line whose pattern matches, by fnmatch(3) with no flags).
//! docs/binding.md says where each rule comes from and why the matcher is written here.

use crate::root::Files;
use anyhow::Result;
use std::cmp::Ordering;

/// Drivers that take any device they are told to, never a device's own driver.
const STUB_MODULES: &[&str] = &["vfio_pci", "pci_stub"];

/// The `alias` lines of one kernel release's `modules.alias`.
#[derive(Debug, Clone, Default)]
pub struct Aliases {
    /// The system path the lines came from, `None` when the root has no `modules.alias`.
    pub path: Option<String>,
    /// (pattern, module), both normalized, in file order.
    entries: Vec<(String, String)>,
}

impl Aliases {
    /// The `modules.alias` of the running release (`/proc/sys/kernel/osrelease`) when the root
    /// has it, else of the newest release under `/lib/modules` (or `/usr/lib/modules`) that has one.
    pub fn load(files: &dyn Files) -> Result<Aliases> {
        let dirs = ["/lib/modules", "/usr/lib/modules"];
        let file_of = |release: &str| -> Option<String> {
            dirs.iter()
                .map(|d| format!("{d}/{release}/modules.alias"))
                .find(|p| files.exists(p))
        };
        let running = files
            .read("/proc/sys/kernel/osrelease")?
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .filter(|r| !r.is_empty() && !r.contains('/'));
        let mut path = running.as_deref().and_then(file_of);
        if path.is_none() {
            let mut releases: Vec<String> = Vec::new();
            for d in dirs {
                releases.extend(files.list(d)?);
            }
            releases.sort_by(|a, b| version_cmp(b, a));
            path = releases.iter().find_map(|r| file_of(r));
        }
        let Some(path) = path else {
            return Ok(Aliases::default());
        };
        let text = files.read(&path)?.unwrap_or_default();
        Ok(Aliases {
            entries: parse(&String::from_utf8_lossy(&text)),
            path: Some(path),
        })
    }

    /// From the text of a `modules.alias` (for tests and callers that have the bytes).
    pub fn from_text(text: &str) -> Aliases {
        Aliases {
            path: None,
            entries: parse(text),
        }
    }

    /// The modules whose aliases match `modalias`, in file order, each once, without the stub
    /// drivers (vfio-pci, pci-stub) that match nothing by themselves.
    pub fn resolve(&self, modalias: &str) -> Vec<String> {
        let key = normalize(modalias.trim());
        let mut out: Vec<String> = Vec::new();
        for (pattern, module) in &self.entries {
            if STUB_MODULES.contains(&module.as_str()) || out.contains(module) {
                continue;
            }
            if literal_prefix_fits(pattern, &key) && fnmatch(pattern, &key) {
                out.push(module.clone());
            }
        }
        out
    }
}

/// `alias PATTERN MODULE` lines; comments and anything else are skipped, as depmod writes only these.
fn parse(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some("alias"), Some(pattern), Some(module), None) => {
                    Some((normalize(pattern), module.replace('-', "_")))
                }
                _ => None,
            }
        })
        .collect()
}

/// kmod's alias normalization: `-` becomes `_`, except inside a `[...]` range.
fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_bracket = false;
    for c in s.chars() {
        match c {
            '[' => in_bracket = true,
            ']' => in_bracket = false,
            '-' if !in_bracket => {
                out.push('_');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// Whether the pattern's text before its first wildcard or escape starts the key: a cheap
/// filter (the rest of the pattern can only add to that prefix), like kmod's trie descent.
fn literal_prefix_fits(pattern: &str, key: &str) -> bool {
    let end = pattern.find(['*', '?', '[', '\\']).unwrap_or(pattern.len());
    key.as_bytes().starts_with(&pattern.as_bytes()[..end])
}

/// Kernel releases, newest last: digit runs compare as numbers, the rest as text.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let o = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ca.len().cmp(&cb.len())
}

/// fnmatch(3) with no flags, as kmod calls it on `modules.alias` patterns: `*` matches any run
/// of bytes (`/` and a leading `.` included), `?` one byte, `[...]` one byte from a set (`!` or
/// `^` negates, `a-z` ranges, `[:digit:]` classes, `]` first is literal), `\` quotes the next
/// byte, and a `[` without its `]` is an ordinary byte. Ranges compare bytes (the C locale).
pub fn fnmatch(pattern: &str, name: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut si) = (0, 0);
    // After a `*`: where the pattern goes on, and the next byte of the name it may start at.
    let mut star: Option<(usize, usize)> = None;
    loop {
        let step = match p.get(pi) {
            None if si == s.len() => return true,
            None => None,
            Some(b'*') => {
                star = Some((pi + 1, si));
                pi += 1;
                continue;
            }
            Some(_) if si == s.len() => None,
            Some(b'?') => Some(pi + 1),
            Some(b'\\') => match p.get(pi + 1) {
                Some(&c) if c == s[si] => Some(pi + 2),
                _ => None,
            },
            Some(b'[') => match bracket(p, pi, s[si]) {
                Bracket::Match(next) => Some(next),
                Bracket::NoMatch => None,
                Bracket::Unclosed => (s[si] == b'[').then_some(pi + 1),
            },
            Some(&c) => (c == s[si]).then_some(pi + 1),
        };
        match step {
            Some(next) => {
                pi = next;
                si += 1;
            }
            None => match star {
                Some((sp, ss)) if ss < s.len() => {
                    star = Some((sp, ss + 1));
                    pi = sp;
                    si = ss + 1;
                }
                _ => return false,
            },
        }
    }
}

enum Bracket {
    /// The byte is in the set; the pattern goes on at this index.
    Match(usize),
    NoMatch,
    /// No closing `]`: the `[` is an ordinary byte.
    Unclosed,
}

/// Matches one byte against the bracket expression that starts at `p[start] == b'['`.
fn bracket(p: &[u8], start: usize, c: u8) -> Bracket {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    loop {
        let Some(&b) = p.get(i) else {
            return Bracket::Unclosed;
        };
        if b == b']' && !first {
            i += 1;
            break;
        }
        first = false;
        if b == b'['
            && p.get(i + 1) == Some(&b':')
            && let Some(len) = p[i + 2..].windows(2).position(|w| w == b":]")
        {
            let name = &p[i + 2..i + 2 + len];
            match class(name) {
                Some(f) => found |= f(c),
                None => return Bracket::NoMatch, // glibc: an unknown class matches nothing
            }
            i += len + 4;
            continue;
        }
        // One byte, maybe quoted, maybe the start of a range.
        let (lo, after) = match b {
            b'\\' => match p.get(i + 1) {
                Some(&q) => (q, i + 2),
                None => return Bracket::Unclosed,
            },
            _ => (b, i + 1),
        };
        i = after;
        if p.get(i) == Some(&b'-') && p.get(i + 1).is_some_and(|&n| n != b']') {
            let (hi, after) = match p[i + 1] {
                b'\\' => match p.get(i + 2) {
                    Some(&q) => (q, i + 3),
                    None => return Bracket::Unclosed,
                },
                h => (h, i + 2),
            };
            i = after;
            found |= lo <= c && c <= hi;
        } else {
            found |= lo == c;
        }
    }
    if found != negate {
        Bracket::Match(i)
    } else {
        Bracket::NoMatch
    }
}

fn class(name: &[u8]) -> Option<fn(u8) -> bool> {
    Some(match name {
        b"alnum" => |c: u8| c.is_ascii_alphanumeric(),
        b"alpha" => |c: u8| c.is_ascii_alphabetic(),
        b"blank" => |c: u8| c == b' ' || c == b'\t',
        b"cntrl" => |c: u8| c.is_ascii_control(),
        b"digit" => |c: u8| c.is_ascii_digit(),
        b"graph" => |c: u8| c.is_ascii_graphic(),
        b"lower" => |c: u8| c.is_ascii_lowercase(),
        b"print" => |c: u8| c.is_ascii_graphic() || c == b' ',
        b"punct" => |c: u8| c.is_ascii_punctuation(),
        b"space" => |c: u8| c.is_ascii_whitespace() || c == 0x0b,
        b"upper" => |c: u8| c.is_ascii_uppercase(),
        b"xdigit" => |c: u8| c.is_ascii_hexdigit(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn globs_as_fnmatch_does() {
        let yes = [
            (
                "pci:v00001234d00001111sv*sd*bc*sc*i*",
                "pci:v00001234d00001111sv00001AF4sd00001100bc03sc80i00",
            ),
            (
                "pci:v*d*sv*sd*bc04sc03i00*",
                "pci:v00008086d0000293Esv00001AF4sd00001100bc04sc03i00",
            ),
            ("a?c", "abc"),
            ("[ab]c", "bc"),
            ("[!ab]c", "cc"),
            ("[^ab]c", "cc"),
            ("[]]", "]"),
            ("[!]]", "a"),
            ("[a-c]", "b"),
            ("[a-]", "-"),
            ("[[:digit:]]x", "7x"),
            ("\\*", "*"),
            ("[", "["),
            ("a[b", "a[b"),
            ("**", ""),
            ("*/x", "a/b/x"),
            ("*", ".hidden"),
        ];
        for (p, s) in yes {
            assert!(fnmatch(p, s), "{p:?} should match {s:?}");
            assert!(libc_fnmatch(p, s), "the C library agrees: {p:?} {s:?}");
        }
        let no = [
            (
                "pci:v00001234d00001111sv*",
                "pci:v00001234d00001112sv00001AF4",
            ),
            ("a?c", "ac"),
            ("[!ab]c", "ac"),
            ("[a-c]", "d"),
            ("[c-a]", "b"),
            ("\\*", "a"),
            ("a\\", "a"),
            ("[[:nosuch:]]", "a"),
            ("pci:v*", "usb:v1"),
        ];
        for (p, s) in no {
            assert!(!fnmatch(p, s), "{p:?} should not match {s:?}");
            assert!(!libc_fnmatch(p, s), "the C library agrees: {p:?} {s:?}");
        }
    }

    fn libc_fnmatch(p: &str, s: &str) -> bool {
        let (p, s) = (
            std::ffi::CString::new(p).unwrap(),
            std::ffi::CString::new(s).unwrap(),
        );
        // SAFETY: both are valid NUL-terminated strings that outlive the call.
        unsafe { nix::libc::fnmatch(p.as_ptr(), s.as_ptr(), 0) == 0 }
    }

    proptest! {
        /// The C library's fnmatch, which kmod calls, agrees on every pattern made of the bytes
        /// that mean something to it.
        #[test]
        fn agrees_with_the_c_library(p in "[ab*?\\[\\]!\\-\\\\]{0,8}", s in "[ab\\[\\]!\\-*?\\\\]{0,6}") {
            prop_assert_eq!(fnmatch(&p, &s), libc_fnmatch(&p, &s), "pattern {:?} name {:?}", p, s);
        }
    }

    #[test]
    fn resolves_like_modprobe_r() {
        let a = Aliases::from_text(
            "# Aliases extracted from modules themselves.\n\
             alias pci:v00001234d00001111sv00001AF4sd00001100bc*sc*i* bochs\n\
             alias pci:v00001234d00001111sv*sd*bc*sc*i* bochs\n\
             alias vfio_pci:v*d*sv*sd*bc*sc*i* vfio_pci\n\
             alias pci:v*d*sv*sd*bc*sc*i* pci-stub\n\
             alias pci:v00008086d0000293Esv*sd*bc*sc*i* snd_hda_intel\n\
             alias pci:v00008086d*sv*sd*bc04sc03i00* snd_hda_intel\n\
             alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\n",
        );
        assert_eq!(
            a.resolve("pci:v00001234d00001111sv00001AF4sd00001100bc03sc80i00\n"),
            ["bochs"]
        );
        assert_eq!(
            a.resolve("pci:v00008086d0000293Esv00001AF4sd00001100bc04sc03i00"),
            ["snd_hda_intel"]
        );
        assert!(a.resolve("pci:v000010DEd00002204sv0000xxxx").is_empty());
    }

    #[test]
    fn the_running_release_or_else_the_newest() {
        let tmp = tempfile::tempdir().unwrap();
        let root = crate::root::Root::new(tmp.path());
        for (release, module) in [("6.1.0-9-amd64", "old"), ("6.1.0-18-amd64", "new")] {
            let dir = tmp.path().join("lib/modules").join(release);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("modules.alias"), format!("alias x {module}\n")).unwrap();
        }
        std::fs::create_dir_all(tmp.path().join("lib/modules/6.2.0-dkms-leftover")).unwrap();
        let pick = |root: &crate::root::Root| Aliases::load(root).unwrap().resolve("x");
        assert_eq!(
            pick(&root),
            ["new"],
            "no osrelease: the newest with a modules.alias"
        );
        std::fs::create_dir_all(tmp.path().join("proc/sys/kernel")).unwrap();
        std::fs::write(
            tmp.path().join("proc/sys/kernel/osrelease"),
            "6.1.0-9-amd64\n",
        )
        .unwrap();
        assert_eq!(pick(&root), ["old"], "the running release");
        std::fs::write(
            tmp.path().join("proc/sys/kernel/osrelease"),
            "6.5.0-1-amd64\n",
        )
        .unwrap();
        assert_eq!(
            pick(&root),
            ["new"],
            "the running release has no modules here"
        );
    }

    #[test]
    fn releases_sort_by_number() {
        let mut r = vec!["6.1.0-9-amd64", "6.10.2", "6.1.0-18-amd64", "5.15.0"];
        r.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(r, ["5.15.0", "6.1.0-9-amd64", "6.1.0-18-amd64", "6.10.2"]);
    }
}
