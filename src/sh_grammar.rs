//! What `sh` accepts as a script: the grammar check every GRUB file passes before vfio-gen
//! reads assignments out of it, and again after it is edited.
//!
//! A recursive-descent parser that follows the POSIX shell grammar the way dash's parser
//! implements it (docs/grub.md, facts 3 and 4), token for token: the same reserved words in the same
//! positions, the same quoting states inside words (single and double quotes, backslashes,
//! `${...}`, `$(...)`, backquotes, `$((...))`), the same here-documents, the same places where
//! an empty command is an error. Where dash accepts something that fails when the file is
//! sourced, or that other shells read differently, this parser refuses it too (docs/grub.md,
//! "Where vfio-gen is stricter than dash"). It builds nothing: a file either passes or gets one
//! error naming its line and what to fix.

use std::fmt;

/// Why a file is not a script vfio-gen will edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line the error is reported at (where the offending construct starts).
    pub line: usize,
    pub msg: String,
    /// Whether `sh -n` rejects the file too (otherwise vfio-gen is stricter than dash's grammar:
    /// the shell fails on it only when it runs, or shells disagree about it).
    pub sh_rejects: bool,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

type Res<T> = Result<T, SyntaxError>;

/// Checks that `src` is a shell script `sh` parses (and vfio-gen trusts).
pub fn check(src: &[u8]) -> Res<()> {
    Parser::new(src, 1, 0)
        .program()
        .map_err(|e| match runaway_quote(src) {
            // The parser stops where the shifted quotes finally fail (often far below, in a
            // comment); the mistake is the quote left open above, which ShellCheck reports too.
            Some((line, msg)) if line < e.line => SyntaxError {
                line,
                msg: format!("{msg} (sh fails later, at line {}: {})", e.line, e.msg),
                sh_rejects: e.sh_rejects,
            },
            _ => e,
        })
}

/// The first quote that runs on over a line that looks like the next assignment (`NAME=` at
/// its start): a quote left open, after which every later quote is read the other way round.
/// Only asked once the file has failed to parse: a quoted value over several lines is valid.
fn runaway_quote(src: &[u8]) -> Option<(usize, String)> {
    let text = String::from_utf8_lossy(src);
    let lines: Vec<&str> = text.split('\n').collect();
    let assignment = |l: &str| {
        let t = l.trim_start();
        let name_end = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(t.len());
        name_end > 0 && !t.as_bytes()[0].is_ascii_digit() && t[name_end..].starts_with('=')
    };
    let mut open: Option<(usize, char)> = None;
    for (n, l) in lines.iter().enumerate() {
        let mut prev = ' ';
        let mut chars = l.chars();
        while let Some(c) = chars.next() {
            match (open, c) {
                (None, '#') if prev.is_whitespace() || prev == ';' => break,
                (None, '\\') | (Some((_, '"')), '\\') => {
                    chars.next();
                }
                (None, '\'' | '"') => open = Some((n, c)),
                (Some((at, q)), c) if c == q => {
                    open = None;
                    if at < n
                        && let Some(m) = (at + 1..=n).find(|m| assignment(lines[*m]))
                    {
                        let name = lines[m].trim_start().split('=').next().unwrap_or("");
                        return Some((
                            at + 1,
                            format!(
                                "the {q} opened here is not closed on this line: the quoted text runs on to line {}, which looks like the next assignment (`{name}=`); add the closing {q} on line {}",
                                m + 1,
                                at + 1
                            ),
                        ));
                    }
                }
                _ => {}
            }
            prev = c;
        }
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Eof,
    Nl,
    Semi,
    Bg,
    And,
    Or,
    Pipe,
    Lp,
    Rp,
    EndCase,
    Redir,
    Word,
    Not,
    Case,
    Do,
    Done,
    Elif,
    Else,
    Esac,
    Fi,
    For,
    If,
    In,
    Then,
    Until,
    While,
    Begin,
    End,
}

impl Tok {
    /// Tokens that end a list (dash's `tokendlist`).
    fn ends_list(self) -> bool {
        use Tok::*;
        matches!(
            self,
            Eof | Rp | EndCase | Do | Done | Elif | Else | Esac | Fi | Then | End
        )
    }

    fn text(self) -> &'static str {
        use Tok::*;
        match self {
            Eof => "end of file",
            Nl => "newline",
            Semi => ";",
            Bg => "&",
            And => "&&",
            Or => "||",
            Pipe => "|",
            Lp => "(",
            Rp => ")",
            EndCase => ";;",
            Redir => "redirection",
            Word => "word",
            Not => "!",
            Case => "case",
            Do => "do",
            Done => "done",
            Elif => "elif",
            Else => "else",
            Esac => "esac",
            Fi => "fi",
            For => "for",
            If => "if",
            In => "in",
            Then => "then",
            Until => "until",
            While => "while",
            Begin => "{",
            End => "}",
        }
    }
}

fn keyword(w: &[u8]) -> Option<Tok> {
    use Tok::*;
    Some(match w {
        b"!" => Not,
        b"case" => Case,
        b"do" => Do,
        b"done" => Done,
        b"elif" => Elif,
        b"else" => Else,
        b"esac" => Esac,
        b"fi" => Fi,
        b"for" => For,
        b"if" => If,
        b"in" => In,
        b"then" => Then,
        b"until" => Until,
        b"while" => While,
        b"{" => Begin,
        b"}" => End,
        _ => return None,
    })
}

