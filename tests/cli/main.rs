//! End-to-end tests of the `vfio-gen` binary on the fixture roots: golden files, validation of
//! every generated file by the real tool that reads it, errors, and the GRUB corpus.
//!
//! Tests that need a program (sh, bash, modprobe) or root say so: a missing one fails the test,
//! so a plain `cargo test` shows it in its summary; VFIO_GEN_ALLOW_SKIPS=1 makes it a skip
//! (printed, hidden in captured output). With VFIO_GEN_REQUIRE_ALL_TESTS=1 (as in CI) it is a
//! failure whatever VFIO_GEN_ALLOW_SKIPS says (tests/support/skip.rs, the one policy).

// No function over 150 lines (the threshold is in clippy.toml): split it into functions with
// one job each.
#![deny(clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vfio_gen::cmdline::{Opt, edit_plain};
use vfio_gen::plan;
use vfio_gen::profile::Profile;

const BIN: &str = env!("CARGO_BIN_EXE_vfio-gen");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs vfio-gen with a scrubbed environment (the [`Vg`] builder, checking nothing).
fn run(args: &[&str]) -> Output {
    Vg::new(args).output()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn status(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// Whether a program is installed (on PATH, /usr/sbin or /sbin); a missing one follows the skip
/// policy of tests/support/skip.rs.
#[track_caller]
fn have(tool: &str) -> bool {
    skip::program(tool).is_some()
}

fn profiles() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("profiles"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".toml").map(str::to_string))
        .collect();
    names.sort();
    assert!(
        names.len() >= 8,
        "profiles/ holds the seed hosts and at least six more"
    );
    names
}

fn fixture_root(name: &str) -> PathBuf {
    repo().join("tests/fixtures/roots").join(name)
}

/// Every file under a directory, by relative path; a symbolic link is recorded as its target.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.insert(rel, format!("-> {}", target.display()).into_bytes());
            } else if meta.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn copy_tree(from: &Path, to: &Path) {
    for (rel, bytes) in tree(from) {
        let p = to.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        match bytes.strip_prefix(b"-> ") {
            Some(target) => {
                std::os::unix::fs::symlink(String::from_utf8_lossy(target).as_ref(), p).unwrap()
            }
            None => std::fs::write(p, bytes).unwrap(),
        }
    }
}

/// The fixture whose mkinitcpio preset sets `ALL_config` (tests/fixtures/README.md).
const PRESET_CONFIG_TRAP: &str = "amd-gpu-amdgpu-softdep";

/// `vfio-gen plan -p PROFILE --root ROOT`.
fn plan_on(profile: &str, root: &str) -> Output {
    run(&["plan", "-p", profile, "--root", root])
}

/// A temporary copy of a fixture root.
fn copy_root(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&fixture_root(name), tmp.path());
    tmp
}

