//! The assignments to the kernel command-line variables in a GRUB file: where each value
//! starts and ends, its bytes with their quoting, and why one cannot be edited safely.

use super::lex::{Word, syntax, words};
use super::{Assign, Ctx, Seg, is_name, is_name_start, line_of};
use anyhow::{Result, bail};

/// The name of `NAME=` or `NAME+=` at the start of a word, and where its value starts.
pub(super) fn assignment_word(w: &[u8]) -> Option<(&[u8], usize, bool)> {
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

/// The longest assignment text of a command-line variable that is evaluated (bytes): many
/// times the kernel's limit, so quoting and comments never reach it.
const VALUE_MAX: usize = 64 * 1024;

/// Lexes a shell file and returns the assignments to the variables in `names`. An assignment
/// that runs only sometimes (inside `if`, `case`, a loop, a function, after `&&`), or does not
/// stay (a subshell, before a command), is marked unsafe, unless it only appends to the variable
/// (`X="$X more"`), which then counts as text vfio-gen never edits.
pub(super) fn assignments(
    src: &[u8],
    file: usize,
    path: &str,
    names: &[&str],
) -> Result<Vec<Assign>> {
    syntax(src, path)?;
    let mut walk = Walk {
        src,
        file,
        path,
        names,
        words: words(src, path)?,
        i: 0,
        lead: false,
        open: Vec::new(),
        out: Vec::new(),
    };
    while walk.i < walk.words.len() {
        walk.step()?;
    }
    walk.unclosed();
    walk.unfollowed_lines();
    Ok(walk.out)
}

/// The walk over a file's words: the next word, the compound commands open around it, and the
/// assignments found so far.
struct Walk<'a> {
    src: &'a [u8],
    file: usize,
    path: &'a str,
    names: &'a [&'a str],
    words: Vec<Word>,
    /// The next word to read.
    i: usize,
    /// The next word starts a command although it is not first on its line (after `then`,
    /// `do`, `{`, `!`, an `export` list).
    lead: bool,
    /// The compound commands opened and not closed yet (`if`, `case`, `{`, ...).
    open: Vec<&'a [u8]>,
    out: Vec<Assign>,
}

/// How the command holding an assignment runs.
#[derive(Clone, Copy)]
struct Runs {
    /// A command word follows the assignments: they only reach that command's environment.
    temporary: bool,
    /// It runs only sometimes: inside a compound command, after `&&` or `||`, in a pipeline.
    conditional: bool,
}

