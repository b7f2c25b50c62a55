//! Text from the host (sysfs names, pci.ids, edited files, arguments) printed with its control
//! characters escaped, so a file or a device name cannot drive the terminal (an ESC starting a
//! colour, a cursor move or an OSC title sequence).

use std::borrow::Cow;

/// Whether `c` is a control character a terminal may act on (C0 and DEL, and C1).
fn is_control(c: char) -> bool {
    c.is_control()
}

fn escape<'a>(s: &'a str, keep: &[char]) -> Cow<'a, str> {
    if !s.chars().any(|c| is_control(c) && !keep.contains(&c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_control(c) && !keep.contains(&c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Escapes every control character but newline and tab (for multi-line text: file contents,
/// diffs, messages), as Rust writes them: ESC becomes `\u{1b}`.
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, &['\n', '\t'])
}

/// Escapes every control character, newline and tab too (for a value shown on one line: a
/// device or driver name).
pub fn one_line(s: &str) -> Cow<'_, str> {
    escape(s, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_c0_c1_and_del_and_keeps_the_rest() {
        assert_eq!(text("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(
            text("nul\0 del\x7f c1\u{9b}"),
            "nul\\u{0} del\\u{7f} c1\\u{9b}"
        );
        assert_eq!(text("two\nlines\twith tab"), "two\nlines\twith tab");
        assert_eq!(one_line("two\nlines\t"), "two\\u{a}lines\\u{9}");
        assert!(matches!(text("plain — ünïcode"), Cow::Borrowed(_)));
    }
}
