//! GRUB files that `sh` cannot parse are never edited (docs/grub.md): every GRUB file in the
//! fixtures, mutated at random but reproducibly (one of `"'\`$(){};&|` or a newline deleted,
//! inserted or duplicated), is judged by `dash -n` and by vfio-gen. What dash rejects,
//! vfio-gen's own reading of the grammar rejects too, and `plan` and `apply` refuse it with
//! exit 2 and write nothing. What dash accepts and vfio-gen edits passes `dash -n` afterwards,
//! and sourced by dash it gives the line the profile asks for.

use super::*;

/// The characters the mutations work with.
const CHARS: &[u8] = b"\"'`$(){};&|\n";
const PER_FILE: usize = 12;
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64: a small deterministic generator, so a failing mutant is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The GRUB files of the fixtures: every root's /etc/default/grub and its drop-ins, and the
/// corpus in tests/fixtures/grub.
fn grub_fixtures() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let roots = repo().join("tests/fixtures/roots");
    let mut names: Vec<_> = std::fs::read_dir(&roots)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for root in names {
        let main = root.join("etc/default/grub");
        if main.is_file() {
            out.push(main);
        }
        if let Ok(dir) = std::fs::read_dir(root.join("etc/default/grub.d")) {
            let mut cfgs: Vec<_> = dir.map(|e| e.unwrap().path()).collect();
            cfgs.sort();
            out.extend(cfgs);
        }
    }
    let mut corpus: Vec<_> = std::fs::read_dir(repo().join("tests/fixtures/grub"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    corpus.sort();
    out.extend(corpus);
    out
}

/// One mutation of `text`: delete, insert or duplicate one of [`CHARS`].
fn mutate(text: &[u8], rng: &mut Rng) -> (String, Vec<u8>) {
    let at: Vec<usize> = (0..text.len())
        .filter(|&i| CHARS.contains(&text[i]))
        .collect();
    let mut out = text.to_vec();
    let op = if at.is_empty() { 1 } else { rng.below(3) };
    match op {
        0 => {
            let i = at[rng.below(at.len())];
            out.remove(i);
            (format!("delete {:?} at {i}", text[i] as char), out)
        }
        1 => {
            let i = rng.below(text.len() + 1);
            let c = CHARS[rng.below(CHARS.len())];
            out.insert(i, c);
            (format!("insert {:?} at {i}", c as char), out)
        }
        _ => {
            let i = at[rng.below(at.len())];
            out.insert(i, text[i]);
            (format!("duplicate {:?} at {i}", text[i] as char), out)
        }
    }
}

fn dash_n(file: &Path) -> Output {
    Command::new("dash")
        .arg("-n")
        .arg(file)
        .env_clear()
        .output()
        .unwrap()
}

/// Whether sourcing a mutant is harmless: it writes no file but /dev/null, signals no process
/// and names no program that exists on this machine by its absolute path. Programs by name
/// cannot run at all: [`source_value`] gives the shell an empty PATH.
fn safe_to_source(text: &[u8]) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let text = String::from_utf8_lossy(text);
    let harmful = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || "_./-".contains(c)))
        .any(|w| {
            w == "kill"
                || (w.starts_with('/')
                    && std::fs::metadata(w)
                        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
        });
    let bytes = text.as_bytes();
    let redirections_safe = (0..bytes.len()).filter(|&i| bytes[i] == b'>').all(|i| {
        let rest = &text[i + 1..];
        if rest.starts_with("&1") || rest.starts_with("&2") {
            return true;
        }
        let rest = rest.trim_start_matches([' ', '\t']);
        rest.strip_prefix("/dev/null").is_some_and(|r| {
            r.is_empty() || r.starts_with([' ', '\t', '\n', ';', '|', '&', ')', '`'])
        })
    });
    !harmful && redirections_safe
}