fn render(name: &str, root: &Path, out: &Path) -> Output {
    let profile = format!("profiles/{name}.toml");
    run(&[
        "render",
        "-p",
        &profile,
        "--root",
        root.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
}

/// What apply would leave, written over the root with no backup: render into a staging
/// directory, then copy it over the root (render itself refuses to write into a live root).
fn render_over(profile: &str, root: &Path) -> Output {
    let stage = tempfile::tempdir().unwrap();
    let o = run(&[
        "render",
        "-p",
        profile,
        "--root",
        root.to_str().unwrap(),
        "--out",
        stage.path().to_str().unwrap(),
    ]);
    if o.status.success() {
        copy_tree(stage.path(), root);
    }
    o
}

/// `apply --yes --no-hooks` (with `--revert`), so the history records what vfio-gen wrote.
fn apply_over(profile: &str, root: &Path, revert: bool) -> Output {
    let mut args = vec![
        "apply",
        "-p",
        profile,
        "--root",
        root.to_str().unwrap(),
        "--yes",
        "--no-hooks",
    ];
    if revert {
        args.push("--revert");
    } else if profile.contains(PRESET_CONFIG_TRAP) {
        // Its preset sets ALL_config, refused without --force (docs/mkinitcpio.md).
        args.push("--force");
    }
    run(&args)
}

/// A shipped profile as the binary sees it on its fixture root: parsed, with what
/// `[resources]` means on that root decided from its facts (`share::resolve`).
fn load(name: &str) -> Profile {
    let mut p = Profile::load(&repo().join(format!("profiles/{name}.toml"))).unwrap();
    let root = vfio_gen::root::Root::new(fixture_root(name));
    vfio_gen::share::resolve(&mut p, &root, false).unwrap();
    p
}

mod golden {
    use super::*;

    /// Each profile renders, on its fixture root, exactly the files in golden/<name>/.
    /// `UPDATE_GOLDEN=1 cargo test` re-blesses them (people only; CI never does).
    #[test]
    fn every_profile_matches_its_golden_files() {
        let bless = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
        let mut failures = Vec::new();
        for name in profiles() {
            let tmp = tempfile::tempdir().unwrap();
            let o = render(&name, &fixture_root(&name), tmp.path());
            status(&o, 0);
            let got = tree(tmp.path());
            let dir = repo().join("golden").join(&name);
            if bless {
                let _ = std::fs::remove_dir_all(&dir);
                copy_tree(tmp.path(), &dir);
                continue;
            }
            let want = tree(&dir);
            if got != want {
                let keys: std::collections::BTreeSet<_> = got.keys().chain(want.keys()).collect();
                for k in keys {
                    if got.get(k) != want.get(k) {
                        failures.push(format!("{name}: {k} differs (run `UPDATE_GOLDEN=1 cargo test` and review the diff)"));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// The seed hosts (tests/fixtures/README.md) come out exactly.
    #[test]
    fn seed_hosts_are_exact() {
        let tmp = tempfile::tempdir().unwrap();
        status(
            &render(
                "arch-intel-systemd-boot",
                &fixture_root("arch-intel-systemd-boot"),
                tmp.path(),
            ),
            0,
        );
        let entry =
            std::fs::read_to_string(tmp.path().join("boot/loader/entries/arch.conf")).unwrap();
        assert!(entry.contains(
            "options root=PARTLABEL=\"PRIMARY\" rootfstype=xfs add_efi_memmap intel_iommu=on iommu=pt rd.driver.pre=vfio-pci\n"
        ));
        let vfio = std::fs::read_to_string(tmp.path().join("etc/modprobe.d/vfio.conf")).unwrap();
        assert!(
            vfio.lines()
                .any(|l| l == "options vfio-pci ids=10de:2204,10de:1aef"),
            "{vfio}"
        );
        let bl = std::fs::read_to_string(tmp.path().join("etc/modprobe.d/blacklist-nouveau.conf"))
            .unwrap();
        assert!(
            bl.lines().any(|l| l == "blacklist nouveau")
                && bl.lines().any(|l| l == "options nouveau modeset=0")
        );

        let tmp = tempfile::tempdir().unwrap();
        status(
            &render("amd-grub", &fixture_root("amd-grub"), tmp.path()),
            0,
        );
        let grub = std::fs::read_to_string(tmp.path().join("etc/default/grub")).unwrap();
        assert!(grub.lines().any(|l| l == "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet amd_iommu=on iommu=pt rd.driver.pre=vfio-pci\""), "{grub}");
    }

    /// After the desired files are in place, plan has nothing to do (apply twice is a no-op),
    /// and the revert plan takes the edited files back to their original bytes.
    #[test]
    fn rendered_state_is_in_sync_and_reverts_to_the_original() {
        for name in profiles() {
            let tmp = copy_root(&name);
            status(
                &apply_over(&format!("profiles/{name}.toml"), tmp.path(), false),
                0,
            );
            let profile = format!("profiles/{name}.toml");
            let o = run(&[
                "plan",
                "-p",
                &profile,
                "--root",
                tmp.path().to_str().unwrap(),
                "--exit-code",
            ]);
            status(&o, 0);
            assert!(stdout(&o).contains("No changes"), "{name}: {}", stdout(&o));

            // Revert, then compare with the fixture.
            status(&apply_over(&profile, tmp.path(), true), 0);
            let o = run(&[
                "plan",
                "-p",
                &profile,
                "--root",
                tmp.path().to_str().unwrap(),
                "--revert",
                "--exit-code",
            ]);
            status(&o, 0);
            // With the history of the apply, revert gives every file its bytes from before
            // vfio-gen (options it held before included) and removes what it created.
            let after: BTreeMap<String, Vec<u8>> = tree(tmp.path())
                .into_iter()
                .filter(|(k, _)| !k.starts_with("var/lib/vfio-gen"))
                .collect();
            assert!(
                after == tree(&fixture_root(&name)),
                "{name}: not back byte for byte"
            );
        }
    }
}

mod real_tools {
    use super::*;

    /// Sources `files` in order with `shell` (in a clean environment, from /), then runs
    /// `print`; returns what it printed.
    fn source_all(shell: &str, files: &[&Path], print: &str) -> String {
        let mut script = String::from("cd /; ");
        for i in 0..files.len() {
            script.push_str(&format!(". \"${}\"; ", i + 1));
        }
        script.push_str(print);
        let o = Command::new(shell)
            .arg("-c")
            .arg(&script)
            .arg(shell)
            .args(files)
            .env_clear()
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{shell}: sourcing {files:?}: {}",
            stderr(&o)
        );
        stdout(&o)
    }

    fn sh_value(files: &[PathBuf]) -> String {
        let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        source_all(
            "sh",
            &files,
            "printf '%s %s' \"$GRUB_CMDLINE_LINUX\" \"$GRUB_CMDLINE_LINUX_DEFAULT\"",
        )
    }

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    /// The GRUB files a root holds, in the order grub-mkconfig sources them.
    fn grub_files(root: &Path) -> Vec<PathBuf> {
        let mut files = vec![root.join("etc/default/grub")];
        let mut drop_ins: Vec<PathBuf> = std::fs::read_dir(root.join("etc/default/grub.d"))
            .map(|d| {
                d.map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|e| e == "cfg"))
                    .collect()
            })
            .unwrap_or_default();
        drop_ins.sort();
        files.extend(drop_ins);
        files
    }

    /// Every GRUB result passes `sh -n` and, sourced by sh with its drop-ins, holds exactly the
    /// options the model says: the original line with the managed options ensured.
    #[test]
    fn grub_results_pass_sh() {
        if !have("sh") {
            return;
        }
        for name in profiles() {
            let profile = load(&name);
            if profile.bootloader != vfio_gen::profile::Bootloader::Grub {
                continue;
            }
            let tmp = copy_root(&name);
            let before = sh_value(&grub_files(tmp.path()));
            status(
                &render_over(&format!("profiles/{name}.toml"), tmp.path()),
                0,
            );
            let files = grub_files(tmp.path());
            for f in &files {
                let o = Command::new("sh").arg("-n").arg(f).output().unwrap();
                assert!(o.status.success(), "sh -n {}: {}", f.display(), stderr(&o));
            }
            let after = sh_value(&files);
            let wanted = profile.kernel_options(false);
            let expected = edit_plain(&before, &wanted, false).unwrap();
            assert_eq!(words(&after), words(&expected), "{name}");
            for w in &wanted {
                assert_eq!(
                    words(&after).iter().filter(|t| **t == w.text()).count(),
                    1,
                    "{name}: {w} once"
                );
            }
        }
    }

    /// modprobe accepts every generated modprobe.d file with an empty stderr, and reads the
    /// ids, blacklists and softdeps from them.
    #[test]
    fn modprobe_reads_the_generated_files() {
        // Run by the path found: /usr/sbin or /sbin may not be on a user's PATH.
        let Some(modprobe) = skip::program("modprobe") else {
            return;
        };
        for name in profiles() {
            let profile = load(&name);
            let tmp = tempfile::tempdir().unwrap();
            status(&render(&name, &fixture_root(&name), tmp.path()), 0);
            let dir = tmp.path().join("etc/modprobe.d");
            let o = Command::new(&modprobe)
                .arg("-C")
                .arg(&dir)
                .arg("--showconfig")
                .output()
                .unwrap();
            assert!(o.status.success());
            assert_eq!(stderr(&o), "", "{name}: modprobe complains");
            let config = stdout(&o);
            // `[vfio] mode = "on-demand"`: nothing takes the card at boot (Profile::at_boot).
            let profile = profile.at_boot();
            let mut expect = Vec::new();
            if profile.ids.is_empty() {
                assert!(
                    !config.contains("ids="),
                    "{name}: on-demand sets no ids\n{config}"
                );
            } else {
                expect.push(format!("options vfio_pci ids={}", profile.ids.join(",")));
                if profile.disable_vga {
                    expect[0].push_str(" disable_vga=1");
                }
            }
            expect.extend(profile.blacklist.iter().map(|m| format!("blacklist {m}")));
            expect.extend(
                profile
                    .softdep
                    .iter()
                    .map(|m| format!("softdep {m} pre: vfio-pci")),
            );
            for line in expect {
                assert!(
                    config.lines().any(|l| l == line),
                    "{name}: `{line}` missing from\n{config}"
                );
            }
        }
    }

    /// mkinitcpio.conf then vfio-gen's drop-in, sourced by bash, give the VFIO modules first and
    /// the user's list after them, whether it is an array or a string.
    #[test]
    fn mkinitcpio_drop_in_keeps_the_users_modules() {
        if !have("bash") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        status(
            &render(
                "arch-intel-systemd-boot",
                &fixture_root("arch-intel-systemd-boot"),
                tmp.path(),
            ),
            0,
        );
        let drop_in = tmp.path().join("etc/mkinitcpio.conf.d/vfio.conf");
        let cases = repo().join("tests/fixtures/mkinitcpio");
        let mut checked = 0;
        for e in std::fs::read_dir(&cases).unwrap() {
            let conf = e.unwrap().path();
            let modules =
                |files: &[&Path]| words(&source_all("bash", files, "printf '%s\\n' ${MODULES[@]}"));
            let user = modules(&[&conf]);
            let all = modules(&[&conf, &drop_in]);
            let mut want = vec![
                "vfio_pci".to_string(),
                "vfio".into(),
                "vfio_iommu_type1".into(),
            ];
            want.extend(user);
            assert_eq!(all, want, "{}", conf.display());
            checked += 1;
        }
        assert!(checked >= 3);
    }

    /// dracut's drop-ins, sourced in order by bash, end with the VFIO modules in force_drivers
    /// and the modprobe.d files in install_items.
    #[test]
    fn dracut_drop_in_adds_force_drivers() {
        if !have("bash") {
            return;
        }
        for name in ["fedora-grub-dracut", "endeavouros-systemd-boot-dracut"] {
            let tmp = copy_root(name);
            status(
                &render_over(&format!("profiles/{name}.toml"), tmp.path()),
                0,
            );
            let mut confs: Vec<PathBuf> = std::fs::read_dir(tmp.path().join("etc/dracut.conf.d"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            confs.sort();
            let confs: Vec<&Path> = confs.iter().map(PathBuf::as_path).collect();
            let out = source_all(
                "bash",
                &confs,
                "printf '%s\\n' \"$force_drivers\" \"$install_items\"",
            );
            let mut lines = out.lines();
            assert_eq!(
                words(lines.next().unwrap()),
                ["vfio_pci", "vfio", "vfio_iommu_type1"],
                "{name}"
            );
            assert!(
                words(lines.next().unwrap()).contains(&"/etc/modprobe.d/vfio.conf".to_string())
            );
        }
    }

    /// Every non-refused file of the GRUB corpus: edited, it passes `sh -n`, sh reads the
    /// intended line, editing again changes nothing, and revert restores what sh read before
    /// when it held no managed option. Refused files exit 2 and name drop-in mode.
    #[test]
    fn grub_corpus() {
        if !have("sh") {
            return;
        }
        let wanted: Vec<Opt> = ["intel_iommu=on", "iommu=pt", "rd.driver.pre=vfio-pci"]
            .iter()
            .map(|o| Opt::parse(o))
            .collect();
        let profile_text = "[host]\ncpu = \"intel\"\nbootloader = \"grub\"\ninitramfs = \"dracut\"\n[vfio]\nids = [\"10de:2204\"]\n";
        let mut seen = 0;
        for e in std::fs::read_dir(repo().join("tests/fixtures/grub")).unwrap() {
            let case = e.unwrap().path();
            let name = case.file_name().unwrap().to_string_lossy().into_owned();
            let tmp = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(tmp.path().join("etc/default")).unwrap();
            std::fs::write(
                tmp.path().join("etc/default/grub"),
                std::fs::read(&case).unwrap(),
            )
            .unwrap();
            let profile = tmp.path().join("profile.toml");
            std::fs::write(&profile, profile_text).unwrap();
            let root = tmp.path().to_str().unwrap();
            let p = profile.to_str().unwrap();
            if name.starts_with("refuse-") {
                let o = run(&["render", "-p", p, "--root", root, "--out", root]);
                status(&o, 2);
                assert!(stderr(&o).contains("drop-in"), "{name}: {}", stderr(&o));
                assert_eq!(
                    std::fs::read(tmp.path().join("etc/default/grub")).unwrap(),
                    std::fs::read(&case).unwrap(),
                    "{name}: untouched"
                );
                continue;
            }
            let file = tmp.path().join("etc/default/grub");
            let before = sh_value(std::slice::from_ref(&file));
            status(&apply_over(p, tmp.path(), false), 0);
            let o = Command::new("sh").arg("-n").arg(&file).output().unwrap();
            assert!(o.status.success(), "{name}: sh -n: {}", stderr(&o));
            let after = sh_value(std::slice::from_ref(&file));
            assert_eq!(
                words(&after),
                words(&edit_plain(&before, &wanted, false).unwrap()),
                "{name}"
            );
            let edited = std::fs::read(&file).unwrap();
            status(&run(&["plan", "-p", p, "--root", root, "--exit-code"]), 0);
            assert_eq!(std::fs::read(&file).unwrap(), edited);
            status(&apply_over(p, tmp.path(), true), 0);
            let reverted = sh_value(std::slice::from_ref(&file));
            let had_managed = words(&before)
                .iter()
                .any(|t| wanted.iter().any(|w| Opt::parse(t).key() == w.key()));
            if !had_managed {
                assert_eq!(words(&reverted), words(&before), "{name}: revert");
            }
            seen += 1;
        }
        assert!(seen >= 20, "the corpus has its cases");
    }
}

mod errors {
    use super::*;

    /// `render --out` of a profile with `body`: the run to check, which must write nothing.
    fn bad_profile(body: &str) -> (Checked, tempfile::TempDir) {
        let tmp = copy_root("amd-grub");
        let p = tmp.path().join("bad.toml");
        std::fs::write(&p, body).unwrap();
        let out = tmp.path().join("out");
        let vg = Vg::new(&[
            "render",
            "-p",
            p.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .root(tmp.path());
        (Checked { vg, out }, tmp)
    }

    /// A run whose expectations are set, then checked with [`Checked::run`], which also
    /// checks that it wrote nothing.
    struct Checked {
        vg: Vg,
        out: PathBuf,
    }

    impl Checked {
        fn status(self, code: i32) -> Checked {
            Checked {
                vg: self.vg.status(code),
                ..self
            }
        }
        fn stderr_has(self, t: &str) -> Checked {
            Checked {
                vg: self.vg.stderr_has(t),
                ..self
            }
        }
        fn stderr_lines(self, n: usize) -> Checked {
            Checked {
                vg: self.vg.stderr_lines(n),
                ..self
            }
        }
        #[track_caller]
        fn run(self) {
            self.vg.run();
            assert!(!self.out.exists(), "a refused run writes nothing");
        }
    }

    const GOOD: &str = "[host]\ncpu = \"amd\"\nbootloader = \"grub\"\n\n[vfio]\nids = [\"10de:13c2\", \"10de:0fbb\"]\n";

    #[test]
    fn bad_profiles_exit_2_naming_the_line() {
        let cases = [
            (
                format!("{GOOD}colour = \"red\"\n"),
                ":7:1:",
                "unknown field `colour`",
            ),
            (
                GOOD.replace("10de:0fbb", "10de:0fbz"),
                ":6:21:",
                "is not a PCI ID",
            ),
            (
                format!("{GOOD}[kernel]\nextra = [\"a\\\"b\"]\n"),
                ":8:10:",
                "contains '\"'",
            ),
            (
                format!("{GOOD}[kernel]\nextra = [\"$(reboot)\"]\n"),
                ":8:10:",
                "contains '$'",
            ),
            (
                format!("{GOOD}[grub]\nfile = \"/etc/../../etc/shadow\"\n"),
                ":8:8:",
                "'..'",
            ),
            (
                GOOD.replace("cpu = \"amd\"\n", ""),
                ":1:1:",
                "missing field `cpu`",
            ),
            (
                GOOD.replace("\"grub\"", "\"lilo\""),
                ":3:14:",
                "unknown variant `lilo`",
            ),
        ];
        for (body, place, what) in cases {
            let (vg, _tmp) = bad_profile(&body);
            vg.status(2)
                .stderr_has(&format!("bad.toml{place}"))
                .stderr_has(what)
                .stderr_lines(1)
                .run();
        }
    }

    #[test]
    fn type_mistakes_name_the_key_and_the_fix() {
        let cases = [
            (
                GOOD.replace(
                    "ids = [\"10de:13c2\", \"10de:0fbb\"]",
                    "ids = \"10de:13c2,10de:0fbb\"",
                ),
                "ids: invalid type",
                "write a list in brackets",
            ),
            (
                format!("{GOOD}ids = [\"10de:13c2\"]\n"),
                "ids: duplicate key",
                "keep one",
            ),
            (
                format!("{GOOD}disable_vga = \"yes\"\n"),
                "disable_vga: invalid type",
                "true or false",
            ),
            (
                format!("{GOOD}[kernel]\namd_iommu = \"off\"\n"),
                "turns the IOMMU off",
                "remove it",
            ),
            (
                format!("{GOOD}[kernel]\nextra = [\"vfio-pci.ids=10de:1111\"]\n"),
                "vfio-pci ids come from vfio.ids",
                "remove it",
            ),
            (String::new(), "the profile is empty", "vfio-gen detect"),
        ];
        for (body, what, fix) in cases {
            let (vg, _tmp) = bad_profile(&body);
            vg.status(2).stderr_has(what).stderr_has(fix).run();
        }
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("latin1.toml");
        std::fs::write(&p, b"[host]\ncpu = \"\xe9\"\n").unwrap();
        Vg::new(&["plan", "-p", p.to_str().unwrap()])
            .root(tmp.path())
            .status(2)
            .stderr_has("latin1.toml:2:8: this byte is not UTF-8")
            .run();
    }

    #[test]
    fn a_missing_profile_says_how_to_get_one() {
        let tmp = tempfile::tempdir().unwrap();
        Vg::new(&["plan"])
            .root(tmp.path())
            .status(2)
            .stderr_has("etc/vfio-gen/profile.toml")
            .stderr_has("detect")
            .run();
    }

    #[test]
    fn a_missing_kernel_cmdline_is_explained() {
        let tmp = tempfile::tempdir().unwrap();
        Vg::new(&["plan", "-p", "profiles/proxmox-kernel-cmdline.toml"])
            .root(tmp.path())
            .status(2)
            .stderr_has("/etc/kernel/cmdline does not exist")
            .run();
    }
}

mod plan_output {
    use super::*;

    fn plan(name: &str, extra: &[&str]) -> Output {
        let profile = format!("profiles/{name}.toml");
        let root = fixture_root(name);
        let mut args = vec!["plan", "-p", &profile, "--root", root.to_str().unwrap()];
        args.extend_from_slice(extra);
        run(&args)
    }

    #[test]
    fn exit_code_reports_pending_changes() {
        status(&plan("amd-grub", &["--exit-code"]), 1);
        status(&plan("amd-grub", &[]), 0);
    }

    #[test]
    fn warnings_name_the_undoing_files() {
        let out = stdout(&plan("amd-grub", &[]));
        assert!(out.contains("amd_iommu=on and ignores it"), "{out}");
        assert!(
            out.contains("note: rd.driver.pre=vfio-pci is harmless but does nothing here: only dracut images read it"),
            "{out}"
        );
        assert!(!out.contains("warning: rd.driver.pre"), "{out}");
        let out = stdout(&plan("amd-gpu-amdgpu-softdep", &[]));
        assert!(
            out.contains("/etc/mkinitcpio.d/linux.preset:") && out.contains("ALL_config"),
            "{out}"
        );
        assert!(
            out.contains("grub-mkconfig -o /boot/grub/grub.cfg"),
            "{out}"
        );
        let out = stdout(&plan("fedora-grub-dracut", &[]));
        assert!(
            out.contains("grub2-mkconfig -o /boot/grub2/grub.cfg --update-bls-cmdline")
                && out.contains("dracut -f --regenerate-all"),
            "{out}"
        );
        let out = stdout(&plan("ubuntu-grub-dropin", &[]));
        assert!(
            out.contains("update-grub") && out.contains("update-initramfs -u -k all"),
            "{out}"
        );
    }

    #[test]
    fn a_gpu_driver_forced_before_vfio_is_named() {
        let tmp = copy_root("fedora-grub-dracut");
        std::fs::write(
            tmp.path().join("etc/dracut.conf.d/50-nvidia.conf"),
            "force_drivers+=\" nvidia nvidia_drm \"\n",
        )
        .unwrap();
        let o = plan_on(
            "profiles/fedora-grub-dracut.toml",
            tmp.path().to_str().unwrap(),
        );
        status(&o, 0);
        assert!(stdout(&o).contains("warning: /etc/dracut.conf.d/50-nvidia.conf:1: force_drivers loads nvidia, nvidia_drm before"), "{}", stdout(&o));

        let tmp = copy_root("arch-intel-systemd-boot");
        std::fs::create_dir_all(tmp.path().join("etc/mkinitcpio.conf.d")).unwrap();
        std::fs::write(
            tmp.path().join("etc/mkinitcpio.conf.d/zz-nvidia.conf"),
            "MODULES=(nvidia nvidia_modeset)\n",
        )
        .unwrap();
        std::fs::create_dir_all(tmp.path().join("etc/modprobe.d")).unwrap();
        std::fs::write(
            tmp.path().join("etc/modprobe.d/gpu.conf"),
            "options vfio_pci ids=10de:1b80\n",
        )
        .unwrap();
        let o = plan_on(
            "profiles/arch-intel-systemd-boot.toml",
            tmp.path().to_str().unwrap(),
        );
        let out = stdout(&o);
        assert!(
            out.contains(
                "/etc/mkinitcpio.conf.d/zz-nvidia.conf:1: sets MODULES= after vfio-gen's drop-in"
            ),
            "{out}"
        );
        assert!(out.contains("/etc/modprobe.d/gpu.conf:1: `options vfio_pci ids=10de:1b80` also sets vfio-pci ids"), "{out}");
    }

    #[test]
    fn initramfs_tools_and_booster_traps() {
        let tmp = copy_root("efifb-off-disable-vga");
        let modules = tmp.path().join("etc/initramfs-tools/modules");
        let mut text = std::fs::read_to_string(&modules).unwrap();
        text.push_str("vfio_pci ids=10de:21c4\n");
        std::fs::write(&modules, text).unwrap();
        let o = plan_on(
            "profiles/efifb-off-disable-vga.toml",
            tmp.path().to_str().unwrap(),
        );
        assert!(
            stdout(&o).contains("`vfio_pci ids=10de:21c4` comes after vfio-gen's vfio_pci line"),
            "{}",
            stdout(&o)
        );

        let tmp = copy_root("arch-booster");
        std::fs::write(
            tmp.path().join("etc/booster.yaml"),
            "modules_force_load:\n  - nvme\n",
        )
        .unwrap();
        let o = plan_on("profiles/arch-booster.toml", tmp.path().to_str().unwrap());
        status(&o, 2);
        assert!(
            stderr(&o).contains(
                "/etc/booster.yaml: line 1: modules_force_load is not a comma-separated string"
            ),
            "{}",
            stderr(&o)
        );
    }

    #[test]
    fn a_conditional_override_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("etc/default")).unwrap();
        std::fs::copy(
            repo().join("tests/fixtures/grub/conditional-override.grub"),
            tmp.path().join("etc/default/grub"),
        )
        .unwrap();
        let p = tmp.path().join("p.toml");
        std::fs::write(
            &p,
            "[host]\ncpu = \"intel\"\nbootloader = \"grub\"\n[vfio]\nids = [\"10de:2204\"]\n",
        )
        .unwrap();
        let o = plan_on(p.to_str().unwrap(), tmp.path().to_str().unwrap());
        status(&o, 0);
        assert!(stdout(&o).contains("warning: /etc/default/grub:3: `iommu=soft` is added only when a condition holds, and then it overrides iommu=pt"), "{}", stdout(&o));
    }

    #[test]
    fn json_has_the_documented_shape() {
        let o = plan("arch-intel-systemd-boot", &["--format", "json"]);
        status(&o, 0);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["in_sync"], false);
        let changes = v["changes"].as_array().unwrap();
        let vfio = changes
            .iter()
            .find(|c| c["path"] == "/etc/modprobe.d/vfio.conf")
            .unwrap();
        assert_eq!(vfio["action"], "create");
        assert_eq!(vfio["ownership"], "owned");
        assert!(vfio["old_sha256"].is_null() && vfio["new_sha256"].as_str().unwrap().len() == 64);
        assert!(
            vfio["diff"]
                .as_str()
                .unwrap()
                .contains("+options vfio-pci ids=10de:2204,10de:1aef")
        );
        assert_eq!(
            v["hooks"][0]["command"],
            serde_json::json!(["mkinitcpio", "-P"])
        );
        assert!(
            v["notes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w.as_str().unwrap().contains("rd.driver.pre"))
        );
    }

    #[test]
    fn color_follows_the_flag_and_no_color() {
        assert!(
            !stdout(&plan("amd-grub", &[])).contains('\x1b'),
            "not a terminal: no color"
        );
        assert!(stdout(&plan("amd-grub", &["--color", "always"])).contains("\x1b[32m+"));
        assert!(!stdout(&plan("amd-grub", &["--color", "never"])).contains('\x1b'));
        // NO_COLOR counts with auto only: an explicit --color always still colors.
        Vg::new(&["plan", "-p", "profiles/amd-grub.toml"])
            .root(&fixture_root("amd-grub"))
            .args(&["--color", "always"])
            .env("NO_COLOR", "1")
            .status(0)
            .stdout_has("\x1b[32m+")
            .run();
    }

    #[test]
    fn render_check_reports_drift() {
        let tmp = tempfile::tempdir().unwrap();
        let root = fixture_root("arch-intel-systemd-boot");
        status(&render("arch-intel-systemd-boot", &root, tmp.path()), 0);
        let check = |dir: &Path| {
            run(&[
                "render",
                "-p",
                "profiles/arch-intel-systemd-boot.toml",
                "--root",
                root.to_str().unwrap(),
                "--check",
                dir.to_str().unwrap(),
            ])
        };
        status(&check(tmp.path()), 0);
        let vfio = tmp.path().join("etc/modprobe.d/vfio.conf");
        std::fs::write(
            &vfio,
            std::fs::read_to_string(&vfio)
                .unwrap()
                .replace("1aef", "1aee"),
        )
        .unwrap();
        let stray = tmp.path().join("etc/modprobe.d/blacklist-radeon.conf");
        std::fs::write(&stray, "# Generated by vfio-gen; old\nblacklist radeon\n").unwrap();
        let o = check(tmp.path());
        status(&o, 1);
        let out = stdout(&o);
        assert!(
            out.contains("-options vfio-pci ids=10de:2204,10de:1aee")
                && out.contains("+options vfio-pci ids=10de:2204,10de:1aef"),
            "{out}"
        );
        assert!(out.contains("blacklist-radeon.conf (generated by vfio-gen, but the profile no longer produces it)"), "{out}");
        // render --out removes what the profile no longer produces, so the advice holds.
        let o = run(&[
            "render",
            "-p",
            "profiles/arch-intel-systemd-boot.toml",
            "--root",
            root.to_str().unwrap(),
            "--out",
            tmp.path().to_str().unwrap(),
        ]);
        assert!(
            stdout(&o).contains("removed /etc/modprobe.d/blacklist-radeon.conf"),
            "{}",
            stdout(&o)
        );
        status(&check(tmp.path()), 0);
    }

    #[test]
    fn completions_and_man_page() {
        let o = run(&["completions", "bash"]);
        status(&o, 0);
        assert!(stdout(&o).contains("vfio-gen") && stdout(&o).contains("--root"));
        let o = run(&["man"]);
        status(&o, 0);
        assert!(stdout(&o).contains(".SH EXIT STATUS") && stdout(&o).contains(".SH FILES"));
        if have("groff") {
            let tmp = tempfile::tempdir().unwrap();
            let page = tmp.path().join("vfio-gen.1");
            std::fs::write(&page, stdout(&o)).unwrap();
            groff_accepts(&page);
            status(&run(&["man", "--dir", tmp.path().to_str().unwrap()]), 0);
            assert!(
                tmp.path().join("vfio-gen-plan.1").exists()
                    && !tmp.path().join("vfio-gen-help.1").exists()
            );
        }
        assert!(
            stdout(&o).starts_with(".ie") || stdout(&o).contains(".TH vfio-gen"),
            "{}",
            &stdout(&o)[..200.min(stdout(&o).len())]
        );
        let o = run(&["--help"]);
        assert!(stdout(&o).contains("Examples:"));
    }
}

mod address;
mod apply;
mod completions;
mod distros;
mod domain;
mod grub_mutants;

#[path = "../support/fake_host.rs"]
mod fake_host;
#[path = "../support/skip.rs"]
mod skip;
#[path = "../support/vg.rs"]
mod vg;
use vg::Vg;
mod handover;
mod hardware;
mod hostile;
mod initramfs;
mod inspect;
mod limine;
mod newcomer;
mod refind;
mod reset;
mod safety;
mod trial;
mod uki;
mod vm_share;

/// A root where GRUB is not installed yet (an image being built: no grub.cfg) gets no GRUB
/// hook, which in a chroot could not probe the disk, and a note saying why; once grub.cfg
/// exists, the hook is planned again.
#[test]
fn no_grub_cfg_means_no_grub_hook_and_a_note() {
    let tmp = copy_root("amd-grub");
    let root = tmp.path().to_str().unwrap();
    std::fs::remove_file(tmp.path().join("boot/grub/grub.cfg")).unwrap();
    let json = |o: &Output| -> serde_json::Value { serde_json::from_slice(&o.stdout).unwrap() };
    let o = run(&[
        "plan",
        "-p",
        "profiles/amd-grub.toml",
        "--root",
        root,
        "--format",
        "json",
    ]);
    status(&o, 0);
    let j = json(&o);
    let hooks: Vec<&str> = j["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert!(!hooks.contains(&"grub"), "{hooks:?}");
    assert!(hooks.contains(&"mkinitcpio"), "{hooks:?}");
    let notes = j["notes"].to_string();
    assert!(
        notes.contains("no grub.cfg under /boot/grub/grub.cfg"),
        "{notes}"
    );

    std::fs::write(tmp.path().join("boot/grub/grub.cfg"), "# generated\n").unwrap();
    let j = json(&run(&[
        "plan",
        "-p",
        "profiles/amd-grub.toml",
        "--root",
        root,
        "--format",
        "json",
    ]));
    assert!(
        j["hooks"].to_string().contains("\"grub\""),
        "{}",
        j["hooks"]
    );
    assert!(
        !j["notes"].to_string().contains("no grub.cfg"),
        "{}",
        j["notes"]
    );
}

/// `render --out` has no backup, lock or journal: into the root itself, into `/`, or into a
/// tree that holds the root's own files (a link to it), it refuses and writes nothing.
#[test]
fn render_refuses_a_live_root() {
    let tmp = copy_root("amd-grub");
    let root = tmp.path().to_str().unwrap();
    let before = tree(tmp.path());
    for out in [root, "/"] {
        let o = run(&[
            "render",
            "-p",
            "profiles/amd-grub.toml",
            "--root",
            root,
            "--out",
            out,
        ]);
        status(&o, 2);
        assert!(
            stderr(&o).contains("refusing to render into"),
            "{}",
            stderr(&o)
        );
    }
    let other = tempfile::tempdir().unwrap();
    let link = other.path().join("live");
    std::os::unix::fs::symlink(tmp.path(), &link).unwrap();
    let o = run(&[
        "render",
        "-p",
        "profiles/amd-grub.toml",
        "--root",
        root,
        "--out",
        link.to_str().unwrap(),
    ]);
    status(&o, 2);
    let staged = other.path().join("etc-only");
    std::fs::create_dir_all(staged.join("etc")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("etc/default"), staged.join("etc/default")).unwrap();
    let o = run(&[
        "render",
        "-p",
        "profiles/amd-grub.toml",
        "--root",
        root,
        "--out",
        staged.to_str().unwrap(),
    ]);
    status(&o, 2);
    assert!(
        stderr(&o).contains("it holds the root's own /etc/default/grub"),
        "{}",
        stderr(&o)
    );
    assert!(tree(tmp.path()) == before, "nothing written");
    // A staging directory is fine.
    let stage = tempfile::tempdir().unwrap();
    status(
        &run(&[
            "render",
            "-p",
            "profiles/amd-grub.toml",
            "--root",
            root,
            "--out",
            stage.path().to_str().unwrap(),
        ]),
        0,
    );
}

/// The x86 kernel keeps at most 2047 bytes of its command line and drops the rest silently:
/// a longer result is refused (exit 2, the file and the length, nothing written), one close
/// to it is a warning.
#[test]
fn a_command_line_the_kernel_would_cut_is_refused() {
    let tmp = copy_root("arch-intel-systemd-boot");
    let root = tmp.path().to_str().unwrap();
    let before = tree(tmp.path());
    let outside = tempfile::tempdir().unwrap();
    let profile = outside.path().join("long.toml");
    let base = std::fs::read_to_string(repo().join("profiles/arch-intel-systemd-boot.toml"))
        .unwrap()
        .replace("extra = []", "");
    let with_extra = |len: usize| {
        let text = base.replace(
            "[kernel]",
            &format!("[kernel]\nextra = [\"vg.pad={}\"]", "a".repeat(len)),
        );
        assert!(text.contains("vg.pad="), "the profile has a [kernel] table");
        std::fs::write(&profile, text).unwrap();
    };
    let p = profile.to_str().unwrap();
    with_extra(1 << 20);
    let o = plan_on(p, root);
    status(&o, 2);
    assert!(stderr(&o).contains("2047"), "{}", stderr(&o));
    // Fits alone, but not with what the entry already holds.
    with_extra(1990);
    let o = run(&["apply", "-p", p, "--root", root, "--yes", "--no-hooks"]);
    status(&o, 2);
    assert!(
        stderr(&o)
            .contains("/boot/loader/entries/arch-fallback.conf: the kernel command line would be")
            && stderr(&o).contains("2047"),
        "{}",
        stderr(&o)
    );
    assert!(tree(tmp.path()) == before, "nothing written");
    with_extra(1850);
    let o = plan_on(p, root);
    status(&o, 0);
    assert!(stdout(&o).contains("close to the 2047"), "{}", stdout(&o));
}

/// Options the user had before vfio-gen, in a file no apply ever wrote, are the user's:
/// `--revert` leaves the file alone and says so (it used to strip them).
#[test]
fn revert_leaves_a_file_vfio_gen_never_wrote_alone() {
    let tmp = copy_root("amd-grub");
    let root = tmp.path().to_str().unwrap();
    let grub = tmp.path().join("etc/default/grub");
    let text = std::fs::read_to_string(&grub).unwrap().replace(
        "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"",
        "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet iommu=pt\"",
    );
    std::fs::write(&grub, &text).unwrap();
    let o = apply_over("profiles/amd-grub.toml", tmp.path(), true);
    status(&o, 0);
    assert_eq!(std::fs::read_to_string(&grub).unwrap(), text, "untouched");
    let o = run(&[
        "plan",
        "-p",
        "profiles/amd-grub.toml",
        "--root",
        root,
        "--revert",
    ]);
    assert!(
        stdout(&o).contains("/etc/default/grub: no apply recorded under"),
        "{}",
        stdout(&o)
    );
    // Once vfio-gen has written it, revert gives back exactly the bytes from before.
    status(&apply_over("profiles/amd-grub.toml", tmp.path(), false), 0);
    assert_ne!(std::fs::read_to_string(&grub).unwrap(), text);
    status(&apply_over("profiles/amd-grub.toml", tmp.path(), true), 0);
    assert_eq!(
        std::fs::read_to_string(&grub).unwrap(),
        text,
        "iommu=pt kept"
    );
}

/// A reader that goes away (`| head -1`) stops vfio-gen quietly: no panic, no error line.
#[test]
fn a_closed_pipe_ends_quietly() {
    for args in [
        &["completions", "fish"][..],
        &["man"],
        &["completions", "bash"],
    ] {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Closed before the child has started writing: its first write meets EPIPE.
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = stderr(&o);
        assert!(
            !err.contains("panicked") && !err.contains("error"),
            "{args:?}: {err}"
        );
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
    }
}

/// `man --dir DIR` creates DIR (and its parents) when it is missing.
#[test]
fn man_dir_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("share/man/man1");
    status(&run(&["man", "--dir", dir.to_str().unwrap()]), 0);
    assert!(dir.join("vfio-gen.1").is_file());
    assert!(dir.join("vfio-gen-apply.1").is_file());
}

/// Each command's page has its examples under EXAMPLES, one per line as in --help (not a
/// filled paragraph titled EXTRA), and the main page documents exit status 3; groff accepts
/// every page without a warning.
#[test]
fn man_pages_have_examples_and_every_exit_status() {
    let tmp = tempfile::tempdir().unwrap();
    status(&run(&["man", "--dir", tmp.path().to_str().unwrap()]), 0);
    let apply = std::fs::read_to_string(tmp.path().join("vfio-gen-apply.1")).unwrap();
    assert!(!apply.contains(".SH EXTRA"), "{apply}");
    let examples = apply.split_once(".SH EXAMPLES\n.nf\n").unwrap().1;
    assert!(examples.starts_with("sudo vfio\\-gen apply "), "{examples}");
    let main = std::fs::read_to_string(tmp.path().join("vfio-gen.1")).unwrap();
    assert!(main.contains(".TP\n3\n"), "exit status 3 is documented");
    if !have("groff") {
        return;
    }
    for page in std::fs::read_dir(tmp.path()).unwrap() {
        groff_accepts(&page.unwrap().path());
    }
}

/// groff reads the man page without an error or a warning (-ww).
fn groff_accepts(page: &Path) {
    let g = Command::new("groff")
        .args(["-man", "-ww", "-z"])
        .arg(page)
        .output()
        .unwrap();
    assert!(
        g.status.success() && g.stderr.is_empty(),
        "groff on {}: {}",
        page.display(),
        stderr(&g)
    );
}

/// Wording a newcomer reads: a PCI address in ids is named as such; a revert that only
/// removes files says so; one warning is "1 warning".
#[test]
fn messages_say_what_happened() {
    let tmp = copy_root("amd-grub");
    let root = tmp.path().to_str().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let p = outside.path().join("addr.toml");
    std::fs::write(
        &p,
        "[host]\ncpu = \"amd\"\nbootloader = \"grub\"\n[vfio]\nids = [\"0000:03:00.0\"]\n",
    )
    .unwrap();
    let o = plan_on(p.to_str().unwrap(), root);
    status(&o, 2);
    assert!(
        stderr(&o).contains("\"0000:03:00.0\" is a PCI address, not an ID"),
        "{}",
        stderr(&o)
    );
    let o = apply_over("profiles/amd-grub.toml", tmp.path(), false);
    status(&o, 0);
    assert!(stdout(&o).contains("Wrote 4 files;"), "{}", stdout(&o));
    let o = apply_over("profiles/amd-grub.toml", tmp.path(), true);
    status(&o, 0);
    assert!(
        stdout(&o).contains("removed 3 files;") && stdout(&o).contains("Wrote 1 file,"),
        "{}",
        stdout(&o)
    );
}

/// The GRUB command line is measured too, as the kernel gets it (both variables, every file).
#[test]
fn a_grub_command_line_the_kernel_would_cut_is_refused() {
    let tmp = copy_root("amd-grub");
    let grub = tmp.path().join("etc/default/grub");
    let long = "x ".repeat(1020);
    let text = std::fs::read_to_string(&grub).unwrap().replace(
        "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"",
        &format!("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet {}\"", long.trim()),
    );
    std::fs::write(&grub, &text).unwrap();
    let before = tree(tmp.path());
    let o = apply_over("profiles/amd-grub.toml", tmp.path(), false);
    status(&o, 2);
    assert!(
        stderr(&o).contains("/etc/default/grub: the kernel command line would be"),
        "{}",
        stderr(&o)
    );
    assert!(tree(tmp.path()) == before, "nothing written");
}

/// The quick start's first command: the seed host's profile on its fixture root plans with no
/// warning, and its one remark about rd.driver.pre is a note that says it is harmless.
#[test]
fn the_quick_start_greets_without_a_warning() {
    let o = plan_on(
        "profiles/arch-intel-systemd-boot.toml",
        "tests/fixtures/roots/arch-intel-systemd-boot",
    );
    status(&o, 0);
    let out = stdout(&o);
    assert!(!out.contains("warning:"), "{out}");
    assert!(!out.contains("[grub] table is ignored"), "{out}");
    let notes: Vec<&str> = out.lines().filter(|l| l.starts_with("note:")).collect();
    assert_eq!(notes.len(), 1, "{out}");
    assert!(
        notes[0].contains("rd.driver.pre=vfio-pci is harmless"),
        "{out}"
    );
    // Its entry still gets the seed host's options (seed host 1, tests/fixtures/README.md).
    assert!(
        out.contains("+options root=PARTLABEL=\"PRIMARY\" rootfstype=xfs add_efi_memmap intel_iommu=on iommu=pt rd.driver.pre=vfio-pci"),
        "{out}"
    );
    // No profile comment points to a document outside the repository.
    for name in profiles() {
        let text = std::fs::read_to_string(repo().join(format!("profiles/{name}.toml"))).unwrap();
        assert!(!text.contains("(see 4)"), "{name}");
    }
}

/// `extra = ["intel_iommu=on,igfx_off"]` gives `intel_iommu=on` and is kept: the entry gets it
/// once, and applying twice changes nothing. A non-list `extra` is answered with a list of
/// kernel options, not of PCI IDs.
#[test]
fn an_extra_comma_value_that_holds_a_managed_one_is_kept() {
    let tmp = copy_root("arch-intel-systemd-boot");
    let outside = tempfile::tempdir().unwrap();
    let p = outside.path().join("igfx.toml");
    let base = "[host]\ncpu = \"intel\"\nbootloader = \"systemd-boot\"\n[vfio]\nids = [\"10de:2204\", \"10de:1aef\"]\n[kernel]\n";
    std::fs::write(&p, format!("{base}extra = [\"intel_iommu=on,igfx_off\"]\n")).unwrap();
    let o = apply_over(p.to_str().unwrap(), tmp.path(), false);
    status(&o, 0);
    let entry = std::fs::read_to_string(tmp.path().join("boot/loader/entries/arch.conf")).unwrap();
    let options = entry.lines().find(|l| l.starts_with("options ")).unwrap();
    assert_eq!(
        options,
        "options root=PARTLABEL=\"PRIMARY\" rootfstype=xfs add_efi_memmap iommu=pt intel_iommu=on,igfx_off"
    );
    let o = run(&[
        "plan",
        "-p",
        p.to_str().unwrap(),
        "--root",
        tmp.path().to_str().unwrap(),
        "--exit-code",
    ]);
    status(&o, 0);
    // A comma value without the managed one still conflicts.
    std::fs::write(&p, format!("{base}extra = [\"intel_iommu=sm_on\"]\n")).unwrap();
    let o = plan_on(p.to_str().unwrap(), tmp.path().to_str().unwrap());
    status(&o, 2);
    assert!(
        stderr(&o).contains("conflicts with intel_iommu=on")
            && stderr(&o).contains("\"intel_iommu=on,sm_on\""),
        "{}",
        stderr(&o)
    );

    std::fs::write(&p, format!("{base}extra = \"video=efifb:off\"\n")).unwrap();
    let o = plan_on(p.to_str().unwrap(), tmp.path().to_str().unwrap());
    status(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("igfx.toml:7:") && err.contains("like [\"video=efifb:off\"]"),
        "{err}"
    );
    assert!(!err.contains("10de"), "{err}");
}

/// A mkinitcpio preset that sets ALL_config makes mkinitcpio skip /etc/mkinitcpio.conf.d:
/// apply refuses (exit 2, nothing written) and says why and what to do; --force installs; with
/// the line commented out apply goes ahead.
#[test]
fn a_preset_with_its_own_config_is_refused_without_force() {
    let tmp = copy_root(PRESET_CONFIG_TRAP);
    let root = tmp.path().to_str().unwrap();
    let profile = format!("profiles/{PRESET_CONFIG_TRAP}.toml");
    let before = tree(tmp.path());
    let o = run(&[
        "apply",
        "-p",
        &profile,
        "--root",
        root,
        "--yes",
        "--no-hooks",
    ]);
    status(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("/etc/mkinitcpio.d/linux.preset:3: `ALL_config=\"/etc/mkinitcpio.conf\"`")
            && err.contains("ignores /etc/mkinitcpio.conf.d")
            && err.contains("comment the line out")
            && err.contains("--force"),
        "{err}"
    );
    assert!(tree(tmp.path()) == before, "nothing written");
    let o = plan_on(&profile, root);
    assert!(
        stdout(&o).contains("(apply refuses it without --force)"),
        "{}",
        stdout(&o)
    );

    let preset = tmp.path().join("etc/mkinitcpio.d/linux.preset");
    let text = std::fs::read_to_string(&preset).unwrap();
    std::fs::write(&preset, text.replace("\nALL_config=", "\n#ALL_config=")).unwrap();
    status(
        &run(&[
            "apply",
            "-p",
            &profile,
            "--root",
            root,
            "--yes",
            "--no-hooks",
        ]),
        0,
    );

    let tmp = copy_root(PRESET_CONFIG_TRAP);
    let o = run(&[
        "apply",
        "-p",
        &profile,
        "--root",
        tmp.path().to_str().unwrap(),
        "--yes",
        "--no-hooks",
        "--force",
    ]);
    status(&o, 0);
}

/// Every subcommand has its own description and examples, in `--help` and in its man page;
/// render's usage line shows what it needs; apply's --revert says what it does.
#[test]
fn every_command_describes_itself_with_examples() {
    let names = [
        "plan",
        "apply",
        "render",
        "rollback",
        "iommu",
        "detect",
        "check",
        "bind",
        "unbind",
        "completions",
        "man",
    ];
    let man = tempfile::tempdir().unwrap();
    status(&run(&["man", "--dir", man.path().to_str().unwrap()]), 0);
    let mut descriptions = Vec::new();
    for name in names {
        let o = run(&[name, "--help"]);
        status(&o, 0);
        let help = stdout(&o);
        let (description, rest) = help.split_once("\nUsage: ").unwrap();
        assert!(
            description.len() > 80,
            "{name}: a description, not one line:\n{help}"
        );
        assert!(
            !descriptions.contains(&description.to_string()),
            "{name} shares its description"
        );
        descriptions.push(description.to_string());
        let examples = rest
            .split_once("Examples:\n")
            .map(|(_, e)| e)
            .unwrap_or_else(|| panic!("{name}: no examples:\n{help}"));
        let own = examples
            .lines()
            .filter(|l| {
                l.trim_start()
                    .trim_start_matches("sudo ")
                    .starts_with(&format!("vfio-gen {name}"))
            })
            .count();
        assert!(own >= 2, "{name}: examples of {name} itself:\n{examples}");
        let page = std::fs::read_to_string(man.path().join(format!("vfio-gen-{name}.1"))).unwrap();
        assert!(
            page.contains(".SH EXAMPLES") && page.contains(&format!("vfio\\-gen {name}")),
            "{name}.1"
        );
    }
    let help = stdout(&run(&["render", "--help"]));
    assert!(
        help.contains(
            "Usage: vfio-gen render [-p PROFILE] [--root DIR] (--out DIR | --check DIR | --format nix|libvirt)"
        ),
        "{help}"
    );
    let help = stdout(&run(&["apply", "--help"]));
    assert!(
        help.contains("--revert\n          Take vfio-gen's changes out"),
        "{help}"
    );
    let help = stdout(&run(&["--help"]));
    assert!(
        help.contains("vfio-gen detect -o /etc/vfio-gen/profile.toml"),
        "{help}"
    );
}

/// The README's quick start runs as written on the shipped data (the binary for `cargo run
/// --release --`), and its real-host walkthrough names the steps in the order a user lives them.
#[test]
fn the_readme_quick_start_runs_and_the_walkthrough_is_in_order() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let quick = readme
        .split("## Quick start")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let stage = tempfile::tempdir().unwrap();
    let mut ran = 0;
    for line in quick
        .lines()
        .filter_map(|l| l.strip_prefix("cargo run --release -- "))
    {
        let line = line.replace("/tmp/staging", stage.path().to_str().unwrap());
        let args: Vec<&str> = line.split_whitespace().collect();
        let o = run(&args);
        status(&o, 0);
        ran += 1;
    }
    assert_eq!(ran, 4, "{quick}");
    let walk = readme
        .split("## On a real host")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let steps = [
        "`sudo vfio-gen check`",
        "`sudo vfio-gen detect -o /etc/vfio-gen/profile.toml`",
        "**Read it.**",
        "`sudo vfio-gen plan`",
        "`sudo vfio-gen apply`",
        "`sudo vfio-gen check -p /etc/vfio-gen/profile.toml`",
        "**Trying these steps on a fake host.**",
        "**What a failure means.**",
        "`sudo vfio-gen apply --revert`",
        "`sudo vfio-gen rollback`",
        "**7. The VM side.**",
        "<hostdev mode='subsystem' type='pci' managed='yes'>",
    ];
    let mut at = 0;
    for s in steps {
        let i = walk[at..]
            .find(s)
            .unwrap_or_else(|| panic!("{s} missing or out of order"));
        at += i + s.len();
    }
    // The VM side is one paragraph.
    let vm = walk.split("**7. The VM side.**").nth(1).unwrap();
    assert!(!vm.trim().contains("\n\n"), "{vm}");
    fake_host_walkthrough(walk);
}

/// The walkthrough's fake-host block, command by command: the fake host, the seed root copied
/// in, then each `cargo run --` line through the binary; every one exits 0 but the last
/// `check`, which waits for a reboot (3).
fn fake_host_walkthrough(walk: &str) {
    let block = walk
        .split("**Trying these steps on a fake host.**")
        .nth(1)
        .and_then(|b| b.split("```sh\n").nth(1))
        .and_then(|b| b.split("```").next())
        .expect("the fake-host block");
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path().join("host");
    let h = host.to_str().unwrap();
    let lines: Vec<String> = block
        .lines()
        .map(|l| {
            l.split(" # ")
                .next()
                .unwrap()
                .trim()
                .replace("/tmp/host", h)
        })
        .collect();
    let mut checks = Vec::new();
    for line in &lines {
        if let Some(args) = line.strip_prefix("cargo run --example fake-host -- ") {
            let (desc, root) = args.split_once(' ').unwrap();
            fake_host::build(&repo().join(desc), Path::new(root)).unwrap();
        } else if let Some(args) = line.strip_prefix("cp -a ") {
            let (from, to) = args.split_once(' ').unwrap();
            let o = Command::new("cp")
                .args(["-a", from, to])
                .current_dir(repo())
                .output()
                .unwrap();
            assert!(o.status.success(), "{line}: {}", stderr(&o));
        } else if let Some(args) = line.strip_prefix("cargo run -- ") {
            let args: Vec<&str> = args.split_whitespace().collect();
            let o = run(&args);
            checks.push((line.clone(), o));
        } else {
            panic!("a line the test does not know: {line}");
        }
    }
    let n = checks.len();
    assert_eq!(n, 5, "{block}");
    for (i, (line, o)) in checks.iter().enumerate() {
        assert_eq!(
            o.status.code(),
            Some(if i + 1 == n { 3 } else { 0 }),
            "{line}:\n{}{}",
            stdout(o),
            stderr(o)
        );
    }
    assert!(stdout(&checks[n - 1].1).contains("State: applied, not rebooted."));
}
