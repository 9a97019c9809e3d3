//! keepalived.conf as keepalived reads it: statements of words, a
//! statement may open a `{ ... }` block (on its line or the next), `"..."`
//! quotes a word, `#` and `!` outside quotes start a comment (keepalived
//! strips them anywhere on a line), and `include GLOB` reads files
//! relative to the including file, in sorted order. Every node keeps its
//! file and line; nothing here panics on bad input.
use super::error::SourceError;
use std::path::{Path, PathBuf};

/// One statement: `words` (never empty) and, when it opens one, its block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub file: PathBuf,
    pub line: usize,
    pub words: Vec<String>,
    pub block: Option<Vec<Node>>,
}

impl Node {
    pub fn keyword(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }
    /// The word after the keyword, if any.
    pub fn arg(&self, n: usize) -> Option<&str> {
        self.words.get(n + 1).map(String::as_str)
    }
    pub fn children(&self) -> &[Node] {
        self.block.as_deref().unwrap_or(&[])
    }
    pub fn at(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

/// Includes nest at most this deep (a file including itself stops here).
const MAX_INCLUDE_DEPTH: usize = 8;

/// Reads and parses `path` and the files it includes.
pub fn parse_file(path: &Path) -> Result<Vec<Node>, SourceError> {
    parse_file_at(path, 0)
}

fn parse_file_at(path: &Path, depth: usize) -> Result<Vec<Node>, SourceError> {
    let text =
        std::fs::read(path).map_err(|e| SourceError::new(path, 0, format!("cannot read: {e}")))?;
    let text = String::from_utf8_lossy(&text);
    parse_text(&text, path, depth)
}

/// Parses `text` as the contents of `path` (includes are read from disk).
pub fn parse_str(text: &str, path: &Path) -> Result<Vec<Node>, SourceError> {
    parse_text(text, path, 0)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Open,
    Close,
}

fn parse_text(text: &str, path: &Path, depth: usize) -> Result<Vec<Node>, SourceError> {
    let tokens = tokenize(text, path)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        file: path,
        depth,
        nesting: 0,
    };
    parser.block(None)
}

/// Splits every line into words and braces, without comments.
fn tokenize(text: &str, path: &Path) -> Result<Vec<(usize, Token)>, SourceError> {
    let mut tokens = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let mut chars = line.chars().peekable();
        let mut word = String::new();
        let mut in_word = false;
        let flush = |word: &mut String, in_word: &mut bool, tokens: &mut Vec<(usize, Token)>| {
            if *in_word {
                tokens.push((number, Token::Word(std::mem::take(word))));
                *in_word = false;
            }
        };
        while let Some(c) = chars.next() {
            match c {
                '#' | '!' => break,
                '"' => {
                    let mut closed = false;
                    for q in chars.by_ref() {
                        if q == '"' {
                            closed = true;
                            break;
                        }
                        word.push(q);
                    }
                    if !closed {
                        return Err(SourceError::new(path, number, "unterminated quote"));
                    }
                    in_word = true;
                }
                '{' | '}' => {
                    flush(&mut word, &mut in_word, &mut tokens);
                    tokens.push((number, if c == '{' { Token::Open } else { Token::Close }));
                }
                c if c.is_whitespace() => flush(&mut word, &mut in_word, &mut tokens),
                c => {
                    word.push(c);
                    in_word = true;
                }
            }
        }
        flush(&mut word, &mut in_word, &mut tokens);
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    file: &'a Path,
    depth: usize,
    /// Blocks open right now (bounded: deep nesting is an error, not a
    /// stack overflow).
    nesting: usize,
}

/// keepalived's own blocks nest four deep (virtual_server, real_server,
/// HTTP_GET, url); anything far deeper is a broken file.
const MAX_NESTING: usize = 32;

impl Parser<'_> {
    /// Statements up to the `}` closing the block opened on `opened`
    /// (`None`: up to the end of the file).
    fn block(&mut self, opened: Option<usize>) -> Result<Vec<Node>, SourceError> {
        let mut nodes = Vec::new();
        loop {
            let Some((line, token)) = self.tokens.get(self.pos).cloned() else {
                return match opened {
                    Some(at) => Err(SourceError::new(
                        self.file,
                        at,
                        "'{' is never closed (unbalanced braces)",
                    )),
                    None => Ok(nodes),
                };
            };
            match token {
                Token::Close => {
                    self.pos += 1;
                    return match opened {
                        Some(_) => Ok(nodes),
                        None => Err(SourceError::new(
                            self.file,
                            line,
                            "'}' without an opening '{' (unbalanced braces)",
                        )),
                    };
                }
                Token::Open => {
                    return Err(SourceError::new(
                        self.file,
                        line,
                        "'{' without a keyword before it",
                    ))
                }
                Token::Word(_) => {
                    let node = self.statement(line)?;
                    if node.keyword() == "include" {
                        nodes.extend(self.include(&node)?);
                    } else {
                        nodes.push(node);
                    }
                }
            }
        }
    }

    /// The words of `line`, then a block if a `{` follows.
    fn statement(&mut self, line: usize) -> Result<Node, SourceError> {
        let mut words = Vec::new();
        while let Some((l, Token::Word(w))) = self.tokens.get(self.pos) {
            if *l != line {
                break;
            }
            words.push(w.clone());
            self.pos += 1;
        }
        let block = match self.tokens.get(self.pos) {
            Some((open_line, Token::Open)) => {
                let open_line = *open_line;
                self.pos += 1;
                if self.nesting >= MAX_NESTING {
                    return Err(SourceError::new(
                        self.file,
                        open_line,
                        format!("blocks nest deeper than {MAX_NESTING}"),
                    ));
                }
                self.nesting += 1;
                let block = self.block(Some(open_line));
                self.nesting -= 1;
                Some(block?)
            }
            _ => None,
        };
        Ok(Node {
            file: self.file.to_owned(),
            line,
            words,
            block,
        })
    }