/// `$GRUB_CMDLINE_LINUX $GRUB_CMDLINE_LINUX_DEFAULT` after dash sources `file`, from a
/// scratch directory with an empty PATH.
fn source_value(file: &Path, scratch: &Path) -> String {
    let dash = std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("dash"))
                .find(|d| d.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("/bin/dash"));
    let o = Command::new(dash)
        .arg("-c")
        .arg(r#". "$1"; printf '%s %s' "$GRUB_CMDLINE_LINUX" "$GRUB_CMDLINE_LINUX_DEFAULT""#)
        .arg("dash")
        .arg(file)
        .env_clear()
        .env("PATH", scratch)
        .current_dir(scratch)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    stdout(&o)
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

#[derive(Default, Debug)]
struct Counts {
    mutants: usize,
    dash_rejects: usize,
    /// The lexer (`sh_grammar::check`) and dash agree.
    lexer_agrees: usize,
    /// The lexer refuses a file dash accepts (docs/grub.md says where it is stricter).
    lexer_stricter: usize,
    /// vfio-gen refuses a file dash accepts (the lexer, or a value it cannot edit safely).
    refused_but_dash_accepts: usize,
    edited: usize,
    sourced: usize,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.mutants += o.mutants;
        self.dash_rejects += o.dash_rejects;
        self.lexer_agrees += o.lexer_agrees;
        self.lexer_stricter += o.lexer_stricter;
        self.refused_but_dash_accepts += o.refused_but_dash_accepts;
        self.edited += o.edited;
        self.sourced += o.sourced;
    }
}

const PROFILE: &str = "[host]\ncpu = \"intel\"\nbootloader = \"grub\"\ninitramfs = \"dracut\"\n[vfio]\nids = [\"10de:2204\"]\n";

/// `apply --yes --no-hooks` on the root, or (faster: no fsync) `render --out` into `stage`;
/// returns the output and where the GRUB file it leaves is.
fn install(apply: bool, p: &str, root: &Path, stage: &Path) -> (Output, PathBuf) {
    let r = root.to_str().unwrap();
    if apply {
        let o = run(&["apply", "-p", p, "--root", r, "--yes", "--no-hooks"]);
        (o, root.join("etc/default/grub"))
    } else {
        let s = stage.to_str().unwrap();
        let o = run(&["render", "-p", p, "--root", r, "--out", s]);
        let staged = stage.join("etc/default/grub");
        // render writes the files apply would leave; an unchanged one may be left out.
        let file = if staged.exists() {
            staged
        } else {
            root.join("etc/default/grub")
        };
        (o, file)
    }
}

