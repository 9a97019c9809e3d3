//! haproxy.cfg as HAProxy reads it: a section keyword (`global`,
//! `defaults`, `frontend`, `backend`, `listen`, ...) starts a section,
//! every other line is a directive of the current one. Lines are split
//! into words as HAProxy's `parse_line` does: blanks separate words, `\`
//! escapes the next character (`\ `, `\#`, `\\`, `\'`, `\"`, `\r`, `\n`,
//! `\t`, `\xHH`), `"..."` quotes with escapes, `'...'` quotes literally,
//! `#` outside quotes starts a comment. Each directive also keeps its text
//! as written, since lbd keeps HAProxy's mini-languages (ACLs, rules,
//! `httpchk`) in strings with HAProxy's quoting.
use super::error::SourceError;
use std::path::{Path, PathBuf};

/// Sections HAProxy knows; only the first five carry what lbd imports.
pub const SECTION_KEYWORDS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "userlist",
    "peers",
    "resolvers",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
    "fcgi-app",
    "log-forward",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub file: PathBuf,
    pub line: usize,
    /// The section keyword.
    pub kind: String,
    /// The words after it (a name, a legacy address, `from NAME`).
    pub args: Vec<String>,
    pub directives: Vec<Directive>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub line: usize,
    /// The words, unescaped and unquoted (never empty).
    pub words: Vec<String>,
    /// The line without its comment and surrounding blanks, as written.
    pub text: String,
    /// Where each word starts in `text`.
    starts: Vec<usize>,
}

impl Directive {
    pub fn keyword(&self) -> &str {
        &self.words[0]
    }
    /// Word `n` (0 is the keyword).
    pub fn word(&self, n: usize) -> Option<&str> {
        self.words.get(n).map(String::as_str)
    }
    /// The text from word `n` to the end of the line, as written (HAProxy
    /// quoting and escapes intact); empty when there is no word `n`.
    pub fn text_from(&self, n: usize) -> &str {
        self.starts.get(n).map_or("", |&at| &self.text[at..])
    }
    /// The words joined by spaces (for the report).
    pub fn shown(&self) -> String {
        self.text.clone()
    }
}

/// Reads and parses `path`.
pub fn parse_file(path: &Path) -> Result<Vec<Section>, SourceError> {
    let text =
        std::fs::read(path).map_err(|e| SourceError::new(path, 0, format!("cannot read: {e}")))?;
    parse_str(&String::from_utf8_lossy(&text), path)
}

/// Parses `text` as the contents of `path`.
pub fn parse_str(text: &str, path: &Path) -> Result<Vec<Section>, SourceError> {
    let mut sections: Vec<Section> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let Some(directive) =
            split_line(raw).map_err(|message| SourceError::new(path, number, message))?
        else {
            continue;
        };
        let directive = Directive {
            line: number,
            ..directive
        };
        if SECTION_KEYWORDS.contains(&directive.keyword()) {
            let kind = directive.keyword().to_owned();
            let args = directive.words[1..].to_vec();
            let named = !matches!(kind.as_str(), "global" | "defaults");
            if named && args.is_empty() {
                return Err(SourceError::new(
                    path,
                    number,
                    format!("'{kind}' needs a name"),
                ));
            }
            sections.push(Section {
                file: path.to_owned(),
                line: number,
                kind,
                args,
                directives: Vec::new(),
            });
            continue;
        }
        match sections.last_mut() {
            Some(section) => section.directives.push(directive),
            None => {
                return Err(SourceError::new(
                    path,
                    number,
                    format!(
                    "unknown section '{}' (or a directive outside any section): sections are {}",
                    directive.keyword(),
                    SECTION_KEYWORDS.join(", ")
                ),
                ))
            }
        }
    }
    Ok(sections)
}

