//! The checks behind the AFL++ targets in `src/bin/`: one function per target, taking the raw
//! fuzzer input and panicking (with the property that broke) when vfio-gen misbehaves. Kept in a
//! library so that `replay` and the seed test can run them without AFL. docs/fuzzing.md lists
//! what each asserts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use vfio_gen::cmdline::{self, Opt};
use vfio_gen::host::{initramfs_image, modalias};
use vfio_gen::plan;
use vfio_gen::profile::{self, Profile};
use vfio_gen::root::Root;

/// The targets, by the name of their binary.
pub const TARGETS: &[&str] = &[
    "profile",
    "cmdline",
    "grub",
    "loader_entry",
    "modalias",
    "initramfs",
];

/// The check of a target by name.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    Some(match name {
        "profile" => profile,
        "cmdline" => cmdline,
        "grub" => grub,
        "loader_entry" => loader_entry,
        "modalias" => modalias,
        "initramfs" => initramfs,
        _ => return None,
    })
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

// ---------------------------------------------------------------------------------------------
// 1. profile
// ---------------------------------------------------------------------------------------------

/// `profile::parse` never panics; an error points inside the text; an accepted profile parses
/// again to the same profile, from the same text and from the text re-serialized by `toml`
/// (so its meaning does not hang on formatting).
pub fn profile(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let first = match profile::parse(&text, "fuzz.toml") {
        Ok(p) => p,
        Err(e) => {
            let lines = text.matches('\n').count() + 1;
            assert!(
                e.line >= 1 && e.line <= lines && e.column >= 1,
                "error position {}:{} outside a text of {lines} lines: {e}",
                e.line,
                e.column
            );
            let _ = e.to_string();
            return;
        }
    };
    let again = profile::parse(&text, "fuzz.toml")
        .unwrap_or_else(|e| panic!("an accepted profile is refused the second time: {e}"));
    assert_eq!(
        format!("{first:?}"),
        format!("{again:?}"),
        "the same text parsed to two profiles"
    );
    let table: toml::Table = toml::from_str(&text).expect("an accepted profile is valid TOML");
    let rewritten = toml::to_string(&table).expect("a TOML table serializes");
    let round = profile::parse(&rewritten, "fuzz.toml").unwrap_or_else(|e| {
        panic!("accepted profile refused after a TOML round trip: {e}\nrewritten:\n{rewritten}")
    });
    // The rewritten text puts keys elsewhere: compare what the profile means, not where each
    // key stood (the places kept for messages).
    let unplaced = |p: &profile::Profile| {
        let mut p = p.clone();
        p.bootloader_place.clear();
        for d in &mut p.devices {
            d.place.clear();
        }
        if let Some(r) = &mut p.resources {
            r.place.clear();
            r.places.clear();
        }
        p.libvirt.rom_place.clear();
        format!("{p:?}")
    };
    assert_eq!(
        unplaced(&first),
        unplaced(&round),
        "the TOML round trip changed the profile\nrewritten:\n{rewritten}"
    );
    let _ = first.wants_driver_pre();
}

// ---------------------------------------------------------------------------------------------
// 2. cmdline
// ---------------------------------------------------------------------------------------------

/// The fixed wanted option sets; the input's first byte picks one.
pub const WANTED_SETS: &[&[&str]] = &[
    &["intel_iommu=on", "iommu=pt", "rd.driver.pre=vfio-pci"],
    &["amd_iommu=on", "iommu=pt"],
    &[
        "video=efifb:off",
        "vfio-pci.ids=10de:2204,10de:1aef",
        "kvm.ignore_msrs=1",
    ],
    &[
        "intel_iommu=on",
        "iommu=pt",
        "rd.driver.pre=vfio-pci",
        "video=efifb:off",
        "vfio-pci.ids=10de:13c2,10de:0fbb",
    ],
];

fn wanted_set(i: u8) -> Vec<Opt> {
    WANTED_SETS[i as usize % WANTED_SETS.len()]
        .iter()
        .map(|s| Opt::parse(s))
        .collect()
}