const CHKKWD: u8 = 2;
const CHKNL: u8 = 4;

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 100;

/// dash's substitution subtypes (docs/grub.md, fact 4), as far as the grammar needs them.
const VSNORMAL: u8 = 0x1;
const VSTRIMRIGHT: u8 = 0x6;
const VSTRIMLEFT: u8 = 0x8;
const VSLENGTH: u8 = 0xa;
const VSNUL: u8 = 0x10;

/// The quoting state a character is read in (dash's syntax tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syn {
    Base,
    Dq,
    Sq,
    Ari,
}

/// One level of dash's `synstack`.
#[derive(Debug, Clone, Copy)]
struct Frame {
    syn: Syn,
    dblquote: bool,
    innerdq: bool,
    varnest: u32,
    parenlevel: u32,
    dqvarnest: u32,
    varpushed: bool,
}

impl Frame {
    fn new(syn: Syn) -> Frame {
        Frame {
            syn,
            dblquote: syn == Syn::Dq || syn == Syn::Ari,
            innerdq: false,
            varnest: 0,
            parenlevel: 0,
            dqvarnest: 0,
            varpushed: false,
        }
    }
}

/// A here-document whose body starts after the next newline.
#[derive(Debug, Clone)]
struct Here {
    delim: Vec<u8>,
    strip_tabs: bool,
    /// The delimiter was unquoted: the body is read like a double-quoted string.
    expand: bool,
    at: usize,
}

/// Where a word's quoting constructs were opened, for messages.
#[derive(Debug, Default)]
struct Opens {
    quote: Option<(usize, u8)>,
    braces: Vec<usize>,
    arith: Vec<usize>,
    /// A `${...}` dash parses but cannot expand.
    bad_substitution: Option<usize>,
}

struct Parser<'a> {
    src: &'a [u8],
    /// Read position; `src.len()` and beyond stand for the end of the file.
    pos: usize,
    last: Tok,
    pushback: bool,
    checkkwd: u8,
    /// The last word had a quoted part.
    quoted: bool,
    /// The last word's source span.
    word: (usize, usize),
    tok_start: usize,
    /// A `<<` or `<<-` just read, waiting for its delimiter word.
    redir_here: Option<bool>,
    heredocs: Vec<Here>,
    /// Open constructs (`if`, `{`, `$(`, ...) and where they started, for messages.
    open: Vec<(&'static str, usize)>,
    depth: usize,
    /// The line of `src[0]` in the file (for the text of backquotes, parsed on their own).
    line_base: usize,
}

fn is_name_start(c: Option<u8>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
}
fn is_in_name(c: Option<u8>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
}
fn is_digit(c: Option<u8>) -> bool {
    c.is_some_and(|c| c.is_ascii_digit())
}
fn is_special(c: Option<u8>) -> bool {
    c.is_some_and(|c| c.is_ascii_digit() || b"!#$*-?@".contains(&c))
}

