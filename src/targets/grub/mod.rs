//! `/etc/default/grub` and its `grub.d` drop-ins: a shell file that `grub-mkconfig` sources.
//!
//! Edit mode changes only the value of the kernel command-line variables, byte for byte
//! elsewhere. The file is lexed as much of `sh` as assignments need: quotes, backslashes,
//! line continuations, `$VAR` / `${VAR}` references, `export`, comments. The value of each
//! variable is evaluated in order over the main file and the drop-ins, every byte remembering
//! the file, span and quoting it came from, so that an option can be replaced or removed where
//! it stands and new text is quoted for the place it lands. What cannot be known without running
//! the shell (command substitution, parameter operators, `+=`) is refused. Before any of that,
//! the file must pass [`crate::sh_grammar::check`], vfio-gen's reading of the shell grammar: a file `sh`
//! cannot parse is never edited (docs/grub.md).

//!
//! `lex` splits a file into words the way `sh` does, `assign` reads the assignments to the
//! command-line variables out of them, `eval` evaluates the variables over the main file and
//! the drop-ins, `edit` splices vfio-gen's options into the sources. Planning GRUB (which
//! files, edit or drop-in mode, the checks) is `plan/grub.rs`.

mod assign;
mod edit;
mod eval;
mod lex;

pub use eval::{GrubConfig, UnsafeAssignment};
pub use lex::syntax;

use crate::cmdline::{self, Byte};

/// Where grub-mkconfig's output lives: Debian, Arch and others use /boot/grub, Fedora and
/// openSUSE /boot/grub2.
pub const GRUB_CFGS: &[&str] = &["/boot/grub/grub.cfg", "/boot/grub2/grub.cfg"];

/// The quoting a byte was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Unquoted,
    Double,
    Single,
}

#[derive(Debug, Clone)]
enum Seg {
    /// A byte of the value, from `start..end` of the source (an escape spans two bytes).
    Byte {
        b: u8,
        start: usize,
        end: usize,
        ctx: Ctx,
    },
    /// `$NAME` or `${NAME}`; `bare_end` is where an unbraced `$NAME` ends in the source (a
    /// name character placed there would lengthen the name).
    Param {
        name: String,
        bare_end: Option<usize>,
    },
}

/// One assignment to a command-line variable.
#[derive(Debug, Clone)]
struct Assign {
    file: usize,
    name: String,
    line: usize,
    value_start: usize,
    value_end: usize,
    segs: Vec<Seg>,
    unsafe_reason: Option<String>,
    /// Runs only sometimes but only appends (`X="$X more"`): its own text is never edited or
    /// counted, and new options never go into it.
    maybe: bool,
}