/// Judges one mutant (through `apply`, or through `render` when `apply` is false); failures go
/// to `failures`.
fn judge(name: &str, mutant: &[u8], apply: bool, c: &mut Counts, failures: &mut Vec<String>) {
    let wanted: Vec<Opt> = ["intel_iommu=on", "iommu=pt", "rd.driver.pre=vfio-pci"]
        .iter()
        .map(|o| Opt::parse(o))
        .collect();
    c.mutants += 1;
    let tmp = tempfile::tempdir().unwrap();
    let grub = tmp.path().join("etc/default/grub");
    std::fs::create_dir_all(grub.parent().unwrap()).unwrap();
    std::fs::write(&grub, mutant).unwrap();
    let profile = tmp.path().join("profile.toml");
    std::fs::write(&profile, PROFILE).unwrap();
    let (root, p) = (tmp.path().to_str().unwrap(), profile.to_str().unwrap());
    let stage = tempfile::tempdir().unwrap();
    let dash_ok = dash_n(&grub).status.success();
    let lexer = vfio_gen::sh_grammar::check(mutant);
    let before = tree(tmp.path());
    if !dash_ok {
        c.dash_rejects += 1;
        match &lexer {
            Ok(()) => failures.push(format!("{name}: dash rejects it, the lexer accepts it")),
            Err(_) => c.lexer_agrees += 1,
        }
        let o = run(&["plan", "-p", p, "--root", root]);
        let (a, _) = install(apply, p, tmp.path(), stage.path());
        if o.status.code() != Some(2) || a.status.code() != Some(2) {
            failures.push(format!(
                "{name}: dash rejects it, plan exits {:?} and apply/render {:?}: {}",
                o.status.code(),
                a.status.code(),
                stderr(&a)
            ));
        } else if !stderr(&o).contains("/etc/default/grub: line ") {
            failures.push(format!("{name}: the refusal names no line: {}", stderr(&o)));
        }
        if tree(tmp.path()) != before || !tree(stage.path()).is_empty() {
            failures.push(format!("{name}: a refused run wrote something"));
        }
        return;
    }
    match &lexer {
        Ok(()) => c.lexer_agrees += 1,
        Err(_) => c.lexer_stricter += 1,
    }
    let (a, grub) = install(apply, p, tmp.path(), stage.path());
    match a.status.code() {
        Some(2) => {
            c.refused_but_dash_accepts += 1;
            if std::env::var_os("VFIO_GEN_SHOW_REFUSALS").is_some() {
                eprintln!("REFUSED {name}: {}", stderr(&a).trim());
            }
            if tree(tmp.path()) != before || !tree(stage.path()).is_empty() {
                failures.push(format!("{name}: a refused run wrote something"));
            }
            return;
        }
        Some(0) => c.edited += 1,
        other => {
            failures.push(format!(
                "{name}: apply/render exits {other:?}: {}",
                stderr(&a)
            ));
            return;
        }
    }
    let check = dash_n(&grub);
    if !check.status.success() {
        failures.push(format!(
            "{name}: the edited file fails dash -n: {}",
            stderr(&check)
        ));
        return;
    }
    if !safe_to_source(mutant) {
        return;
    }
    c.sourced += 1;
    let scratch = tempfile::tempdir().unwrap();
    let mutant_file = tmp.path().join("mutant");
    std::fs::write(&mutant_file, mutant).unwrap();
    let was = source_value(&mutant_file, scratch.path());
    let is = source_value(&grub, scratch.path());
    let want = edit_plain(&was, &wanted, false).unwrap();
    if words(&is) != words(&want) {
        failures.push(format!(
            "{name}: sourced, the edited file gives {is:?}, not {want:?} (before: {was:?})"
        ));
    }
}

