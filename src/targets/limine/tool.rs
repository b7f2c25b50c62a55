//! limine-entry-tool's settings (docs/limine.md, "limine-entry-tool"): the layers it reads
//! `KERNEL_CMDLINE[default]` from, vfio-gen's drop-in in `/etc/limine-entry-tool.d/`, and its
//! own line in `/etc/default/limine` where a drop-in would be reset.

use crate::cmdline::{self, Opt};
use anyhow::Result;

/// limine-entry-tool's settings file, read last (docs/limine.md).
pub const DEFAULTS: &str = "/etc/default/limine";
/// The directory of its drop-ins, read before `/etc/default/limine` in name order.
pub const DROP_IN_DIR: &str = "/etc/limine-entry-tool.d";
/// vfio-gen's drop-in: `zz-` sorts it after the others in any collation.
pub const DROP_IN: &str = "/etc/limine-entry-tool.d/zz-vfio-gen.conf";
/// The packaged drop-ins and the main settings file, read first.
const SHARE_DIR: &str = "/usr/share/limine-entry-tool.d";
const MAIN: &str = "/etc/limine-entry-tool.conf";
/// The comment over vfio-gen's line in /etc/default/limine.
pub const OWN_MARK: &str =
    "# vfio-gen: the kernel options of the VFIO profile (`vfio-gen apply --revert` removes them)";
const KEY: &str = "KERNEL_CMDLINE[default]";

/// One `KERNEL_CMDLINE[...]` assignment of a layer.
pub struct Assignment {
    pub file: String,
    pub line: usize,
    /// The index between the brackets.
    pub index: String,
    /// `+=` (true) or `=`.
    pub append: bool,
    /// The value without one pair of surrounding quotes.
    pub value: String,
}

/// The files limine-entry-tool reads its settings from, in its order (docs/limine.md):
/// packaged drop-ins, `/etc/limine-entry-tool.conf`, the drop-ins of `/etc` (vfio-gen's left
/// out), `/etc/default/limine`.
pub fn layers(files: &dyn crate::root::Files) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for dir in [SHARE_DIR, MAIN, DROP_IN_DIR, DEFAULTS] {
        if dir == MAIN || dir == DEFAULTS {
            if files.read(dir)?.is_some() {
                out.push(dir.to_string());
            }
            continue;
        }
        for name in files.list(dir)? {
            let path = format!("{dir}/{name}");
            if name.ends_with(".conf") && path != DROP_IN && files.read(&path)?.is_some() {
                out.push(path);
            }
        }
    }
    Ok(out)
}

