//! `apply` and `rollback` on temporary roots: the transaction, backups, lock, hooks, and what a
//! crash, a full disk or a read-only file system leave behind.

use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn apply_args<'a>(name: &'a str, root: &'a str, extra: &[&'a str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "apply".into(),
        "-p".into(),
        format!("profiles/{name}.toml"),
        "--root".into(),
        root.into(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    // Its preset sets ALL_config, which apply refuses without --force (docs/mkinitcpio.md);
    // these tests are about what apply writes, so they install anyway.
    if name == PRESET_CONFIG_TRAP && !extra.contains(&"--revert") {
        v.push("--force".into());
    }
    v
}

/// The id of the backup a rollback kept of the state before it ("... kept as ID).").
fn kept_as(o: &Output) -> String {
    stdout(o)
        .split("kept as ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .expect("rollback names its backup")
        .to_string()
}

/// `apply` that must succeed.
#[track_caller]
fn apply_ok(name: &str, root: &str, extra: &[&str]) {
    status(&vg(&apply_args(name, root, extra)), 0);
}

fn vg(args: &[String]) -> Output {
    Vg::new(args).output()
}

/// Files under the root outside vfio-gen's state directory.
fn user_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    tree(root)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("var/lib/vfio-gen"))
        .collect()
}

fn no_temp_files(root: &Path) {
    let temps: Vec<String> = tree(root)
        .into_keys()
        .filter(|k| k.contains(".vfio-gen-tmp"))
        .collect();
    assert!(temps.is_empty(), "leftover temporary files: {temps:?}");
}

#[test]
fn apply_then_plan_is_in_sync_and_revert_restores_the_original_bytes() {
    for name in profiles() {
        let tmp = copy_root(&name);
        let root = tmp.path().to_str().unwrap();
        apply_ok(&name, root, &["--yes"]);
        let profile = format!("profiles/{name}.toml");
        status(
            &run(&["plan", "-p", &profile, "--root", root, "--exit-code"]),
            0,
        );
        let o = vg(&apply_args(&name, root, &["--yes"]));
        status(&o, 0);
        assert!(
            stdout(&o).contains("Nothing to do"),
            "{name}: apply twice changes nothing"
        );
        let backups = std::fs::read_dir(tmp.path().join("var/lib/vfio-gen/backups"))
            .unwrap()
            .count();
        assert_eq!(backups, 1, "{name}: nothing to do makes no backup");

        apply_ok(&name, root, &["--yes", "--revert"]);
        status(
            &run(&[
                "plan",
                "-p",
                &profile,
                "--root",
                root,
                "--revert",
                "--exit-code",
            ]),
            0,
        );
        let before = tree(&fixture_root(&name));
        let after = user_tree(tmp.path());
        for (path, bytes) in &before {
            assert!(
                after.get(path) == Some(bytes),
                "{name}: {path} is not back to its original bytes"
            );
        }
        let extra: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
        assert!(extra.is_empty(), "{name}: revert leaves {extra:?}");
        no_temp_files(tmp.path());
    }
}

#[test]
fn rollback_restores_bytes_mode_and_owner() {
    let tmp = copy_root("amd-gpu-amdgpu-softdep");
    let root = tmp.path().to_str().unwrap();
    let grub = tmp.path().join("etc/default/grub");
    std::fs::set_permissions(&grub, std::fs::Permissions::from_mode(0o600)).unwrap();
    let is_root = nix::unistd::geteuid().is_root();
    if is_root {
        nix::unistd::chown(&grub, Some(1234.into()), Some(4321.into())).unwrap();
    }
    let original = std::fs::read(&grub).unwrap();
    apply_ok("amd-gpu-amdgpu-softdep", root, &["--yes"]);
    let meta = std::fs::metadata(&grub).unwrap();
    assert_ne!(std::fs::read(&grub).unwrap(), original);
    assert_eq!(meta.mode() & 0o7777, 0o600, "apply keeps the mode");
    if is_root {
        assert_eq!(
            (meta.uid(), meta.gid()),
            (1234, 4321),
            "apply keeps the owner"
        );
    }
    let created = std::fs::metadata(tmp.path().join("etc/modprobe.d/vfio.conf")).unwrap();
    assert_eq!(created.mode() & 0o7777, 0o644, "new files are 0644");

    let o = run(&[
        "rollback",
        "--root",
        root,
        "-p",
        "profiles/amd-gpu-amdgpu-softdep.toml",
    ]);
    status(&o, 0);
    let kept = kept_as(&o);
    assert_eq!(std::fs::read(&grub).unwrap(), original);
    let meta = std::fs::metadata(&grub).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600, "rollback keeps the mode");
    if is_root {
        assert_eq!(
            (meta.uid(), meta.gid()),
            (1234, 4321),
            "rollback keeps the owner"
        );
    }
    assert_eq!(
        user_tree(tmp.path()).len(),
        tree(&fixture_root("amd-gpu-amdgpu-softdep")).len(),
        "created files are gone"
    );
    let list = stdout(&run(&["rollback", "--list", "--root", root]));
    assert!(
        list.contains("apply, rolled back (3 files)") && list.contains("rollback of "),
        "{list}"
    );
    let o = run(&["rollback", "--root", root]);
    status(&o, 2);
    assert!(
        stderr(&o).contains("nothing to roll back"),
        "{}",
        stderr(&o)
    );
    // The rollback itself is a transaction with a backup: rolling it back re-applies.
    status(&run(&["rollback", "--root", root, "--no-hooks", &kept]), 0);
    status(
        &run(&[
            "plan",
            "-p",
            "profiles/amd-gpu-amdgpu-softdep.toml",
            "--root",
            root,
            "--exit-code",
        ]),
        0,
    );
}