impl<'a> Walk<'a> {
    fn text(&self, w: &Word) -> &'a [u8] {
        &self.src[w.start..w.end]
    }

    fn is_name(&self, name: &[u8]) -> bool {
        self.names.iter().any(|n| n.as_bytes() == name)
    }

    /// Whether the word at `self.i` exists and continues the current command.
    fn continues(&self) -> bool {
        self.i < self.words.len() && !self.words[self.i].first
    }

    fn hide(&mut self, w: &Word, name: &[u8], why: &str) {
        let found = hidden(self.src, self.file, w, name, why);
        self.out.push(found);
    }

    /// Reads one word, and the words after it that belong to what it starts.
    fn step(&mut self) -> Result<()> {
        let w = self.words[self.i];
        let text = self.text(&w);
        let at_command = w.first || self.lead;
        self.lead = false;
        self.i += 1;
        if !at_command {
            self.argument(&w, text);
            return Ok(());
        }
        if self.blank_before_equals(&w, text) || self.keyword(&w, text) || self.function(&w) {
            return Ok(());
        }
        match assignment_word(text) {
            Some((name, offset, appends)) => self.assignment_group(w, name, offset, appends),
            None => Ok(()),
        }
    }

    /// A word that is not a command's first: anything that looks like an assignment to our
    /// variables there is one vfio-gen cannot follow (`case` arms, `env X=...`, `eval`):
    /// refuse rather than miss it.
    fn argument(&mut self, w: &Word, text: &[u8]) {
        if let Some((name, _, _)) = assignment_word(text)
            && self.is_name(name)
        {
            self.hide(
                w,
                name,
                "is assigned where vfio-gen cannot tell whether it runs",
            );
        }
    }

    /// `NAME = "..."`: sh runs a command called NAME; the blanks around `=` are the mistake.
    fn blank_before_equals(&mut self, w: &Word, text: &[u8]) -> bool {
        let Some(n) = self.names.iter().find(|n| n.as_bytes() == text) else {
            return false;
        };
        if !(self.continues() && self.text(&self.words[self.i]).starts_with(b"=")) {
            return false;
        }
        self.hide(
            w,
            n.as_bytes(),
            &format!("= ... has a blank before `=`, so sh runs a command named {n} instead of setting the variable (the likely mistake): write {n}=\"...\" with no blank before or after `=`"),
        );
        true
    }

    /// A reserved word or a builtin that changes how the words after it are read; false for
    /// any other word.
    fn keyword(&mut self, w: &Word, text: &'a [u8]) -> bool {
        match text {
            b"if" | b"while" | b"until" | b"{" | b"(" => {
                self.open.push(text);
                self.lead = true;
            }
            b"for" | b"case" | b"select" => self.open.push(text),
            b"then" | b"else" | b"elif" | b"do" | b"!" => self.lead = true,
            b"export" | b"readonly" => self.export(text),
            b"unset" | b"read" | b"declare" | b"typeset" | b"local" | b"eval" | b"."
            | b"source" => self.opaque(w, text),
            b"fi" | b"done" | b"}" => {
                self.open.pop();
            }
            b"esac" => {
                while let Some(top) = self.open.pop() {
                    if top == b"case" {
                        break;
                    }
                }
            }
            b")" => {
                if self.open.last() == Some(&&b"("[..]) {
                    self.open.pop();
                }
            }
            _ => return false,
        }
        true
    }

    /// `export A B=c`: every word after it may be an assignment; the plain names are read here,
    /// and a name sh rejects stops the file.
    fn export(&mut self, text: &[u8]) {
        while self.continues() && assignment_word(self.text(&self.words[self.i])).is_none() {
            let arg_word = self.words[self.i];
            if let Some(bad) = bad_export_name(self.text(&arg_word)) {
                let what = String::from_utf8_lossy(text).into_owned();
                let bad = String::from_utf8_lossy(bad).into_owned();
                self.hide(&arg_word, b"the file", &format!("runs `{what} {bad}...`, which is not a variable name: sh stops reading the file there (dash: bad variable name), so grub-mkconfig fails before any later line; fix the name"));
            }
            self.i += 1;
        }
        self.lead = self.continues();
    }

    /// Commands that change a variable without `NAME=`, or run text vfio-gen cannot see.
    fn opaque(&mut self, w: &Word, text: &[u8]) {
        let mut j = self.i;
        while j < self.words.len() && !self.words[j].first {
            j += 1;
        }
        let touches = matches!(text, b"eval" | b"." | b"source")
            || self.words[self.i..j].iter().any(|a| {
                let t = self.text(a);
                self.names.iter().any(|n| {
                    t == n.as_bytes()
                        || assignment_word(t).is_some_and(|(m, _, _)| m == n.as_bytes())
                })
            });
        if touches {
            let what = String::from_utf8_lossy(text).into_owned();
            self.hide(w, b"the file", &format!("runs `{what}`, which can change the command-line variables in ways vfio-gen cannot follow"));
        }
        self.i = j;
    }

    /// `name() { ...; }` defines a function: its body runs only when called.
    fn function(&mut self, w: &Word) -> bool {
        let i = self.i;
        if !(i + 1 < self.words.len()
            && self.text(&self.words[i]) == b"("
            && self.text(&self.words[i + 1]) == b")")
        {
            return false;
        }
        self.i += 2;
        if self.i >= self.words.len() {
            self.hide(
                w,
                b"the file",
                "ends in a function definition without a body (`sh -n` fails too)",
            );
        }
        self.lead = true;
        true
    }

    /// A command that starts with the assignment `name=` in `w`. Further assignments may follow
    /// in the same command; a command word after them makes them all temporary.
    fn assignment_group(
        &mut self,
        w: Word,
        name: &'a [u8],
        offset: usize,
        appends: bool,
    ) -> Result<()> {
        let mut group = vec![(w, name, offset, appends)];
        while self.continues() {
            match assignment_word(self.text(&self.words[self.i])) {
                Some((n2, o2, a2)) => group.push((self.words[self.i], n2, o2, a2)),
                None => break,
            }
            self.i += 1;
        }
        let runs = Runs {
            temporary: self.continues(),
            conditional: w.cond || !self.open.is_empty(),
        };
        for (w, name, offset, appends) in group {
            if self.is_name(name) {
                let found = self.assignment(&w, name, offset, appends, runs)?;
                self.out.push(found);
            }
        }
        Ok(())
    }

    /// One assignment to one of the variables, with why it cannot be edited safely (if so).
    fn assignment(
        &self,
        w: &Word,
        name: &[u8],
        offset: usize,
        appends: bool,
        runs: Runs,
    ) -> Result<Assign> {
        let (src, path) = (self.src, self.path);
        let name = String::from_utf8_lossy(name).into_owned();
        let value_start = w.start + offset;
        // The kernel keeps 2047 bytes of command line (docs/kernel-cmdline.md): a value
        // far beyond that is refused before it is evaluated byte by byte.
        if w.end - value_start > VALUE_MAX {
            bail!(
                "{path}: line {}: {name} is {} bytes long; the x86 kernel keeps at most {} bytes of command line (COMMAND_LINE_SIZE 2048): shorten the value by hand",
                line_of(src, w.start),
                w.end - value_start,
                crate::kernel::COMMAND_LINE_MAX
            );
        }
        let (segs, end, mut reason) = value(src, value_start, path)?;
        if appends {
            reason = Some(format!("'{name}+=' is not POSIX sh"));
        } else if runs.temporary && end == value_start {
            reason = Some(format!(
                "{name}= is followed by a blank, so sh sets {name} to nothing, and only for a command named by the next word (the likely mistake): remove the blank after `=`"
            ));
        } else if runs.temporary {
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
        if runs.conditional && !only_appends {
            reason.get_or_insert_with(|| format!("{name} is set inside an if/case/loop/function, after && or ||, or in a pipeline or background job (whether it takes effect depends on the system)"));
        }
        Ok(Assign {
            file: self.file,
            name,
            line: line_of(src, w.start),
            value_start,
            value_end: end,
            segs,
            unsafe_reason: reason,
            maybe: runs.conditional && only_appends,
        })
    }

    /// A compound command still open at the end of the file.
    fn unclosed(&mut self) {
        if let Some(top) = self.open.last() {
            let what = String::from_utf8_lossy(top).into_owned();
            let at = self.words.last().copied().unwrap_or(Word {
                start: 0,
                end: 0,
                first: true,
                cond: false,
            });
            self.hide(
                &at,
                b"the file",
                &format!("ends inside a `{what}` that is never closed (`sh -n` fails too)"),
            );
        }
    }

    /// Last line of defence: a line that assigns one of the variables but was not seen as an
    /// assignment means the shell syntax around it was not followed; refuse rather than miss it.
    fn unfollowed_lines(&mut self) {
        let src = self.src;
        let seen: Vec<usize> = self
            .out
            .iter()
            .map(|a| line_of(src, a.value_start))
            .collect();
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
                && self.is_name(name)
                && !seen.contains(&(k + 1))
                && !in_heredoc_or_string(&self.words, start)
            {
                self.hide(&Word { start, end: start, first: true, cond: false }, name, "looks assigned on this line, but vfio-gen could not follow the shell syntax around it");
            }
        }
    }
}