/// Kernel tokens (raw text, option) and the index of a `--` (or the length).
fn kernel_tokens(line: &str) -> (Vec<(String, Opt)>, usize) {
    let (toks, open) = cmdline::tokenize(&cmdline::bytes(line.as_bytes()));
    assert!(!open, "an edited line has an open quote: {line:?}");
    let toks: Vec<(String, Opt)> = toks
        .into_iter()
        .map(|t| {
            (
                String::from_utf8_lossy(&t.raw.expect("plain text is known")).into_owned(),
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

/// Whether vfio-gen may touch this token for the wanted set (same normalized name; `video=`
/// only for the same framebuffer driver).
fn managed(o: &Opt, wanted: &[Opt]) -> bool {
    let driver = |o: &Opt| {
        o.value
            .as_deref()
            .map(|v| v.split(':').next().unwrap_or(v).to_string())
    };
    wanted
        .iter()
        .any(|w| o.key() == w.key() && (w.key() != "video" || driver(o) == driver(w)))
}

/// Raw text of unmanaged kernel tokens and of everything after `--`, in order.
fn untouched(line: &str, wanted: &[Opt]) -> Vec<String> {
    let (toks, cut) = kernel_tokens(line);
    toks.into_iter()
        .enumerate()
        .filter(|(i, (_, o))| *i >= cut || !managed(o, wanted))
        .map(|(_, (raw, _))| raw)
        .collect()
}

fn managed_raw(line: &str, wanted: &[Opt]) -> Vec<String> {
    let (toks, cut) = kernel_tokens(line);
    toks.into_iter()
        .take(cut)
        .filter(|(_, o)| managed(o, wanted))
        .map(|(raw, _)| raw)
        .collect()
}

/// `edit_plain` for a fixed wanted set: ensuring is idempotent; ensuring and reverting leave
/// every unmanaged token (and all after `--`) as it was, in order; the revert of the ensured
/// line holds no wanted option any more and no managed token that the input did not have (the
/// managed options it added or rewrote are gone, exactly); reverting is idempotent; on a line
/// without any managed token, revert gives back the input's tokens.
pub fn cmdline(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let wanted = wanted_set(pick);
    let line = String::from_utf8_lossy(rest).into_owned();
    let ensured = match cmdline::edit_plain(&line, &wanted, false) {
        Ok(e) => e,
        Err(_) => {
            assert!(
                cmdline::edit_plain(&line, &wanted, true).is_err(),
                "ensure refuses the line but revert edits it"
            );
            return;
        }
    };
    let again = cmdline::edit_plain(&ensured, &wanted, false)
        .unwrap_or_else(|e| panic!("the ensured line is refused: {e}\nensured: {ensured:?}"));
    assert_eq!(again, ensured, "ensure is not idempotent (input {line:?})");
    assert_eq!(
        untouched(&ensured, &wanted),
        untouched(&line, &wanted),
        "ensure touched an unmanaged token\ninput:   {line:?}\nensured: {ensured:?}"
    );

    let back = cmdline::edit_plain(&ensured, &wanted, true)
        .unwrap_or_else(|e| panic!("revert refuses the ensured line: {e}\nensured: {ensured:?}"));
    assert_eq!(
        untouched(&back, &wanted),
        untouched(&line, &wanted),
        "revert touched an unmanaged token\ninput:   {line:?}\nensured: {ensured:?}\nreverted: {back:?}"
    );
    let (toks, cut) = kernel_tokens(&back);
    for (raw, o) in &toks[..cut] {
        assert!(
            !wanted
                .iter()
                .any(|w| w.key() == o.key() && w.value == o.value),
            "revert left the wanted option {raw:?}\ninput:   {line:?}\nensured: {ensured:?}\nreverted: {back:?}"
        );
    }
    let mut before = managed_raw(&line, &wanted);
    for raw in managed_raw(&back, &wanted) {
        let Some(i) = before.iter().position(|b| *b == raw) else {
            panic!(
                "revert kept the managed token {raw:?} that the input did not have\ninput:   {line:?}\nensured: {ensured:?}\nreverted: {back:?}"
            );
        };
        before.remove(i);
    }
    let twice = cmdline::edit_plain(&back, &wanted, true).expect("a reverted line edits");
    assert_eq!(twice, back, "revert is not idempotent");
    if managed_raw(&line, &wanted).is_empty() {
        let raw = |l: &str| {
            kernel_tokens(l)
                .0
                .into_iter()
                .map(|(r, _)| r)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            raw(&back),
            raw(&line),
            "revert of the ensured line does not give back the input's tokens\ninput:   {line:?}\nensured: {ensured:?}\nreverted: {back:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3./4. plans on a temporary root
// ---------------------------------------------------------------------------------------------

/// The files of a fixture root, by system path.
fn fixture_root(name: &str) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.insert(format!("/{rel}"), std::fs::read(&p).unwrap());
            }
        }
    }
    let base = repo().join("tests/fixtures/roots").join(name);
    let mut out = BTreeMap::new();
    walk(&base, &base, &mut out);
    out
}

fn load_profile(name: &str) -> Profile {
    let path = repo().join("profiles").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    profile::parse(&text, name).unwrap_or_else(|e| panic!("{e}"))
}

/// A directory for this process's roots (under `$TMPDIR`), made once.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("vfio-gen-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

/// Lays the root anew: the fixture's files, with `path` holding `input`.
fn lay_root(files: &BTreeMap<String, Vec<u8>>, path: &str, input: &[u8]) -> PathBuf {
    let dir = scratch().join("root");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let mut all = files.clone();
    all.insert(path.to_string(), input.to_vec());
    for (p, bytes) in &all {
        let f = dir.join(&p[1..]);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, bytes).unwrap();
    }
    dir
}

/// Writes every change of the plan under the root, as `apply` would leave the files.
fn apply(root: &Root, plan: &plan::Plan) {
    for c in plan.pending() {
        let p = root.join(&c.path).unwrap();
        match &c.new {
            Some(bytes) => {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, bytes).unwrap();
            }
            None => {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Plans the profile on the root, applies it, and checks that planning again is in sync.
/// Returns the root when the first plan was Ok.
fn plan_apply_replan(profile: &Profile, dir: &Path, edited: &str) -> Option<Root> {
    let root = Root::new(dir);
    let first = plan::build(profile, &root, false).ok()?;
    apply(&root, &first);
    let second = plan::build(profile, &root, false).unwrap_or_else(|e| {
        panic!(
            "planning again on the applied result fails: {e:#}\n{edited} now:\n{}",
            show(&std::fs::read(root.join(edited).unwrap()).unwrap_or_default())
        )
    });
    if !second.in_sync() {
        let mut msg = String::from("planning again on the applied result is not in sync:\n");
        for c in second.pending() {
            msg += &format!(
                "--- {} ({:?})\nnow:\n{}\nwould become:\n{}\n",
                c.path,
                c.action(),
                show(c.old.as_deref().unwrap_or_default()),
                show(c.new.as_deref().unwrap_or_default())
            );
        }
        panic!("{msg}");
    }
    Some(root)
}

fn dash() -> Option<&'static Path> {
    static DASH: OnceLock<Option<PathBuf>> = OnceLock::new();
    DASH.get_or_init(|| {
        ["/usr/bin/dash", "/bin/dash"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    })
    .as_deref()
}

struct GrubCase {
    profile: Profile,
    files: BTreeMap<String, Vec<u8>>,
}

/// The GRUB profile `profiles/amd-grub.toml` on its fixture root, with the input as
/// `/etc/default/grub`: when the plan is Ok, the applied `/etc/default/grub` is accepted by
/// `dash -n` (skipped without dash), and planning again on the applied tree is in sync.
pub fn grub(data: &[u8]) {
    static CASE: OnceLock<GrubCase> = OnceLock::new();
    let case = CASE.get_or_init(|| GrubCase {
        profile: load_profile("amd-grub.toml"),
        files: fixture_root("amd-grub"),
    });
    const PATH: &str = "/etc/default/grub";
    let dir = lay_root(&case.files, PATH, data);
    let Some(root) = plan_apply_replan(&case.profile, &dir, PATH) else {
        return;
    };
    if let Some(dash) = dash() {
        let file = root.join(PATH).unwrap();
        let out = Command::new(dash)
            .arg("-n")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("dash runs");
        assert!(
            out.status.success(),
            "dash -n refuses the planned /etc/default/grub: {}\nfile:\n{}",
            show(&out.stderr),
            show(&std::fs::read(&file).unwrap())
        );
    }
}

/// The systemd-boot profile `profiles/arch-intel-systemd-boot.toml` on its fixture root, with
/// the input as `/boot/loader/entries/arch.conf`: when the plan is Ok, planning again on the
/// applied tree is in sync (the entry edit is idempotent).
pub fn loader_entry(data: &[u8]) {
    static CASE: OnceLock<GrubCase> = OnceLock::new();
    let case = CASE.get_or_init(|| {
        let mut files = fixture_root("arch-intel-systemd-boot");
        files.remove("/boot/loader/entries/arch-fallback.conf");
        GrubCase {
            profile: load_profile("arch-intel-systemd-boot.toml"),
            files,
        }
    });
    const PATH: &str = "/boot/loader/entries/arch.conf";
    let dir = lay_root(&case.files, PATH, data);
    plan_apply_replan(&case.profile, &dir, PATH);
}

// ---------------------------------------------------------------------------------------------
// 5. modalias
// ---------------------------------------------------------------------------------------------

/// Input: a modalias on the first line, a `modules.alias` text after it. Nothing panics;
/// `resolve` names each module once, never a stub driver, only modules of the text; `fnmatch`
/// with `*` matches anything, a pattern without special bytes matches only itself;
/// `version_cmp` is antisymmetric.
pub fn modalias(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let aliases = modalias::Aliases::from_text(rest);
    let found = aliases.resolve(first);
    let modules: Vec<String> = rest
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 3 && w[0] == "alias").then(|| w[2].replace('-', "_"))
        })
        .collect();
    for (i, m) in found.iter().enumerate() {
        assert!(!found[..i].contains(m), "{m} resolved twice: {found:?}");
        assert!(
            m != "vfio_pci" && m != "pci_stub",
            "stub driver {m} resolved"
        );
        assert!(modules.contains(m), "{m} is in no alias line");
    }
    assert!(modalias::fnmatch("*", first), "* does not match {first:?}");
    let second = rest.lines().next().unwrap_or("");
    let matched = modalias::fnmatch(first, second);
    if !first
        .bytes()
        .any(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
    {
        assert_eq!(
            matched,
            first == second,
            "literal pattern {first:?} against {second:?}"
        );
    }
    assert_eq!(
        modalias::version_cmp(first, second),
        modalias::version_cmp(second, first).reverse(),
        "version_cmp({first:?}, {second:?}) is not antisymmetric"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. initramfs
// ---------------------------------------------------------------------------------------------

/// The cap on unpacked bytes the target parses with (smaller than MAX_UNPACKED so a bomb
/// costs little time).
pub const FUZZ_UNPACK_LIMIT: u64 = 1 << 20;

/// `initramfs_image::parse_limited` on arbitrary bytes never panics and, when Ok: the
/// compressed parts together unpacked at most the cap; no kept file is over MAX_KEPT; every
/// kept file is a member; segments lie inside the image in order; the size is the input's.
pub fn initramfs(data: &[u8]) {
    let keep = |p: &str| !p.is_empty();
    let Ok(c) = initramfs_image::parse_limited(data, &keep, FUZZ_UNPACK_LIMIT) else {
        return;
    };
    assert_eq!(c.size, data.len() as u64);
    let compressed: u64 = c
        .segments
        .iter()
        .filter(|s| s.compression != initramfs_image::Compression::None)
        .map(|s| s.unpacked)
        .sum();
    assert!(
        compressed <= FUZZ_UNPACK_LIMIT,
        "compressed parts unpacked {compressed} bytes, over the cap {FUZZ_UNPACK_LIMIT}"
    );
    let mut end = 0u64;
    for s in &c.segments {
        assert!(
            s.offset >= end,
            "segments overlap or are out of order: {:?}",
            c.segments
        );
        end = s.offset + s.len;
        assert!(end <= c.size, "segment past the image's end: {s:?}");
    }
    for (p, bytes) in &c.kept {
        assert!(
            bytes.len() as u64 <= initramfs_image::MAX_KEPT,
            "kept {} bytes of {p}",
            bytes.len()
        );
        assert!(c.entries.contains_key(p), "kept {p} is no member");
    }
    let _ = c.describe();
    let _ = c.find(&["vfio.conf", "modules.dep"]).count();
}

// ---------------------------------------------------------------------------------------------
// seeds
// ---------------------------------------------------------------------------------------------

/// A newc archive of `(name, mode, data)` members with its trailer, as gen_init_cpio writes it.
pub fn newc(members: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut one = |ino: u32, name: &str, mode: u32, data: &[u8]| {
        out.extend_from_slice(b"070701");
        let fields = [
            ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    };
    for (i, (name, mode, data)) in members.iter().enumerate() {
        one(i as u32 + 1, name, *mode, data);
    }
    one(0, "TRAILER!!!", 0, b"");
    out
}

#[cfg(test)]
mod tests {
    /// Every committed seed holds every property (`cargo test` in fuzz/).
    #[test]
    fn seeds_hold() {
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        for t in super::TARGETS {
            let check = super::target(t).unwrap();
            let dir = corpus.join(t);
            let mut n = 0;
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                check(&std::fs::read(&p).unwrap());
                n += 1;
            }
            assert!(n > 0, "no seeds in {}", dir.display());
        }
    }
}