#[test]
fn rollback_refuses_files_changed_by_hand() {
    let tmp = copy_root("amd-grub");
    let root = tmp.path().to_str().unwrap();
    apply_ok("amd-grub", root, &["--yes"]);
    let grub = tmp.path().join("etc/default/grub");
    let mut text = std::fs::read_to_string(&grub).unwrap();
    text.push_str("GRUB_TIMEOUT=1\n");
    std::fs::write(&grub, &text).unwrap();
    let o = run(&["rollback", "--root", root, "--no-hooks"]);
    status(&o, 2);
    assert!(
        stderr(&o).contains("/etc/default/grub") && stderr(&o).contains("--force"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(&grub).unwrap(),
        text,
        "nothing restored"
    );
    status(
        &run(&["rollback", "--root", root, "--force", "--no-hooks"]),
        0,
    );
    assert_eq!(
        std::fs::read(&grub).unwrap(),
        std::fs::read(fixture_root("amd-grub").join("etc/default/grub")).unwrap()
    );
}

#[test]
fn apply_without_a_terminal_needs_yes() {
    let tmp = copy_root("amd-grub");
    let o = vg(&apply_args("amd-grub", tmp.path().to_str().unwrap(), &[]));
    status(&o, 2);
    assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));
    assert!(
        tree(tmp.path()) == tree(&fixture_root("amd-grub")),
        "a refused run changes nothing, not even a lock file"
    );
    // A "y" on a stdin that is not a terminal is no confirmation.
    Vg::new(&apply_args("amd-grub", tmp.path().to_str().unwrap(), &[]))
        .stdin("y\n")
        .status(2)
        .stderr_has("--yes")
        .run();
    assert!(tree(tmp.path()) == tree(&fixture_root("amd-grub")));
}

#[test]
fn a_symlink_leading_out_of_the_root_is_refused() {
    let tmp = copy_root("amd-grub");
    let grub = tmp.path().join("etc/default/grub");
    std::fs::remove_file(&grub).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../tmp/outside-grub", &grub).unwrap();
    let o = vg(&apply_args(
        "amd-grub",
        tmp.path().to_str().unwrap(),
        &["--yes"],
    ));
    status(&o, 2);
    assert!(stderr(&o).contains("outside"), "{}", stderr(&o));
    assert!(
        !tmp.path().join("etc/modprobe.d/vfio.conf").exists(),
        "nothing written"
    );
}

#[test]
fn a_symlink_inside_the_root_is_followed() {
    let tmp = copy_root("amd-grub");
    let grub = tmp.path().join("etc/default/grub");
    std::fs::rename(&grub, tmp.path().join("etc/default/grub.real")).unwrap();
    std::os::unix::fs::symlink("/etc/default/grub.real", &grub).unwrap();
    apply_ok("amd-grub", tmp.path().to_str().unwrap(), &["--yes"]);
    assert!(
        std::fs::symlink_metadata(&grub)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link stays a link"
    );
    assert!(
        std::fs::read_to_string(tmp.path().join("etc/default/grub.real"))
            .unwrap()
            .contains("iommu=pt")
    );
}

#[test]
fn the_lock_keeps_applies_apart() {
    let tmp = copy_root("amd-grub");
    let root = tmp.path().to_str().unwrap();
    let lock_path = tmp.path().join("var/lib/vfio-gen/lock");
    std::fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(&lock_path).unwrap();
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let o = vg(&apply_args("amd-grub", root, &["--yes", "--no-wait"]));
    status(&o, 2);
    assert!(stderr(&o).contains("another vfio-gen"), "{}", stderr(&o));
    assert!(!tmp.path().join("etc/modprobe.d/vfio.conf").exists());

    let mut waiting = Command::new(BIN)
        .args(apply_args("amd-grub", root, &["--yes"]))
        .current_dir(repo())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "the second apply waits for the lock"
    );
    drop(held);
    let o = waiting.wait_with_output().unwrap();
    status(&o, 0);
    assert!(
        stderr(&o).contains("waiting for another vfio-gen"),
        "{}",
        stderr(&o)
    );

    // Two at once: both succeed, one after the other, and the result is one apply.
    let tmp = copy_root("arch-intel-systemd-boot");
    let root = tmp.path().to_str().unwrap();
    let spawn = || {
        Command::new(BIN)
            .args(apply_args("arch-intel-systemd-boot", root, &["--yes"]))
            .current_dir(repo())
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap(), b.join().unwrap())
    });
    status(&a, 0);
    status(&b, 0);
    assert!(
        stdout(&a).contains("Nothing to do") != stdout(&b).contains("Nothing to do"),
        "exactly one of them applied"
    );
    status(
        &run(&[
            "plan",
            "-p",
            "profiles/arch-intel-systemd-boot.toml",
            "--root",
            root,
            "--exit-code",
        ]),
        0,
    );
}

