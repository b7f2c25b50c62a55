//! `vfio-gen completions SHELL`: clap_complete's scripts, with its bash script mended for a
//! binary name that holds a hyphen (docs/completions.md).

use clap::CommandFactory;

/// The binary's name, as the shells see it.
pub const BIN: &str = "vfio-gen";

/// The completion script for `shell`.
pub fn script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut script = Vec::new();
    // Into a buffer: clap_complete panics when its writer fails (a closed pipe).
    clap_complete::generate(shell, &mut crate::cli::Cli::command(), BIN, &mut script);
    match shell {
        clap_complete::Shell::Bash => {
            mend_bash(&String::from_utf8_lossy(&script), BIN).into_bytes()
        }
        _ => script,
    }
}

/// clap_complete's bash script names its states two ways when the binary name has a hyphen:
/// the loop that walks the words sets `cmd="vfio__gen__subcmd__plan"` (the name's `-` made
/// `__`), while the `case` arms that offer a subcommand's options read
/// `vfio__subcmd__gen__subcmd__plan` (the `-` made the subcommand separator `__subcmd__`), so no
/// arm matches below the top level (clap-rs/clap#6421, open in 4.6.12). The arms are respelled
/// the way the loop spells them.
fn mend_bash(script: &str, bin: &str) -> String {
    const SEP: &str = "__subcmd__";
    if !bin.contains('-') {
        return script.to_string();
    }
    let wrong = format!("{}{SEP}", bin.replace('-', SEP));
    let right = format!("{}{SEP}", bin.replace('-', "__"));
    script.replace(&wrong, &right)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every state the loop sets has an arm, and every arm is a state the loop can set.
    #[test]
    fn every_bash_state_has_its_arm() {
        let text = String::from_utf8(script(clap_complete::Shell::Bash)).unwrap();
        let set: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("cmd=\""))
            .filter_map(|l| l.strip_suffix('"'))
            .filter(|s| !s.is_empty())
            .collect();
        let arms: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("        ") && !l.starts_with("         "))
            .filter_map(|l| l.trim().strip_suffix(')'))
            .filter(|l| l.starts_with("vfio__"))
            .collect();
        assert!(set.len() > 10 && arms.len() > 10, "{set:?} {arms:?}");
        for s in &set {
            assert!(arms.contains(s), "no arm for state {s}");
        }
        for a in &arms {
            assert!(set.contains(a), "arm {a} is no state");
        }
    }

    #[test]
    fn a_name_without_hyphen_is_left_alone() {
        let s = "cmd=\"a__subcmd__b\"\n";
        assert_eq!(mend_bash(s, "ab"), s);
        assert_eq!(
            mend_bash("x__subcmd__y__subcmd__plan)", "x-y"),
            "x__y__subcmd__plan)"
        );
    }
}
