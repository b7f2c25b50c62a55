//! `/etc/default/grub` and its `grub.d` drop-ins: a shell file that `grub-mkconfig` sources.
//!
//! Edit mode changes only the value of the kernel command-line variables, byte for byte
//! elsewhere. The file is lexed as much of `sh` as assignments need: quotes, backslashes,
//! line continuations, `$VAR` / `${VAR}` references, `export`, comments. The value of each
//! variable is evaluated in order over the main file and the drop-ins, every byte remembering
//! the file, span and quoting it came from, so that an option can be replaced or removed where
//! it stands and new text is quoted for the place it lands. What cannot be known without running
//! the shell (command substitution, parameter operators, `+=`) is refused. Before any of that,
//! the file must pass [`super::sh::check`], vfio-gen's reading of the shell grammar: a file `sh`
//! cannot parse is never edited (docs/grub.md).

use crate::cmdline::{self, At, Byte, Edits, Opt};
use anyhow::{Result, bail};
use std::collections::BTreeMap;

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

/// A word at the top level of a shell file.
#[derive(Debug, Clone, Copy)]
struct Word {
    start: usize,
    end: usize,
    /// The first word of a command (after a newline, `;`, `&&`, `||`, `|`, `&`, `(`, `)`).
    first: bool,
    /// The command runs only sometimes, or in a subshell: after `&&`, `||`, in a pipeline or
    /// in the background.
    cond: bool,
}

fn unclosed(src: &[u8], path: &str, start: usize) -> anyhow::Error {
    anyhow::anyhow!(
        "{path}: line {}: a quote or substitution opened here is never closed; `sh -n {path}` fails too, fix the file by hand",
        line_of(src, start)
    )
}