/// Stand-in generators first on PATH record their runs in a log.
pub(crate) fn stand_ins(dir: &Path, fail: &[&str]) -> String {
    for name in [
        "mkinitcpio",
        "grub-mkconfig",
        "update-grub",
        "dracut",
        "update-initramfs",
        "chroot",
    ] {
        let body = if fail.contains(&name) {
            format!(
                "#!/bin/sh\necho \"{name} $*\" >> \"$HOOK_LOG\"\necho \"{name}: cannot write the image\" >&2\nexit 3\n"
            )
        } else {
            format!("#!/bin/sh\necho \"{name} $*\" >> \"$HOOK_LOG\"\n")
        };
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn hooks_run_in_order_only_for_changed_inputs() {
    let tmp = copy_root("amd-grub");
    let bin = tempfile::tempdir().unwrap();
    let log = bin.path().join("log");
    let path = stand_ins(bin.path(), &[]);
    let go = |extra: &[&str]| {
        Command::new(BIN)
            .args(apply_args("amd-grub", tmp.path().to_str().unwrap(), extra))
            .current_dir(repo())
            .env("PATH", &path)
            .env("HOOK_LOG", &log)
            .output()
            .unwrap()
    };
    status(&go(&["--yes", "--hooks", "host"]), 0);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "mkinitcpio -P\ngrub-mkconfig -o /boot/grub/grub.cfg\n"
    );
    std::fs::remove_file(&log).unwrap();
    status(&go(&["--yes", "--hooks", "host"]), 0);
    assert!(!log.exists(), "nothing changed, nothing runs");

    // Only GRUB changes: only grub-mkconfig runs. With --no-hooks nothing runs but it says what to run.
    let grub = tmp.path().join("etc/default/grub");
    std::fs::write(
        &grub,
        std::fs::read_to_string(&grub)
            .unwrap()
            .replace(" iommu=pt", ""),
    )
    .unwrap();
    let o = go(&["--yes", "--no-hooks"]);
    status(&o, 0);
    assert!(
        stdout(&o).contains("run by hand")
            && stdout(&o).contains("grub-mkconfig")
            && !stdout(&o).contains("mkinitcpio -P"),
        "{}",
        stdout(&o)
    );
    assert!(!log.exists());
    std::fs::write(
        &grub,
        std::fs::read_to_string(&grub)
            .unwrap()
            .replace(" iommu=pt", ""),
    )
    .unwrap();
    status(&go(&["--yes", "--hooks", "host"]), 0);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "grub-mkconfig -o /boot/grub/grub.cfg\n"
    );
}

#[test]
fn a_failing_hook_is_reported_and_the_files_stay() {
    let tmp = copy_root("amd-grub");
    let bin = tempfile::tempdir().unwrap();
    let log = bin.path().join("log");
    let path = stand_ins(bin.path(), &["mkinitcpio"]);
    let o = Command::new(BIN)
        .args(apply_args(
            "amd-grub",
            tmp.path().to_str().unwrap(),
            &["--yes", "--hooks", "host", "--format", "json"],
        ))
        .current_dir(repo())
        .env("PATH", &path)
        .env("HOOK_LOG", &log)
        .output()
        .unwrap();
    // 3: the files are installed, a hook failed (2 would mean nothing was written).
    status(&o, 3);
    assert!(
        stderr(&o).contains("mkinitcpio -P failed") && stderr(&o).contains("rollback"),
        "{}",
        stderr(&o)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["hooks"][0]["status"], "failed");
    assert!(
        v["hooks"][0]["output"]
            .as_str()
            .unwrap()
            .contains("cannot write the image")
    );
    assert_eq!(v["hooks"][1]["status"], "ok", "the next hook still runs");
    assert!(v["id"].is_string() && v["changes"].as_array().unwrap().len() == 4);
    assert!(
        tmp.path().join("etc/modprobe.d/vfio.conf").exists(),
        "the installed files stay"
    );

    // The failed hook is remembered: plan names it (and --exit-code says work is pending),
    // the next apply runs it again although the files match, and then it is forgotten.
    let root = tmp.path().to_str().unwrap();
    let o = run(&[
        "plan",
        "-p",
        "profiles/amd-grub.toml",
        "--root",
        root,
        "--exit-code",
    ]);
    status(&o, 1);
    assert!(
        stdout(&o).contains("`mkinitcpio -P` failed after an earlier apply"),
        "{}",
        stdout(&o)
    );
    let again = |fail: &[&str]| {
        let path = stand_ins(bin.path(), fail);
        Command::new(BIN)
            .args(apply_args("amd-grub", root, &["--yes", "--hooks", "host"]))
            .current_dir(repo())
            .env("PATH", &path)
            .env("HOOK_LOG", &log)
            .output()
            .unwrap()
    };
    let sys = tmp.path().join("sys/bus/pci/devices");
    std::fs::create_dir_all(&sys).unwrap();
    let o = run(&[
        "check",
        "--root",
        root,
        "-p",
        "profiles/amd-grub.toml",
        "--format",
        "json",
    ]);
    status(&o, 1);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == "hooks" && i["status"] == "fail"),
        "{v}"
    );
    std::fs::remove_dir_all(tmp.path().join("sys")).unwrap();
    status(&again(&["mkinitcpio"]), 3);
    std::fs::remove_file(&log).unwrap();
    let o = again(&[]);
    status(&o, 0);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "mkinitcpio -P\n",
        "only the failed one"
    );
    let o = run(&[
        "plan",
        "-p",
        "profiles/amd-grub.toml",
        "--root",
        root,
        "--exit-code",
    ]);
    status(&o, 0);
    std::fs::remove_file(&log).unwrap();
    status(&again(&[]), 0);
    assert!(!log.exists(), "nothing left to run");
}

