//! The shell words of a GRUB file: quotes, backslashes, substitutions and comments, the way
//! `sh` splits them, and the grammar check every file passes first (docs/grub.md).

use super::line_of;
use anyhow::Result;

/// A word at the top level of a shell file.
#[derive(Debug, Clone, Copy)]
pub(super) struct Word {
    pub(super) start: usize,
    pub(super) end: usize,
    /// The first word of a command (after a newline, `;`, `&&`, `||`, `|`, `&`, `(`, `)`).
    pub(super) first: bool,
    /// The command runs only sometimes, or in a subshell: after `&&`, `||`, in a pipeline or
    /// in the background.
    pub(super) cond: bool,
}

pub(super) fn unclosed(src: &[u8], path: &str, start: usize) -> anyhow::Error {
    anyhow::anyhow!(
        "{path}: line {}: a quote or substitution opened here is never closed; `sh -n {path}` fails too, fix the file by hand",
        line_of(src, start)
    )
}

/// Splits a shell file into words and control operators, the way `sh` does, without
/// interpreting them: quotes, backslashes, `$(...)`, `${...}` and backticks stay inside words;
/// redirections and their targets, comments and here-document bodies are skipped.
pub(super) fn words(src: &[u8], path: &str) -> Result<Vec<Word>> {
    let n = src.len();
    let mut out: Vec<Word> = Vec::new();
    let (mut p, mut first, mut cond) = (0, true, false);
    let mut command_start = 0; // index in `out` of the current command's first word
    let mut heredocs: Vec<(Vec<u8>, bool)> = Vec::new();
    while p < n {
        match src[p] {
            b' ' | b'\t' | b'\r' => p += 1,
            b'\\' if src.get(p + 1) == Some(&b'\n') => p += 2,
            b'\n' => {
                p += 1;
                (first, cond) = (true, false);
                command_start = out.len();
                // Here-document bodies start on the next line and end at their delimiter.
                for (delim, strip_tabs) in std::mem::take(&mut heredocs) {
                    loop {
                        if p >= n {
                            return Err(unclosed(src, path, p.saturating_sub(1)));
                        }
                        let end = src[p..]
                            .iter()
                            .position(|&b| b == b'\n')
                            .map(|i| p + i)
                            .unwrap_or(n);
                        let mut line = &src[p..end];
                        if line.last() == Some(&b'\r') {
                            line = &line[..line.len() - 1];
                        }
                        if strip_tabs {
                            line = &line[line.iter().take_while(|&&b| b == b'\t').count()..];
                        }
                        p = (end + 1).min(n);
                        if line == delim.as_slice() {
                            break;
                        }
                    }
                }
            }
            b';' => {
                p += 1;
                (first, cond) = (true, false);
                command_start = out.len();
            }
            b'&' | b'|' => {
                let double = src.get(p + 1) == Some(&src[p]);
                if !double {
                    // A pipeline element or a background job runs in a subshell: nothing it
                    // assigns stays.
                    for w in &mut out[command_start..] {
                        w.cond = true;
                    }
                }
                p += if double { 2 } else { 1 };
                (first, cond) = (true, true);
                command_start = out.len();
            }
            b'#' => {
                while p < n && src[p] != b'\n' {
                    p += 1;
                }
            }
            b'(' | b')' => {
                out.push(Word {
                    start: p,
                    end: p + 1,
                    first: true,
                    cond,
                });
                p += 1;
                first = true;
                command_start = out.len();
            }
            b'<' | b'>' => {
                // A redirection: the operator, then its target word (or a here-document).
                let here = src[p..].starts_with(b"<<") && !src[p..].starts_with(b"<<<");
                let strip_tabs = src[p..].starts_with(b"<<-");
                p += 1;
                while p < n && matches!(src[p], b'<' | b'>' | b'&' | b'|' | b'-') {
                    p += 1;
                }
                while p < n && matches!(src[p], b' ' | b'\t') {
                    p += 1;
                }
                let start = p;
                p = word_end(src, p).ok_or_else(|| unclosed(src, path, start))?;
                if here {
                    let delim: Vec<u8> = src[start..p]
                        .iter()
                        .copied()
                        .filter(|&b| !matches!(b, b'\'' | b'"' | b'\\'))
                        .collect();
                    heredocs.push((delim, strip_tabs));
                }
            }
            _ => {
                let start = p;
                p = word_end(src, p).ok_or_else(|| unclosed(src, path, start))?;
                if p == start {
                    // Nothing a word can hold: step over it rather than loop.
                    p += 1;
                    continue;
                }
                out.push(Word {
                    start,
                    end: p,
                    first,
                    cond,
                });
                first = false;
            }
        }
    }
    if !heredocs.is_empty() {
        return Err(unclosed(src, path, n.saturating_sub(1)));
    }
    Ok(out)
}

