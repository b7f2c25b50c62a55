//! Issue 9, "Proof that stays": hostile input through the real binary, on temporary roots only.
//!
//! One table of cases. Each case builds a workspace (a temporary directory holding `root/`, a
//! copied fixture root or a fake host, `profile.toml`, and `outside/target`, a file a symbolic
//! link may point at from inside the root), runs one command line with a 20 s timeout and a
//! 1 GiB address-space limit, and checks:
//!
//! - no hang, no crash by a signal, no panic (`panicked`, `RUST_BACKTRACE`);
//! - no raw control character (C0 but tab and newline, DEL, C1) on stdout or stderr: what the
//!   input carries is shown escaped;
//! - an error case exits 2 with exactly one `vfio-gen: error:` line (at most 4 KiB) holding the
//!   case's substrings (the input it names) and a remedy (what to do);
//! - a legitimate case exits with its documented status (0, or 1 for "changes pending" / a
//!   failed check) and prints no error line;
//! - nothing in the workspace changes (every file, link, directory, FIFO and mode) unless the
//!   case says where it may write.
//!
//! Where the binary is wrong today, the case stays as strict as the others and is listed in
//! [`KNOWN_FAILURES`] with the symptoms it shows; the test asserts that it still shows exactly
//! those, so a fix (or a different failure) makes the test fail until the list is updated.
//!
//! Cases that may block on a FIFO run on their own threads beside a pool of one worker per CPU,
//! so the whole table takes about one timeout. `VFIO_GEN_HOSTILE_VERBOSE=1 cargo test --test
//! cli hostile -- --nocapture` prints every case with its time, symptoms and first stderr line.

use super::*;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, symlink};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one command may run before it counts as a hang.
const TIMEOUT: Duration = Duration::from_secs(20);
/// `ulimit -v` for every run (1 GiB, in KiB): a runaway allocation ends the run, not the machine.
const MEMORY_LIMIT_KIB: u64 = 1024 * 1024;
/// The longest error message that still counts as "one clear line".
const MAX_ERROR_LEN: usize = 4096;

/// What a case can get wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Still running after [`TIMEOUT`] (killed).
    Hang,
    /// Ended by a signal (an abort, a stack overflow, a failed allocation).
    Crash,
    /// `panicked` or `RUST_BACKTRACE` on stderr.
    Panic,
    /// Another exit status than the documented one.
    Status,
    /// An error case without exactly one `vfio-gen: error:` line on stderr (and nothing else),
    /// or a legitimate case with one.
    ErrorLine,
    /// The error line (error case) or stdout (legitimate case) lacks one of the case's substrings.
    Missing,
    /// The error line names no remedy.
    NoRemedy,
    /// The error line is longer than [`MAX_ERROR_LEN`].
    LongMessage,
    /// A raw control character on stdout or stderr.
    RawControl,
    /// The output should show an escape byte of the input escaped, and shows none.
    NotEscaped,
    /// Something in the workspace changed.
    Wrote,
    /// The case's own check failed.
    Check,
}
use Kind::*;

/// Cases the binary fails today: name, the symptoms it shows (exactly), why that is wrong.
/// Each one is reported with a reproduction; remove the entry when the fix lands.
const KNOWN_FAILURES: &[(&str, &[Kind], &str)] = &[];

// ------------------------------------------------------------------------------------------
// The table
// ------------------------------------------------------------------------------------------

type Setup = Box<dyn Fn(&Path) + Send + Sync>;
type CheckFn = Box<dyn Fn(&Path, &Run) -> Result<(), String> + Send + Sync>;

enum Base {
    /// A copy of `tests/fixtures/roots/<name>`.
    Fixture(&'static str),
    /// A fake host built from `tests/fixtures/hosts/<name>.toml`.
    Host(&'static str),
    /// A fake host built from a description text (pci.ids from tests/fixtures/hosts).
    HostText(String),
}

enum Expect {
    /// Exit 2, one `vfio-gen: error:` line holding every substring, and a remedy.
    Error(Vec<String>),
    /// This exit status, no error line, stdout holding every substring.
    Ok(i32, Vec<String>),
}

struct Case {
    name: &'static str,
    base: Base,
    profile: Option<String>,
    setup: Option<Setup>,
    /// `{root}`, `{profile}`, `{ws}`, `{out}` and `{outside}` are replaced by their paths.
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    expect: Expect,
    /// The output must show an ESC of the input in an escaped form.
    escaped: bool,
    /// Workspace paths (relative, prefixes) that may change.
    may_write: Vec<&'static str>,
    check: Option<CheckFn>,
    /// The case may block on a FIFO: run it beside the pool, not in it.
    may_block: bool,
}

fn case(name: &'static str, args: &[&str]) -> Case {
    Case {
        name,
        base: Base::Fixture("amd-grub"),
        profile: Some(AMD.to_string()),
        setup: None,
        args: args.iter().map(|s| s.to_string()).collect(),
        stdin: None,
        expect: Expect::Ok(0, Vec::new()),
        escaped: false,
        may_write: Vec::new(),
        check: None,
        may_block: false,
    }
}

impl Case {
    fn base(mut self, b: Base) -> Self {
        self.base = b;
        self
    }
    fn host(self, name: &'static str) -> Self {
        self.base(Base::Host(name)).profile(INTEL_3090)
    }
    fn profile(mut self, text: &str) -> Self {
        self.profile = Some(text.to_string());
        self
    }
    fn setup(mut self, f: impl Fn(&Path) + Send + Sync + 'static) -> Self {
        self.setup = Some(Box::new(f));
        self
    }
    fn stdin(mut self, bytes: &[u8]) -> Self {
        self.stdin = Some(bytes.to_vec());
        self
    }
    fn error(mut self, needles: &[&str]) -> Self {
        self.expect = Expect::Error(needles.iter().map(|s| s.to_string()).collect());
        self
    }
    fn ok(mut self, code: i32, needles: &[&str]) -> Self {
        self.expect = Expect::Ok(code, needles.iter().map(|s| s.to_string()).collect());
        self
    }
    fn escaped(mut self) -> Self {
        self.escaped = true;
        self
    }
    fn may_write(mut self, prefix: &'static str) -> Self {
        self.may_write.push(prefix);
        self
    }
    fn check(
        mut self,
        f: impl Fn(&Path, &Run) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.check = Some(Box::new(f));
        self
    }
    fn may_block(mut self) -> Self {
        self.may_block = true;
        self
    }
}

const AMD: &str = "[host]\ncpu = \"amd\"\nbootloader = \"grub\"\n\n[vfio]\nids = [\"10de:13c2\", \"10de:0fbb\"]\n";
const INTEL_3090: &str = "[host]\ncpu = \"intel\"\nbootloader = \"systemd-boot\"\n\n[vfio]\nids = [\"10de:2204\", \"10de:1aef\"]\n";
const ARCH: &str = "profiles/arch-intel-systemd-boot.toml";
const PROXMOX: &str = "profiles/proxmox-kernel-cmdline.toml";
const ENTRY: &str = "boot/loader/entries/arch.conf";
const GPU_DIR: &str = "sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0";
const AUDIO_DIR: &str = "sys/devices/pci0000:00/0000:00:01.0/0000:01:00.1";

/// The amd-grub profile with `ids = VALUE`.
fn amd_ids(value: &str) -> String {
    AMD.replace("[\"10de:13c2\", \"10de:0fbb\"]", value)
}
/// The amd-grub profile with more text after `[vfio]`'s keys.
fn amd_with(more: &str) -> String {
    format!("{AMD}{more}\n")
}
/// `[kernel] extra = [VALUE]` on the amd-grub profile (VALUE in TOML syntax).
fn extra(value: &str) -> String {
    amd_with(&format!("[kernel]\nextra = [{value}]"))
}

const APPLY: &[&str] = &[
    "apply",
    "-p",
    "{profile}",
    "--root",
    "{root}",
    "--yes",
    "--no-hooks",
];
const PLAN: &[&str] = &["plan", "-p", "{profile}", "--root", "{root}"];

// Setup helpers: paths are relative to the root (`ws/root`).
fn put(ws: &Path, rel: &str, bytes: impl AsRef<[u8]>) {
    let p = ws.join("root").join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&p);
    std::fs::write(p, bytes).unwrap();
}
fn remove(ws: &Path, rel: &str) {
    let p = ws.join("root").join(rel);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p).unwrap(),
        Ok(_) => std::fs::remove_file(&p).unwrap(),
        Err(_) => {}
    }
}
fn link(ws: &Path, rel: &str, target: &str) {
    remove(ws, rel);
    let p = ws.join("root").join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, p).unwrap();
}
fn fifo(ws: &Path, rel: &str) {
    remove(ws, rel);
    let p = ws.join("root").join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}