/// Splits a shell file into words and control operators, the way `sh` does, without
/// interpreting them: quotes, backslashes, `$(...)`, `${...}` and backticks stay inside words;
/// redirections and their targets, comments and here-document bodies are skipped.
fn words(src: &[u8], path: &str) -> Result<Vec<Word>> {
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
fn word_end(src: &[u8], mut p: usize) -> Option<usize> {
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
fn single(src: &[u8], p: usize) -> Option<usize> {
    src[p..].iter().position(|&b| b == b'\'').map(|i| p + i + 1)
}

/// After an opening `"` or backtick at `p - 1`: where the text after its closing one starts.
fn closing(src: &[u8], mut p: usize, quote: u8) -> Option<usize> {
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
fn braces(src: &[u8], mut p: usize) -> Option<usize> {
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
fn parens(src: &[u8], mut p: usize) -> Option<usize> {
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
    super::sh::check(src).map_err(|e| {
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

/// The name of `NAME=` or `NAME+=` at the start of a word, and where its value starts.
fn assignment_word(w: &[u8]) -> Option<(&[u8], usize, bool)> {
    if !w.first().is_some_and(|&b| is_name_start(b)) {
        return None;
    }
    let len = w.iter().position(|&b| !is_name(b)).unwrap_or(w.len());
    match &w[len..] {
        [b'=', ..] => Some((&w[..len], len + 1, false)),
        [b'+', b'=', ..] => Some((&w[..len], len + 2, true)),
        _ => None,
    }
}

/// Lexes a shell file and returns the assignments to the variables in `names`. An assignment
/// that runs only sometimes (inside `if`, `case`, a loop, a function, after `&&`), or does not
/// stay (a subshell, before a command), is marked unsafe, unless it only appends to the variable
/// (`X="$X more"`), which then counts as text vfio-gen never edits.
/// The longest assignment text of a command-line variable that is evaluated (bytes): many
/// times the kernel's limit, so quoting and comments never reach it.
const VALUE_MAX: usize = 64 * 1024;

fn assignments(src: &[u8], file: usize, path: &str, names: &[&str]) -> Result<Vec<Assign>> {
    syntax(src, path)?;
    let words = words(src, path)?;
    let mut out = Vec::new();
    let mut open: Vec<&[u8]> = Vec::new();
    let mut lead = false;
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        let text = &src[w.start..w.end];
        let at_command = w.first || lead;
        lead = false;
        i += 1;
        if !at_command {
            // Anything else that looks like an assignment to our variables is one vfio-gen
            // cannot follow (`case` arms, `env X=...`, `eval`): refuse rather than miss it.
            if let Some((name, _, _)) = assignment_word(text)
                && names.iter().any(|n| n.as_bytes() == name)
            {
                out.push(hidden(
                    src,
                    file,
                    &w,
                    name,
                    "is assigned where vfio-gen cannot tell whether it runs",
                ));
            }
            continue;
        }
        // `NAME = "..."`: sh runs a command called NAME; the blanks around `=` are the mistake.
        if let Some(n) = names.iter().find(|n| n.as_bytes() == text)
            && i < words.len()
            && !words[i].first
            && src[words[i].start..words[i].end].starts_with(b"=")
        {
            out.push(hidden(
                src,
                file,
                &w,
                n.as_bytes(),
                &format!("= ... has a blank before `=`, so sh runs a command named {n} instead of setting the variable (the likely mistake): write {n}=\"...\" with no blank before or after `=`"),
            ));
            continue;
        }
        match text {
            b"if" | b"while" | b"until" | b"{" | b"(" => {
                open.push(text);
                lead = true;
                continue;
            }
            b"for" | b"case" | b"select" => {
                open.push(text);
                continue;
            }
            b"then" | b"else" | b"elif" | b"do" | b"!" => {
                lead = true;
                continue;
            }
            // `export A B=c`: every word after it may be an assignment.
            b"export" | b"readonly" => {
                while i < words.len()
                    && !words[i].first
                    && assignment_word(&src[words[i].start..words[i].end]).is_none()
                {
                    i += 1;
                }
                lead = i < words.len() && !words[i].first;
                continue;
            }
            // Commands that change a variable without `NAME=`, or run text vfio-gen cannot see.
            b"unset" | b"read" | b"declare" | b"typeset" | b"local" | b"eval" | b"."
            | b"source" => {
                let mut j = i;
                while j < words.len() && !words[j].first {
                    j += 1;
                }
                let args = &words[i..j];
                let touches = matches!(text, b"eval" | b"." | b"source")
                    || args.iter().any(|a| {
                        let t = &src[a.start..a.end];
                        names.iter().any(|n| {
                            t == n.as_bytes()
                                || assignment_word(t).is_some_and(|(m, _, _)| m == n.as_bytes())
                        })
                    });
                if touches {
                    let what = String::from_utf8_lossy(text).into_owned();
                    out.push(hidden(src, file, &w, b"the file", &format!("runs `{what}`, which can change the command-line variables in ways vfio-gen cannot follow")));
                }
                i = j;
                continue;
            }
            b"fi" | b"done" | b"}" => {
                open.pop();
                continue;
            }
            b"esac" => {
                while let Some(top) = open.pop() {
                    if top == b"case" {
                        break;
                    }
                }
                continue;
            }
            b")" => {
                if open.last() == Some(&&b"("[..]) {
                    open.pop();
                }
                continue;
            }
            _ => {}
        }
        // `name() { ...; }` defines a function: its body runs only when called.
        if i + 1 < words.len()
            && &src[words[i].start..words[i].end] == b"("
            && &src[words[i + 1].start..words[i + 1].end] == b")"
        {
            i += 2;
            if i >= words.len() {
                out.push(hidden(
                    src,
                    file,
                    &w,
                    b"the file",
                    "ends in a function definition without a body (`sh -n` fails too)",
                ));
            }
            lead = true;
            continue;
        }
        let Some((name, offset, appends)) = assignment_word(text) else {
            continue;
        };
        // Further assignments may follow in the same command; a command word after them makes
        // them all temporary (they only reach that command's environment).
        let mut group = vec![(w, name, offset, appends)];
        while i < words.len() && !words[i].first {
            let next = &src[words[i].start..words[i].end];
            match assignment_word(next) {
                Some((n2, o2, a2)) => group.push((words[i], n2, o2, a2)),
                None => break,
            }
            i += 1;
        }
        let temporary = i < words.len() && !words[i].first;
        let conditional = w.cond || !open.is_empty();
        for (w, name, offset, appends) in group {
            if !names.iter().any(|n| n.as_bytes() == name) {
                continue;
            }
            let name = String::from_utf8_lossy(name).into_owned();
            let value_start = w.start + offset;
            // The kernel keeps 2047 bytes of command line (docs/kernel-cmdline.md): a value
            // far beyond that is refused before it is evaluated byte by byte.
            if w.end - value_start > VALUE_MAX {
                bail!(
                    "{path}: line {}: {name} is {} bytes long; the x86 kernel keeps at most {} bytes of command line (COMMAND_LINE_SIZE 2048): shorten the value by hand",
                    line_of(src, w.start),
                    w.end - value_start,
                    cmdline::COMMAND_LINE_MAX
                );
            }
            let (segs, end, mut reason) = value(src, value_start, path)?;
            if appends {
                reason = Some(format!("'{name}+=' is not POSIX sh"));
            } else if temporary && end == value_start {
                reason = Some(format!(
                    "{name}= is followed by a blank, so sh sets {name} to nothing, and only for a command named by the next word (the likely mistake): remove the blank after `=`"
                ));
            } else if temporary {
                reason = Some(format!(
                    "{name}= here only sets the environment of the command after it"
                ));
            }
            if let Some(why) = mismatched_quotes(&src[value_start..end]) {
                reason = Some(format!("{name}: {why}"));
            }
            let self_refs = segs
                .iter()
                .filter(|s| matches!(s, Seg::Param { name: n, .. } if *n == name))
                .count();
            if self_refs > 1 {
                reason.get_or_insert_with(|| format!("the value refers to ${name} more than once"));
            }
            let only_appends = self_refs == 1
                && matches!(segs.first(), Some(Seg::Param { name: n, .. }) if *n == name);
            if conditional && !only_appends {
                reason.get_or_insert_with(|| format!("{name} is set inside an if/case/loop/function, after && or ||, or in a pipeline or background job (whether it takes effect depends on the system)"));
            }
            out.push(Assign {
                file,
                name,
                line: line_of(src, w.start),
                value_start,
                value_end: end,
                segs,
                unsafe_reason: reason,
                maybe: conditional && only_appends,
            });
        }
    }
    if let Some(top) = open.last() {
        let what = String::from_utf8_lossy(top).into_owned();
        let at = words.last().copied().unwrap_or(Word {
            start: 0,
            end: 0,
            first: true,
            cond: false,
        });
        out.push(hidden(
            src,
            file,
            &at,
            b"the file",
            &format!("ends inside a `{what}` that is never closed (`sh -n` fails too)"),
        ));
    }
    // Last line of defence: a line that assigns one of the variables but was not seen as an
    // assignment means the shell syntax around it was not followed; refuse rather than miss it.
    let seen: Vec<usize> = out.iter().map(|a| line_of(src, a.value_start)).collect();
    let mut pos = 0;
    for (k, line) in src.split(|&b| b == b'\n').enumerate() {
        let start = pos;
        pos += line.len() + 1;
        let trimmed = line
            .iter()
            .position(|&b| !matches!(b, b' ' | b'\t'))
            .map(|i| &line[i..])
            .unwrap_or(&[]);
        let trimmed = trimmed.strip_prefix(b"export ").unwrap_or(trimmed);
        if let Some((name, _, _)) = assignment_word(trimmed)
            && names.iter().any(|n| n.as_bytes() == name)
            && !seen.contains(&(k + 1))
            && !in_heredoc_or_string(&words, start)
        {
            out.push(hidden(src, file, &Word { start, end: start, first: true, cond: false }, name, "looks assigned on this line, but vfio-gen could not follow the shell syntax around it"));
        }
    }
    Ok(out)
}

/// A value that opens with one kind of quote, whose first line ends with the other kind, and
/// that runs on over lines: sh closes the quote somewhere below, which is rarely what was meant.
fn mismatched_quotes(raw: &[u8]) -> Option<String> {
    let open = *raw.first()?;
    let other = match open {
        b'\'' => b'"',
        b'"' => b'\'',
        _ => return None,
    };
    let nl = raw.iter().position(|&b| b == b'\n')?;
    let first = raw[..nl].strip_suffix(b"\r").unwrap_or(&raw[..nl]);
    let first = first.trim_ascii_end();
    (first.len() > 1 && first.last() == Some(&other)).then(|| {
        format!(
            "the value opens with {} and its line ends with {}, so sh reads on to the next {} below (the likely mistake): use the same quote on both ends",
            open as char, other as char, open as char
        )
    })
}

/// Whether a position lies inside a word that started earlier (a multi-line quoted value), so a
/// line there is not a command.
fn in_heredoc_or_string(words: &[Word], pos: usize) -> bool {
    words.iter().any(|w| w.start < pos && pos < w.end)
}

fn hidden(src: &[u8], file: usize, w: &Word, name: &[u8], why: &str) -> Assign {
    // `name` is the variable, or a phrase naming what is wrong (`the file ...`).
    let name = String::from_utf8_lossy(name).into_owned();
    Assign {
        file,
        line: line_of(src, w.start),
        value_start: w.start,
        value_end: w.end,
        segs: Vec::new(),
        unsafe_reason: Some(format!("{name} {why}")),
        name,
        maybe: false,
    }
}

/// Reads an assignment value starting at `p`; returns its segments, where it ends, and why it
/// cannot be edited safely (if so).
fn value(src: &[u8], mut p: usize, path: &str) -> Result<(Vec<Seg>, usize, Option<String>)> {
    let n = src.len();
    let mut segs = Vec::new();
    let mut ctx = Ctx::Unquoted;
    let mut reason: Option<String> = None;
    let start = p;
    loop {
        if p >= n {
            if ctx != Ctx::Unquoted {
                bail!(
                    "{path}: line {}: a quote opened here is never closed; `sh -n {path}` fails too, fix the file by hand",
                    line_of(src, start)
                );
            }
            break;
        }
        let b = src[p];
        match ctx {
            Ctx::Unquoted => match b {
                b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')' => break,
                b'\r' if src.get(p + 1) == Some(&b'\n') => break,
                b'\'' => {
                    ctx = Ctx::Single;
                    p += 1;
                }
                b'"' => {
                    ctx = Ctx::Double;
                    p += 1;
                }
                b'\\' => {
                    if src.get(p + 1) == Some(&b'\n') {
                        p += 2;
                    } else if let Some(&c) = src.get(p + 1) {
                        segs.push(Seg::Byte {
                            b: c,
                            start: p,
                            end: p + 2,
                            ctx,
                        });
                        p += 2;
                    } else {
                        reason.get_or_insert_with(|| {
                            "the value ends in a lone backslash at the end of the file".into()
                        });
                        p += 1;
                    }
                }
                b'$' | b'`' => p = dollar(src, p, ctx, &mut segs, &mut reason),
                _ => {
                    segs.push(Seg::Byte {
                        b,
                        start: p,
                        end: p + 1,
                        ctx,
                    });
                    p += 1;
                }
            },
            Ctx::Double => match b {
                b'"' => {
                    ctx = Ctx::Unquoted;
                    p += 1;
                }
                b'\\' if matches!(src.get(p + 1), Some(b'$' | b'`' | b'"' | b'\\' | b'\n')) => {
                    let c = src[p + 1];
                    if c != b'\n' {
                        segs.push(Seg::Byte {
                            b: c,
                            start: p,
                            end: p + 2,
                            ctx,
                        });
                    }
                    p += 2;
                }
                b'$' | b'`' => p = dollar(src, p, ctx, &mut segs, &mut reason),
                _ => {
                    segs.push(Seg::Byte {
                        b,
                        start: p,
                        end: p + 1,
                        ctx,
                    });
                    p += 1;
                }
            },
            Ctx::Single => {
                if b == b'\'' {
                    ctx = Ctx::Unquoted;
                } else {
                    segs.push(Seg::Byte {
                        b,
                        start: p,
                        end: p + 1,
                        ctx,
                    });
                }
                p += 1;
            }
        }
    }
    Ok((segs, p, reason))
}

/// Handles `$...` or a backtick at `p`; returns where lexing goes on.
fn dollar(
    src: &[u8],
    p: usize,
    ctx: Ctx,
    segs: &mut Vec<Seg>,
    reason: &mut Option<String>,
) -> usize {
    let n = src.len();
    let unsafe_at = |reason: &mut Option<String>, what: &str| {
        reason.get_or_insert_with(|| {
            format!("the value uses {what}, which only the shell can compute")
        });
    };
    if src[p] == b'`' {
        unsafe_at(reason, "command substitution (`...`)");
        let mut q = p + 1;
        while q < n && src[q] != b'`' {
            q += if src[q] == b'\\' { 2 } else { 1 };
        }
        return (q + 1).min(n);
    }
    match src.get(p + 1) {
        Some(b'\'') if ctx == Ctx::Unquoted => {
            unsafe_at(reason, "$'...', which shells read differently");
            segs.push(Seg::Byte {
                b: b'$',
                start: p,
                end: p + 1,
                ctx,
            });
            p + 1
        }
        Some(b'(') => {
            unsafe_at(reason, "command substitution $(...)");
            let mut depth = 0;
            let mut q = p + 1;
            while q < n {
                match src[q] {
                    b'(' => depth += 1,
                    b')' => {
                        depth -= 1;
                        if depth == 0 {
                            return q + 1;
                        }
                    }
                    _ => {}
                }
                q += 1;
            }
            n
        }
        Some(b'{') => {
            let mut q = p + 2;
            while q < n && is_name(src[q]) {
                q += 1;
            }
            let name = String::from_utf8_lossy(&src[p + 2..q]).into_owned();
            if src.get(q) == Some(&b'}') && !name.is_empty() && is_name_start(src[p + 2]) {
                segs.push(Seg::Param {
                    name,
                    bare_end: None,
                });
                return q + 1;
            }
            unsafe_at(reason, "a parameter expansion with an operator (${...})");
            while q < n && src[q] != b'}' {
                q += 1;
            }
            (q + 1).min(n)
        }
        Some(&c) if is_name_start(c) => {
            let mut q = p + 1;
            while q < n && is_name(src[q]) {
                q += 1;
            }
            segs.push(Seg::Param {
                name: String::from_utf8_lossy(&src[p + 1..q]).into_owned(),
                bare_end: Some(q),
            });
            q
        }
        Some(&c)
            if c.is_ascii_digit()
                || matches!(c, b'@' | b'*' | b'#' | b'?' | b'-' | b'$' | b'!') =>
        {
            unsafe_at(reason, "a special parameter ($1, $@, ...)");
            p + 2
        }
        _ => {
            segs.push(Seg::Byte {
                b: b'$',
                start: p,
                end: p + 1,
                ctx,
            });
            p + 1
        }
    }
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

/// What the kernel will see from a set of GRUB files, and how to edit it.
pub struct GrubConfig {
    sources: Vec<Source>,
    assigns: Vec<Assign>,
    /// The evaluated kernel line: `GRUB_CMDLINE_LINUX` then `GRUB_CMDLINE_LINUX_DEFAULT`.
    line: Value,
    /// The evaluated value of each command-line variable.
    values: BTreeMap<String, Value>,
    /// Where `GRUB_CMDLINE_LINUX` ends in `line`.
    linux_len: usize,
}

impl GrubConfig {
    /// Reads the main file and the drop-ins (in the order grub-mkconfig sources them).
    pub fn parse(sources: Vec<Source>) -> Result<GrubConfig> {
        let mut assigns = Vec::new();
        for (i, s) in sources.iter().enumerate() {
            assigns.extend(assignments(
                &s.bytes,
                i,
                &s.path,
                &crate::profile::GRUB_VARIABLES,
            )?);
        }
        let mut values: BTreeMap<String, Value> = BTreeMap::new();
        for a in &assigns {
            if let Some(reason) = &a.unsafe_reason {
                bail!(
                    "{}: line {}: {reason}. vfio-gen cannot edit the kernel command line in such a file safely: keep GRUB_CMDLINE_LINUX and GRUB_CMDLINE_LINUX_DEFAULT as plain assignments (NAME=\"...\"), or set [grub] mode = \"drop-in\" in the profile (Debian, Ubuntu)",
                    sources[a.file].path,
                    a.line
                );
            }
            let mut v: Value = Vec::new();
            for seg in &a.segs {
                match seg {
                    // Text of an assignment that runs only sometimes: blanks still separate,
                    // everything else is opaque, and none of it is ever edited.
                    Seg::Byte { b, .. } if a.maybe => v.push((
                        if b.is_ascii_whitespace() {
                            Some(b' ')
                        } else {
                            None
                        },
                        None,
                    )),
                    Seg::Byte { b, start, end, ctx } => v.push((
                        Some(*b),
                        Some(Loc {
                            file: a.file,
                            start: *start,
                            end: *end,
                            ctx: *ctx,
                        }),
                    )),
                    // `$SAME` brings the earlier value with its origins; the other command-line
                    // variable or anything else is opaque: its bytes are never matched or edited,
                    // so one source is never edited through two copies.
                    Seg::Param { name, .. } if *name == a.name => {
                        v.extend(values.get(name).into_iter().flatten().copied())
                    }
                    // A copy of the other command-line variable once it is set: an option
                    // added to or replaced in it would reach the kernel twice.
                    Seg::Param { name, .. }
                        if crate::profile::GRUB_VARIABLES.contains(&name.as_str())
                            && values.contains_key(name) =>
                    {
                        bail!(
                            "{}: line {}: {} copies ${name}, which is set above it, so every option of {name} reaches the kernel twice and vfio-gen cannot edit one without the other: write the options out in {} instead of ${name}, or set [grub] mode = \"drop-in\" in the profile (Debian, Ubuntu)",
                            sources[a.file].path,
                            a.line,
                            a.name,
                            a.name
                        );
                    }
                    Seg::Param { name, .. } => match values.get(name) {
                        Some(other) if !other.is_empty() => v.push((None, None)),
                        Some(_) => {}
                        None if crate::profile::GRUB_VARIABLES.contains(&name.as_str()) => {}
                        None => v.push((None, None)),
                    },
                }
            }
            values.insert(a.name.clone(), v);
        }
        let mut line: Value = values
            .get("GRUB_CMDLINE_LINUX")
            .cloned()
            .unwrap_or_default();
        let linux_len = line.len();
        line.push((cmdline::BOUNDARY, None));
        line.extend(
            values
                .get("GRUB_CMDLINE_LINUX_DEFAULT")
                .cloned()
                .unwrap_or_default(),
        );
        Ok(GrubConfig {
            sources,
            assigns,
            line,
            values,
            linux_len,
        })
    }

    /// The kernel command line these files produce (`None` bytes shown as `$…`).
    pub fn kernel_line(&self) -> String {
        render_value(&self.line).trim().to_string()
    }

    /// The evaluated value of one variable.
    pub fn value_of(&self, name: &str) -> String {
        render_value(self.values.get(name).map(Vec::as_slice).unwrap_or(&[]))
    }

    /// The managed options missing or different in the current line, one per item.
    pub fn missing(&self, wanted: &[Opt]) -> Result<Vec<String>> {
        let bytes: Vec<Byte> = self.line.iter().map(|(b, _)| *b).collect();
        let (edits, _) =
            cmdline::edit(&bytes, wanted, false).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(edits
            .insert
            .iter()
            .flat_map(|(_, t)| t.split_whitespace().map(str::to_string))
            .collect())
    }

    /// Options in text that is added only sometimes (`if ...; then X="$X iommu=soft"; fi`) and
    /// would override a managed one when it is: ("file:line", option, managed option).
    pub fn conditional_conflicts(&self, wanted: &[Opt]) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for a in self.assigns.iter().filter(|a| a.maybe) {
            let text: Vec<u8> = a
                .segs
                .iter()
                .filter_map(|s| {
                    if let Seg::Byte { b, .. } = s {
                        Some(*b)
                    } else {
                        None
                    }
                })
                .collect();
            for token in String::from_utf8_lossy(&text).split_whitespace() {
                let found = Opt::parse(token.trim_matches('"'));
                if let Some(w) = wanted
                    .iter()
                    .find(|w| cmdline::same_setting(&found, w) && found != **w)
                {
                    out.push((
                        format!("{}:{}", self.sources[a.file].path, a.line),
                        token.to_string(),
                        w.text(),
                    ));
                }
            }
        }
        out
    }

    /// The last assignment of a variable, with the file and line it is in.
    pub fn last_assignment(&self, name: &str) -> Option<(String, usize)> {
        self.assigns
            .iter()
            .rev()
            .find(|a| a.name == name && !a.maybe)
            .map(|a| (self.sources[a.file].path.clone(), a.line))
    }

    /// Edits the files so the line holds `wanted` (or not, with `revert`); returns the new bytes
    /// of every file, and findings to report.
    pub fn edit(
        &self,
        variable: &str,
        wanted: &[Opt],
        revert: bool,
    ) -> Result<(Vec<Vec<u8>>, Vec<String>)> {
        let bytes: Vec<Byte> = self.line.iter().map(|(b, _)| *b).collect();
        let (edits, findings) = cmdline::edit(&bytes, wanted, revert).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}",
                self.sources.first().map(|s| s.path.as_str()).unwrap_or("")
            )
        })?;
        let notes = findings
            .iter()
            .map(|f| f.describe("the GRUB command line"))
            .collect();
        Ok((self.apply(variable, &edits)?, notes))
    }

    fn apply(&self, variable: &str, edits: &Edits) -> Result<Vec<Vec<u8>>> {
        // Source operations per file: (start, end, text).
        let mut ops: Vec<Vec<Op>> = vec![Vec::new(); self.sources.len()];
        let mut removed = std::collections::BTreeSet::new();
        for &i in &edits.remove {
            // Never remove the blank that ends a bare `$NAME`: the next word would join the name.
            if let Some(loc) = self.line[i].1
                && !self.ends_bare_param(loc)
                && removed.insert((loc.file, loc.start))
            {
                ops[loc.file].push((loc.start, loc.end, String::new(), 0));
            }
        }
        let mut new_line = false;
        for (at, text) in &edits.insert {
            match at {
                At::Before(i) => {
                    let loc = self.line[*i].1.expect("a token starts at a known byte");
                    ops[loc.file].push((loc.start, loc.start, quote_for(loc.ctx, text), 1));
                }
                At::End => match self
                    .assigns
                    .iter()
                    .rev()
                    .find(|a| a.name == variable && !a.maybe)
                {
                    Some(a) => {
                        let text = if self.variable_is_empty(variable, edits) {
                            text.trim_start().to_string()
                        } else {
                            format!(" {}", text.trim_start())
                        };
                        ops[a.file].extend(self.append_ops(a, &text))
                    }
                    None => new_line = true,
                },
            }
        }
        let mut out = Vec::new();
        for (f, src) in self.sources.iter().enumerate() {
            let mut bytes = src.bytes.clone();
            let mut list = std::mem::take(&mut ops[f]);
            // Apply from the end; at one position delete before inserting.
            list.sort_by(|a, b| b.0.cmp(&a.0).then(a.3.cmp(&b.3)));
            for (start, end, text, _) in list {
                bytes.splice(start..end, text.into_bytes());
            }
            if f == 0 && new_line {
                let text = edits
                    .insert
                    .iter()
                    .find(|(at, _)| *at == At::End)
                    .map(|(_, t)| t.trim())
                    .unwrap_or("");
                // After an assignment that runs only sometimes, keep what it may have added.
                let line = if self.assigns.iter().any(|a| a.name == variable) {
                    format!("{variable}=\"${variable} {text}\"")
                } else {
                    format!("{variable}=\"{text}\"")
                };
                // After a final backslash (a line continuation) our line would join the last one:
                // end it with an empty line first.
                let body = bytes
                    .strip_suffix(b"\n")
                    .map(|b| b.strip_suffix(b"\r").unwrap_or(b))
                    .unwrap_or(&bytes);
                if body.iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1 {
                    if !bytes.ends_with(b"\n") {
                        bytes.push(b'\n');
                    }
                    bytes.push(b'\n');
                }
                super::append_line(&mut bytes, &src.bytes, &line);
            }
            out.push(bytes);
        }
        Ok(out)
    }

    fn ends_bare_param(&self, loc: Loc) -> bool {
        self.assigns.iter().filter(|a| a.file == loc.file).any(|a| {
            a.segs
                .iter()
                .any(|s| matches!(s, Seg::Param { bare_end: Some(e), .. } if *e == loc.start))
        })
    }

    /// Whether the variable's value, after the edits, holds nothing (so text appended to it
    /// needs no blank before it).
    fn variable_is_empty(&self, variable: &str, edits: &Edits) -> bool {
        let range = if variable == "GRUB_CMDLINE_LINUX" {
            0..self.linux_len
        } else {
            self.linux_len + 1..self.line.len()
        };
        let kept = range.clone().any(|i| !edits.remove.contains(&i));
        let inserted = edits
            .insert
            .iter()
            .any(|(at, t)| matches!(at, At::Before(i) if range.contains(i)) && !t.is_empty());
        !kept && !inserted
    }

    fn append_ops(&self, a: &Assign, text: &str) -> Vec<Op> {
        let src = &self.sources[a.file].bytes;
        let raw = &src[a.value_start..a.value_end];
        if raw.is_empty() {
            return vec![(
                a.value_start,
                a.value_start,
                format!("\"{}\"", text.trim_start()),
                1,
            )];
        }
        let last = raw[raw.len() - 1];
        if (last == b'"' || last == b'\'') && !ends_escaped(raw) {
            let ctx = if last == b'"' {
                Ctx::Double
            } else {
                Ctx::Single
            };
            let at = a.value_end - 1;
            // Right after a bare `$NAME`, a word would join the name: keep a blank between.
            let glued = self.ends_bare_param(Loc {
                file: a.file,
                start: at,
                end: at,
                ctx,
            });
            let text = if glued && !text.starts_with(' ') {
                format!(" {text}")
            } else {
                text.to_string()
            };
            return vec![(at, at, quote_for(ctx, &text), 1)];
        }
        // An unquoted value: quote it whole when that changes nothing else (the opening quote
        // goes in last, so it lands before a replacement at the same place), else a quoted tail.
        if raw
            .iter()
            .all(|&b| !matches!(b, b'\\' | b'$' | b'"' | b'\'' | b'`'))
        {
            return vec![
                (a.value_start, a.value_start, "\"".to_string(), 2),
                (a.value_end, a.value_end, format!("{text}\""), 1),
            ];
        }
        vec![(a.value_end, a.value_end, quote_for(Ctx::Unquoted, text), 1)]
    }
}

/// A source edit: replace `start..end` with the text; at one position, rank 0 (deletions)
/// applies first and the highest rank last, so it ends up leftmost.
type Op = (usize, usize, String, u8);

fn ends_escaped(raw: &[u8]) -> bool {
    let backslashes = raw[..raw.len() - 1]
        .iter()
        .rev()
        .take_while(|&&b| b == b'\\')
        .count();
    backslashes % 2 == 1
}

/// Quotes plain kernel text for a quoting context. Options are validated to hold no quote,
/// `$`, backtick or backslash, so only whitespace needs care outside quotes.
fn quote_for(ctx: Ctx, text: &str) -> String {
    match ctx {
        Ctx::Double | Ctx::Single => text.to_string(),
        Ctx::Unquoted if text.bytes().any(|b| b == b' ') => format!("\"{text}\""),
        Ctx::Unquoted => text.to_string(),
    }
}

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
    use super::*;

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
