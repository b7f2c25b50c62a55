//! Pop!_OS: kernelstub writes the systemd-boot entries (and the EFI stub's command line) from
//! `/etc/kernelstub/configuration`, a JSON file whose `user.kernel_options` is a list of
//! options, each run of kernelstub (every kernel or initramfs update) overwriting the entries
//! (docs/distributions.md, "Pop!_OS"). vfio-gen edits that list and leaves every other byte of
//! the file as it is: indentation, key order, the `default` section; then runs `kernelstub`.

use crate::cmdline::{Opt, holds, same_setting};
use anyhow::{Result, bail};

pub const CONFIG: &str = "/etc/kernelstub/configuration";

/// The hook: kernelstub run with no arguments writes the entries from the configuration.
pub fn hook() -> Vec<String> {
    vec!["kernelstub".to_string()]
}

/// A JSON value's place in the text: `start..end`, and for an object its members (key, value).
#[derive(Debug)]
struct Value {
    start: usize,
    end: usize,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Object(Vec<(String, Value)>),
    Array(Vec<Value>),
    String(String),
    Other,
}

/// A small reader that keeps byte positions (serde_json keeps none); the text has passed
/// serde_json first, so it only has to be right on valid JSON.
struct Reader<'a> {
    b: &'a [u8],
    p: usize,
}

impl Reader<'_> {
    fn ws(&mut self) {
        while self.p < self.b.len() && matches!(self.b[self.p], b' ' | b'\t' | b'\r' | b'\n') {
            self.p += 1;
        }
    }

    fn value(&mut self) -> Option<Value> {
        self.ws();
        let start = self.p;
        let kind = match *self.b.get(self.p)? {
            b'{' => {
                self.p += 1;
                let mut members = Vec::new();
                loop {
                    self.ws();
                    match *self.b.get(self.p)? {
                        b'}' => {
                            self.p += 1;
                            break;
                        }
                        b',' => self.p += 1,
                        _ => {
                            let key = match self.value()?.kind {
                                Kind::String(s) => s,
                                _ => return None,
                            };
                            self.ws();
                            if *self.b.get(self.p)? != b':' {
                                return None;
                            }
                            self.p += 1;
                            members.push((key, self.value()?));
                        }
                    }
                }
                Kind::Object(members)
            }
            b'[' => {
                self.p += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    match *self.b.get(self.p)? {
                        b']' => {
                            self.p += 1;
                            break;
                        }
                        b',' => self.p += 1,
                        _ => items.push(self.value()?),
                    }
                }
                Kind::Array(items)
            }
            b'"' => {
                self.p += 1;
                while *self.b.get(self.p)? != b'"' {
                    self.p += if self.b[self.p] == b'\\' { 2 } else { 1 };
                }
                self.p += 1;
                let s: String = serde_json::from_slice(&self.b[start..self.p]).ok()?;
                Kind::String(s)
            }
            _ => {
                while self.p < self.b.len()
                    && !matches!(
                        self.b[self.p],
                        b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'
                    )
                {
                    self.p += 1;
                }
                Kind::Other
            }
        };
        Some(Value {
            start,
            end: self.p,
            kind,
        })
    }
}

/// The last member named `key` (Python's json, which kernelstub uses, keeps the last one).
fn member<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    match &v.kind {
        Kind::Object(m) => m.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
        _ => None,
    }
}