fn good_name(w: &[u8]) -> bool {
    !w.is_empty()
        && is_name_start(Some(w[0]))
        && w.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

/// dash's special built-ins: a function cannot take their names.
const SPECIAL_BUILTINS: &[&[u8]] = &[
    b".",
    b":",
    b"break",
    b"continue",
    b"eval",
    b"exec",
    b"exit",
    b"export",
    b"readonly",
    b"return",
    b"set",
    b"shift",
    b"times",
    b"trap",
    b"unset",
];

/// The characters of a word as written, without backslash-newline pairs.
fn joined(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' && raw.get(i + 1) == Some(&b'\n') {
            i += 2;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
}

/// Quote removal for a here-document delimiter.
fn unquote(raw: &[u8]) -> Vec<u8> {
    let raw = joined(raw);
    let mut out = Vec::new();
    let mut i = 0;
    let mut dq = false;
    while i < raw.len() {
        let b = raw[i];
        match b {
            b'\'' if !dq => {
                i += 1;
                while i < raw.len() && raw[i] != b'\'' {
                    out.push(raw[i]);
                    i += 1;
                }
            }
            b'"' => dq = !dq,
            b'\\' if i + 1 < raw.len() => {
                let c = raw[i + 1];
                if dq && !matches!(c, b'$' | b'`' | b'"' | b'\\') {
                    out.push(b'\\');
                }
                out.push(c);
                i += 1;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

fn shown(text: &[u8]) -> String {
    let s = String::from_utf8_lossy(text);
    let s = s.trim();
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

impl<'a> Parser<'a> {
    fn new(src: &'a [u8], line_base: usize, depth: usize) -> Parser<'a> {
        Parser {
            src,
            pos: 0,
            last: Tok::Eof,
            pushback: false,
            checkkwd: 0,
            quoted: false,
            word: (0, 0),
            tok_start: 0,
            redir_here: None,
            heredocs: Vec::new(),
            open: Vec::new(),
            depth,
            line_base,
        }
    }

    fn line_of(&self, pos: usize) -> usize {
        let end = pos.min(self.src.len());
        self.line_base + self.src[..end].iter().filter(|&&b| b == b'\n').count()
    }

    fn err(&self, at: usize, msg: impl Into<String>) -> SyntaxError {
        SyntaxError {
            line: self.line_of(at),
            msg: msg.into(),
            sh_rejects: true,
        }
    }

    fn stricter(&self, at: usize, msg: impl Into<String>) -> SyntaxError {
        SyntaxError {
            sh_rejects: false,
            ..self.err(at, msg)
        }
    }

    // ---- characters ---------------------------------------------------------------------

    /// The next character, or `None` at the end (which still advances, so `unget` undoes it).
    fn getc(&mut self) -> Option<u8> {
        let c = self.src.get(self.pos).copied();
        self.pos += 1;
        c
    }

    /// The next character after any backslash-newline pairs (dash's `pgetc_eatbnl`).
    fn getc_bnl(&mut self) -> Option<u8> {
        while self.src.get(self.pos) == Some(&b'\\') && self.src.get(self.pos + 1) == Some(&b'\n') {
            self.pos += 2;
        }
        self.getc()
    }

    fn unget(&mut self) {
        self.pos -= 1;
    }

    // ---- tokens -------------------------------------------------------------------------

    fn xxreadtoken(&mut self) -> Res<Tok> {
        if self.pushback {
            self.pushback = false;
            return Ok(self.last);
        }
        loop {
            let c = self.getc_bnl();
            self.tok_start = self.pos - 1;
            let t = match c {
                Some(b' ' | b'\t') => continue,
                Some(b'#') => {
                    while let Some(c) = self.getc() {
                        if c == b'\n' {
                            break;
                        }
                    }
                    self.unget();
                    continue;
                }
                Some(b'\n') => Tok::Nl,
                None => Tok::Eof,
                Some(b'&') => self.two(b'&', Tok::And, Tok::Bg),
                Some(b'|') => self.two(b'|', Tok::Or, Tok::Pipe),
                Some(b';') => self.two(b';', Tok::EndCase, Tok::Semi),
                Some(b'(') => Tok::Lp,
                Some(b')') => Tok::Rp,
                Some(c) => self.word(c)?,
            };
            self.last = t;
            return Ok(t);
        }
    }

    fn two(&mut self, second: u8, double: Tok, single: Tok) -> Tok {
        if self.getc_bnl() == Some(second) {
            double
        } else {
            self.unget();
            single
        }
    }

    fn readtoken(&mut self) -> Res<Tok> {
        let mut kwd = self.checkkwd;
        let mut t = self.xxreadtoken()?;
        if kwd & CHKNL != 0 {
            while t == Tok::Nl {
                self.parseheredoc()?;
                self.checkkwd = 0;
                t = self.xxreadtoken()?;
            }
        }
        kwd |= self.checkkwd;
        self.checkkwd = 0;
        if t == Tok::Word && !self.quoted && kwd & CHKKWD != 0 {
            let text = joined(&self.src[self.word.0..self.word.1]);
            if let Some(k) = keyword(&text) {
                t = k;
                self.last = k;
            }
        }
        Ok(t)
    }

    fn word_text(&self) -> Vec<u8> {
        joined(&self.src[self.word.0.min(self.src.len())..self.word.1.min(self.src.len())])
    }

    /// An unexpected token: the message says what it is and what to do about it.
    fn unexpected(&self, expected: Option<Tok>) -> SyntaxError {
        let t = self.last;
        let context = self
            .open
            .last()
            .map(|(what, at)| (*what, self.line_of(*at), *at));
        if t == Tok::Eof {
            return match (context, expected) {
                (Some((what, _, at)), Some(e)) => self.err(
                    at,
                    format!("the `{what}` here is never closed with `{}`: the file ends first; add it, or remove the `{what}`", e.text()),
                ),
                (Some((what, _, at)), None) => self.err(
                    at,
                    format!("the `{what}` here is not complete when the file ends; finish it, or remove it"),
                ),
                (None, _) => self.err(
                    self.last_text_before(self.tok_start),
                    "the file ends in the middle of a command (after `&&`, `||`, `|` or a redirection): finish the command, or remove what is left of it",
                ),
            };
        }
        let what = match t {
            Tok::Word => shown(&self.word_text()),
            _ => t.text().to_string(),
        };
        let expecting = match (expected, context) {
            (Some(e), Some((open, line, _))) => {
                format!(
                    " (sh expects `{}` for the `{open}` on line {line})",
                    e.text()
                )
            }
            (Some(e), None) => format!(" (sh expects `{}`)", e.text()),
            (None, _) => String::new(),
        };
        let hint = match t {
            Tok::Rp => "remove it, or put the value that holds it in quotes (\"...\")",
            Tok::Lp => "a value with `(` must be in quotes (\"...\")",
            Tok::EndCase => "`;;` only ends a branch of `case`; one `;` ends a command",
            Tok::Semi | Tok::Bg | Tok::And | Tok::Or | Tok::Pipe => {
                "no command comes before it: remove it"
            }
            Tok::Nl => "the command before it is not finished: complete it, or join the lines",
            Tok::Redir => "a redirection needs a file name after it",
            Tok::Word => "put a newline or `;` before it",
            _ => "nothing open here takes it: remove it, or restore what should open it",
        };
        self.err(
            self.tok_start,
            format!("`{what}` is not expected here{expecting}: {hint}"),
        )
    }

    /// Where the last non-blank character before `pos` is (for errors at the end of the file).
    fn last_text_before(&self, pos: usize) -> usize {
        let mut p = pos.min(self.src.len());
        while p > 0 && self.src[p - 1].is_ascii_whitespace() {
            p -= 1;
        }
        p.saturating_sub(1)
    }

    fn expect(&mut self, t: Tok) -> Res<()> {
        if self.readtoken()? != t {
            return Err(self.unexpected(Some(t)));
        }
        Ok(())
    }

    fn nest(&mut self, what: &'static str, at: usize) -> Res<()> {
        if self.depth + self.open.len() >= MAX_DEPTH {
            return Err(self.stricter(
                at,
                format!("`{what}` is nested more than {MAX_DEPTH} levels deep; vfio-gen does not follow such a file"),
            ));
        }
        self.open.push((what, at));
        Ok(())
    }

    // ---- grammar ------------------------------------------------------------------------

    fn program(&mut self) -> Res<()> {
        loop {
            self.list(1)?;
            if self.pushback && self.last == Tok::Eof {
                return Ok(());
            }
        }
    }

    /// dash's `list(nlflag)`: 1 at the top level (a newline ends it), 0 inside compound
    /// commands (newlines separate), 2 where the list may be empty (a `case` branch, `$(...)`).
    fn list(&mut self, mut nlflag: u8) -> Res<()> {
        let chknl = if nlflag & 1 != 0 { 0 } else { CHKNL };
        loop {
            self.checkkwd = chknl | CHKKWD;
            let tok = self.readtoken()?;
            match tok {
                Tok::Nl => {
                    self.parseheredoc()?;
                    return Ok(());
                }
                Tok::Eof => {
                    self.parseheredoc()?;
                    self.pushback = true;
                    self.last = Tok::Eof;
                    return Ok(());
                }
                _ => {}
            }
            self.pushback = true;
            if nlflag == 2 && tok.ends_list() {
                return Ok(());
            }
            nlflag |= 2;
            self.andor()?;
            match self.readtoken()? {
                Tok::Eof => {
                    self.parseheredoc()?;
                    self.pushback = true;
                    self.last = Tok::Eof;
                    return Ok(());
                }
                Tok::Nl => self.pushback = true,
                Tok::Bg | Tok::Semi => {}
                _ => {
                    if chknl == 0 {
                        return Err(self.unexpected(None));
                    }
                    self.pushback = true;
                    return Ok(());
                }
            }
        }
    }

    fn andor(&mut self) -> Res<()> {
        self.pipeline()?;
        loop {
            match self.readtoken()? {
                Tok::And | Tok::Or => {
                    self.checkkwd = CHKNL | CHKKWD;
                    self.pipeline()?;
                }
                _ => {
                    self.pushback = true;
                    return Ok(());
                }
            }
        }
    }

    fn pipeline(&mut self) -> Res<()> {
        if self.readtoken()? == Tok::Not {
            self.checkkwd = CHKKWD;
        } else {
            self.pushback = true;
        }
        self.command()?;
        while self.readtoken()? == Tok::Pipe {
            self.checkkwd = CHKNL | CHKKWD;
            self.command()?;
        }
        self.pushback = true;
        Ok(())
    }

    fn command(&mut self) -> Res<()> {
        let t = self.readtoken()?;
        let at = self.tok_start;
        let close = match t {
            Tok::If => {
                self.nest("if", at)?;
                self.list(0)?;
                self.expect(Tok::Then)?;
                self.list(0)?;
                while self.readtoken()? == Tok::Elif {
                    self.list(0)?;
                    self.expect(Tok::Then)?;
                    self.list(0)?;
                }
                if self.last == Tok::Else {
                    self.list(0)?;
                } else {
                    self.pushback = true;
                }
                Tok::Fi
            }
            Tok::While | Tok::Until => {
                self.nest(if t == Tok::While { "while" } else { "until" }, at)?;
                self.list(0)?;
                self.expect(Tok::Do)?;
                self.list(0)?;
                Tok::Done
            }
            Tok::For => {
                self.nest("for", at)?;
                if self.readtoken()? != Tok::Word || self.quoted || !good_name(&self.word_text()) {
                    return Err(self.err(
                        self.tok_start,
                        "`for` needs a variable name after it (sh: Bad for loop variable)",
                    ));
                }
                self.checkkwd = CHKNL | CHKKWD;
                if self.readtoken()? == Tok::In {
                    while self.readtoken()? == Tok::Word {}
                    if self.last != Tok::Nl && self.last != Tok::Semi {
                        return Err(self.unexpected(None));
                    }
                } else if self.last != Tok::Semi {
                    self.pushback = true;
                }
                self.checkkwd = CHKNL | CHKKWD;
                self.expect(Tok::Do)?;
                self.list(0)?;
                Tok::Done
            }
            Tok::Case => {
                self.nest("case", at)?;
                self.expect(Tok::Word)?;
                self.checkkwd = CHKNL | CHKKWD;
                self.expect(Tok::In)?;
                loop {
                    self.checkkwd = CHKNL | CHKKWD;
                    if self.readtoken()? == Tok::Esac {
                        break;
                    }
                    if self.last == Tok::Lp {
                        self.readtoken()?;
                    }
                    loop {
                        if self.readtoken()? != Tok::Pipe {
                            break;
                        }
                        self.readtoken()?;
                    }
                    if self.last != Tok::Rp {
                        return Err(self.unexpected(Some(Tok::Rp)));
                    }
                    self.list(2)?;
                    self.checkkwd = CHKNL | CHKKWD;
                    match self.readtoken()? {
                        Tok::Esac => break,
                        Tok::EndCase => {}
                        _ => return Err(self.unexpected(Some(Tok::EndCase))),
                    }
                }
                self.open.pop();
                return self.redirections();
            }
            Tok::Lp => {
                self.nest("(", at)?;
                self.list(0)?;
                Tok::Rp
            }
            Tok::Begin => {
                self.nest("{", at)?;
                self.list(0)?;
                Tok::End
            }
            Tok::Word | Tok::Redir => {
                self.pushback = true;
                return self.simplecmd();
            }
            _ => return Err(self.unexpected(None)),
        };
        self.expect(close)?;
        self.open.pop();
        self.redirections()
    }

    fn redirections(&mut self) -> Res<()> {
        self.checkkwd = CHKKWD;
        while self.readtoken()? == Tok::Redir {
            self.parsefname()?;
        }
        self.pushback = true;
        Ok(())
    }

    fn simplecmd(&mut self) -> Res<()> {
        // (words, assignments before them, redirections)
        let mut args: Vec<(usize, usize)> = Vec::new();
        let (mut vars, mut redirs) = (0usize, 0usize);
        let mut assigning = true;
        loop {
            self.checkkwd = 0;
            match self.readtoken()? {
                Tok::Word => {
                    let text = self.word_text();
                    let assignment = {
                        let n = text
                            .iter()
                            .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'))
                            .unwrap_or(text.len());
                        n > 0 && is_name_start(text.first().copied()) && text.get(n) == Some(&b'=')
                    };
                    if assigning && assignment {
                        vars += 1;
                    } else {
                        args.push(self.word);
                        assigning = false;
                    }
                }
                Tok::Redir => {
                    redirs += 1;
                    self.parsefname()?;
                }
                Tok::Lp if args.len() == 1 && vars == 0 && redirs == 0 => {
                    let at = self.tok_start;
                    self.expect(Tok::Rp)?;
                    let name = joined(&self.src[args[0].0..args[0].1]);
                    if !good_name(&name) || SPECIAL_BUILTINS.contains(&name.as_slice()) {
                        return Err(self.err(
                            at,
                            format!("`{}()` defines a function, and that is not a name a function can have (sh: Bad function name): remove the `()`, or quote it", shown(&name)),
                        ));
                    }
                    self.checkkwd = CHKNL | CHKKWD;
                    self.nest("function", at)?;
                    self.command()?;
                    self.open.pop();
                    return Ok(());
                }
                _ => {
                    self.pushback = true;
                    return Ok(());
                }
            }
        }
    }

    fn parsefname(&mut self) -> Res<()> {
        let here = self.redir_here.take();
        if self.readtoken()? != Tok::Word {
            return Err(self.unexpected(None));
        }
        if let Some(strip_tabs) = here {
            let raw = &self.src[self.word.0..self.word.1];
            let delim = unquote(raw);
            if delim.is_empty() {
                return Err(self.stricter(
                    self.word.0,
                    "a here-document (`<<`) needs a word that ends it",
                ));
            }
            self.heredocs.push(Here {
                delim,
                strip_tabs,
                expand: !self.quoted,
                at: self.word.0,
            });
        }
        Ok(())
    }

    fn parseheredoc(&mut self) -> Res<()> {
        for h in std::mem::take(&mut self.heredocs) {
            self.heredoc(&h)?;
        }
        Ok(())
    }

    /// Whether the line at `pos` ends the here-document; if so, where the next line starts.
    fn heredoc_end(&self, h: &Here, mut pos: usize) -> Option<usize> {
        if h.strip_tabs {
            while self.src.get(pos) == Some(&b'\t') {
                pos += 1;
            }
        }
        let rest = self.src.get(pos..)?;
        let rest = rest.strip_prefix(h.delim.as_slice())?;
        match rest.first() {
            None => Some(self.src.len()),
            Some(b'\n') => Some(pos + h.delim.len() + 1),
            Some(_) => None,
        }
    }

    fn heredoc(&mut self, h: &Here) -> Res<()> {
        let never_ends = |p: &Self| {
            p.stricter(
                h.at,
                format!(
                    "the here-document started here never ends: add a line that is just `{}`",
                    String::from_utf8_lossy(&h.delim)
                ),
            )
        };
        if !h.expand {
            loop {
                if self.pos >= self.src.len() {
                    return Err(never_ends(self));
                }
                if let Some(next) = self.heredoc_end(h, self.pos) {
                    self.pos = next;
                    return Ok(());
                }
                match self.src[self.pos..].iter().position(|&b| b == b'\n') {
                    Some(i) => self.pos += i + 1,
                    None => self.pos = self.src.len(),
                }
            }
        }
        let first = self.getc_bnl();
        if self.scan(first, Syn::Dq, Some(h))? {
            Ok(())
        } else {
            Err(never_ends(self))
        }
    }

    // ---- words --------------------------------------------------------------------------

    /// Reads a word (or a redirection operator) starting with `first`, like dash's
    /// `readtoken1` without an end mark.
    fn word(&mut self, first: u8) -> Res<Tok> {
        let start = self.pos - 1;
        self.redir_here = None;
        let quoted = self.scan(Some(first), Syn::Base, None)?;
        // `scan` stops after reading the character that ends the word.
        let end = self.pos - 1;
        let c = self.src.get(end).copied().filter(|_| end < self.src.len());
        let text = joined(&self.src[start.min(self.src.len())..end.min(self.src.len())]);
        if matches!(c, Some(b'<' | b'>'))
            && !quoted
            && (text.is_empty() || (text.len() == 1 && text[0].is_ascii_digit()))
        {
            // `scan` consumed the operator's first character.
            self.redirection(c.unwrap_or(b'>'));
            self.word = (start, end);
            return Ok(Tok::Redir);
        }
        self.unget();
        self.word = (start, end);
        self.quoted = quoted;
        Ok(Tok::Word)
    }

    fn redirection(&mut self, c: u8) {
        if c == b'>' {
            match self.getc_bnl() {
                Some(b'>' | b'|' | b'&') => {}
                _ => self.unget(),
            }
        } else {
            match self.getc_bnl() {
                Some(b'<') => {
                    let strip = if self.getc_bnl() == Some(b'-') {
                        true
                    } else {
                        self.unget();
                        false
                    };
                    self.redir_here = Some(strip);
                }
                Some(b'&' | b'>') => {}
                _ => self.unget(),
            }
        }
    }

    /// The character loop of dash's `readtoken1`. For a word (`here` is `None`) it returns
    /// whether any part was quoted, having read the character after the word. For a
    /// here-document body it returns whether the end line was found.
    fn scan(&mut self, first: Option<u8>, syn: Syn, here: Option<&Here>) -> Res<bool> {
        let mut frames = vec![Frame::new(syn)];
        let mut opens = Opens::default();
        let mut quotef = false;
        let mut c = first;
        let mut line_start = here.is_some();
        loop {
            if let Some(h) = here
                && line_start
            {
                line_start = false;
                let at = self.pos - 1;
                if c.is_none() {
                    break;
                }
                if let Some(next) = self.heredoc_end(h, at) {
                    self.pos = next;
                    return self.end_checks(&frames, &opens, here).map(|()| true);
                }
            }
            let top = frames.len() - 1;
            let f = &mut frames[top];
            let fieldsplitting = f.syn == Syn::Base && f.varnest == 0;
            match (f.syn, c) {
                (_, None) => break,
                (_, Some(b'\n')) => {
                    if fieldsplitting {
                        break;
                    }
                    line_start = here.is_some();
                }
                // In a here-document a quote is just text, except inside `${...}`.
                (Syn::Sq, Some(b'\'')) if here.is_none() || f.varnest > 0 => {
                    if f.dqvarnest == 0 {
                        f.syn = Syn::Base;
                        f.dblquote = false;
                    }
                    quotef = true;
                }
                (Syn::Sq, Some(_)) => {}
                (Syn::Base, Some(b'\'')) => {
                    f.syn = Syn::Sq;
                    opens.quote = Some((self.pos - 1, b'\''));
                }
                (Syn::Base, Some(b'"')) => {
                    f.syn = Syn::Dq;
                    f.dblquote = true;
                    if f.varnest > 0 {
                        f.innerdq = !f.innerdq;
                    }
                    opens.quote = Some((self.pos - 1, b'"'));
                }
                (Syn::Dq, Some(b'"')) if here.is_none() || f.varnest > 0 => {
                    if f.dqvarnest == 0 {
                        f.syn = Syn::Base;
                        f.dblquote = false;
                    }
                    quotef = true;
                    if f.varnest > 0 {
                        f.innerdq = !f.innerdq;
                    }
                }
                (_, Some(b'\\')) => {
                    if self.getc().is_none() {
                        self.unget();
                    } else {
                        quotef = true;
                    }
                }
                (_, Some(b'$')) => self.parsesub(&mut frames, &mut opens)?,
                (_, Some(b'}')) if !f.innerdq && f.varnest > 0 => {
                    f.varnest -= 1;
                    opens.braces.pop();
                    if f.varnest == 0 && f.varpushed {
                        if frames.len() > 1 {
                            frames.pop();
                        }
                    } else if f.dqvarnest > 0 {
                        f.dqvarnest -= 1;
                    }
                }
                (Syn::Ari, Some(b'(')) => f.parenlevel += 1,
                (Syn::Ari, Some(b')')) => {
                    if f.parenlevel > 0 {
                        f.parenlevel -= 1;
                    } else if self.getc_bnl() == Some(b')') {
                        opens.arith.pop();
                        if frames.len() > 1 {
                            frames.pop();
                        }
                    } else {
                        self.unget();
                    }
                }
                (_, Some(b'`')) => {
                    let dq = f.dblquote;
                    self.backquote(dq)?;
                }
                (
                    Syn::Base,
                    Some(b'<' | b'>' | b'(' | b')' | b';' | b'&' | b'|' | b' ' | b'\t'),
                ) if fieldsplitting => break,
                // Everything else is part of the word (a guard above that fails lands here too).
                _ => {}
            }
            let top = frames.len() - 1;
            c = if frames[top].syn == Syn::Sq {
                self.getc()
            } else {
                self.getc_bnl()
            };
        }
        self.end_checks(&frames, &opens, here)?;
        Ok(if here.is_some() { false } else { quotef })
    }

    fn end_checks(&self, frames: &[Frame], opens: &Opens, here: Option<&Here>) -> Res<()> {
        let top = frames[frames.len() - 1];
        let start_of = |v: &[usize]| v.last().copied().unwrap_or(self.pos.saturating_sub(1));
        if top.syn == Syn::Ari {
            return Err(self.err(
                start_of(&opens.arith),
                "the `$((` opened here is never closed with `))`: close it, or remove the `$((`",
            ));
        }
        if top.syn != Syn::Base && here.is_none() {
            let (at, q) = opens.quote.unwrap_or((self.pos.saturating_sub(1), b'"'));
            let q = q as char;
            return Err(self.err(
                at,
                format!("the {q} opened here is never closed (sh: Unterminated quoted string): add the closing {q}, or remove this one; a value is quoted with the same mark on both ends"),
            ));
        }
        if top.varnest != 0 {
            return Err(self.err(
                start_of(&opens.braces),
                "the `${` opened here is never closed with `}` (sh: Missing '}'): close it, or remove the `${`",
            ));
        }
        // dash accepts these and fails when it expands them ("Bad substitution"), which stops
        // grub-mkconfig; bash reads some of them differently. Refuse either way.
        if let Some(at) = opens.bad_substitution {
            return Err(self.stricter(
                at,
                "this `${...}` is not a substitution sh can expand (it fails with \"Bad substitution\" when the file is read): write `${NAME}`, or `${NAME:-default}` and the like",
            ));
        }
        Ok(())
    }

    /// After `$` (dash's `parsesub`).
    fn parsesub(&mut self, frames: &mut Vec<Frame>, opens: &mut Opens) -> Res<()> {
        let dollar = self.pos - 1;
        let mut c = self.getc_bnl();
        if c == Some(b'(') {
            if self.getc_bnl() == Some(b'(') {
                frames.push(Frame::new(Syn::Ari));
                opens.arith.push(dollar);
            } else {
                self.unget();
                self.command_substitution(dollar)?;
            }
            return Ok(());
        }
        if !(c == Some(b'{') || is_name_start(c) || is_special(c)) {
            self.unget();
            return Ok(());
        }
        let top = frames.len() - 1;
        let mut newsyn = frames[top].syn;
        let braced = c == Some(b'{');
        let mut subtype: u8 = VSNORMAL;
        if braced {
            c = self.getc_bnl();
            subtype = 0;
        }
        let mut badsub = false;
        loop {
            if is_name_start(c) {
                loop {
                    c = self.getc_bnl();
                    if !is_in_name(c) {
                        break;
                    }
                }
            } else if is_digit(c) {
                loop {
                    c = self.getc_bnl();
                    if !((subtype == 0 || subtype >= VSLENGTH) && is_digit(c)) {
                        break;
                    }
                }
            } else if c != Some(b'}') {
                let mut cc = c;
                c = self.getc_bnl();
                if subtype == 0 && cc == Some(b'#') {
                    subtype = VSLENGTH;
                    if c == Some(b'_') || c.is_some_and(|c| c.is_ascii_alphanumeric()) {
                        continue;
                    }
                    cc = c;
                    c = self.getc_bnl();
                    if cc == Some(b'}') || c != Some(b'}') {
                        self.unget();
                        subtype = 0;
                        c = cc;
                        cc = Some(b'#');
                    }
                }
                if !is_special(cc) {
                    if subtype == VSLENGTH {
                        subtype = 0;
                    }
                    badsub = true;
                }
            } else {
                badsub = true;
            }
            break;
        }
        if badsub {
            self.unget();
        } else if subtype == 0 {
            let types = b"}-+?=";
            match c {
                Some(b'%' | b'#') => {
                    subtype = if c == Some(b'#') {
                        VSTRIMLEFT
                    } else {
                        VSTRIMRIGHT
                    };
                    if self.getc_bnl() == c {
                        subtype += 1;
                    } else {
                        self.unget();
                    }
                    newsyn = Syn::Base;
                }
                _ => {
                    if c == Some(b':') {
                        subtype = VSNUL;
                        c = self.getc_bnl();
                    }
                    if let Some(i) = c.and_then(|c| types.iter().position(|&t| t == c)) {
                        subtype |= i as u8 + VSNORMAL;
                    }
                }
            }
        } else {
            if subtype == VSLENGTH && c != Some(b'}') {
                subtype = 0;
            }
            self.unget();
        }
        if braced && (subtype & 0x0f) == 0 {
            opens.bad_substitution.get_or_insert(dollar);
        }
        if newsyn == Syn::Ari {
            newsyn = Syn::Dq;
        }
        let f = frames[top];
        if (newsyn != f.syn || f.innerdq) && subtype != VSNORMAL {
            let mut pushed = Frame::new(newsyn);
            pushed.dblquote = newsyn != Syn::Base;
            pushed.varpushed = true;
            frames.push(pushed);
        }
        if subtype != VSNORMAL {
            let top = frames.len() - 1;
            let f = &mut frames[top];
            f.varnest += 1;
            if f.dblquote {
                f.dqvarnest += 1;
            }
            opens.braces.push(dollar);
        }
        Ok(())
    }

    /// `$(` read: a command list, then `)`.
    fn command_substitution(&mut self, at: usize) -> Res<()> {
        let saved = std::mem::take(&mut self.heredocs);
        self.nest("$(", at)?;
        self.list(2)?;
        self.expect(Tok::Rp)?;
        self.open.pop();
        self.parseheredoc()?;
        self.heredocs = saved;
        Ok(())
    }

    /// A backquote read: the text up to the next unescaped one, parsed on its own.
    fn backquote(&mut self, dblquote: bool) -> Res<()> {
        let at = self.pos - 1;
        let mut inner = Vec::new();
        loop {
            match self.getc_bnl() {
                Some(b'`') => break,
                Some(b'\\') => match self.getc() {
                    Some(c) => {
                        if !(c == b'\\' || c == b'`' || c == b'$' || (dblquote && c == b'"')) {
                            inner.push(b'\\');
                        }
                        inner.push(c);
                    }
                    None => return Err(self.backquote_open(at)),
                },
                Some(c) => inner.push(c),
                None => return Err(self.backquote_open(at)),
            }
        }
        if self.depth + self.open.len() >= MAX_DEPTH {
            return Err(self.stricter(at, "backquotes are nested too deeply"));
        }
        let mut sub = Parser::new(&inner, self.line_of(at), self.depth + self.open.len() + 1);
        sub.nest("`", 0)?;
        sub.list(2)?;
        // dash ignores what is left after the list; other shells reject it.
        if sub.readtoken()? != Tok::Eof {
            let e = sub.unexpected(None);
            return Err(SyntaxError {
                sh_rejects: false,
                msg: format!("inside the backquotes: {}", e.msg),
                ..e
            });
        }
        sub.parseheredoc()?;
        Ok(())
    }

    fn backquote_open(&self, at: usize) -> SyntaxError {
        self.err(
            at,
            "the backquote (`) opened here is never closed (sh: EOF in backquote substitution): add the closing backquote, or remove this one",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) {
        if let Err(e) = check(s.as_bytes()) {
            panic!("{s:?}: {e}");
        }
    }

    fn bad(s: &str) -> SyntaxError {
        match check(s.as_bytes()) {
            Ok(()) => panic!("{s:?} passes"),
            Err(e) => e,
        }
    }

    #[test]
    fn what_dash_accepts() {
        for s in [
            "",
            "\n\n# comment\n",
            "A=1\nB='x y' C=\"$A ${A} $(echo \")\")\" D=`echo \\`x\\``\n",
            "GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n",
            "GRUB_DISTRIBUTOR=\"$(sed 's, release .*$,,g' /etc/system-release)\"\n",
            "X=\"${X:-\"}\"}\" Y=${Y#\"}\"}\n",
            "if [ -e /x ]; then\n  A=1\nelif b; then c; else d; fi\n",
            "for x in a b; do c; done\nfor y do :; done\nwhile a; do b; done\n",
            "case $x in (a|b) c;; d) ;; esac\ncase x in esac\n",
            "f() { a; }\n{ a; b; } >/dev/null 2>&1\n( a )\n! a | b && c || d &\n",
            "cat <<EOF\nbody $(echo x)\nEOF\ncat <<-'E'\n\tx'\n\tE\n",
            "A=\"quiet \\\n  splash\"\nx\\",
            "echo $((1 + (2 * 3)))\necho ${#} ${#X} ${10} $$ $@\n",
            "a=1 fi\na }\n",
        ] {
            ok(s);
        }
    }

    #[test]
    fn what_dash_rejects() {
        for (s, line, says) in [
            ("A=1\nB=foo)\n", 2, "`)` is not expected"),
            ("A=\"quiet `x\"\n", 1, "backquote"),
            (
                "GRUB_CMDLINE_LINUX_DEFAULT='quiet splash\"\n",
                1,
                "' opened here",
            ),
            ("A=\"x\nB=y\n", 1, "\" opened here"),
            ("A=$(echo x\n", 1, "`$(` here is never closed with `)`"),
            ("A=${X\n", 1, "`${` opened here"),
            ("A=$((1+2)\n", 1, "`$((`"),
            ("a;;\n", 1, "`;;`"),
            ("a; ;\n", 1, "`;`"),
            ("\n\nfi\n", 3, "`fi`"),
            ("done\n", 1, "`done`"),
            ("if a; then b\n", 1, "`if` here is never closed with `fi`"),
            ("{ a; } b\n", 1, "`b`"),
            ("{ }\n", 1, "`}`"),
            ("a &&\n", 1, "the file ends"),
            ("a=()\n", 1, "`(`"),
            ("a b() { c; }\n", 1, "`(`"),
            ("export() { a; }\n", 1, "function"),
            ("for 1 in a; do b; done\n", 1, "variable name"),
            ("echo >\n", 1, "`newline`"),
            ("echo >", 1, "the file ends"),
            ("a | ! b\n", 1, "`!`"),
        ] {
            let e = bad(s);
            assert_eq!(e.line, line, "{s:?}: {e}");
            assert!(e.msg.contains(says), "{s:?}: {e}");
            assert!(e.sh_rejects, "{s:?}: {e}");
        }
    }

    #[test]
    fn stricter_than_dash() {
        for s in [
            "echo ${X\"}\n",
            "echo ${X:a}\n",
            "echo ${}\n",
            "cat <<EOF\nno end\n",
            "echo `a )`\n",
        ] {
            let e = bad(s);
            assert!(!e.sh_rejects, "{s:?}: {e}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let s = "$(".repeat(10_000);
        assert!(check(s.as_bytes()).is_err());
        let s = "{ ".repeat(10_000);
        assert!(check(s.as_bytes()).is_err());
    }
}