/// The `KERNEL_CMDLINE[...]` assignments of one file, vfio-gen's own line (under its mark)
/// left out.
pub fn assignments(file: &str, text: &[u8]) -> Vec<Assignment> {
    let s = String::from_utf8_lossy(text);
    let mut out = Vec::new();
    let mut after_mark = false;
    for (i, line) in s.lines().enumerate() {
        let t = line.trim();
        let own = after_mark;
        after_mark = t == OWN_MARK;
        let Some(rest) = t.strip_prefix("KERNEL_CMDLINE[") else {
            continue;
        };
        let Some((index, rest)) = rest.split_once(']') else {
            continue;
        };
        let (append, v) = if let Some(v) = rest.strip_prefix("+=") {
            (true, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (false, v)
        } else {
            continue;
        };
        if own && index == "default" && append {
            continue;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        out.push(Assignment {
            file: file.to_string(),
            line: i + 1,
            index: index.trim_matches(['"', '\'']).to_string(),
            append,
            value: v.to_string(),
        });
    }
    out
}

/// Every `KERNEL_CMDLINE[...]` assignment of the layers, in reading order.
pub fn all_assignments(files: &dyn crate::root::Files) -> Result<Vec<Assignment>> {
    let mut out = Vec::new();
    for path in layers(files)? {
        if let Some(text) = files.read(&path)? {
            out.extend(assignments(&path, &text));
        }
    }
    Ok(out)
}

/// The default line the layers give, with where each part came from: an `=` starts it again.
pub fn default_line(all: &[Assignment]) -> Vec<&Assignment> {
    let mut parts = Vec::new();
    for a in all.iter().filter(|a| a.index == "default") {
        if !a.append {
            parts.clear();
        }
        parts.push(a);
    }
    parts
}

/// Whether `/etc/default/limine` sets the default line with `=`: read last, it would reset
/// whatever a drop-in appended.
pub fn defaults_reset(all: &[Assignment]) -> Option<&Assignment> {
    all.iter()
        .find(|a| a.file == DEFAULTS && a.index == "default" && !a.append)
}

/// The options of `wanted` the layers do not already give, and warnings for the ones they
/// give with another value (which value the kernel then sees depends on the order
/// limine-entry-tool joins the parts in, docs/limine.md).
pub fn missing(all: &[Assignment], wanted: &[Opt]) -> Result<(Vec<String>, Vec<String>)> {
    let parts = default_line(all);
    let joined: String = parts
        .iter()
        .map(|a| a.value.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let mut missing = Vec::new();
    let mut warnings = Vec::new();
    for o in wanted {
        let with = cmdline::edit_plain(&joined, std::slice::from_ref(o), false).map_err(|e| {
            anyhow::anyhow!("{DEFAULTS} and its drop-ins: {e}; nothing was written")
        })?;
        if with == joined {
            continue;
        }
        missing.push(o.text());
        for a in &parts {
            let (tokens, _) = cmdline::tokenize(&cmdline::bytes(a.value.as_bytes()));
            for t in tokens {
                let Some(raw) = &t.raw else { continue };
                let found = Opt::parse(&String::from_utf8_lossy(raw));
                if cmdline::same_setting(&found, o) && !cmdline::holds(&found, o) {
                    warnings.push(format!(
                        "{}:{}: KERNEL_CMDLINE[default] gives {}, the profile wants {}: vfio-gen adds its value, but which one the kernel sees depends on the order limine-entry-tool joins the lines in; remove {} there, then run `limine-update`",
                        a.file,
                        a.line,
                        found.text(),
                        o.text(),
                        found.text()
                    ));
                }
            }
        }
    }
    for a in all.iter().filter(|a| a.index != "default") {
        warnings.push(format!(
            "{}:{}: KERNEL_CMDLINE[{}] is the command line of the kernel {} alone; vfio-gen's options are on KERNEL_CMDLINE[default]: check that kernel's entry in limine.conf after `limine-update`, and add the options there if they are missing",
            a.file, a.line, a.index, a.index
        ));
    }
    Ok((missing, warnings))
}

/// vfio-gen's drop-in with the options.
pub fn drop_in(options: &[String]) -> Result<Vec<u8>> {
    let mut text = super::super::render("header.j2", minijinja::context! {})?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# The kernel options of the VFIO profile, appended to the default command line that\n# limine-entry-tool writes into limine.conf (docs/limine.md).\n");
    text.push_str(&format!("{KEY}+=\" {}\"\n", options.join(" ")));
    Ok(text.into_bytes())
}

/// `/etc/default/limine` with vfio-gen's own line (under its comment) holding `options`, or
/// without it when `options` is empty.
pub fn edit_defaults(text: &[u8], options: &[String]) -> Vec<u8> {
    let s = String::from_utf8_lossy(text);
    let mut own: Option<(usize, usize)> = None;
    let mut offset = 0;
    let mut after_mark: Option<usize> = None;
    for line in s.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let t = line.trim();
        if t == OWN_MARK {
            after_mark = Some(start);
            continue;
        }
        if let Some(m) = after_mark.take()
            && t.starts_with("KERNEL_CMDLINE[default]+=")
        {
            own = Some((m, offset));
        }
    }
    let mut out = text.to_vec();
    if let Some((a, b)) = own {
        out.drain(a..b);
    }
    if options.is_empty() {
        return out;
    }
    let line = format!("{OWN_MARK}\n{KEY}+=\" {}\"\n", options.join(" "));
    match own {
        Some((a, _)) => {
            out.splice(a..a, line.bytes());
        }
        None => {
            if !out.is_empty() && !out.ends_with(b"\n") {
                out.push(b'\n');
            }
            out.extend_from_slice(line.as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::MemFiles;

    fn wanted() -> Vec<Opt> {
        vec![Opt::parse("amd_iommu=on"), Opt::parse("iommu=pt")]
    }

    #[test]
    fn defaults_get_one_line_of_their_own() {
        let text = "TARGET_OS_NAME=\"CachyOS\"\nKERNEL_CMDLINE[default]+=\"quiet nowatchdog splash rw iommu=pt\"\n";
        let files = MemFiles::new().with(DEFAULTS, text);
        let all = all_assignments(&files).unwrap();
        let (m, w) = missing(&all, &wanted()).unwrap();
        assert_eq!(m, vec!["amd_iommu=on".to_string()]);
        assert!(w.is_empty());
        let got = String::from_utf8(edit_defaults(text.as_bytes(), &m)).unwrap();
        assert_eq!(
            got,
            format!("{text}{OWN_MARK}\nKERNEL_CMDLINE[default]+=\" amd_iommu=on\"\n")
        );
        let again = MemFiles::new().with(DEFAULTS, &got);
        let (m2, _) = missing(&all_assignments(&again).unwrap(), &wanted()).unwrap();
        assert_eq!(m2, m, "vfio-gen's own line is not counted as given");
        assert_eq!(edit_defaults(got.as_bytes(), &m2), got.as_bytes());
        assert_eq!(edit_defaults(got.as_bytes(), &[]), text.as_bytes());
        assert!(crate::sh_grammar::check(got.as_bytes()).is_ok());
    }

    #[test]
    fn layers_are_read_in_order_and_an_equals_starts_again() {
        let files = MemFiles::new()
            .with(
                "/usr/share/limine-entry-tool.d/10-base.conf",
                "KERNEL_CMDLINE[default]=\"iommu=soft\"\n",
            )
            .with(
                "/etc/limine-entry-tool.d/omarchy-defaults.conf",
                "KERNEL_CMDLINE[default]+=\" quiet splash\"\nKERNEL_CMDLINE[linux-lts]=\"root=x\"\n",
            )
            .with(DROP_IN, "KERNEL_CMDLINE[default]+=\" amd_iommu=on\"\n")
            .with(DEFAULTS, "KERNEL_CMDLINE[default]+=\"rw\"\n");
        let all = all_assignments(&files).unwrap();
        assert_eq!(
            all.iter().map(|a| a.file.as_str()).collect::<Vec<_>>(),
            [
                "/usr/share/limine-entry-tool.d/10-base.conf",
                "/etc/limine-entry-tool.d/omarchy-defaults.conf",
                "/etc/limine-entry-tool.d/omarchy-defaults.conf",
                DEFAULTS
            ]
        );
        let (m, w) = missing(&all, &wanted()).unwrap();
        assert_eq!(m, ["amd_iommu=on", "iommu=pt"]);
        assert!(
            w[0].starts_with("/usr/share/limine-entry-tool.d/10-base.conf:1: KERNEL_CMDLINE[default] gives iommu=soft"),
            "{w:?}"
        );
        assert!(
            w[1].contains("KERNEL_CMDLINE[linux-lts] is the command line of the kernel linux-lts")
        );
        assert!(defaults_reset(&all).is_none());
        let reset = MemFiles::new().with(DEFAULTS, "KERNEL_CMDLINE[default]=\"rw\"\n");
        assert!(defaults_reset(&all_assignments(&reset).unwrap()).is_some());
    }
}