/// Root (for mount namespaces) and `tool`, each by the skip policy (tests/support/skip.rs).
#[track_caller]
fn is_root_with(tool: &str) -> bool {
    super::skip::root("it runs vfio-gen in a private mount namespace") && have(tool)
}

/// Runs apply inside a private mount namespace where `setup` (shell) has mounted a small or
/// read-only tmpfs inside the root; returns its output.
fn apply_in_namespace(name: &str, root: &Path, setup: &str) -> Output {
    let script = format!("set -e\n{setup}\nexec \"$0\" \"$@\"");
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script, BIN])
        .args(apply_args(
            name,
            root.to_str().unwrap(),
            &["--yes", "--no-hooks"],
        ))
        .current_dir(repo())
        .env("R", root)
        .output()
        .unwrap()
}

/// The ESP entries are replaced first, then /etc/dracut.conf.d and /etc/kernel/cmdline; the
/// modprobe.d directory is a tmpfs that fails. Every file must be back as it was.
fn failing_midway(setup: &str, cause: &str) {
    let name = "endeavouros-systemd-boot-dracut";
    let tmp = copy_root(name);
    std::fs::create_dir_all(tmp.path().join("etc/modprobe.d")).unwrap();
    let o = apply_in_namespace(name, tmp.path(), setup);
    status(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("etc/modprobe.d/blacklist-nouveau.conf") && err.contains(cause),
        "{err}"
    );
    assert!(err.contains("restored"), "{err}");
    assert!(
        user_tree(tmp.path()) == tree(&fixture_root(name)),
        "every file as it was"
    );
    assert!(!tmp.path().join("var/lib/vfio-gen/journal.json").exists());
    no_temp_files(tmp.path());
}

#[test]
fn a_read_only_file_system_midway_changes_nothing() {
    if !is_root_with("unshare") {
        return;
    }
    failing_midway(
        "mount -t tmpfs -o ro,size=64k tmpfs \"$R/etc/modprobe.d\"",
        "Read-only file system",
    );
}

#[test]
fn a_full_disk_midway_changes_nothing() {
    if !is_root_with("unshare") {
        return;
    }
    failing_midway(
        "mount -t tmpfs -o size=8k tmpfs \"$R/etc/modprobe.d\"\ndd if=/dev/zero of=\"$R/etc/modprobe.d/filler\" bs=1k count=64 2>/dev/null || true\nrm -f \"$R/etc/modprobe.d/filler\"; dd if=/dev/zero of=\"$R/etc/modprobe.d/filler\" bs=1k count=8 2>/dev/null || true",
        "No space left on device",
    );
}

/// SIGKILL at random moments of a multi-file apply: every target holds its old or its new bytes,
/// and the next apply converges with no temporary file left. VFIO_GEN_KILL_RUNS sets the count
/// (default 200).
#[test]
fn killed_applies_leave_old_or_new_bytes_and_converge() {
    let runs: usize = std::env::var("VFIO_GEN_KILL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let name = "endeavouros-systemd-boot-dracut";
    let fixture = tree(&fixture_root(name));
    let done = {
        let tmp = copy_root(name);
        apply_ok(name, tmp.path().to_str().unwrap(), &["--yes", "--no-hooks"]);
        user_tree(tmp.path())
    };
    // Spread the kills over the whole run: from before the first write to after the last.
    let full = {
        let tmp = copy_root(name);
        let t = std::time::Instant::now();
        apply_ok(
            name,
            tmp.path().to_str().unwrap(),
            &["--yes", "--no-hooks", "-q"],
        );
        t.elapsed().as_micros() as u64
    };
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let (mut untouched, mut partial, mut complete) = (0, 0, 0);
    for i in 0..runs {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = std::time::Duration::from_micros(seed % (full + full / 5 + 1));
        let tmp = copy_root(name);
        let root = tmp.path().to_str().unwrap();
        let mut child = Command::new(BIN)
            .args(apply_args(name, root, &["--yes", "--no-hooks", "-q"]))
            .current_dir(repo())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        child.wait().unwrap();
        let now = user_tree(tmp.path());
        let mut new_files = 0;
        for (path, new) in &done {
            let old = fixture.get(path);
            let cur = now.get(path);
            assert!(
                cur == old || cur == Some(new),
                "run {i}: {path} is neither old nor new"
            );
            if cur == Some(new) && old != Some(new) {
                new_files += 1;
            }
        }
        let changed = done
            .iter()
            .filter(|(p, n)| fixture.get(*p) != Some(*n))
            .count();
        match new_files {
            0 => untouched += 1,
            n if n == changed => complete += 1,
            _ => partial += 1,
        }
        let o = vg(&apply_args(name, root, &["--yes", "--no-hooks"]));
        status(&o, 0);
        assert!(
            user_tree(tmp.path()) == done,
            "run {i}: the next apply converges"
        );
        no_temp_files(tmp.path());
        assert!(!tmp.path().join("var/lib/vfio-gen/journal.json").exists());
    }
    eprintln!(
        "{runs} kills over {full} µs: {untouched} before any file changed, {partial} with some files new, {complete} after all were in place"
    );
    assert!(
        runs < 50 || (untouched > 0 && partial + complete > 0),
        "the kills did not spread over the run"
    );
}

/// On a terminal apply asks; an answer other than yes writes nothing, not even the lock file.
#[test]
fn apply_asks_on_a_terminal() {
    if !have("script") {
        return;
    }
    for (answer, changed) in [("n", false), ("y", true)] {
        let tmp = copy_root("amd-grub");
        let cmd = format!(
            "{BIN} apply -p profiles/amd-grub.toml --root {} -q",
            tmp.path().display()
        );
        let o = on_terminal(&cmd, answer);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stdout(&o).contains("Apply these changes under"),
            "{}",
            stdout(&o)
        );
        let untouched = tree(tmp.path()) == tree(&fixture_root("amd-grub"));
        assert_eq!(untouched, !changed, "answer {answer}: {}", stdout(&o));
    }
}