/// One line's words; `None` for a blank or comment line.
fn split_line(raw: &str) -> Result<Option<Directive>, String> {
    let mut words = Vec::new();
    let mut starts = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut end = 0;
    let bytes: Vec<(usize, char)> = raw.char_indices().collect();
    let mut i = 0;
    let mut quote: Option<char> = None;
    let mut quote_start = 0;
    while i < bytes.len() {
        let (at, c) = bytes[i];
        i += 1;
        if let Some(q) = quote {
            if c == q {
                quote = None;
            } else if c == '\\' && q == '"' {
                i = escape(&bytes, i, &mut word)?;
            } else {
                word.push(c);
            }
            end = at + c.len_utf8();
            continue;
        }
        match c {
            '#' => break,
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            _ => {
                if !in_word {
                    starts.push(at);
                    in_word = true;
                }
                match c {
                    '"' | '\'' => {
                        quote = Some(c);
                        quote_start = at;
                    }
                    '\\' => i = escape(&bytes, i, &mut word)?,
                    c => word.push(c),
                }
                end = bytes.get(i).map_or(raw.len(), |&(next, _)| next);
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!(
            "unterminated {q} quote starting at column {}",
            quote_start + 1
        ));
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Ok(None);
    }
    let first = starts[0];
    let text = raw[first..end].to_owned();
    let starts = starts.iter().map(|s| s - first).collect();
    Ok(Some(Directive {
        line: 0,
        words,
        text,
        starts,
    }))
}

/// The character(s) after a backslash at `i`; returns the next index.
fn escape(chars: &[(usize, char)], i: usize, word: &mut String) -> Result<usize, String> {
    let Some(&(_, c)) = chars.get(i) else {
        // A trailing backslash is kept, as HAProxy does.
        word.push('\\');
        return Ok(i);
    };
    match c {
        'r' => word.push('\r'),
        'n' => word.push('\n'),
        't' => word.push('\t'),
        'x' => {
            let hex: String = chars
                .get(i + 1..i + 3)
                .map(|h| h.iter().map(|&(_, c)| c).collect())
                .unwrap_or_default();
            let value = u8::from_str_radix(&hex, 16)
                .map_err(|_| format!("'\\x' must be followed by two hex digits, not '{hex}'"))?;
            word.push(char::from(value));
            return Ok(i + 3);
        }
        c => word.push(c),
    }
    Ok(i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split_line(line)
            .unwrap()
            .map(|d| d.words)
            .unwrap_or_default()
    }

    #[test]
    fn lines_split_as_haproxy_splits_them() {
        let table: &[(&str, &[&str])] = &[
            (
                "  server web1 198.18.0.1:80 check",
                &["server", "web1", "198.18.0.1:80", "check"],
            ),
            (
                "stats realm Haproxy\\ Statistics",
                &["stats", "realm", "Haproxy Statistics"],
            ),
            (
                "option httpchk HEAD / HTTP/1.1\\r\\nHost:\\ localhost",
                &[
                    "option",
                    "httpchk",
                    "HEAD",
                    "/",
                    "HTTP/1.1\r\nHost: localhost",
                ],
            ),
            (
                "log 127.0.0.1 local2     #Log configuration",
                &["log", "127.0.0.1", "local2"],
            ),
            (
                "acl a hdr(x) \"a b\" 'c d' e\\#f",
                &["acl", "a", "hdr(x)", "a b", "c d", "e#f"],
            ),
            ("x \"a\\\"b\" 'a\\b'", &["x", "a\"b", "a\\b"]),
            ("x a\\x41", &["x", "aA"]),
            ("# only a comment", &[]),
            ("", &[]),
            ("x \"\"", &["x", ""]),
        ];
        for (line, want) in table {
            assert_eq!(words(line), *want, "{line:?}");
        }
    }

    #[test]
    fn text_from_keeps_haproxy_quoting() {
        let d = split_line("  acl url_static  path_beg -i /static \"/a b\"   # c")
            .unwrap()
            .unwrap();
        assert_eq!(d.text, "acl url_static  path_beg -i /static \"/a b\"");
        assert_eq!(d.text_from(2), "path_beg -i /static \"/a b\"");
        assert_eq!(d.text_from(9), "");
        let d = split_line("option httpchk HEAD / HTTP/1.1\\r\\nHost:\\ localhost")
            .unwrap()
            .unwrap();
        assert_eq!(d.text_from(2), "HEAD / HTTP/1.1\\r\\nHost:\\ localhost");
    }

    #[test]
    fn sections_and_their_directives() {
        let text = "global\n  maxconn 10\n\nfrontend main *:5000\n  default_backend b\nbackend b\n";
        let sections = parse_str(text, Path::new("h.cfg")).unwrap();
        let shape: Vec<(String, usize, Vec<String>, usize)> = sections
            .iter()
            .map(|s| (s.kind.clone(), s.line, s.args.clone(), s.directives.len()))
            .collect();
        assert_eq!(
            shape,
            [
                ("global".into(), 1, vec![], 1),
                (
                    "frontend".into(),
                    4,
                    vec!["main".into(), "*:5000".into()],
                    1
                ),
                ("backend".into(), 6, vec!["b".into()], 0),
            ]
        );
        assert_eq!(sections[1].directives[0].line, 5);
    }

    #[test]
    fn malformed_input_names_file_and_line() {
        let table: &[(&str, &str)] = &[
            ("maxconn 10", "h.cfg:1: unknown section 'maxconn'"),
            ("\n\nfronted web\n", "h.cfg:3: unknown section 'fronted'"),
            ("frontend\n", "h.cfg:1: 'frontend' needs a name"),
            (
                "global\n log \"127.0.0.1 local2\n",
                "h.cfg:2: unterminated \" quote",
            ),
            ("global\n x 'a\n", "h.cfg:2: unterminated ' quote"),
            ("global\n x a\\xZZ\n", "h.cfg:2: '\\x' must be followed"),
        ];
        for (text, want) in table {
            let error = parse_str(text, Path::new("h.cfg"))
                .expect_err(text)
                .to_string();
            assert!(error.starts_with(want), "{text:?}: {error}");
        }
    }

    #[test]
    fn arbitrary_lines_never_panic() {
        let alphabet = ['"', '\'', '\\', '#', ' ', 'x', 'é', '\n', '\t'];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..3000 {
            let mut text = String::from("global\n");
            for _ in 0..(state % 30) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            if let Ok(sections) = parse_str(&text, Path::new("h.cfg")) {
                for d in sections.iter().flat_map(|s| &s.directives) {
                    for n in 0..=d.words.len() {
                        let _ = d.text_from(n);
                    }
                }
            }
        }
    }
}