#[test]
fn mutated_grub_files_are_refused_exactly_when_sh_cannot_parse_them() {
    if !have("dash") {
        return;
    }
    let files = grub_fixtures();
    assert!(files.len() >= 40, "the fixtures hold the GRUB corpus");
    let mut rng = Rng(SEED);
    // (what, bytes, whether through apply): every tenth goes through apply, the rest through
    // render, which writes the same bytes without fsync.
    let mut mutants: Vec<(String, Vec<u8>, bool)> = Vec::new();
    for fixture in &files {
        let original = std::fs::read(fixture).unwrap();
        for _ in 0..PER_FILE {
            let (how, mutant) = mutate(&original, &mut rng);
            let shown = fixture.strip_prefix(repo()).unwrap_or(fixture).display();
            let apply = mutants.len().is_multiple_of(10);
            mutants.push((format!("{shown} ({how})"), mutant, apply));
        }
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let chunk = mutants.len().div_ceil(threads);
    let results: Vec<(Counts, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = mutants
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let (mut c, mut failures) = (Counts::default(), Vec::new());
                    for (name, mutant, apply) in part {
                        judge(name, mutant, *apply, &mut c, &mut failures);
                    }
                    (c, failures)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut c = Counts::default();
    let mut failures = Vec::new();
    for (part, f) in results {
        c.add(&part);
        failures.extend(f);
    }
    eprintln!("GRUB mutants: {c:?}");
    assert!(c.mutants >= 400, "{c:?}");
    assert!(
        failures.is_empty(),
        "{} of {} mutants:\n{}",
        failures.len(),
        c.mutants,
        failures.join("\n")
    );
    // The lexer may be stricter than dash (docs/grub.md says where), but not much.
    assert!(c.lexer_stricter * 20 <= c.mutants, "{c:?}");
}

/// A stand-in for `/bin/sh` that rejects what holds `word` with its own message.
fn fake_shell(dir: &Path, word: &str) -> vfio_gen::shell::Shell {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("fake-sh");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nif grep -q -e '{word}'; then echo 'fake-sh: 3: Syntax error: {word} unexpected' >&2; exit 2; fi\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    vfio_gen::shell::Shell::at(path)
}

/// The plan asks the shell about every GRUB file before and after the edit and refuses with
/// the shell's own message; with no shell it goes on, and says the grammar check alone decided.
#[test]
fn the_plan_asks_sh_before_and_after_the_edit() {
    let tmp = copy_root("amd-grub");
    let profile = load("amd-grub");
    let root = vfio_gen::root::Root::new(tmp.path());
    let bin = tempfile::tempdir().unwrap();
    let err = |shell| match plan::build_with(&profile, &root, false, &shell) {
        Ok(_) => panic!("the plan is not refused"),
        Err(e) => format!("{e:#}"),
    };

    let e = err(fake_shell(bin.path(), "GRUB_DEFAULT"));
    assert!(
        e.contains("/etc/default/grub: `/bin/sh -n` rejects the file")
            && e.contains("Syntax error: GRUB_DEFAULT unexpected"),
        "{e}"
    );
    let e = err(fake_shell(bin.path(), "iommu=pt"));
    assert!(
        e.contains("as vfio-gen would leave it, does not pass `/bin/sh -n`")
            && e.contains("Syntax error: iommu=pt unexpected")
            && e.contains("bug in vfio-gen"),
        "{e}"
    );

    let p = plan::build_with(&profile, &root, false, &vfio_gen::shell::Shell::none()).unwrap();
    assert!(p.pending().any(|c| c.path == "/etc/default/grub"));
    assert!(
        p.notes.iter().any(|n| n.contains("/bin/sh does not exist")
            && n.contains("vfio-gen's own reading of the shell grammar only")),
        "{:?}",
        p.notes
    );
    let p = plan::build(&profile, &root, false).unwrap();
    assert!(
        !p.notes
            .iter()
            .any(|n| n.contains("reading of the shell grammar"))
    );
}

/// The shapes of the issue: a file sh rejects is refused naming the line and the fix, through
/// the binary, and nothing is written; `NAME = value` is named as the likely mistake.
#[test]
fn grub_files_sh_rejects_are_refused_by_the_binary() {
    for (text, says) in [
        (
            "GRUB_DISTRIBUTOR=Debian)\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n",
            "/etc/default/grub: line 1: `)` is not expected here",
        ),
        (
            "GRUB_CMDLINE_LINUX=\"a `b\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n",
            "/etc/default/grub: line 1: the backquote (`) opened here is never closed",
        ),
        (
            "GRUB_CMDLINE_LINUX_DEFAULT='quiet splash\"\nGRUB_CMDLINE_LINUX=\"\"\n",
            "/etc/default/grub: line 1: the ' opened here is never closed",
        ),
        (
            "export GRUB_CMDLIN}E_LINUX_DEFAULT=\"quiet splash\"\n",
            "/etc/default/grub: line 1: the file runs `export GRUB_CMDLIN}E_LINUX_DEFAULT...`, which is not a variable name",
        ),
        (
            "GRUB_CMDLINE_LINUX_DEFAULT = \"quiet splash\"\n",
            "/etc/default/grub: line 1: GRUB_CMDLINE_LINUX_DEFAULT = ... has a blank before `=`, so sh runs a command named GRUB_CMDLINE_LINUX_DEFAULT",
        ),
    ] {
        let tmp = copy_root("amd-grub");
        std::fs::write(tmp.path().join("etc/default/grub"), text).unwrap();
        let before = tree(tmp.path());
        let root = tmp.path().to_str().unwrap();
        for args in [
            vec!["plan", "-p", "profiles/amd-grub.toml", "--root", root],
            vec![
                "apply",
                "-p",
                "profiles/amd-grub.toml",
                "--root",
                root,
                "--yes",
                "--no-hooks",
            ],
        ] {
            let o = run(&args);
            status(&o, 2);
            assert!(stderr(&o).contains(says), "{text:?}: {}", stderr(&o));
        }
        assert!(tree(tmp.path()) == before, "{text:?}: nothing written");
    }
}