/// A source file given to the editor: its system path and bytes.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: String,
    pub bytes: Vec<u8>,
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}
fn is_name(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn line_of(bytes: &[u8], pos: usize) -> usize {
    bytes[..pos.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Where an evaluated byte came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loc {
    file: usize,
    start: usize,
    end: usize,
    ctx: Ctx,
}

/// The evaluated value of a variable: bytes (or opaque) with their origin.
type Value = Vec<(Byte, Option<Loc>)>;

fn render_value(v: &[(Byte, Option<Loc>)]) -> String {
    let mut s = Vec::new();
    for (b, _) in v {
        match b {
            b if *b == cmdline::BOUNDARY => s.push(b' '),
            Some(b) => s.push(*b),
            None => s.extend_from_slice(b"$..."),
        }
    }
    String::from_utf8_lossy(&s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::eval::*;
    use super::*;
    use crate::cmdline::Opt;

    fn one(text: &str) -> GrubConfig {
        GrubConfig::parse(vec![Source {
            path: "/etc/default/grub".into(),
            bytes: text.as_bytes().to_vec(),
        }])
        .unwrap()
    }

    fn ensure(text: &str, opts: &[&str]) -> String {
        let wanted: Vec<Opt> = opts.iter().map(|o| Opt::parse(o)).collect();
        let (files, _) = one(text)
            .edit("GRUB_CMDLINE_LINUX_DEFAULT", &wanted, false)
            .unwrap();
        String::from_utf8(files[0].clone()).unwrap()
    }

    #[test]
    fn seed_two_amd_grub() {
        let out = ensure(
            "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"\"\n",
            &["amd_iommu=on", "iommu=pt", "rd.driver.pre=vfio-pci"],
        );
        assert_eq!(
            out,
            "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet amd_iommu=on iommu=pt rd.driver.pre=vfio-pci\"\nGRUB_CMDLINE_LINUX=\"\"\n"
        );
    }

    #[test]
    fn quoting_forms() {
        assert_eq!(
            ensure("GRUB_CMDLINE_LINUX_DEFAULT='quiet'\n", &["iommu=pt"]),
            "GRUB_CMDLINE_LINUX_DEFAULT='quiet iommu=pt'\n"
        );
        assert_eq!(
            ensure("GRUB_CMDLINE_LINUX_DEFAULT=quiet\n", &["iommu=pt"]),
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet iommu=pt\"\n"
        );
        assert_eq!(
            ensure("GRUB_CMDLINE_LINUX_DEFAULT=\n", &["iommu=pt"]),
            "GRUB_CMDLINE_LINUX_DEFAULT=\"iommu=pt\"\n"
        );
        assert_eq!(
            ensure(
                "export GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\" # keep\n",
                &["iommu=pt"]
            ),
            "export GRUB_CMDLINE_LINUX_DEFAULT=\"quiet iommu=pt\" # keep\n"
        );
    }

    #[test]
    fn last_assignment_and_other_variable() {
        let text = "GRUB_CMDLINE_LINUX_DEFAULT=\"a\"\nGRUB_CMDLINE_LINUX=\"iommu=nopt\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"b\"\n";
        assert_eq!(
            ensure(text, &["iommu=pt", "x=1"]),
            "GRUB_CMDLINE_LINUX_DEFAULT=\"a\"\nGRUB_CMDLINE_LINUX=\"iommu=pt\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"b x=1\"\n"
        );
    }

    #[test]
    fn absent_variable_gets_one_assignment() {
        assert_eq!(
            ensure("#GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"", &["iommu=pt"]),
            "#GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"iommu=pt\"\n"
        );
        assert_eq!(
            ensure("A=1\r\n", &["iommu=pt"]),
            "A=1\r\nGRUB_CMDLINE_LINUX_DEFAULT=\"iommu=pt\"\r\n"
        );
    }

    #[test]
    fn self_references_and_continuations() {
        let text = "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet \\\n  iommu=soft\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT splash\"\n";
        let out = ensure(text, &["iommu=pt"]);
        assert_eq!(out, text.replace("iommu=soft", "iommu=pt"));
        let c = one(&out);
        assert_eq!(
            c.value_of("GRUB_CMDLINE_LINUX_DEFAULT"),
            "quiet   iommu=pt splash"
        );
    }

    /// The kernel would see the copied options twice, and an added option twice too: refused.
    #[test]
    fn a_value_copied_into_the_other_variable_is_refused() {
        for text in [
            "GRUB_CMDLINE_LINUX_DEFAULT=\"iommu=soft\"\nGRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX_DEFAULT\"\n",
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"\"GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT splash\"\n",
        ] {
            let err = parse_err(text);
            assert!(err.contains("copies $GRUB_CMDLINE_LINUX_DEFAULT"), "{err}");
        }
        // Before it is set, the copy is empty and stays so.
        let text = "GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX_DEFAULT\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n";
        assert_eq!(
            ensure(text, &["iommu=pt"]),
            text.replace("quiet", "quiet iommu=pt")
        );
    }

    fn parse_err(text: &str) -> String {
        match GrubConfig::parse(vec![Source {
            path: "/etc/default/grub".into(),
            bytes: text.as_bytes().to_vec(),
        }]) {
            Ok(_) => panic!("{text:?} is accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn files_sh_cannot_parse_are_refused_with_the_line() {
        for (text, says) in [
            (
                "A=1\nGRUB_DISTRIBUTOR=foo)\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n",
                "line 2: `)`",
            ),
            (
                "GRUB_CMDLINE_LINUX=\"a `b\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n",
                "line 1: the backquote",
            ),
            (
                "GRUB_CMDLINE_LINUX_DEFAULT='quiet splash\"\nGRUB_CMDLINE_LINUX=\"\"\n",
                "line 1: the ' opened here is never closed",
            ),
            ("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nfi\n", "line 2: `fi`"),
            ("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\";;\n", "line 1: `;;`"),
        ] {
            let err = parse_err(text);
            assert!(err.contains(says), "{text:?}: {err}");
            assert!(err.contains("`sh -n` rejects it too"), "{text:?}: {err}");
        }
    }

    #[test]
    fn likely_mistakes_are_named() {
        let err = parse_err("GRUB_CMDLINE_LINUX_DEFAULT = \"quiet splash\"\n");
        assert!(
            err.contains("line 1")
                && err.contains("runs a command named GRUB_CMDLINE_LINUX_DEFAULT")
                && err.contains("no blank before or after `=`"),
            "{err}"
        );
        // dash -n accepts it, but sourcing stops at the bad name with "bad variable name":
        // an assignment appended after it would never run.
        let err = parse_err("export GRUB_CMDLIN}E_LINUX_DEFAULT=\"quiet splash\"\n");
        assert!(
            err.contains("line 1")
                && err.contains("GRUB_CMDLIN}E_LINUX_DEFAULT")
                && err.contains("not a variable name"),
            "{err}"
        );
        for fine in [
            "export GRUB_CMDLINE_LINUX_DEFAULT\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n",
            "export \"$X\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n",
        ] {
            let ok = GrubConfig::parse(vec![Source {
                path: "/etc/default/grub".into(),
                bytes: fine.as_bytes().to_vec(),
            }]);
            assert!(ok.is_ok(), "{fine:?}");
        }
        let err = parse_err("GRUB_CMDLINE_LINUX_DEFAULT =\"quiet\"\n");
        assert!(err.contains("runs a command named"), "{err}");
        let err = parse_err("GRUB_CMDLINE_LINUX_DEFAULT= \"quiet splash\"\n");
        assert!(err.contains("remove the blank after `=`"), "{err}");
        // sh accepts this (the quote closes in the comment below), but it is not what was meant.
        let err = parse_err("GRUB_CMDLINE_LINUX_DEFAULT='quiet splash\"\nGRUB_TIMEOUT=5'\n");
        assert!(err.contains("use the same quote on both ends"), "{err}");
    }

    #[test]
    fn an_option_appended_after_a_final_backslash_stays_on_its_own_line() {
        let out = ensure("A=1\nB=x\\", &["iommu=pt"]);
        assert_eq!(
            out,
            "A=1\nB=x\\\n\nGRUB_CMDLINE_LINUX_DEFAULT=\"iommu=pt\"\n"
        );
        let out = ensure("A=1\nB=x\\\n", &["iommu=pt"]);
        assert_eq!(
            out,
            "A=1\nB=x\\\n\nGRUB_CMDLINE_LINUX_DEFAULT=\"iommu=pt\"\n"
        );
        let out = ensure("A=1\nB=x\\\\\n", &["iommu=pt"]);
        assert_eq!(
            out,
            "A=1\nB=x\\\\\nGRUB_CMDLINE_LINUX_DEFAULT=\"iommu=pt\"\n"
        );
    }

    #[test]
    fn appending_after_a_bare_reference_keeps_it_apart() {
        let text = "GRUB_CMDLINE_LINUX_DEFAULT=\"\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT\"\n";
        assert_eq!(
            ensure(text, &["iommu=pt"]),
            text.replace("DEFAULT\"\n", "DEFAULT iommu=pt\"\n")
        );
    }

    #[test]
    fn computed_values_are_refused() {
        for text in [
            "GRUB_CMDLINE_LINUX_DEFAULT=\"$(cat /x)\"\n",
            "GRUB_CMDLINE_LINUX_DEFAULT=`cat /x`\n",
            "GRUB_CMDLINE_LINUX_DEFAULT=\"${X:-quiet}\"\n",
            "GRUB_CMDLINE_LINUX_DEFAULT+=\" x\"\n",
        ] {
            let err = GrubConfig::parse(vec![Source {
                path: "/g".into(),
                bytes: text.as_bytes().to_vec(),
            }])
            .err()
            .unwrap();
            assert!(err.to_string().contains("drop-in"), "{text}: {err}");
        }
    }

    #[test]
    fn other_computed_lines_are_fine() {
        let text = "GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n";
        assert_eq!(
            ensure(text, &["iommu=pt"]),
            text.replace("quiet", "quiet iommu=pt")
        );
    }

    #[test]
    fn escaped_quotes_stay() {
        let text = "GRUB_CMDLINE_LINUX_DEFAULT=\"acpi_osi=\\\"Windows 2015\\\" quiet\"\n";
        let out = ensure(text, &["iommu=pt"]);
        assert_eq!(out, text.replace("quiet\"", "quiet iommu=pt\""));
    }
}