fn dir(ws: &Path, rel: &str) {
    remove(ws, rel);
    std::fs::create_dir_all(ws.join("root").join(rel)).unwrap();
}
fn grub(ws: &Path, bytes: impl AsRef<[u8]>) {
    put(ws, "etc/default/grub", bytes);
}

/// A loop of two links, `a` -> `b` -> `a`, both in the directory of `rel`, and `rel` -> `a`.
fn two_link_loop(ws: &Path, rel: &str) {
    let d = Path::new(rel)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    link(ws, &format!("{d}/loop-a"), "loop-b");
    link(ws, &format!("{d}/loop-b"), "loop-a");
    link(ws, rel, "loop-a");
}

/// The file render wrote under `ws/out`.
fn rendered(ws: &Path, rel: &str) -> Result<Vec<u8>, String> {
    std::fs::read(ws.join("out").join(rel)).map_err(|e| format!("out/{rel}: {e}"))
}

fn esc_pci_ids(ws: &Path) {
    let p = ws.join("root/usr/share/hwdata/pci.ids");
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains("GA102 [GeForce RTX 3090]"));
    std::fs::write(
        &p,
        text.replace(
            "GA102 [GeForce RTX 3090]",
            "GA102 \x1b[31mEVIL\x1b]0;owned\x07 [GeForce RTX 3090]",
        ),
    )
    .unwrap();
}

/// intel-3090 with the GPU's driver named `nv ESC [31m idia`.
fn esc_driver_host() -> Base {
    let text =
        std::fs::read_to_string(repo().join("tests/fixtures/hosts/intel-3090.toml")).unwrap();
    assert!(text.contains("\ndriver = \"nvidia\"\n"));
    Base::HostText(text.replace(
        "\ndriver = \"nvidia\"\n",
        "\ndriver = \"nv\\u001b[31midia\"\n",
    ))
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(profile_value_cases());
    v.extend(profile_option_cases());
    v.extend(profile_file_cases());
    v.extend(edited_file_cases());
    v.extend(edited_boot_file_cases());
    v.extend(sysfs_name_cases());
    v.extend(sysfs_shape_cases());
    v.extend(cli_cases());
    // Legitimate controls on the same roots: the harness does not refuse everything.
    v.push(case("control: plan on the seed GRUB host", PLAN).ok(0, &["modify /etc/default/grub"]));
    v.push(
        case("control: apply on the seed GRUB host", APPLY)
            .ok(0, &[])
            .may_write("root/")
            .check(|ws, _| {
                let g = std::fs::read_to_string(ws.join("root/etc/default/grub"))
                    .map_err(|e| e.to_string())?;
                g.contains("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet iommu=pt\"")
                    .then_some(())
                    .ok_or_else(|| format!("not applied:\n{g}"))
            }),
    );
    v
}

// The tables below keep the layout they were written in, a case to a few lines: rustfmt never
// reformatted them (it leaves a macro call with over-long lines as it is).