/// A hand edit between two applies breaks the history chain: revert then takes the options
/// out instead of restoring a backup that still holds the first apply's options.
#[test]
fn revert_after_a_hand_edit_between_applies_takes_the_options_out() {
    let tmp = copy_root("amd-grub");
    let root = tmp.path().to_str().unwrap();
    apply_ok("amd-grub", root, &["--yes", "--no-hooks"]);
    let grub = tmp.path().join("etc/default/grub");
    let mut text = std::fs::read_to_string(&grub).unwrap();
    text.push_str("# my note\n");
    std::fs::write(&grub, &text).unwrap();
    let profile = tmp.path().join("p.toml");
    let body = std::fs::read_to_string(repo().join("profiles/amd-grub.toml")).unwrap();
    let body: String = body
        .lines()
        .filter(|l| !l.starts_with("extra"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        &profile,
        body.replace("[kernel]", "[kernel]\nextra = [\"video=efifb:off\"]"),
    )
    .unwrap();
    let p = profile.to_str().unwrap();
    status(
        &run(&["apply", "-p", p, "--root", root, "--yes", "--no-hooks"]),
        0,
    );
    status(
        &run(&[
            "apply",
            "-p",
            p,
            "--root",
            root,
            "--yes",
            "--no-hooks",
            "--revert",
        ]),
        0,
    );
    let after = std::fs::read_to_string(&grub).unwrap();
    for opt in [
        "amd_iommu=on",
        "iommu=pt",
        "rd.driver.pre=vfio-pci",
        "video=efifb:off",
    ] {
        assert!(!after.contains(opt), "{opt} left after revert:\n{after}");
    }
    assert!(
        after.contains("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"") && after.ends_with("# my note\n"),
        "{after}"
    );
    status(
        &run(&["plan", "-p", p, "--root", root, "--revert", "--exit-code"]),
        0,
    );
}

#[test]
fn refused_or_read_only_rollbacks_write_nothing() {
    let tmp = copy_root("amd-grub");
    let root = tmp.path().to_str().unwrap();
    let o = run(&["rollback", "--root", root]);
    status(&o, 2);
    assert!(
        stderr(&o).contains("nothing to roll back"),
        "{}",
        stderr(&o)
    );
    status(&run(&["rollback", "--list", "--root", root]), 0);
    assert!(
        tree(tmp.path()) == tree(&fixture_root("amd-grub")),
        "no lock file, no state directory"
    );
}

/// plan does not change anything, but it says that an interrupted apply is waiting.
#[test]
fn plan_notices_an_interrupted_apply() {
    let tmp = copy_root("amd-grub");
    let root = tmp.path().to_str().unwrap();
    let state = tmp.path().join("var/lib/vfio-gen");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("journal.json"), "{\"id\": \"20261125T000000Z\"}").unwrap();
    let o = plan_on("profiles/amd-grub.toml", root);
    status(&o, 0);
    assert!(
        stdout(&o).contains("an apply (20261125T000000Z) was interrupted"),
        "{}",
        stdout(&o)
    );
    assert!(
        state.join("journal.json").exists(),
        "plan leaves it for apply or rollback"
    );
    let o = vg(&apply_args("amd-grub", root, &["--yes", "--no-hooks"]));
    status(&o, 0);
    assert!(!state.join("journal.json").exists());
}

/// `--hooks chroot` runs each generator inside the root through chroot (a stand-in here).
#[test]
fn chroot_hooks_run_inside_the_root() {
    let tmp = copy_root("amd-grub");
    let bin = tempfile::tempdir().unwrap();
    let log = bin.path().join("log");
    let path = stand_ins(bin.path(), &[]);
    let root = tmp.path().to_str().unwrap();
    let o = Command::new(BIN)
        .args(apply_args(
            "amd-grub",
            root,
            &["--yes", "--hooks", "chroot"],
        ))
        .current_dir(repo())
        .env("PATH", &path)
        .env("HOOK_LOG", &log)
        .output()
        .unwrap();
    status(&o, 0);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!(
            "chroot {root} mkinitcpio -P\nchroot {root} grub-mkconfig -o /boot/grub/grub.cfg\n"
        )
    );
}

