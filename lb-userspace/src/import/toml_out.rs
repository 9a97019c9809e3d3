//! A small TOML writer for the imported lb.toml: tables in the order they
//! are added, keys in the order they are set, comments kept. Written by
//! hand (not through serde) so the file carries the import's comments and
//! is byte for byte the same on every run.
use std::fmt::Write;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    /// Written without a fraction when whole (lbd reads either).
    Float(f64),
    Bool(bool),
    Array(Vec<Value>),
    Inline(Vec<(String, Value)>),
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }
    pub fn strs<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Value {
        Value::Array(items.into_iter().map(|s| Value::Str(s.into())).collect())
    }

    fn write(&self, out: &mut String) {
        match self {
            Value::Str(s) => quote(s, out),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(x) => {
                if x.fract() == 0.0 && x.abs() < 1e15 {
                    let _ = write!(out, "{}", *x as i64);
                } else {
                    let _ = write!(out, "{x}");
                }
            }
            Value::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Value::Inline(pairs) => {
                out.push_str("{ ");
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    key(k, out);
                    out.push_str(" = ");
                    v.write(out);
                }
                out.push_str(" }");
            }
        }
    }
}

fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn key(k: &str, out: &mut String) {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        out.push_str(k);
    } else {
        quote(k, out);
    }
}

/// One `[name]` or `[[name]]` table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub header: String,
    pub array: bool,
    pub comments: Vec<String>,
    pub entries: Vec<(String, Value, Option<String>)>,
}

impl Table {
    pub fn new(header: &str, array: bool) -> Table {
        Table {
            header: header.to_owned(),
            array,
            comments: Vec::new(),
            entries: Vec::new(),
        }
    }
    pub fn comment(&mut self, text: impl Into<String>) -> &mut Self {
        self.comments.push(text.into());
        self
    }
    /// Sets `key` (replacing an earlier value: the last directive wins,
    /// as in HAProxy and keepalived).
    pub fn set(&mut self, key: &str, value: Value, comment: Option<String>) -> &mut Self {
        if let Some(entry) = self.entries.iter_mut().find(|(k, _, _)| k == key) {
            entry.1 = value;
            entry.2 = comment;
        } else {
            self.entries.push((key.to_owned(), value, comment));
        }
        self
    }
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, _)| v)
    }
    pub fn remove(&mut self, key: &str) {
        self.entries.retain(|(k, _, _)| k != key);
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Document {
    pub preamble: Vec<String>,
    pub tables: Vec<Table>,
}

impl Document {
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.preamble {
            comment_line(line, &mut out);
        }
        for table in &self.tables {
            out.push('\n');
            for line in &table.comments {
                comment_line(line, &mut out);
            }
            if table.array {
                let _ = writeln!(out, "[[{}]]", table.header);
            } else {
                let _ = writeln!(out, "[{}]", table.header);
            }
            for (k, v, comment) in &table.entries {
                key(k, &mut out);
                out.push_str(" = ");
                v.write(&mut out);
                if let Some(c) = comment {
                    out.push_str("  # ");
                    out.push_str(&c.replace(['\n', '\r'], " "));
                }
                out.push('\n');
            }
        }
        out
    }
}

fn comment_line(text: &str, out: &mut String) {
    for line in text.lines() {
        if line.is_empty() {
            out.push_str("#\n");
        } else {
            let _ = writeln!(out, "# {line}");
        }
    }
    if text.is_empty() {
        out.push_str("#\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_the_toml_crate() {
        let mut doc = Document::default();
        doc.preamble.push("generated".into());
        let mut t = Table::new("backend", true);
        t.comment("from h.cfg:3")
            .set(
                "name",
                Value::str("a \"b\" \\ \r\n\t\u{1}"),
                Some("x\ny".into()),
            )
            .set("n", Value::Int(-3), None)
            .set("f", Value::Float(1.0), None)
            .set("g", Value::Float(0.25), None)
            .set("b", Value::Bool(true), None)
            .set("list", Value::strs(["a", "b"]), None)
            .set(
                "inline",
                Value::Inline(vec![("k.x".into(), Value::Int(1))]),
                None,
            );
        doc.tables.push(t);
        let text = doc.render();
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        let b = &parsed["backend"][0];
        assert_eq!(b["name"].as_str(), Some("a \"b\" \\ \r\n\t\u{1}"));
        assert_eq!(b["n"].as_integer(), Some(-3));
        assert_eq!(b["f"].as_integer(), Some(1));
        assert_eq!(b["g"].as_float(), Some(0.25));
        assert_eq!(b["inline"]["k.x"].as_integer(), Some(1));
        assert!(text.starts_with("# generated\n"));
    }
}