    fn include(&mut self, node: &Node) -> Result<Vec<Node>, SourceError> {
        let error = |message: String| SourceError::new(self.file, node.line, message);
        if node.words.len() != 2 || node.block.is_some() {
            return Err(error("include takes one file name or pattern".into()));
        }
        if self.depth >= MAX_INCLUDE_DEPTH {
            return Err(error(format!(
                "includes nest deeper than {MAX_INCLUDE_DEPTH} (does a file include itself?)"
            )));
        }
        let pattern = Path::new(&node.words[1]);
        let pattern = if pattern.is_absolute() {
            pattern.to_owned()
        } else {
            self.file.parent().unwrap_or(Path::new(".")).join(pattern)
        };
        let pattern_text = pattern.to_string_lossy();
        let mut files: Vec<PathBuf> = glob::glob(&pattern_text)
            .map_err(|e| error(format!("bad include pattern: {e}")))?
            .filter_map(Result::ok)
            .collect();
        files.sort();
        if files.is_empty() && !pattern_text.contains(['*', '?', '[']) {
            // keepalived warns and goes on; a missing named file is more
            // likely a mistake than intent, so say so.
            return Err(error(format!("include: {pattern_text} does not exist")));
        }
        let mut nodes = Vec::new();
        for file in files {
            nodes.extend(parse_file_at(&file, self.depth + 1)?);
        }
        Ok(nodes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Node>, SourceError> {
        parse_str(text, Path::new("k.conf"))
    }

    fn shape(nodes: &[Node]) -> String {
        nodes
            .iter()
            .map(|n| match &n.block {
                None => format!("{}@{}", n.words.join(" "), n.line),
                Some(b) => format!("{}@{}{{{}}}", n.words.join(" "), n.line, shape(b)),
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    #[test]
    fn statements_blocks_quotes_comments() {
        let table: &[(&str, &str)] = &[
            ("a b c", "a b c@1"),
            ("a {\n b 1\n c\n}", "a@1{b 1@2;c@3}"),
            ("a\n{\n b\n}", "a@1{b@3}"),
            ("track_script { chk }", "track_script@1{chk@1}"),
            ("x { y { z } }", "x@1{y@1{z@1}}"),
            ("script \"pidof haproxy\" # c", "script pidof haproxy@1"),
            ("! comment\nrouter_id r1 ! tail", "router_id r1@2"),
            ("auth_pass \"a#b\"", "auth_pass a#b@1"),
            ("a{b}", "a@1{b@1}"),
            ("", ""),
            (
                "virtual_ipaddress {\n 198.18.0.1/24 dev eth1 label eth1:0\n}",
                "virtual_ipaddress@1{198.18.0.1/24 dev eth1 label eth1:0@2}",
            ),
        ];
        for (text, want) in table {
            let nodes = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(shape(&nodes), *want, "{text:?}");
        }
    }

    #[test]
    fn malformed_input_names_file_and_line() {
        let table: &[(&str, &str)] = &[
            ("a {\n b\n", "k.conf:1: '{' is never closed"),
            ("a {\n b\n}\n}", "k.conf:4: '}' without an opening '{'"),
            ("{ a }", "k.conf:1: '{' without a keyword"),
            ("a \"b", "k.conf:1: unterminated quote"),
            ("x {\n y {\n }\n", "k.conf:1: '{' is never closed"),
            ("include", "k.conf:1: include takes one file"),
            (
                &"a {\n".repeat(100),
                "k.conf:33: blocks nest deeper than 32",
            ),
            (
                "include /nonexistent/lbd-import-test.conf",
                "k.conf:1: include: /nonexistent",
            ),
        ];
        for (text, want) in table {
            let error = parse(text).expect_err(text).to_string();
            assert!(error.starts_with(want), "{text:?}: {error}");
        }
    }

    #[test]
    fn includes_are_followed_relative_to_the_file_in_sorted_order() {
        let dir = std::env::temp_dir().join(format!("lbd-import-inc-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        std::fs::write(dir.join("conf.d/b.conf"), "vrrp_script b {\n}\n").unwrap();
        std::fs::write(dir.join("conf.d/a.conf"), "\nvrrp_script a {\n}\n").unwrap();
        std::fs::write(dir.join("self.conf"), "include self.conf\n").unwrap();
        let main = dir.join("keepalived.conf");
        std::fs::write(&main, "global_defs {\n}\ninclude conf.d/*.conf\n").unwrap();
        let nodes = parse_file(&main).unwrap();
        let seen: Vec<(String, usize, String)> = nodes
            .iter()
            .map(|n| {
                (
                    n.file.file_name().unwrap().to_string_lossy().into_owned(),
                    n.line,
                    n.words.join(" "),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("keepalived.conf".into(), 1, "global_defs".into()),
                ("a.conf".into(), 2, "vrrp_script a".into()),
                ("b.conf".into(), 1, "vrrp_script b".into()),
            ]
        );
        let looped = parse_file(&dir.join("self.conf")).unwrap_err().to_string();
        assert!(looped.contains("nest deeper"), "{looped}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let alphabet = ['{', '}', '"', '#', '!', '\n', ' ', 'a', 'x'];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut text = String::new();
            for _ in 0..(state % 40) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            let _ = parse(&text);
        }
    }
}