/// apply, rollback, rollback of that rollback (the apply is back in effect): a plain rollback
/// undoes the apply again, and apply --revert restores the bytes from before vfio-gen.
#[test]
fn rolling_back_a_rollback_puts_the_apply_back_in_effect() {
    let tmp = copy_root("amd-gpu-amdgpu-softdep");
    let root = tmp.path().to_str().unwrap();
    let name = "amd-gpu-amdgpu-softdep";
    let original = tree(tmp.path());
    apply_ok(name, root, &["--yes", "--no-hooks"]);
    let applied = user_tree(tmp.path());
    let o = run(&["rollback", "--root", root, "--no-hooks"]);
    status(&o, 0);
    let rb = kept_as(&o);
    status(&run(&["rollback", "--root", root, "--no-hooks", &rb]), 0);
    assert!(user_tree(tmp.path()) == applied, "the apply is back");
    // A plain rollback now undoes the apply again.
    status(&run(&["rollback", "--root", root, "--no-hooks"]), 0);
    assert!(
        user_tree(tmp.path()) == original,
        "rolled back to the original"
    );
    // And once more forward, then revert: the original bytes (iommu=soft included) come back.
    apply_ok(name, root, &["--yes", "--no-hooks"]);
    apply_ok(name, root, &["--yes", "--no-hooks", "--revert"]);
    assert!(
        user_tree(tmp.path()) == original,
        "revert restores the original bytes"
    );
}

#[test]
fn revert_after_a_rollback_of_a_rollback_restores_the_original() {
    let name = "amd-gpu-amdgpu-softdep";
    let tmp = copy_root(name);
    let root = tmp.path().to_str().unwrap();
    let original = tree(tmp.path());
    apply_ok(name, root, &["--yes", "--no-hooks"]);
    let o = run(&["rollback", "--root", root, "--no-hooks"]);
    let rb = kept_as(&o);
    status(&run(&["rollback", "--root", root, "--no-hooks", &rb]), 0);
    apply_ok(name, root, &["--yes", "--no-hooks", "--revert"]);
    assert!(
        user_tree(tmp.path()) == original,
        "iommu=soft and every other byte are back"
    );
}

/// Switching to a profile that no longer produces a file removes it, and plan agrees.
#[test]
fn a_new_profile_removes_the_files_the_old_one_produced() {
    let tmp = copy_root("amd-grub");
    let root = tmp.path().to_str().unwrap();
    apply_ok("amd-grub", root, &["--yes", "--no-hooks"]);
    let bl = tmp.path().join("etc/modprobe.d/blacklist-nouveau.conf");
    assert!(bl.exists());
    let body = std::fs::read_to_string(repo().join("profiles/amd-grub.toml")).unwrap();
    let body: String = body
        .lines()
        .filter(|l| !l.starts_with("blacklist"))
        .map(|l| format!("{l}\n"))
        .collect();
    let p2 = tmp.path().join("p2.toml");
    std::fs::write(&p2, body.replace("[vfio]", "[vfio]\nblacklist = []")).unwrap();
    let p2 = p2.to_str().unwrap();
    let o = plan_on(p2, root);
    assert!(
        stdout(&o).contains("delete /etc/modprobe.d/blacklist-nouveau.conf")
            && stdout(&o).contains("for an earlier profile"),
        "{}",
        stdout(&o)
    );
    status(
        &run(&["apply", "-p", p2, "--root", root, "--yes", "--no-hooks"]),
        0,
    );
    assert!(!bl.exists());
    status(&run(&["plan", "-p", p2, "--root", root, "--exit-code"]), 0);
}

/// A hook that rewrites a file vfio-gen installed (on Debian, update-initramfs runs
/// kernel-install, which rewrites the loader entry from /etc/kernel/cmdline: seen in the lab) is
/// recorded in the manifest, so `rollback` restores the file instead of refusing it as a hand
/// edit.
#[test]
fn a_file_a_hook_rewrote_is_recorded_and_rollback_restores_it() {
    let tmp = copy_root("arch-intel-systemd-boot");
    let root = tmp.path().to_str().unwrap();
    let original = user_tree(tmp.path());
    let bin = tempfile::tempdir().unwrap();
    let entry = tmp.path().join("boot/loader/entries/arch.conf");
    let hook = bin.path().join("mkinitcpio");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nsed -i 's/ intel_iommu=on//; s/^options /options intel_iommu=on /' '{}'\n",
            entry.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new(BIN)
        .args(apply_args(
            "arch-intel-systemd-boot",
            root,
            &["--yes", "--hooks", "host"],
        ))
        .current_dir(repo())
        .env("PATH", &path)
        .output()
        .unwrap();
    status(&o, 0);
    assert!(
        stdout(&o).contains("/boot/loader/entries/arch.conf was rewritten by mkinitcpio"),
        "{}",
        stdout(&o)
    );
    let rewritten = std::fs::read_to_string(&entry).unwrap();
    assert!(
        rewritten.contains("options intel_iommu=on root="),
        "{rewritten}"
    );
    let o = run(&["rollback", "--root", root, "--no-hooks"]);
    status(&o, 0);
    assert!(
        user_tree(tmp.path()) == original,
        "every file as before the apply"
    );
}