/// A value that opens with one kind of quote, whose first line ends with the other kind, and
/// that runs on over lines: sh closes the quote somewhere below, which is rarely what was meant.
pub(super) fn mismatched_quotes(raw: &[u8]) -> Option<String> {
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
pub(super) fn in_heredoc_or_string(words: &[Word], pos: usize) -> bool {
    words.iter().any(|w| w.start < pos && pos < w.end)
}

/// The literal name part of an `export`/`readonly` argument that sh rejects as a variable name
/// (`GRUB_CMDLIN}E_LINUX="..."`), or `None` when it is a name or holds an expansion or quote
/// (its value is not known here).
fn bad_export_name(arg: &[u8]) -> Option<&[u8]> {
    let name = arg.split(|&b| b == b'=').next().unwrap_or(arg);
    if name.is_empty() || name.iter().any(|b| b"$`\\\"'".contains(b)) {
        return None;
    }
    let good = is_name_start(name[0]) && name.iter().all(|&b| is_name(b));
    (!good).then_some(name)
}

pub(super) fn hidden(src: &[u8], file: usize, w: &Word, name: &[u8], why: &str) -> Assign {
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
pub(super) fn value(
    src: &[u8],
    mut p: usize,
    path: &str,
) -> Result<(Vec<Seg>, usize, Option<String>)> {
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
pub(super) fn dollar(
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