/// Profile values: IDs, unknown keys, value types.
#[rustfmt::skip]
fn profile_value_cases() -> Vec<Case> {
    vec![
        case("profile: id with a space", APPLY)
            .profile(&amd_ids(r#"["10de 2204"]"#))
            .error(&["profile.toml:6:8", "vfio.ids", "\"10de 2204\"", "is not a PCI ID"]),
        case("profile: id in uppercase hex", APPLY)
            .profile(&amd_ids(r#"["10DE:2204"]"#))
            .error(&["vfio.ids", "\"10DE:2204\"", "uppercase", "\"10de:2204\""]),
        case("profile: id with ;reboot", APPLY)
            .profile(&amd_ids(r#"["10de:2204;reboot"]"#))
            .error(&["vfio.ids", "\"10de:2204;reboot\"", "not a PCI ID"]),
        case("profile: PCI address in ids", APPLY)
            .profile(&amd_ids(r#"["0000:01:00.0"]"#))
            .error(&["vfio.ids", "is a PCI address, not an ID"]),
        case("profile: empty ids", APPLY)
            .profile(&amd_ids("[]"))
            .error(&["vfio.ids is empty", "vfio-gen detect"]),
        case("profile: empty string id", APPLY)
            .profile(&amd_ids(r#"[""]"#))
            .error(&["vfio.ids", "\"\"", "not a PCI ID"]),
        case("profile: ids is a number", APPLY)
            .profile(&amd_ids("5"))
            .error(&["ids: invalid type", "write a list in brackets"]),
        case("profile: ids is one string", APPLY)
            .profile(&amd_ids(r#""10de:13c2,10de:0fbb""#))
            .error(&["ids: invalid type", "write a list in brackets"]),
        case("profile: ids holds a number", APPLY)
            .profile(&amd_ids("[4318]"))
            .error(&["ids", "invalid type"]),
        case("profile: 1 MiB id", PLAN)
            .profile(&amd_ids(&format!("[\"{}\"]", "a".repeat(1 << 20))))
            .error(&["vfio.ids", "not a PCI ID"]),
        case("profile: unknown key", APPLY)
            .profile(&amd_with("bogus = 1"))
            .error(&["profile.toml:7:1", "unknown field `bogus`", "remove the key"]),
        case("profile: unknown table", APPLY)
            .profile(&amd_with("[frobnicate]\nx = 1"))
            .error(&["frobnicate", "unknown field"]),
        case("profile: unknown key holding ESC", PLAN)
            .profile(&amd_with("\"bo\\u001bgus\" = 1"))
            .error(&["unknown field", "remove the key"])
            .escaped(),
        case("profile: cpu value holding ESC", PLAN)
            .profile(&AMD.replace("\"amd\"", "\"amd\\u001b[31m\""))
            .error(&["cpu", "unknown variant"])
            .escaped(),
        case("profile: raw ESC byte in a string", PLAN)
            .profile(&AMD.replace("\"amd\"", "\"amd\x1b[31m\""))
            .error(&["profile.toml:2:", "cpu"]),
        case("profile: wrong type for a boolean", APPLY)
            .profile(&amd_with("disable_vga = \"yes\""))
            .error(&["disable_vga: invalid type", "true or false"]),
        case("profile: number for a boolean", APPLY)
            .profile(&amd_with("[kernel]\niommu_pt = 1"))
            .error(&["iommu_pt: invalid type", "true or false"]),
        case("profile: extra is a string", APPLY)
            .profile(&amd_with("[kernel]\nextra = \"video=efifb:off\""))
            .error(&["extra: invalid type", "write a list in brackets"]),
    ]
}

/// Profile values: kernel options, paths, module names.
#[rustfmt::skip]
fn profile_option_cases() -> Vec<Case> {
    vec![
        case("profile: option with a double quote", APPLY)
            .profile(&extra(r#""a\"b""#))
            .error(&["kernel.extra", "contains '\"'"]),
        case("profile: option with a single quote", APPLY)
            .profile(&extra(r#""a'b""#))
            .error(&["kernel.extra", "contains '\\''"]),
        case("profile: option with $(...)", APPLY)
            .profile(&extra(r#""x=$(reboot)""#))
            .error(&["kernel.extra", "contains '$'"]),
        case("profile: option with backticks", APPLY)
            .profile(&extra(r#""x=`reboot`""#))
            .error(&["kernel.extra", "contains '`'"]),
        case("profile: option with a newline", APPLY)
            .profile(&extra(r#""a\nb""#))
            .error(&["kernel.extra", "contains '\\n'"]),
        case("profile: option with NUL", APPLY)
            .profile(&extra(r#""a\u0000b""#))
            .error(&["kernel.extra", "contains '\\0'"]),
        case("profile: option with ESC", APPLY)
            .profile(&extra(r#""a\u001b[2Jb""#))
            .error(&["kernel.extra"])
            .escaped(),
        case("profile: option with ;", APPLY)
            .profile(&extra(r#""quiet;reboot""#))
            .error(&["kernel.extra", "contains ';'"]),
        case("profile: option with whitespace", APPLY)
            .profile(&extra(r#""a b""#))
            .error(&["kernel.extra", "\"a b\""]),
        case("profile: 1 MiB option", APPLY)
            .profile(&extra(&format!("\"video={}\"", "a".repeat(1 << 20))))
            .error(&["kernel.extra", "2047"]),
        case("profile: grub.file with ..", APPLY)
            .profile(&amd_with("[grub]\nfile = \"/etc/../../etc/shadow\""))
            .error(&["grub.file", "'..'"]),
        case("profile: grub.file relative", APPLY)
            .profile(&amd_with("[grub]\nfile = \"etc/default/grub\""))
            .error(&["grub.file", "is not an absolute path", "write it from the root"]),
        case("profile: grub.file holding NUL", APPLY)
            .profile(&amd_with("[grub]\nfile = \"/etc/default/grub\\u0000x\""))
            .error(&["grub.file", "NUL"]),
        case("profile: grub.file holding ESC", APPLY)
            .profile(&amd_with("[grub]\nfile = \"/etc/default/grub\\u001b[2J\""))
            .error(&["/etc/default/grub"])
            .escaped(),
        case("profile: grub.variable injection", APPLY)
            .profile(&amd_with("[grub]\nvariable = \"X;reboot\""))
            .error(&["grub.variable", "\"X;reboot\"", "GRUB_CMDLINE_LINUX_DEFAULT"]),
        case("profile: loader entry with ..", APPLY)
            .base(Base::Fixture("arch-intel-systemd-boot"))
            .profile(&INTEL_3090.replace("[vfio]", "[systemd-boot]\nentries = [\"/boot/../../etc/passwd\"]\n[vfio]"))
            .error(&["systemd-boot.entries", "'..'"]),
        case("profile: loader entry relative", APPLY)
            .base(Base::Fixture("arch-intel-systemd-boot"))
            .profile(&INTEL_3090.replace("[vfio]", "[systemd-boot]\nentries = [\"arch.conf\"]\n[vfio]"))
            .error(&["systemd-boot.entries", "is not an absolute path"]),
        case("profile: module name with a space", APPLY)
            .profile(&amd_with("blacklist = [\"nou veau\"]"))
            .error(&["vfio.blacklist", "\"nou veau\"", "not a module name"]),
        case("profile: softdep with $(...)", APPLY)
            .profile(&amd_with("softdep = [\"$(reboot)\"]"))
            .error(&["vfio.softdep", "not a module name"]),
    ]
}

/// The profile file itself: duplicate keys, encoding, nesting, what `-p` names.
#[rustfmt::skip]
fn profile_file_cases() -> Vec<Case> {
    vec![
        case("profile: duplicate key", APPLY)
            .profile(&amd_with("ids = [\"10de:13c2\"]"))
            .error(&["ids: duplicate key", "keep one"]),
        case("profile: empty file", APPLY)
            .profile("")
            .error(&["the profile is empty", "vfio-gen detect"]),
        case("profile: invalid UTF-8", APPLY)
            .profile("")
            .setup(|ws| std::fs::write(ws.join("profile.toml"), b"[host]\ncpu = \"\xe9\"\n").unwrap())
            .error(&["profile.toml:2:8", "not UTF-8"]),
        case("profile: nesting 100000 deep", PLAN)
            .profile(&amd_with(&format!("x = {}{}", "[".repeat(100_000), "]".repeat(100_000))))
            .error(&["profile.toml:7:", "recurse"]),
        case("profile: UTF-8 byte-order mark", PLAN)
            .profile(&format!("\u{feff}{AMD}"))
            .ok(0, &["/etc/default/grub"]),
        case("profile: -p is a directory", &["plan", "-p", "{root}", "--root", "{root}"])
            .error(&["cannot read the profile", "pass one with -p"]),
        case("profile: -p path holding ESC", &["plan", "-p", "{ws}/no\x1b[31mfile.toml", "--root", "{root}"])
            .error(&["cannot read the profile", "pass one with -p"])
            .escaped(),
        case("profile: -p is a FIFO", PLAN)
            .setup(|ws| {
                std::fs::remove_file(ws.join("profile.toml")).unwrap();
                nix::unistd::mkfifo(&ws.join("profile.toml"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
            })
            .error(&["profile.toml"])
            .may_block(),
        // Without the memory limit this reads until the machine runs out of memory; under it,
        // the read fails cleanly.
        case("profile: -p /dev/zero", &["plan", "-p", "/dev/zero", "--root", "{root}"])
            .error(&["/dev/zero"])
            .may_block(),
    ]
}

/// Edited files: /etc/default/grub, modprobe.d, the state directory.
#[rustfmt::skip]
fn edited_file_cases() -> Vec<Case> {
    vec![
        case("edited: binary garbage in /etc/default/grub", APPLY)
            .setup(|ws| grub(ws, (0..16).flat_map(|_| 0..=255u8).collect::<Vec<u8>>()))
            .error(&["/etc/default/grub", "fix the file by hand"]),
        case("edited: 50 MiB GRUB file of comments", &["plan", "-p", "{profile}", "--root", "{root}", "--exit-code"])
            .setup(|ws| {
                let mut text = String::from("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n");
                text.push_str(&"# a comment line, 32 bytes long\n".repeat(50 << 15));
                grub(ws, text);
            })
            .ok(1, &["modify /etc/default/grub", "iommu=pt"]),
        case("edited: 50 MiB GRUB value", PLAN)
            .setup(|ws| grub(ws, format!("GRUB_CMDLINE_LINUX_DEFAULT=\"{}\"\n", "x".repeat(50 << 20))))
            .error(&["/etc/default/grub", "2047"]),
        case("edited: GRUB value of 3000 bytes (over COMMAND_LINE_SIZE)", APPLY)
            .setup(|ws| grub(ws, format!("GRUB_CMDLINE_LINUX_DEFAULT=\"{}\"\n", "x ".repeat(1500))))
            .error(&["/etc/default/grub", "2047"]),
        case("edited: unbalanced double quote in GRUB", APPLY)
            .setup(|ws| grub(ws, "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\nGRUB_TIMEOUT=5\n"))
            .error(&["/etc/default/grub", "line 1", "never closed", "add the closing"]),
        case("edited: unbalanced single quote in GRUB", APPLY)
            .setup(|ws| grub(ws, "GRUB_CMDLINE_LINUX_DEFAULT='quiet\n"))
            .error(&["/etc/default/grub", "line 1", "never closed"]),
        case("edited: GRUB value with command substitution", APPLY)
            .setup(|ws| grub(ws, "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet $(reboot)\"\n"))
            .error(&["/etc/default/grub", "drop-in"]),
        case("edited: invalid UTF-8 in the GRUB value", &["render", "-p", "{profile}", "--root", "{root}", "--out", "{out}"])
            .setup(|ws| grub(ws, b"GRUB_CMDLINE_LINUX_DEFAULT=\"quiet \xff\xfe\"\n"))
            .ok(0, &[])
            .may_write("out")
            .check(|ws, _| {
                let got = rendered(ws, "etc/default/grub")?;
                (got == b"GRUB_CMDLINE_LINUX_DEFAULT=\"quiet \xff\xfe iommu=pt\"\n")
                    .then_some(())
                    .ok_or_else(|| format!("the bytes are not kept: {:?}", String::from_utf8_lossy(&got)))
            }),
        case("edited: GRUB value holding ESC", PLAN)
            .setup(|ws| grub(ws, "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet \x1b[2J splash\"\n"))
            .ok(0, &["/etc/default/grub"])
            .escaped(),
        case("edited: GRUB value holding NUL", PLAN)
            .setup(|ws| grub(ws, b"GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\0splash\"\n"))
            .ok(0, &["/etc/default/grub"]),
        case("edited: /etc/default/grub is a directory", APPLY)
            .setup(|ws| dir(ws, "etc/default/grub"))
            .error(&["etc/default/grub", "is a directory"]),
        case("edited: /etc/default/grub is a FIFO", APPLY)
            .setup(|ws| fifo(ws, "etc/default/grub"))
            .error(&["etc/default/grub"])
            .may_block(),
        case("edited: /etc/default/grub links to itself", APPLY)
            .setup(|ws| link(ws, "etc/default/grub", "grub"))
            .error(&["etc/default/grub", "symbolic links"]),
        case("edited: /etc/default/grub two-link loop", APPLY)
            .setup(|ws| two_link_loop(ws, "etc/default/grub"))
            .error(&["etc/default/", "symbolic links"]),
        case("edited: /etc/default/grub links outside the root", APPLY)
            .setup(|ws| link(ws, "etc/default/grub", "../../../outside/target"))
            .error(&["/etc/default/grub", "leads outside"]),
        case("edited: absolute link is taken under the root", APPLY)
            .setup(|ws| link(ws, "etc/default/grub", "/outside/target"))
            .error(&["/etc/default/grub does not exist under the root", "Set [grub] file"]),
        case("edited: owned vfio.conf links outside the root", APPLY)
            .setup(|ws| link(ws, "etc/modprobe.d/vfio.conf", "../../../outside/target"))
            .error(&["/etc/modprobe.d/vfio.conf", "leads outside"]),
        case("edited: /etc/modprobe.d links outside the root", APPLY)
            .setup(|ws| link(ws, "etc/modprobe.d", "../../outside"))
            .error(&["/etc/modprobe.d/", "leads outside"]),
        case("edited: /etc/modprobe.d is a regular file", APPLY)
            .setup(|ws| put(ws, "etc/modprobe.d", "not a directory\n"))
            .error(&["etc/modprobe.d"]),
        case("edited: owned /etc/modprobe.d/vfio.conf is a directory", APPLY)
            .setup(|ws| dir(ws, "etc/modprobe.d/vfio.conf"))
            .error(&["etc/modprobe.d/vfio.conf", "is a directory"]),
        case("edited: owned /etc/modprobe.d/vfio.conf is a FIFO", APPLY)
            .setup(|ws| fifo(ws, "etc/modprobe.d/vfio.conf"))
            .error(&["etc/modprobe.d/vfio.conf"])
            .may_block(),
        case("edited: /var/lib/vfio-gen is a regular file", APPLY)
            .setup(|ws| put(ws, "var/lib/vfio-gen", "x\n"))
            .error(&["var/lib/vfio-gen"]),
    ]
}

/// Edited files: loader entries, /etc/kernel/cmdline, GRUB drop-ins.
#[rustfmt::skip]
fn edited_boot_file_cases() -> Vec<Case> {
    vec![
        case("edited: loader entry options of 100000 tokens", &["apply", "-p", ARCH, "--root", "{root}", "--yes", "--no-hooks"])
            .base(Base::Fixture("arch-intel-systemd-boot"))
            .setup(|ws| {
                let opts: Vec<String> = (0..100_000).map(|i| format!("opt{i}=1")).collect();
                put(ws, ENTRY, format!("title Arch\nlinux /vmlinuz-linux\noptions {}\n", opts.join(" ")));
            })
            .error(&["/boot/loader/entries/arch.conf", "2047", "shorten"]),
        case("edited: loader entry with an unbalanced quote", &["apply", "-p", ARCH, "--root", "{root}", "--yes", "--no-hooks"])
            .base(Base::Fixture("arch-intel-systemd-boot"))
            .setup(|ws| put(ws, ENTRY, "title Arch\nlinux /vmlinuz-linux\noptions root=PARTLABEL=\"PRIMARY quiet\n"))
            .error(&["/boot/loader/entries/arch.conf", "never closed", "close it"]),
        case("edited: loader entry with invalid UTF-8", &["render", "-p", ARCH, "--root", "{root}", "--out", "{out}"])
            .base(Base::Fixture("arch-intel-systemd-boot"))
            .setup(|ws| put(ws, ENTRY, b"title Arch\nlinux /vmlinuz-linux\noptions root=/dev/sda \xff\xfe quiet\n"))
            .ok(0, &[])
            .may_write("out")
            .check(|ws, _| {
                let got = rendered(ws, ENTRY)?;
                let want: &[u8] = b"root=/dev/sda \xff\xfe quiet intel_iommu=on";
                got.windows(want.len())
                    .any(|w| w == want)
                    .then_some(())
                    .ok_or_else(|| format!("the bytes are not kept: {:?}", String::from_utf8_lossy(&got)))
            }),
        case("edited: loader entry title holding ESC and OSC", &["plan", "-p", ARCH, "--root", "{root}"])
            .base(Base::Fixture("arch-intel-systemd-boot"))
            .setup(|ws| put(ws, ENTRY, "title \x1b[2J\x1b]0;owned\x07Arch\nlinux /vmlinuz-linux\noptions root=/dev/sda quiet\n"))
            .ok(0, &["/boot/loader/entries/arch.conf"])
            .escaped(),
        case("edited: loader entry is a directory", &["plan", "-p", ARCH, "--root", "{root}"])
            .base(Base::Fixture("arch-intel-systemd-boot"))
            .setup(|ws| dir(ws, ENTRY))
            .error(&["boot/loader/entries/arch.conf", "is a directory"]),
        case("edited: loader entry is a FIFO", &["plan", "-p", ARCH, "--root", "{root}"])
            .base(Base::Fixture("arch-intel-systemd-boot"))
            .setup(|ws| fifo(ws, ENTRY))
            .error(&["boot/loader/entries/arch.conf"])
            .may_block(),
        case("edited: loader entry links outside the root", &["apply", "-p", ARCH, "--root", "{root}", "--yes", "--no-hooks"])
            .base(Base::Fixture("arch-intel-systemd-boot"))
            .setup(|ws| link(ws, ENTRY, "../../../../outside/target"))
            .error(&["/boot/loader/entries/arch.conf", "leads outside"]),
        case("edited: /etc/kernel/cmdline is a FIFO", &["plan", "-p", PROXMOX, "--root", "{root}"])
            .base(Base::Fixture("proxmox-kernel-cmdline"))
            .setup(|ws| fifo(ws, "etc/kernel/cmdline"))
            .error(&["/etc/kernel/cmdline"])
            .may_block(),
        case("edited: /etc/kernel/cmdline holding ESC", &["plan", "-p", PROXMOX, "--root", "{root}"])
            .base(Base::Fixture("proxmox-kernel-cmdline"))
            .setup(|ws| put(ws, "etc/kernel/cmdline", "root=ZFS=rpool/ROOT/pve-1 \x1b[2J boot=zfs\n"))
            .ok(0, &["/etc/kernel/cmdline"])
            .escaped(),
        case("edited: GRUB drop-in with command substitution", &["apply", "-p", "profiles/ubuntu-grub-dropin.toml", "--root", "{root}", "--yes", "--no-hooks"])
            .base(Base::Fixture("ubuntu-grub-dropin"))
            .setup(|ws| put(ws, "etc/default/grub.d/zz-evil.cfg", "GRUB_CMDLINE_LINUX_DEFAULT=\"$(reboot)\"\n"))
            .error(&["/etc/default/grub.d/zz-evil.cfg"]),
    ]
}

/// Sysfs trees: names holding ESC, link loops.
#[rustfmt::skip]
fn sysfs_name_cases() -> Vec<Case> {
    vec![
        case("sysfs: device name with ESC (iommu)", &["iommu", "--root", "{root}"])
            .host("intel-3090")
            .setup(esc_pci_ids)
            .ok(0, &["0000:01:00.0"])
            .escaped(),
        case("sysfs: device name with ESC (iommu json)", &["iommu", "--root", "{root}", "--format", "json"])
            .host("intel-3090")
            .setup(esc_pci_ids)
            .ok(0, &["0000:01:00.0"])
            .escaped(),
        case("sysfs: device name with ESC (detect)", &["detect", "--root", "{root}"])
            .host("intel-3090")
            .setup(esc_pci_ids)
            .ok(0, &["10de:2204"])
            .escaped(),
        case("sysfs: driver with ESC (iommu)", &["iommu", "--root", "{root}"])
            .base(esc_driver_host())
            .ok(0, &["0000:01:00.0"])
            .escaped(),
        case("sysfs: driver with ESC (detect)", &["detect", "--root", "{root}"])
            .base(esc_driver_host())
            .ok(0, &["10de:2204"])
            .escaped()
            .check(|_, run| {
                vfio_gen::profile::parse(&String::from_utf8_lossy(&run.stdout), "detected.toml")
                    .map(|_| ())
                    .map_err(|e| format!("detect's output is not a profile: {e}"))
            }),
        case("sysfs: driver with ESC (check)", &["check", "-p", "{profile}", "--root", "{root}"])
            .base(esc_driver_host())
            .profile(INTEL_3090)
            .ok(1, &["0000:01:00.0"])
            .escaped(),
        case("sysfs: driver with ESC (unbind --dry-run)", &["unbind", "--dry-run", "0000:01:00.0", "--root", "{root}"])
            .base(esc_driver_host())
            .ok(0, &["0000:01:00.0"])
            .escaped(),
        case("sysfs: bus entry named with ESC (iommu)", &["iommu", "--root", "{root}"])
            .host("intel-3090")
            .setup(|ws| link(ws, "sys/bus/pci/devices/0000:09:00.0\x1b[31m", &format!("../../../{}", GPU_DIR.strip_prefix("sys/").unwrap())))
            .ok(0, &["0000:01:00.0"])
            .escaped(),
        case("sysfs: ESC in /proc/cmdline (check)", &["check", "-p", "{profile}", "--root", "{root}"])
            .host("intel-3090")
            .setup(|ws| put(ws, "proc/cmdline", "BOOT_IMAGE=/vmlinuz \x1b[2Jintel_iommu=on\n"))
            .ok(1, &["iommu"]),
        case("sysfs: iommu_group link loop (iommu)", &["iommu", "--root", "{root}"])
            .host("intel-3090")
            .setup(|ws| link(ws, &format!("{GPU_DIR}/iommu_group"), "iommu_group"))
            .ok(0, &["0000:01:00.0"]),
        case("sysfs: iommu_group link loop (detect)", &["detect", "--root", "{root}"])
            .host("intel-3090")
            .setup(|ws| link(ws, &format!("{GPU_DIR}/iommu_group"), "iommu_group"))
            .ok(0, &["0000:01:00.0"]),
        case("sysfs: iommu_group link loop (bind)", &["bind", "--dry-run", "0000:01:00.0", "--root", "{root}"])
            .host("intel-3090")
            .setup(|ws| link(ws, &format!("{GPU_DIR}/iommu_group"), "iommu_group"))
            .error(&["0000:01:00.0"]),
    ]
}

/// Sysfs trees: ROMs, the kernel log, missing and misnamed files.
#[rustfmt::skip]
fn sysfs_shape_cases() -> Vec<Case> {
    vec![
        case("sysfs: a rom of random bytes (rom)", &["rom", "0000:01:00.0", "--root", "{root}"])
            .host("intel-3090")
            .setup(|ws| {
                remove(ws, &format!("{GPU_DIR}/driver"));
                let mut x: u32 = 0x9e37_79b9;
                let noise: Vec<u8> = (0..65536)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                put(ws, &format!("{GPU_DIR}/rom"), noise);
            })
            .may_write("root/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/rom")
            .ok(2, &["0000:01:00.0 [10de:2204]: error: not a ROM: no PCI expansion ROM image in its 65536 bytes"]),
        case("sysfs: a 0-byte rom (rom)", &["rom", "0000:01:00.0", "--root", "{root}"])
            .host("intel-3090")
            .setup(|ws| {
                remove(ws, &format!("{GPU_DIR}/driver"));
                put(ws, &format!("{GPU_DIR}/rom"), b"");
            })
            .may_write("root/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/rom")
            .ok(2, &["error: not a ROM: it is empty (0 bytes)"]),
        case("sysfs: a FIFO as rom (rom)", &["rom", "0000:01:00.0", "--root", "{root}"])
            .host("intel-3090")
            .setup(|ws| {
                remove(ws, &format!("{GPU_DIR}/driver"));
                fifo(ws, &format!("{GPU_DIR}/rom"));
            })
            .may_block()
            .error(&["rom", "FIFO"]),
        case("kernel log: a directory at dev/kmsg (check)", &["check", "-p", "{profile}", "--root", "{root}"])
            .host("intel-3090")
            .setup(|ws| dir(ws, "dev/kmsg"))
            .ok(1, &["unknown:", "dev/kmsg"]),
        case("sysfs: iommu_group two-link loop (iommu)", &["iommu", "--root", "{root}"])
            .host("intel-3090")
            .setup(|ws| {
                link(ws, &format!("{GPU_DIR}/iommu_group"), "../0000:01:00.1/iommu_group");
                link(ws, &format!("{AUDIO_DIR}/iommu_group"), "../0000:01:00.0/iommu_group");
            })
            .ok(0, &["0000:01:00.0", "0000:01:00.1"]),
        case("sysfs: missing class file (iommu)", &["iommu", "--root", "{root}"])
            .host("intel-3090")
            .setup(|ws| remove(ws, &format!("{GPU_DIR}/class")))
            .ok(0, &["0000:01:00.0"]),
        case("sysfs: missing class file (detect --gpu)", &["detect", "--gpu", "0000:01:00.0", "--root", "{root}"])
            .host("intel-3090")
            .setup(|ws| remove(ws, &format!("{GPU_DIR}/class")))
            .error(&["0000:01:00.0", "is not a GPU"]),
        case("sysfs: missing class file (check)", &["check", "-p", "{profile}", "--root", "{root}"])
            .host("intel-3090")
            .setup(|ws| remove(ws, &format!("{GPU_DIR}/class")))
            .ok(1, &["0000:01:00.0"]),
        case("sysfs: group directory not a number (iommu)", &["iommu", "--root", "{root}"])
            .host("intel-3090")
            .setup(|ws| dir(ws, "sys/kernel/iommu_groups/abc/devices"))
            .ok(0, &["IOMMU Group 2: 0000:01:00.0"])
            .check(|_, run| {
                let groups: Vec<u32> = String::from_utf8_lossy(&run.stdout)
                    .lines()
                    .filter_map(|l| l.strip_prefix("IOMMU Group ")?.split(':').next()?.parse().ok())
                    .collect();
                groups.is_sorted().then_some(()).ok_or_else(|| format!("not in numeric order: {groups:?}"))
            }),
        case("sysfs: group directory not a number (check)", &["check", "--root", "{root}"])
            .host("intel-3090")
            .setup(|ws| dir(ws, "sys/kernel/iommu_groups/abc/devices"))
            .ok(0, &["IOMMU is on"]),
        case("sysfs: group directory not a number, devices in it (iommu)", &["iommu", "--root", "{root}"])
            .host("intel-3090")
            .setup(|ws| {
                let groups = ws.join("root/sys/kernel/iommu_groups");
                std::fs::rename(groups.join("2"), groups.join("two")).unwrap();
                for d in ["sys/devices/pci0000:00/0000:00:01.0", GPU_DIR, AUDIO_DIR] {
                    let up = "../".repeat(d.matches('/').count());
                    link(ws, &format!("{d}/iommu_group"), &format!("{up}kernel/iommu_groups/two"));
                }
            })
            .ok(0, &["0000:01:00.0"]),
    ]
}

/// CLI misuse.
#[rustfmt::skip]
fn cli_cases() -> Vec<Case> {
    vec![
        case("cli: unknown subcommand", &["frobnicate", "--root", "{root}"])
            .error(&["frobnicate"]),
        case("cli: unknown option", &["plan", "-p", "{profile}", "--root", "{root}", "--bogus"])
            .error(&["--bogus"]),
        case("cli: invalid --format value", &["plan", "-p", "{profile}", "--root", "{root}", "--format", "yaml"])
            .error(&["yaml"]),
        case("cli: no subcommand", &["--root", "{root}"])
            .error(&["subcommand"]),
        case("cli: --root without a value", &["plan", "-p", "{profile}", "--root", ""])
            .error(&["--root"]),
        case("cli: --root is a file", &["plan", "-p", "{profile}", "--root", "{profile}"])
            .error(&["--root", "profile.toml"]),
        case("cli: --root does not exist", &["apply", "-p", "{profile}", "--root", "{ws}/nowhere", "--yes", "--no-hooks"])
            .error(&["--root", "nowhere"]),
        case("cli: apply without --yes and no terminal", &["apply", "-p", "{profile}", "--root", "{root}", "--no-hooks"])
            .error(&["no terminal", "--yes"]),
        case("cli: apply without --yes, y on a pipe", &["apply", "-p", "{profile}", "--root", "{root}", "--no-hooks"])
            .stdin(b"y\nyes\n")
            .error(&["no terminal", "--yes"]),
        case("cli: rollback with an unknown id", &["rollback", "--root", "{root}", "--no-hooks", "20991231T235959Z"])
            .setup(|ws| {
                let o = run(&["apply", "-p", ws.join("profile.toml").to_str().unwrap(), "--root", ws.join("root").to_str().unwrap(), "--yes", "--no-hooks"]);
                status(&o, 0);
            })
            .error(&["no backup 20991231T235959Z", "rollback --list"]),
        case("cli: rollback id with ..", &["rollback", "--root", "{root}", "--no-hooks", "../../../outside"])
            .error(&["no backup", "rollback --list"]),
        case("cli: rollback id holding ESC", &["rollback", "--root", "{root}", "--no-hooks", "x\x1b[31m"])
            .error(&["no backup", "rollback --list"])
            .escaped(),
        case("cli: rollback --list with no backups", &["rollback", "--list", "--root", "{root}"])
            .ok(0, &["No backups"]),
        case("cli: bind a non-address", &["bind", "zzzz", "--root", "{root}"])
            .host("intel-3090")
            .error(&["zzzz", "not a PCI address", "0000:01:00.0"]),
        case("cli: bind an address with ;reboot", &["bind", "0000:01:00.0;reboot", "--root", "{root}"])
            .host("intel-3090")
            .error(&["0000:01:00.0;reboot", "not a PCI address"]),
        case("cli: bind a path", &["bind", "../../../outside/target", "--root", "{root}"])
            .host("intel-3090")
            .error(&["not a PCI address"]),
        case("cli: bind with ESC in the address", &["bind", "0000:01:00.0\x1b[2J", "--root", "{root}"])
            .host("intel-3090")
            .error(&["not a PCI address"])
            .escaped(),
        case("cli: bind an absent device", &["bind", "0000:99:00.0", "--root", "{root}"])
            .host("intel-3090")
            .error(&["0000:99:00.0"]),
        case("cli: unbind a non-address", &["unbind", "nonsense", "--root", "{root}"])
            .host("intel-3090")
            .error(&["nonsense", "not a PCI address"]),
        case("cli: detect --gpu a non-address", &["detect", "--gpu", "nothex", "--root", "{root}"])
            .host("intel-3090")
            .error(&["--gpu nothex", "vfio-gen iommu"]),
        case("cli: render --out the root itself", &["render", "-p", "{profile}", "--root", "{root}", "--out", "{root}"])
            .error(&["refusing to render into", "staging directory"]),
        case("cli: render --out is a file", &["render", "-p", "{profile}", "--root", "{root}", "--out", "{outside}/target"])
            .error(&["outside/target"]),
        case("cli: render --check a missing directory", &["render", "-p", "{profile}", "--root", "{root}", "--check", "{ws}/nowhere"])
            .error(&["nowhere", "render --out"]),
        case("cli: render --check DIR holding a FIFO", &["render", "-p", "{profile}", "--root", "{root}", "--check", "{out}"])
            .setup(|ws| {
                std::fs::create_dir_all(ws.join("out/etc/modprobe.d")).unwrap();
                nix::unistd::mkfifo(&ws.join("out/etc/modprobe.d/vfio.conf"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
            })
            .error(&["vfio.conf is a FIFO, not a file"])
            .may_block(),
        case("cli: man --dir is a file", &["man", "--dir", "{outside}/target"])
            .error(&["outside/target"]),
    ]
}

// ------------------------------------------------------------------------------------------
// Running
// ------------------------------------------------------------------------------------------

struct Run {
    status: Option<std::process::ExitStatus>,
    timed_out: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs vfio-gen like `run` (scrubbed environment, from the repo), under `ulimit -v`, in its
/// own process group; kills the group after [`TIMEOUT`].
fn run_limited(args: &[String], stdin: Option<&[u8]>) -> Run {
    let script = format!("ulimit -v {MEMORY_LIMIT_KIB} && exec \"$0\" \"$@\"");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(BIN)
        .args(args)
        .current_dir(repo())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("sh starts");
    let pgid = child.id();
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > TIMEOUT {
            timed_out = true;
            // The group is the one this test started (the child leads it): kill it by its id.
            let _ = Command::new("sh")
                .arg("-c")
                .arg("kill -KILL -\"$1\"")
                .arg("sh")
                .arg(pgid.to_string())
                .status();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        status,
        timed_out,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Every path under `dir`: its type, mode, and for a file its length and SHA-256. Like
/// `tree()`, but it never opens a FIFO (tree() would block on one) and it records directories,
/// so an empty directory left behind counts as a write.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    use sha2::Digest;
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let ft = meta.file_type();
            let mode = meta.mode() & 0o7777;
            let what = if ft.is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_dir() {
                walk(base, &p, out);
                format!("dir {mode:o}")
            } else if ft.is_file() {
                let bytes = std::fs::read(&p).unwrap();
                let hash: Vec<u8> = sha2::Sha256::digest(&bytes).to_vec();
                format!("file {mode:o} {} {hash:02x?}", bytes.len())
            } else {
                format!("special {:o} {mode:o}", meta.mode() & 0o170000)
            };
            out.insert(rel, what);
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn prepare(c: &Case) -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    let root = ws.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    match &c.base {
        Base::Fixture(name) => copy_tree(&fixture_root(name), &root),
        Base::Host(name) => fake_host::build(
            &repo().join(format!("tests/fixtures/hosts/{name}.toml")),
            &root,
        )
        .unwrap(),
        Base::HostText(text) => {
            let host: fake_host::Host = toml::from_str(text).unwrap();
            fake_host::build_host(&host, &repo().join("tests/fixtures/hosts"), &root).unwrap();
        }
    }
    std::fs::create_dir_all(ws.path().join("outside")).unwrap();
    std::fs::write(ws.path().join("outside/target"), "precious\n").unwrap();
    if let Some(p) = &c.profile {
        std::fs::write(ws.path().join("profile.toml"), p).unwrap();
    }
    if let Some(setup) = &c.setup {
        setup(ws.path());
    }
    ws
}

fn is_raw_control(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || ('\u{80}'..='\u{9f}').contains(&c)
}

const ESCAPED_ESC: &[&str] = &[
    "\\u{1b}", "\\x1b", "\\x1B", "\\u001b", "\\u001B", "\\e[", "\\e]", "^[", "\\033",
];

/// Verbs that, starting a clause, tell the reader what to do.
const REMEDY_VERBS: &[&str] = &[
    "run ",
    "write ",
    "remove ",
    "use ",
    "fix ",
    "pass ",
    "set ",
    "create ",
    "add ",
    "replace ",
    "delete ",
    "move ",
    "rename ",
    "close ",
    "keep ",
    "shorten ",
    "review ",
    "name ",
    "install ",
    "give ",
    "make ",
    "point ",
    "choose ",
    "try ",
    "check ",
    "list ",
    "save ",
    "see ",
    "edit ",
    "change ",
    "put ",
    "drop ",
    "bind ",
    "reboot",
    "enable ",
    "turn ",
    "render ",
    "quote ",
    "`vfio-gen ",
    "`lspci ",
];
/// Where a clause starts.
const CLAUSE_STARTS: &[&str] = &["; ", ": ", ", ", "? ", "(", "then ", "or ", "- "];
/// Phrases that state the form the input must have, which also tells what to do.
const REQUIRED_FORM: &[&str] = &["expected ", "must ", " is one word", " only "];

/// Whether a message says what to do: an imperative at the start of a clause, or the form
/// the input must have. ("failed to create directory" is no remedy: "to " starts no clause.)
fn says_what_to_do(msg: &str) -> bool {
    let m = msg.to_lowercase();
    let imperative = CLAUSE_STARTS.iter().any(|start| {
        m.match_indices(start).any(|(i, _)| {
            let rest = &m[i + start.len()..];
            REMEDY_VERBS.iter().any(|v| rest.starts_with(v))
        })
    });
    imperative || REQUIRED_FORM.iter().any(|f| m.contains(f))
}

/// The violations of one case, each with its detail.
fn judge(c: &Case, ws: &Path, before: &BTreeMap<String, String>, r: &Run) -> Vec<(Kind, String)> {
    let mut v = Vec::new();
    let after = snapshot(ws);
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let changed: Vec<&String> = keys
        .into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .filter(|k| !c.may_write.iter().any(|p| k.starts_with(p)))
        .collect();
    if !changed.is_empty() {
        v.push((Wrote, format!("changed: {changed:?}")));
    }
    if r.timed_out {
        v.push((Hang, format!("still running after {TIMEOUT:?}")));
        return v;
    }
    let status = r.status.unwrap();
    let out = String::from_utf8_lossy(&r.stdout).into_owned();
    let err = String::from_utf8_lossy(&r.stderr).into_owned();
    if err.contains("panicked") || err.contains("RUST_BACKTRACE") {
        v.push((Panic, err.clone()));
    }
    for (name, text) in [("stdout", &out), ("stderr", &err)] {
        if let Some(ch) = text.chars().find(|&ch| is_raw_control(ch)) {
            v.push((RawControl, format!("{name} holds a raw {ch:?}")));
        }
    }
    if c.escaped
        && !ESCAPED_ESC
            .iter()
            .any(|e| out.contains(e) || err.contains(e))
    {
        v.push((NotEscaped, "no escaped form of ESC in the output".into()));
    }
    if let Some(sig) = status.signal() {
        // The expectations below are about a finished run.
        v.push((Crash, format!("killed by signal {sig}")));
        return v;
    }
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let error_lines: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("vfio-gen: error: "))
        .collect();
    let code = status.code();
    match &c.expect {
        Expect::Error(needles) => {
            if code != Some(2) {
                v.push((Status, format!("exit {code:?}, expected 2")));
            }
            if lines.len() != 1 || error_lines.len() != 1 {
                v.push((
                    ErrorLine,
                    format!("expected one `vfio-gen: error:` line, stderr:\n{err}"),
                ));
            } else {
                let line = error_lines[0];
                for n in needles {
                    if !line.contains(n.as_str()) {
                        v.push((Missing, format!("{n:?} not in {line:?}")));
                    }
                }
                if !says_what_to_do(line) {
                    v.push((NoRemedy, line.to_string()));
                }
                if line.len() > MAX_ERROR_LEN {
                    v.push((LongMessage, format!("{} bytes", line.len())));
                }
            }
        }
        Expect::Ok(want, needles) => {
            if code != Some(*want) {
                v.push((
                    Status,
                    format!("exit {code:?}, expected {want}; stderr:\n{err}"),
                ));
            }
            if !error_lines.is_empty() {
                v.push((ErrorLine, format!("an error on a legitimate case: {err}")));
            }
            for n in needles {
                if !out.contains(n.as_str()) {
                    v.push((Missing, format!("{n:?} not on stdout")));
                }
            }
        }
    }
    if let Some(check) = &c.check
        && let Err(e) = check(ws, r)
    {
        v.push((Check, e));
    }
    v
}

/// Runs one case; `Err` with the report when it does not behave as the table says.
fn run_case(c: &Case) -> Result<(), String> {
    let ws = prepare(c);
    let p = ws.path();
    let s = |x: &str| p.join(x).to_string_lossy().into_owned();
    let args: Vec<String> = c
        .args
        .iter()
        .map(|a| {
            a.replace("{root}", &s("root"))
                .replace("{profile}", &s("profile.toml"))
                .replace("{out}", &s("out"))
                .replace("{outside}", &s("outside"))
                .replace("{ws}", &p.to_string_lossy())
        })
        .collect();
    let before = snapshot(p);
    let t0 = Instant::now();
    let r = run_limited(&args, c.stdin.as_deref());
    let took = t0.elapsed();
    let violations = judge(c, p, &before, &r);
    let got: BTreeSet<Kind> = violations.iter().map(|(k, _)| *k).collect();
    if std::env::var_os("VFIO_GEN_HOSTILE_VERBOSE").is_some() {
        let first: String = violations
            .first()
            .map(|(_, d)| d.chars().take(300).collect())
            .unwrap_or_default();
        let err = String::from_utf8_lossy(&r.stderr);
        let line: String = err.lines().next().unwrap_or("").chars().take(200).collect();
        eprintln!(
            "[{}] {took:.1?} {got:?} {first}\n    stderr: {line:?}",
            c.name
        );
    }
    let detail = || {
        let mut s = format!("{}\n  args: {args:?}\n", c.name);
        for (k, d) in &violations {
            let d: String = d.chars().take(600).collect();
            s.push_str(&format!("  {k:?}: {d}\n"));
        }
        s
    };
    match KNOWN_FAILURES.iter().find(|(n, _, _)| *n == c.name) {
        None if got.is_empty() => Ok(()),
        None => Err(format!("FAILED {}", detail())),
        Some((_, want, reason)) => {
            let want: BTreeSet<Kind> = want.iter().copied().collect();
            if got.is_empty() {
                Err(format!(
                    "FIXED? {} passes now: remove it from KNOWN_FAILURES ({reason})",
                    c.name
                ))
            } else if got != want {
                Err(format!(
                    "CHANGED known failure ({reason}): expected {want:?}, got {got:?}\n{}",
                    detail()
                ))
            } else {
                Ok(())
            }
        }
    }
}

#[test]
fn hostile_inputs() {
    if !have("sh") {
        return;
    }
    let cases = cases();
    let names: BTreeSet<&str> = cases.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), cases.len(), "case names are unique");
    assert!(cases.len() >= 60, "{} cases", cases.len());
    for (n, _, _) in KNOWN_FAILURES {
        assert!(names.contains(n), "KNOWN_FAILURES names no case {n:?}");
    }

    let started = Instant::now();
    let cases: Arc<Vec<Case>> = Arc::new(cases);
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let record = {
        let failures = Arc::clone(&failures);
        move |c: &Case| {
            // A panic in the harness (setup, snapshot) is a failure of this case, not a crash
            // of the whole table.
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(c)))
                .unwrap_or_else(|_| Err(format!("FAILED {}: the harness panicked", c.name)));
            if let Err(e) = res {
                failures.lock().unwrap().push(e);
            }
        }
    };
    let mut handles = Vec::new();
    // Cases that may block on a FIFO wait idle: each runs on its own thread beside the pool.
    for i in (0..cases.len()).filter(|&i| cases[i].may_block) {
        let (cases, record) = (Arc::clone(&cases), record.clone());
        handles.push(std::thread::spawn(move || record(&cases[i])));
    }
    let next = Arc::new(AtomicUsize::new(0));
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    for _ in 0..workers {
        let (cases, record, next) = (Arc::clone(&cases), record.clone(), Arc::clone(&next));
        handles.push(std::thread::spawn(move || {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(c) = cases.get(i) else { break };
                if !c.may_block {
                    record(c);
                }
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    eprintln!(
        "hostile: {} cases ({} known failures) in {:.1?}",
        cases.len(),
        KNOWN_FAILURES.len(),
        started.elapsed()
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