/// `apply` run in this process through `app::run_with`: stdin and stderr are the given
/// buffers, the terminal facts made up. Returns (status, stdout, stderr).
fn apply_in_process(name: &str, root: &str, extra: &[&str], answer: &str) -> (u8, String, String) {
    use clap::Parser;
    let args = std::iter::once("vfio-gen".to_string()).chain(apply_args(name, root, extra));
    let cli = vfio_gen::cli::Cli::parse_from(args);
    let env = vfio_gen::app::Env {
        stdout_is_terminal: false,
        stdin_is_terminal: true,
        stderr_is_terminal: false,
        no_color: true,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input = answer.as_bytes();
    let code = vfio_gen::app::run_with(
        cli,
        env,
        &mut vfio_gen::app::Io {
            out: &mut out,
            err: &mut err,
            input: &mut input,
        },
    )
    .expect("apply runs");
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn apply_reads_its_answer_from_the_input_it_is_given() {
    let tmp = copy_root("amd-grub");
    let root = tmp.path().to_str().unwrap();
    let before = user_tree(tmp.path());
    let (code, out, _) = apply_in_process("amd-grub", root, &["--hooks", "none"], "n\n");
    assert_eq!(code, 0);
    assert!(out.contains("[y/N] Nothing changed."), "{out}");
    assert_eq!(user_tree(tmp.path()), before, "a no writes nothing");

    let (code, out, _) = apply_in_process("amd-grub", root, &["--hooks", "none"], "y\n");
    assert_eq!(code, 0);
    assert!(out.contains("Wrote "), "{out}");
    assert!(tmp.path().join("etc/modprobe.d/vfio.conf").exists());
}

#[test]
fn apply_says_it_waits_for_the_lock_on_the_stream_it_is_given() {
    let tmp = copy_root("amd-grub");
    let root = tmp.path().to_str().unwrap();
    let lock_path = tmp.path().join("var/lib/vfio-gen/lock");
    std::fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(&lock_path).unwrap();
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let (code, _, err) = std::thread::scope(|s| {
        let applying =
            s.spawn(|| apply_in_process("amd-grub", root, &["--yes", "--hooks", "none"], ""));
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!applying.is_finished(), "apply waits for the lock");
        drop(held);
        applying.join().unwrap()
    });
    assert_eq!(code, 0);
    assert!(err.contains("waiting for another vfio-gen"), "{err}");
}

/// A failure before the first file is replaced (the backups do not fit: /var is full) leaves no
/// backup directory behind, with or without a manifest, and every file as it was.
#[test]
fn a_failure_while_keeping_backups_leaves_no_backup_directory() {
    if !is_root_with("unshare") {
        return;
    }
    let name = "endeavouros-systemd-boot-dracut";
    let tmp = copy_root(name);
    let backups = tmp.path().join("var/lib/vfio-gen/backups");
    std::fs::create_dir_all(&backups).unwrap();
    // One page of tmpfs: the first backup fits, the second does not. What is left is listed
    // from inside the namespace, where the tmpfs is still mounted.
    let script = "set -e\nmount -t tmpfs -o size=4k tmpfs \"$R/var/lib/vfio-gen/backups\"\nset +e\n\"$0\" \"$@\"\nrc=$?\necho LEFT:; find \"$R/var/lib/vfio-gen/backups\" -mindepth 1\nexit $rc";
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, BIN])
        .args(apply_args(
            name,
            tmp.path().to_str().unwrap(),
            &["--yes", "--no-hooks"],
        ))
        .current_dir(repo())
        .env("R", tmp.path())
        .output()
        .unwrap();
    status(&o, 2);
    assert!(
        stderr(&o).contains("keeping a backup of")
            && stderr(&o).contains("No space left on device"),
        "{}",
        stderr(&o)
    );
    let left = stdout(&o);
    let left = left.split("LEFT:").nth(1).unwrap_or("?");
    assert_eq!(left.trim(), "", "left under backups/: {left}");
    assert!(
        user_tree(tmp.path()) == tree(&fixture_root(name)),
        "every file as it was"
    );
    assert!(!tmp.path().join("var/lib/vfio-gen/journal.json").exists());
}