/// The options kernelstub puts on the command line, in order (`user.kernel_options`).
pub fn options(text: &[u8]) -> Vec<String> {
    let mut r = Reader { b: text, p: 0 };
    let Some(root) = r.value() else {
        return Vec::new();
    };
    match member(&root, "user").and_then(|u| member(u, "kernel_options")) {
        Some(Value {
            kind: Kind::Array(items),
            ..
        }) => items
            .iter()
            .filter_map(|i| match &i.kind {
                Kind::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Ensures (or with `revert` takes out) the options in `user.kernel_options`; every byte
/// outside that list stays, and inside it every element vfio-gen does not change.
pub fn edit(text: &[u8], wanted: &[Opt], revert: bool, path: &str) -> Result<Vec<u8>> {
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(text) {
        let what = e.to_string();
        let what = what
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_string();
        bail!(
            "{path}:{}:{}: not valid JSON ({what}); kernelstub cannot read it either: fix it (or remove it, and kernelstub writes its defaults), then run vfio-gen again",
            e.line(),
            e.column(),
        );
    }
    let mut r = Reader { b: text, p: 0 };
    let root = r.value().ok_or_else(|| {
        anyhow::anyhow!("{path}: internal error reading the JSON; please report it")
    })?;
    let line_of = |p: usize| text[..p].iter().filter(|&&b| b == b'\n').count() + 1;
    let Some(user) = member(&root, "user") else {
        bail!(
            "{path}: no \"user\" section; kernelstub writes one from \"default\" the first time it runs: run `kernelstub` once, then vfio-gen again"
        );
    };
    let Some(list) = member(user, "kernel_options") else {
        bail!(
            "{path}:{}: the \"user\" section has no \"kernel_options\"; kernelstub would stop on it too (\"Malformed configuration\"): add \"kernel_options\": [] or run `kernelstub -o \"...\"`, then vfio-gen again",
            line_of(user.start)
        );
    };
    let Kind::Array(items) = &list.kind else {
        bail!(
            "{path}:{}: user.kernel_options is not a list of strings; kernelstub turns an old string form into a list when it runs: run `kernelstub` once, then vfio-gen again",
            line_of(list.start)
        );
    };
    // Each element as (raw JSON text, decoded option).
    let mut elems: Vec<(Option<String>, String)> = Vec::new();
    for i in items {
        let Kind::String(s) = &i.kind else {
            bail!(
                "{path}:{}: user.kernel_options holds something that is not a string; make every element a string",
                line_of(i.start)
            );
        };
        elems.push((
            Some(String::from_utf8_lossy(&text[i.start..i.end]).into_owned()),
            s.clone(),
        ));
    }
    let before: Vec<String> = elems.iter().map(|(_, s)| s.clone()).collect();
    for w in wanted {
        if revert {
            elems.retain(|(_, s)| Opt::parse(s) != *w);
            continue;
        }
        let same: Vec<usize> = (0..elems.len())
            .filter(|&i| same_setting(&Opt::parse(&elems[i].1), w))
            .collect();
        match same.last() {
            None => elems.push((None, w.text())),
            Some(&last) => {
                if !holds(&Opt::parse(&elems[last].1), w) {
                    elems[last] = (None, w.text());
                }
                // The last occurrence wins on the command line: earlier ones go.
                for &i in same.iter().rev().skip(1) {
                    elems.remove(i);
                }
            }
        }
    }
    let after: Vec<String> = elems.iter().map(|(_, s)| s.clone()).collect();
    if after == before {
        return Ok(text.to_vec());
    }
    // The list's own layout: what follows `[`, what separates elements, what precedes `]`.
    let (first, between, last) = match items.as_slice() {
        [] => {
            let line_start = text[..list.start]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let indent: String = text[line_start..]
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\t'))
                .map(|&b| b as char)
                .collect();
            let eol = if text.windows(2).any(|w| w == b"\r\n") {
                "\r\n"
            } else {
                "\n"
            };
            let unit = if indent.starts_with('\t') { "\t" } else { "  " };
            (
                format!("{eol}{indent}{unit}"),
                format!(",{eol}{indent}{unit}"),
                format!("{eol}{indent}"),
            )
        }
        [one] => {
            let first = text_between(text, list.start + 1, one.start);
            let last = text_between(text, one.end, list.end - 1);
            let between = if first.contains('\n') {
                format!(",{first}")
            } else {
                ", ".to_string()
            };
            (first, between, last)
        }
        [a, b, ..] => (
            text_between(text, list.start + 1, a.start),
            text_between(text, a.end, b.start),
            text_between(text, items[items.len() - 1].end, list.end - 1),
        ),
    };
    let rendered: Vec<String> = elems
        .iter()
        .map(|(raw, s)| match raw {
            Some(r) => r.clone(),
            None => serde_json::to_string(s).unwrap_or_default(),
        })
        .collect();
    let array = if rendered.is_empty() {
        "[]".to_string()
    } else {
        format!("[{first}{}{last}]", rendered.join(&between))
    };
    let mut out = text[..list.start].to_vec();
    out.extend_from_slice(array.as_bytes());
    out.extend_from_slice(&text[list.end..]);
    Ok(out)
}

fn text_between(text: &[u8], a: usize, b: usize) -> String {
    String::from_utf8_lossy(&text[a..b]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POP: &str = r#"{
  "default": {
    "kernel_options": [
      "quiet",
      "splash"
    ],
    "esp_path": "/boot/efi",
    "setup_loader": false,
    "manage_mode": false,
    "force_update": false,
    "live_mode": false,
    "config_rev": 3
  },
  "user": {
    "kernel_options": [
      "quiet",
      "loglevel=0",
      "systemd.show_status=false",
      "splash"
    ],
    "esp_path": "/boot/efi",
    "setup_loader": true,
    "manage_mode": true,
    "force_update": false,
    "live_mode": false,
    "config_rev": 3
  }
}"#;

    fn wanted() -> Vec<Opt> {
        ["intel_iommu=on", "iommu=pt"]
            .iter()
            .map(|s| Opt::parse(s))
            .collect()
    }

    #[test]
    fn appends_to_the_user_list_only_keeping_its_layout() {
        let out = String::from_utf8(edit(POP.as_bytes(), &wanted(), false, "c").unwrap()).unwrap();
        assert_eq!(
            out,
            POP.replace(
                "      \"splash\"\n    ],\n    \"esp_path\": \"/boot/efi\",\n    \"setup_loader\": true",
                "      \"splash\",\n      \"intel_iommu=on\",\n      \"iommu=pt\"\n    ],\n    \"esp_path\": \"/boot/efi\",\n    \"setup_loader\": true"
            )
        );
        assert_eq!(
            options(out.as_bytes()),
            [
                "quiet",
                "loglevel=0",
                "systemd.show_status=false",
                "splash",
                "intel_iommu=on",
                "iommu=pt"
            ]
        );
        // Twice changes nothing; revert gives the bytes back.
        assert_eq!(
            edit(out.as_bytes(), &wanted(), false, "c").unwrap(),
            out.as_bytes()
        );
        assert_eq!(
            edit(out.as_bytes(), &wanted(), true, "c").unwrap(),
            POP.as_bytes()
        );
    }

    #[test]
    fn conflicts_are_replaced_in_place_and_duplicates_go() {
        let text = r#"{"user": {"kernel_options": ["iommu=soft", "quiet", "iommu=nopt"], "config_rev": 3}}"#;
        let out = String::from_utf8(edit(text.as_bytes(), &wanted(), false, "c").unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"user": {"kernel_options": ["quiet", "iommu=pt", "intel_iommu=on"], "config_rev": 3}}"#
        );
        let one = r#"{"user": {"kernel_options": ["quiet"]}}"#;
        assert_eq!(
            String::from_utf8(edit(one.as_bytes(), &wanted(), false, "c").unwrap()).unwrap(),
            r#"{"user": {"kernel_options": ["quiet", "intel_iommu=on", "iommu=pt"]}}"#
        );
        let empty = "{\r\n  \"user\": {\r\n    \"kernel_options\": []\r\n  }\r\n}\r\n";
        assert_eq!(
            String::from_utf8(edit(empty.as_bytes(), &wanted(), false, "c").unwrap()).unwrap(),
            "{\r\n  \"user\": {\r\n    \"kernel_options\": [\r\n      \"intel_iommu=on\",\r\n      \"iommu=pt\"\r\n    ]\r\n  }\r\n}\r\n"
        );
    }

    #[test]
    fn unusual_elements_stay_byte_for_byte() {
        let text = r#"{"user": {"kernel_options": ["acpi_osi=\"Windows 2015\"", "\u0071uiet"]}}"#;
        let out = String::from_utf8(edit(text.as_bytes(), &wanted(), false, "c").unwrap()).unwrap();
        assert!(out.starts_with(r#"{"user": {"kernel_options": ["acpi_osi=\"Windows 2015\"", "\u0071uiet", "intel_iommu=on""#), "{out}");
        assert_eq!(options(out.as_bytes())[1], "quiet");
    }

    #[test]
    fn hostile_files_are_refused_with_the_place() {
        let e = edit(
            b"{\n  \"user\": {\n    \"kernel_options\": [\"quiet\",]\n  }\n}\n",
            &wanted(),
            false,
            "/etc/kernelstub/configuration",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("/etc/kernelstub/configuration:3:"), "{e}");
        let e = edit(
            br#"{"default": {"kernel_options": []}}"#,
            &wanted(),
            false,
            "c",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no \"user\" section"), "{e}");
        let e = edit(
            b"{\"user\": {\n\"kernel_options\": \"quiet splash\"}}",
            &wanted(),
            false,
            "c",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("c:2:") && e.contains("not a list"), "{e}");
        let e = edit(
            br#"{"user": {"kernel_options": ["quiet", 3]}}"#,
            &wanted(),
            false,
            "c",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not a string"), "{e}");
        let e = edit(
            br#"{"user": {"esp_path": "/boot/efi"}}"#,
            &wanted(),
            false,
            "c",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no \"kernel_options\""), "{e}");
    }

    #[test]
    fn the_last_duplicate_key_counts_as_in_python() {
        let text = r#"{"user": {"kernel_options": ["a"], "kernel_options": ["b"]}}"#;
        let out = String::from_utf8(edit(text.as_bytes(), &wanted(), false, "c").unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"user": {"kernel_options": ["a"], "kernel_options": ["b", "intel_iommu=on", "iommu=pt"]}}"#
        );
    }
}
