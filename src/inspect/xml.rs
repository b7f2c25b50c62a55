//! A small XML reader for libvirt's domain XML (docs/libvirt.md section 3): elements,
//! attributes in `'…'` or `"…"`, text, comments, the `<?xml …?>` declaration, CDATA and the five
//! predefined entities plus character references. No DTD, no namespaces beyond keeping a
//! prefixed name as it is written. Errors name the line and column.

/// One element: its name, attributes in document order, children, and its text (the
/// concatenated character data directly inside it, entities resolved).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
    /// 1-based line of the `<` that opens it.
    pub line: usize,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
    pub fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

struct Reader<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn at(&self) -> (usize, usize) {
        let before = &self.s[..self.pos];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
    fn err(&self, what: &str) -> String {
        let (l, c) = self.at();
        format!("line {l}, column {c}: {what}")
    }
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }
    fn skip_ws(&mut self) {
        let t = self.rest();
        self.pos += t.len() - t.trim_start().len();
    }
    /// Skips past `end`, or fails naming `what`.
    fn skip_past(&mut self, end: &str, what: &str) -> Result<usize, String> {
        match self.rest().find(end) {
            Some(i) => {
                let start = self.pos;
                self.pos += i + end.len();
                Ok(start)
            }
            None => Err(self.err(&format!("{what} is not closed"))),
        }
    }
    fn name(&mut self) -> Result<String, String> {
        let t = self.rest();
        let n = t
            .find(|c: char| c.is_whitespace() || matches!(c, '/' | '>' | '=' | '<'))
            .unwrap_or(t.len());
        if n == 0 {
            return Err(self.err("a name was expected"));
        }
        self.pos += n;
        Ok(t[..n].to_string())
    }
    /// Comments, processing instructions and a doctype, with the whitespace around them.
    fn skip_misc(&mut self) -> Result<(), String> {
        loop {
            self.skip_ws();
            let t = self.rest();
            if t.starts_with("<!--") {
                self.skip_past("-->", "a comment")?;
            } else if t.starts_with("<?") {
                self.skip_past("?>", "a processing instruction")?;
            } else if t.starts_with("<!DOCTYPE") {
                self.skip_past(">", "the DOCTYPE")?;
            } else {
                return Ok(());
            }
        }
    }
    fn element(&mut self, depth: usize) -> Result<Element, String> {
        if depth > 256 {
            return Err(self.err("elements are nested more than 256 deep"));
        }
        let (line, _) = self.at();
        if !self.rest().starts_with('<') {
            return Err(self.err("an element was expected"));
        }
        self.pos += 1;
        let mut e = Element {
            name: self.name()?,
            line,
            ..Element::default()
        };
        loop {
            self.skip_ws();
            let t = self.rest();
            if t.starts_with("/>") {
                self.pos += 2;
                return Ok(e);
            }
            if t.starts_with('>') {
                self.pos += 1;
                break;
            }
            let key = self.name()?;
            self.skip_ws();
            if !self.rest().starts_with('=') {
                return Err(self.err(&format!("attribute {key} has no `=`")));
            }
            self.pos += 1;
            self.skip_ws();
            let q = match self.rest().chars().next() {
                Some(q @ ('\'' | '"')) => q,
                _ => return Err(self.err(&format!("attribute {key}'s value is not quoted"))),
            };
            self.pos += 1;
            let start = self.skip_past(&q.to_string(), &format!("attribute {key}'s value"))?;
            let raw = &self.s[start..self.pos - 1];
            let value = self.unescape(raw)?;
            if e.attrs.iter().any(|(k, _)| *k == key) {
                return Err(self.err(&format!("attribute {key} is given twice")));
            }
            e.attrs.push((key, value));
        }
        loop {
            let t = self.rest();
            if t.is_empty() {
                return Err(self.err(&format!("<{}> (line {line}) is not closed", e.name)));
            }
            if let Some(r) = t.strip_prefix("</") {
                let n = r
                    .find(|c: char| c.is_whitespace() || c == '>')
                    .unwrap_or(r.len());
                if r[..n] != e.name {
                    return Err(self.err(&format!(
                        "</{}> closes <{}> of line {line}",
                        &r[..n],
                        e.name
                    )));
                }
                self.pos += 2 + n;
                self.skip_ws();
                if !self.rest().starts_with('>') {
                    return Err(self.err("`>` was expected"));
                }
                self.pos += 1;
                return Ok(e);
            }
            if t.starts_with("<!--") {
                self.skip_past("-->", "a comment")?;
            } else if t.starts_with("<![CDATA[") {
                let start = self.skip_past("]]>", "a CDATA section")?;
                e.text.push_str(&self.s[start + 9..self.pos - 3]);
            } else if t.starts_with("<?") {
                self.skip_past("?>", "a processing instruction")?;
            } else if t.starts_with('<') {
                e.children.push(self.element(depth + 1)?);
            } else {
                let n = t.find('<').unwrap_or(t.len());
                let text = self.unescape(&t[..n])?;
                e.text.push_str(&text);
                self.pos += n;
            }
        }
    }
    fn unescape(&self, raw: &str) -> Result<String, String> {
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(i) = rest.find('&') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let Some(end) = after.find(';') else {
                return Err(self.err("an `&` does not start an entity"));
            };
            let ent = &after[..end];
            let c = match ent {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "apos" => Some('\''),
                "quot" => Some('"'),
                _ => ent
                    .strip_prefix("#x")
                    .map(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| ent.strip_prefix('#').map(|d| d.parse().ok()))
                    .flatten()
                    .and_then(char::from_u32),
            };
            match c {
                Some(c) => out.push(c),
                None => return Err(self.err(&format!("unknown entity &{ent};"))),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// The document's root element. `Err`: where and what is wrong.
pub fn parse(text: &str) -> Result<Element, String> {
    let mut r = Reader {
        s: text.strip_prefix('\u{feff}').unwrap_or(text),
        pos: 0,
    };
    r.skip_misc()?;
    let root = r.element(0)?;
    r.skip_misc()?;
    if !r.rest().is_empty() {
        return Err(r.err("text after the root element"));
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_elements_attributes_text_and_skips_comments() {
        let doc = "<?xml version=\"1.0\"?>\n<!-- c -->\n<domain type='kvm'>\n  <name>a &amp; b</name>\n  <!-- x -->\n  <devices><rom file=\"/x&apos;y\"/></devices>\n</domain>\n";
        let d = parse(doc).unwrap();
        assert_eq!(d.name, "domain");
        assert_eq!(d.attr("type"), Some("kvm"));
        assert_eq!(d.child("name").unwrap().text, "a & b");
        let rom = d.child("devices").unwrap().child("rom").unwrap();
        assert_eq!(rom.attr("file"), Some("/x'y"));
        assert_eq!(rom.line, 6);
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse("<domain>\n  <name>x</nam>\n</domain>").unwrap_err();
        assert!(e.starts_with("line 2, column 10:"), "{e}");
        assert!(e.contains("</nam> closes <name>"), "{e}");
        let e = parse("<a b=c/>").unwrap_err();
        assert!(e.contains("not quoted"), "{e}");
        assert!(parse("<a>").unwrap_err().contains("is not closed"));
        assert!(parse("<a/><b/>").unwrap_err().contains("after the root"));
        assert!(
            parse("<a>&nbsp;</a>")
                .unwrap_err()
                .contains("unknown entity")
        );
    }
}