/// With another root, `--hooks host` says before it runs them that the generators are this
/// machine's own; hooks left to run by hand are named with `chroot ROOT` and `--hooks chroot`.
#[test]
fn hooks_for_another_root_say_where_they_run() {
    let tmp = copy_root("amd-grub");
    let root = tmp.path().to_str().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let log = bin.path().join("log");
    let path = stand_ins(bin.path(), &[]);
    let o = Command::new(BIN)
        .args(apply_args("amd-grub", root, &["--yes", "--hooks", "host"]))
        .current_dir(repo())
        .env("PATH", &path)
        .env("HOOK_LOG", &log)
        .output()
        .unwrap();
    status(&o, 0);
    assert!(
        stderr(&o).contains(&format!(
            "--hooks host with --root {root}: running this machine's own `mkinitcpio -P`, `grub-mkconfig -o /boot/grub/grub.cfg`, which read this machine's /etc and write its /boot"
        )) && stderr(&o).contains("--hooks chroot runs them inside the root"),
        "{}",
        stderr(&o)
    );
    assert!(log.exists(), "they ran");

    let tmp = copy_root("amd-grub");
    let root = tmp.path().to_str().unwrap();
    let o = run(&apply_args("amd-grub", root, &["--yes", "--no-hooks"])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    status(&o, 0);
    assert!(
        stdout(&o).contains(&format!(
            "run by hand, inside the root: chroot {root} grub-mkconfig -o /boot/grub/grub.cfg (or `vfio-gen apply --hooks chroot -p profiles/amd-grub.toml --root {root}`)"
        )),
        "{}",
        stdout(&o)
    );
    assert!(!stderr(&o).contains("--hooks host"), "{}", stderr(&o));
}

/// `rollback` shows what it puts back; `--dry-run` changes nothing; on a terminal it asks
/// (`--yes` skips the question); without a profile it names the generators the restored files
/// feed, to run by hand; `--list --format json` gives the backups.
#[test]
fn rollback_shows_asks_and_names_the_generators() {
    let tmp = copy_root("amd-grub");
    let root = tmp.path().to_str().unwrap();
    apply_ok("amd-grub", root, &["--yes", "--no-hooks"]);
    let applied = tree(tmp.path());

    let o = run(&["rollback", "--root", root, "--dry-run"]);
    status(&o, 0);
    let out = stdout(&o);
    assert!(out.contains(&format!(") puts back under {root}:")), "{out}");
    assert!(
        out.contains("  restore  /etc/default/grub  (its bytes from before the apply)"),
        "{out}"
    );
    assert!(
        out.contains("  delete   /etc/modprobe.d/vfio.conf  (the apply created it)"),
        "{out}"
    );
    assert!(
        out.contains("No profile at ")
            && out.contains(&format!("  chroot {root} mkinitcpio -P\n"))
            && out.contains(&format!(
                "  chroot {root} grub-mkconfig -o /boot/grub/grub.cfg\n"
            )),
        "{out}"
    );
    assert!(out.ends_with("Nothing changed (--dry-run).\n"), "{out}");
    assert!(tree(tmp.path()) == applied, "--dry-run changes nothing");

    let o = run(&["rollback", "--list", "--format", "json", "--root", root]);
    status(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["version"], 1);
    let b = &v["backups"][0];
    assert_eq!(
        (
            b["kind"].as_str(),
            b["in_effect"].as_bool(),
            b["rolled_back"].as_bool()
        ),
        (Some("apply"), Some(true), Some(false))
    );
    assert!(
        b["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == "/etc/default/grub" && f["action"] == "modify"),
        "{b}"
    );
    let o = run(&["rollback", "--format", "json", "--root", root]);
    status(&o, 2);

    if have("script") {
        for (args, answer, restored) in [("", "n", false), ("--yes", "", true)] {
            let t = copy_root("amd-grub");
            apply_ok(
                "amd-grub",
                t.path().to_str().unwrap(),
                &["--yes", "--no-hooks"],
            );
            let before = tree(t.path());
            let cmd = format!(
                "{BIN} rollback --no-hooks {args} --root {}",
                t.path().display()
            );
            let o = on_terminal(&cmd, answer);
            assert!(o.status.success(), "{}", stderr(&o));
            let asked = stdout(&o).contains("Roll back under ");
            assert_eq!(asked, args.is_empty(), "{}", stdout(&o));
            assert!(stdout(&o).contains("puts back under"), "{}", stdout(&o));
            assert_eq!(tree(t.path()) != before, restored, "{args}: {}", stdout(&o));
        }
    }

    // No terminal: it goes ahead (scripts call `vfio-gen rollback`), saying what it put back.
    let o = run(&["rollback", "--root", root]);
    status(&o, 0);
    assert!(
        stdout(&o).contains("Restored 4 files from "),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains(&format!("  chroot {root} mkinitcpio -P")),
        "{}",
        stdout(&o)
    );
    assert!(
        user_tree(tmp.path()) == tree(&fixture_root("amd-grub")),
        "every file as before the apply"
    );
}

/// Runs `cmd` under `script`, so its stdin is a terminal, and types `answer` and Enter.
fn on_terminal(cmd: &str, answer: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf '{answer}\\n' | script -qec \"$0\" /dev/null"
        ))
        .arg(cmd)
        .current_dir(repo())
        .output()
        .unwrap()
}

/// `-q --yes` prints the outcome line only: no diff, no warnings (issue 11); without -q the same
/// apply shows the diff.
#[test]
fn quiet_apply_prints_only_the_outcome() {
    let name = "endeavouros-systemd-boot-dracut";
    let tmp = copy_root(name);
    let root = tmp.path().to_str().unwrap();
    let o = vg(&apply_args(name, root, &["--yes", "--no-hooks", "-q"]));
    status(&o, 0);
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    // The outcome, and the hook the user must run because --no-hooks skipped it.
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("Wrote 7 files"), "{out}");
    assert!(lines[1].starts_with("run by hand"), "{out}");
    assert!(!out.contains("+++") && !out.contains("create "), "{out}");
    let loud = copy_root(name);
    let o = vg(&apply_args(
        name,
        loud.path().to_str().unwrap(),
        &["--yes", "--no-hooks"],
    ));
    status(&o, 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("+++"));
}
