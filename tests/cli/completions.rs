//! `vfio-gen completions SHELL` in the real shells: the script each prints is loaded into bash,
//! zsh and fish, and completing `vfio-gen plan --` must offer plan's own options.

use super::*;

/// The script for `shell`, written to `dir/file`.
fn script(shell: &str, dir: &Path, file: &str) -> PathBuf {
    let o = run(&["completions", shell]);
    status(&o, 0);
    let p = dir.join(file);
    std::fs::write(&p, &o.stdout).unwrap();
    p
}

/// What a shell offers, and that it lists `--profile` and `--exit-code` (plan's own) and not
/// `--yes` (apply's).
#[track_caller]
fn offers_plan_options(shell: &str, offered: &str) {
    for want in ["--profile", "--exit-code", "--format"] {
        assert!(
            offered.contains(want),
            "{shell} offers no {want}:\n{offered}"
        );
    }
    assert!(
        !offered.contains("--yes"),
        "{shell} offers apply's --yes:\n{offered}"
    );
}

#[test]
fn bash_completes_a_subcommands_options() {
    if !have("bash") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = script("bash", tmp.path(), "vfio-gen.bash");
    // What readline does on TAB: COMP_WORDS/COMP_CWORD set, then the function `complete -p`
    // names called with the command, the word and the word before it.
    let o = Command::new("bash")
        .arg("--norc")
        .arg("-c")
        .arg(
            r#"source "$1" || exit 9
spec=$(complete -p vfio-gen) || exit 8
fn=$(printf '%s\n' "$spec" | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
COMP_WORDS=(vfio-gen plan --); COMP_CWORD=2; COMP_LINE='vfio-gen plan --'; COMP_POINT=${#COMP_LINE}
"$fn" vfio-gen -- plan
printf '%s\n' "${COMPREPLY[@]}""#,
        )
        .arg("bash")
        .arg(&file)
        .env_clear()
        .output()
        .unwrap();
    status(&o, 0);
    offers_plan_options("bash", &stdout(&o));
    // The top level still works.
    let o = Command::new("bash")
        .args(["--norc", "-c"])
        .arg(r#"source "$1"; COMP_WORDS=(vfio-gen pl); COMP_CWORD=1; _vfio__gen vfio-gen pl vfio-gen; printf '%s\n' "${COMPREPLY[@]}""#)
        .arg("bash")
        .arg(&file)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(stdout(&o).trim(), "plan", "{}", stderr(&o));
}

#[test]
fn fish_completes_a_subcommands_options() {
    if !have("fish") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = script("fish", tmp.path(), "vfio-gen.fish");
    let o = Command::new("fish")
        .arg("--no-config")
        .arg("-c")
        .arg("source $argv[1]; and complete --do-complete 'vfio-gen plan --'")
        .arg(&file)
        .env_clear()
        .env("HOME", tmp.path())
        .output()
        .unwrap();
    status(&o, 0);
    offers_plan_options("fish", &stdout(&o));
}

/// zsh completes only inside its line editor: a zsh on a pseudo-terminal (zsh/zpty) loads
/// the script through compinit, gets `vfio-gen plan --` and a TAB, and its screen is read.
#[test]
fn zsh_completes_a_subcommands_options() {
    if !have("zsh") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    script("zsh", tmp.path(), "_vfio-gen");
    let driver = r#"zmodload zsh/zpty || exit 9
zpty z zsh -f -i || exit 8
zpty -w z "PS1='> '; fpath=(${(q)1} \$fpath); autoload -Uz compinit; compinit -u -D; zstyle ':completion:*' list-prompt ''; LISTMAX=1000"
zpty -w -n z $'vfio-gen plan --\t'
out=''
for i in {1..100}; do
  while zpty -r -t z chunk; do out+=$chunk; done
  [[ $out == *--verbose* ]] && break
  sleep 0.1
done
zpty -d z
print -r -- "$out""#;
    let o = Command::new("timeout")
        .args(["30", "zsh", "-f", "-c", driver, "zsh"])
        .arg(tmp.path())
        .env_clear()
        .env("HOME", tmp.path())
        .env("TERM", "dumb")
        .output()
        .unwrap();
    status(&o, 0);
    // Only what follows the typed line is the completion listing.
    let screen = stdout(&o).replace('\r', "");
    let listing = screen
        .rsplit_once("vfio-gen plan --")
        .map(|(before, after)| {
            // The list may be drawn below the line, or the line redrawn after the list.
            if after.contains("--profile") {
                after.to_string()
            } else {
                before.to_string()
            }
        })
        .unwrap_or_default();
    offers_plan_options("zsh", &listing);
}
