//! The assignments of the bash files that configure the UKI builders: mkinitcpio presets
//! (`/etc/mkinitcpio.d/*.preset`), dracut's `dracut.conf` and its drop-ins, kernel-install's
//! `install.conf`. Those files are sourced by bash; vfio-gen reads only the top-level
//! `NAME=value` / `NAME+=value` lines whose value it can know without running anything
//! (quoted or bare words, bash arrays), and says which ones it could not
//! (docs/uki.md, "How vfio-gen reads the builders' files").

/// A value as bash would hold it after the assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string (quotes removed).
    Text(String),
    /// A bash array `(a 'b c')`.
    Array(Vec<String>),
    /// Something only running the file would tell: `$VAR`, `$(...)`, backticks.
    Computed,
}

impl Value {
    /// The words of the value, as `${NAME[@]}` or an unquoted `$NAME` would split them.
    pub fn words(&self) -> Option<Vec<String>> {
        match self {
            Value::Text(t) => Some(t.split_whitespace().map(str::to_string).collect()),
            Value::Array(a) => Some(a.clone()),
            Value::Computed => None,
        }
    }
}

/// One assignment: 1-based line, the name, whether it appends (`+=`), the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub line: usize,
    pub name: String,
    pub append: bool,
    pub value: Value,
}

/// The top-level assignments of a file, in order. Lines inside `if`/functions are not told
/// apart: the builders' files are flat lists of settings.
pub fn assignments(text: &str) -> Vec<Assignment> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = i;
        let l = lines[i].trim_start();
        let l = l.strip_prefix("export ").map(str::trim_start).unwrap_or(l);
        i += 1;
        let Some(eq) = l.find('=') else { continue };
        let (mut name, rest) = (&l[..eq], &l[eq + 1..]);
        let append = name.ends_with('+');
        if append {
            name = &name[..name.len() - 1];
        }
        if name.is_empty()
            || !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        // The value may go on over several lines (an open quote or array).
        let mut body = rest.to_string();
        while !complete(&body) && i < lines.len() {
            body.push('\n');
            body.push_str(lines[i]);
            i += 1;
        }
        out.push(Assignment {
            line: start + 1,
            name: name.to_string(),
            append,
            value: value(&body),
        });
    }
    out
}

/// Whether quotes and parentheses are closed by the end of `s`.
fn complete(s: &str) -> bool {
    let (mut q, mut depth, mut esc) = (None::<char>, 0i32, false);
    for c in s.chars() {
        if esc {
            esc = false;
            continue;
        }
        match (q, c) {
            (Some('\''), '\'') => q = None,
            (Some('\''), _) => {}
            (_, '\\') => esc = true,
            (Some('"'), '"') => q = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => q = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, '#') if depth == 0 => break,
            _ => {}
        }
    }
    q.is_none() && depth <= 0
}

/// Splits a shell value into words, removing quotes; `None` when a word needs expansion.
fn split(s: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = cur.get_or_insert_with(String::new);
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    w.push(d);
                }
            }
            '"' => {
                let w = cur.get_or_insert_with(String::new);
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '$' | '`' => return None,
                        '\\' => {
                            if let Some(e) = chars.next() {
                                if !matches!(e, '$' | '`' | '"' | '\\' | '\n') {
                                    w.push('\\');
                                }
                                if e != '\n' {
                                    w.push(e);
                                }
                            }
                        }
                        _ => w.push(d),
                    }
                }
            }
            '$' | '`' => return None,
            '\\' => {
                if let Some(e) = chars.next()
                    && e != '\n'
                {
                    cur.get_or_insert_with(String::new).push(e);
                }
            }
            '#' if cur.is_none() => break,
            c if c.is_whitespace() => {
                if let Some(w) = cur.take() {
                    words.push(w);
                }
            }
            c => cur.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(cur);
    Some(words)
}

fn value(body: &str) -> Value {
    let t = body.trim_start();
    if let Some(inner) = t.strip_prefix('(') {
        let Some(close) = inner.rfind(')') else {
            return Value::Computed;
        };
        return split(&inner[..close]).map_or(Value::Computed, Value::Array);
    }
    // A scalar assignment is one word: the value ends at the first unquoted blank.
    match split(t) {
        Some(words) => Value::Text(words.into_iter().next().unwrap_or_default()),
        None => Value::Computed,
    }
}

/// The value of `name` after every assignment in `files` (in order): `+=` appends to a text
/// value and extends an array. Returns the value and the place (`file:line`) of the last
/// assignment; `None` when the files never set it.
pub fn last_value(files: &[(String, Vec<Assignment>)], name: &str) -> Option<(Value, String)> {
    let mut out: Option<(Value, String)> = None;
    for (path, assigns) in files {
        for a in assigns.iter().filter(|a| a.name == name) {
            let place = format!("{path}:{}", a.line);
            let v = match (&out, a.append, &a.value) {
                (Some((Value::Text(old), _)), true, Value::Text(new)) => {
                    Value::Text(format!("{old}{new}"))
                }
                (Some((Value::Array(old), _)), true, Value::Array(new)) => {
                    Value::Array(old.iter().chain(new).cloned().collect())
                }
                (Some(_), true, _) => Value::Computed,
                _ => a.value.clone(),
            };
            out = Some((v, place));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_presets_and_dracut_drop_ins() {
        let text = "# mkinitcpio preset file for the 'linux' package\n\n#ALL_config=\"/etc/mkinitcpio.conf\"\nALL_kver=\"/boot/vmlinuz-linux\"\n\nPRESETS=('default'\n  'fallback')\n\ndefault_uki=\"/efi/EFI/Linux/arch-linux.efi\" # the UKI\ndefault_options=\"--splash /usr/share/systemd/bootctl/splash-arch.bmp --cmdline /etc/kernel/cmdline\"\nfallback_uki=$ESP/x.efi\n";
        let a = assignments(text);
        let names: Vec<&str> = a.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ALL_kver",
                "PRESETS",
                "default_uki",
                "default_options",
                "fallback_uki"
            ]
        );
        assert_eq!(
            a[1].value,
            Value::Array(vec!["default".into(), "fallback".into()])
        );
        assert_eq!(a[2].line, 9);
        assert_eq!(
            a[2].value,
            Value::Text("/efi/EFI/Linux/arch-linux.efi".into())
        );
        assert_eq!(a[3].value.words().unwrap().len(), 4);
        assert_eq!(a[4].value, Value::Computed);

        let dracut = "uefi=\"yes\"\nkernel_cmdline=\"root=UUID=1 rw\"\nkernel_cmdline+=' quiet '\n";
        let files = vec![(
            "/etc/dracut.conf.d/uki.conf".to_string(),
            assignments(dracut),
        )];
        assert_eq!(
            last_value(&files, "kernel_cmdline"),
            Some((
                Value::Text("root=UUID=1 rw quiet ".into()),
                "/etc/dracut.conf.d/uki.conf:3".into()
            ))
        );
        assert_eq!(
            last_value(&files, "uefi").unwrap().0,
            Value::Text("yes".into())
        );
    }
}