/// Where a word starting at `p` ends; `None` when a quote or substitution is never closed.
pub(super) fn word_end(src: &[u8], mut p: usize) -> Option<usize> {
    let n = src.len();
    while p < n {
        match src[p] {
            b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')' => break,
            b'\r' if src.get(p + 1) == Some(&b'\n') => break,
            b'\\' => p += 2,
            b'\'' => p = single(src, p + 1)?,
            b'"' => p = closing(src, p + 1, b'"')?,
            b'`' => p = closing(src, p + 1, b'`')?,
            b'$' if src.get(p + 1) == Some(&b'(') => p = parens(src, p + 1)?,
            b'$' if src.get(p + 1) == Some(&b'{') => p = braces(src, p + 2)?,
            _ => p += 1,
        }
    }
    Some(p.min(n))
}

/// After an opening `'` at `p - 1`: where the text after the closing one starts.
pub(super) fn single(src: &[u8], p: usize) -> Option<usize> {
    src[p..].iter().position(|&b| b == b'\'').map(|i| p + i + 1)
}

/// After an opening `"` or backtick at `p - 1`: where the text after its closing one starts.
pub(super) fn closing(src: &[u8], mut p: usize, quote: u8) -> Option<usize> {
    while p < src.len() {
        match src[p] {
            b'\\' => p += 2,
            b'$' if quote == b'"' && src.get(p + 1) == Some(&b'(') => p = parens(src, p + 1)?,
            b'$' if quote == b'"' && src.get(p + 1) == Some(&b'{') => p = braces(src, p + 2)?,
            // Inside double quotes a backquote runs to its own closing one (docs/grub.md).
            b'`' if quote == b'"' => p = closing(src, p + 1, b'`')?,
            b if b == quote => return Some(p + 1),
            _ => p += 1,
        }
    }
    None
}

/// Inside `${` (from `p`): where the text after the matching `}` starts. Quotes inside the
/// braces are shell quotes (`${X:-"}"}`).
pub(super) fn braces(src: &[u8], mut p: usize) -> Option<usize> {
    while p < src.len() {
        match src[p] {
            b'}' => return Some(p + 1),
            b'\\' => p += 2,
            b'\'' => p = single(src, p + 1)?,
            b'"' => p = closing(src, p + 1, b'"')?,
            b'$' if src.get(p + 1) == Some(&b'{') => p = braces(src, p + 2)?,
            b'$' if src.get(p + 1) == Some(&b'(') => p = parens(src, p + 1)?,
            _ => p += 1,
        }
    }
    None
}

/// After `$` at `p - 1` with `(` at `p`: where the text after the matching `)` starts.
/// Quotes, nested substitutions and comments inside count as the shell counts them.
pub(super) fn parens(src: &[u8], mut p: usize) -> Option<usize> {
    let mut depth = 0;
    let mut word_start = true;
    while p < src.len() {
        let b = src[p];
        match b {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(p + 1);
                }
            }
            b'\\' => p += 1,
            b'\'' => p = single(src, p + 1)? - 1,
            b'"' => p = closing(src, p + 1, b'"')? - 1,
            b'`' => p = closing(src, p + 1, b'`')? - 1,
            b'#' if word_start => {
                while p < src.len() && src[p] != b'\n' {
                    p += 1;
                }
                continue;
            }
            _ => {}
        }
        word_start = matches!(b, b' ' | b'\t' | b'\n' | b';' | b'(' | b'|' | b'&');
        p += 1;
    }
    None
}

/// Refuses a file `sh` cannot parse, or parses differently from what vfio-gen follows, naming
/// the line and what to fix (docs/grub.md).
pub fn syntax(src: &[u8], path: &str) -> Result<()> {
    crate::sh_grammar::check(src).map_err(|e| {
        let why = if e.sh_rejects {
            "`sh -n` rejects it too, and grub-mkconfig would stop on it"
        } else {
            "sh fails on it when grub-mkconfig reads the file, or shells disagree about it (docs/grub.md)"
        };
        anyhow::anyhow!(
            "{path}: {e}. {why}; fix the file by hand, then run vfio-gen again (it changed nothing)"
        )
    })
}
