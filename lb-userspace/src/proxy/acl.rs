//! HAProxy's ACL language: named ACLs (`url_static path_beg -i /static`,
//! the same name twice = OR), anonymous ACLs (`{ path /old }`) and
//! conditions (`if|unless`, `!`, AND by juxtaposition, `or`/`||`).
//! Everything is compiled when the configuration is validated; evaluation
//! is a pure function of a [`RequestView`].
mod fetch;
mod files;
mod ipset;
mod pattern;
mod words;

#[cfg(test)]
mod tests;

pub use fetch::{authority_as_host, query_param_values, Fetch, Sample, Side};
pub use files::{parse_lines as parse_pattern_lines, FilePattern, PatternFiles};
pub use ipset::IpSet;
pub use pattern::{parse_net, MatchKind, Pattern};
pub use words::split_words;

use std::{net::SocketAddr, path::PathBuf};

/// What the proxy knows about a client connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    pub src: SocketAddr,
    /// The address the client connected to (a VIP, or the bind address).
    pub dst: SocketAddr,
    /// The client side is TLS (`ssl_fc`): terminated on an `ssl` bind.
    pub tls: bool,
    /// SNI of the client's TLS hello (`ssl_fc_sni`, `req.ssl_sni`).
    pub sni: Option<String>,
    /// The handshake's outcome on an `ssl` bind (`ssl_fc_protocol`,
    /// `ssl_fc_alpn`, `ssl_c_*`).
    pub handshake: Option<std::sync::Arc<crate::proxy::tls::server::TlsFacts>>,
    /// What `tcp_request inspect-delay` peeked (`req_ssl_hello_type`,
    /// `req.ssl_ver`, `req.ssl_alpn`); `None` when nothing was inspected.
    pub client_hello: Option<std::sync::Arc<crate::proxy::tls::clienthello::Peek>>,
}

impl ConnInfo {
    pub fn plain(src: SocketAddr, dst: SocketAddr) -> ConnInfo {
        ConnInfo {
            src,
            dst,
            tls: false,
            sni: None,
            handshake: None,
            client_hello: None,
        }
    }

    /// A connection whose TLS was terminated here.
    pub fn terminated(
        src: SocketAddr,
        dst: SocketAddr,
        facts: crate::proxy::tls::server::TlsFacts,
    ) -> ConnInfo {
        ConnInfo {
            src,
            dst,
            tls: true,
            sni: facts.sni.clone(),
            handshake: Some(std::sync::Arc::new(facts)),
            client_hello: None,
        }
    }
}

/// Everything an ACL may look at: the connection, and the request head and
/// response head when there are some (none in `mode tcp`).
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub conn: &'a ConnInfo,
    pub request: Option<&'a hyper::http::request::Parts>,
    pub response: Option<&'a hyper::http::response::Parts>,
}

impl<'a> RequestView<'a> {
    pub fn connection(conn: &'a ConnInfo) -> Self {
        RequestView {
            conn,
            request: None,
            response: None,
        }
    }
    pub fn request(conn: &'a ConnInfo, request: &'a hyper::http::request::Parts) -> Self {
        RequestView {
            conn,
            request: Some(request),
            response: None,
        }
    }
}

/// One ACL test: a fetch, flags and patterns (`path_beg -i /static /images`).
#[derive(Debug, Clone)]
pub struct AclTest {
    pub fetch: Fetch,
    pub pattern: Pattern,
    source: String,
}

impl AclTest {
    /// Parses `criterion [flags] [values...]`; `-f FILE` is refused (see
    /// [`AclTest::parse_with`]).
    pub fn parse(words: &[String]) -> Result<AclTest, String> {
        AclTest::parse_with(words, None)
    }

    /// Parses `criterion [flags] [values...]`, reading `-f FILE` pattern
    /// files through `files`.
    pub fn parse_with(words: &[String], files: Option<&PatternFiles>) -> Result<AclTest, String> {
        let (criterion, rest) = words
            .split_first()
            .ok_or_else(|| "needs a fetch such as path_beg or hdr(host)".to_owned())?;
        let (fetch, mut kind) = Fetch::parse(criterion)?;
        let mut icase = false;
        let mut index = 0;
        let mut file_patterns: Vec<(PathBuf, FilePattern)> = Vec::new();
        let mut file_names = Vec::new();
        while let Some(flag) = rest.get(index).filter(|w| w.starts_with('-')) {
            index += 1;
            match flag.as_str() {
                "-i" => icase = true,
                "-n" => {}
                "--" => break,
                "-m" => {
                    let method = rest
                        .get(index)
                        .ok_or_else(|| "-m needs a match method".to_owned())?;
                    index += 1;
                    kind = MatchKind::parse(method).ok_or_else(|| {
                        format!(
                            "unknown match method \"{method}\" (str beg end sub reg dir dom len int ip bool found)"
                        )
                    })?;
                }
                "-f" => {
                    let name = rest
                        .get(index)
                        .ok_or_else(|| "-f needs a file name".to_owned())?;
                    index += 1;
                    let files =
                        files.ok_or_else(|| "pattern files (-f) are not read here".to_owned())?;
                    let (path, patterns) = files.read(name)?;
                    file_names.push(path.display().to_string());
                    file_patterns.extend(patterns.into_iter().map(|p| (path.clone(), p)));
                }
                other if other.parse::<i64>().is_ok() => {
                    // A negative number is a value, not a flag.
                    index -= 1;
                    break;
                }
                other => return Err(format!("unknown flag \"{other}\" (-i -f -m -n --)")),
            }
        }
        let mut values = rest[index..].to_vec();
        values.extend(file_patterns.iter().map(|(_, p)| p.value.clone()));
        let pattern = if values.is_empty() && !file_names.is_empty() {
            // An empty pattern file: the ACL never matches (HAProxy).
            Pattern::nothing()
        } else {
            Pattern::compile(kind, icase, &values).map_err(|e| {
                // Name the file line that breaks, when one does.
                let bad = file_patterns.iter().find_map(|(path, p)| {
                    Pattern::compile(kind, icase, std::slice::from_ref(&p.value))
                        .err()
                        .map(|e| format!("{}:{}: {criterion}: {e}", path.display(), p.line))
                });
                bad.unwrap_or_else(|| format!("{criterion}: {e}"))
            })?
        };
        let mut source = words.join(" ");
        // The loaded patterns belong to the ACL's identity: a reload sees a
        // changed file as a changed configuration.
        for (path, p) in &file_patterns {
            source.push_str(&format!("\n{}:{}:{}", path.display(), p.line, p.value));
        }
        Ok(AclTest {
            fetch,
            pattern,
            source,
        })
    }

    pub fn matches(&self, view: &RequestView) -> bool {
        self.fetch
            .samples(view, &mut |sample| self.pattern.matches(&sample))
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

#[derive(Debug, Clone)]
struct NamedAcl {
    name: String,
    /// Lines declaring this name; the ACL matches when any of them does.
    tests: Vec<AclTest>,
}

/// A section's named ACLs, plus HAProxy's predefined ones once referenced.
#[derive(Debug, Clone, Default)]
pub struct AclSet {
    acls: Vec<NamedAcl>,
    /// Where `-f` pattern files are read while lines are added.
    files: PatternFiles,
}

impl PartialEq for AclSet {
    fn eq(&self, other: &Self) -> bool {
        let sources = |s: &AclSet| -> Vec<(String, Vec<String>)> {
            s.acls
                .iter()
                .map(|a| {
                    (
                        a.name.clone(),
                        a.tests.iter().map(|t| t.source.clone()).collect(),
                    )
                })
                .collect()
        };
        sources(self) == sources(other)
    }
}
impl Eq for AclSet {}

/// HAProxy's predefined ACLs (configuration manual, 7.4).
const PREDEFINED: &[(&str, &str)] = &[
    ("TRUE", "always_true"),
    ("FALSE", "always_false"),
    ("LOCALHOST", "src 127.0.0.1/8 ::1"),
    ("HTTP_1.0", "req.ver 1.0"),
    ("HTTP_1.1", "req.ver 1.1"),
    ("HTTP_2.0", "req.ver 2.0"),
    ("HTTP_URL_ABS", "url_reg ^[^/:]*://"),
    ("HTTP_URL_SLASH", "url_beg /"),
    ("HTTP_URL_STAR", "url *"),
    ("HTTP_CONTENT", "hdr(content-length) -m int gt 0"),
    ("METH_CONNECT", "method CONNECT"),
    ("METH_DELETE", "method DELETE"),
    ("METH_GET", "method GET HEAD"),
    ("METH_HEAD", "method HEAD"),
    ("METH_OPTIONS", "method OPTIONS"),
    ("METH_POST", "method POST"),
    ("METH_PUT", "method PUT"),
    ("METH_TRACE", "method TRACE"),
];

impl AclSet {
    /// A set whose `acl` lines read `-f` pattern files through `files`.
    pub fn with_files(files: PatternFiles) -> AclSet {
        AclSet {
            acls: Vec::new(),
            files,
        }
    }

    /// Adds one `acl` line: `name criterion [flags] [values...]`.
    pub fn add_line(&mut self, line: &str) -> Result<(), String> {
        let words = split_words(line)?;
        let (name, test) = words
            .split_first()
            .ok_or_else(|| "an acl line needs a name and a fetch".to_owned())?;
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
        if !name_ok {
            return Err(format!(
                "\"{name}\" is not a valid acl name (letters, digits, - _ . :)"
            ));
        }
        let test = AclTest::parse_with(test, Some(&self.files))?;
        self.push(name, test);
        Ok(())
    }

    fn push(&mut self, name: &str, test: AclTest) {
        match self.acls.iter_mut().find(|a| a.name == name) {
            Some(acl) => acl.tests.push(test),
            None => self.acls.push(NamedAcl {
                name: name.to_owned(),
                tests: vec![test],
            }),
        }
    }

    /// The index of a named ACL; a predefined ACL is added on first use.
    fn resolve(&mut self, name: &str) -> Option<usize> {
        if let Some(index) = self.acls.iter().position(|a| a.name == name) {
            return Some(index);
        }
        let (_, definition) = PREDEFINED.iter().find(|(n, _)| *n == name)?;
        let words = split_words(definition).ok()?;
        let test = AclTest::parse(&words).ok()?;
        self.push(name, test);
        Some(self.acls.len() - 1)
    }

    fn matches(&self, index: usize, view: &RequestView) -> bool {
        self.acls
            .get(index)
            .is_some_and(|acl| acl.tests.iter().any(|t| t.matches(view)))
    }

    fn side(&self, index: usize) -> Side {
        self.acls.get(index).map_or(Side::Connection, |acl| {
            widest(acl.tests.iter().map(|t| t.fetch.side()))
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.acls.iter().map(|a| a.name.as_str())
    }
}

/// Request beats connection, response beats both: the side a condition
/// needs to be evaluated on.
fn widest(sides: impl Iterator<Item = Side>) -> Side {
    sides.fold(Side::Connection, |acc, s| match (acc, s) {
        (Side::Response, _) | (_, Side::Response) => Side::Response,
        (Side::Request, _) | (_, Side::Request) => Side::Request,
        _ => Side::Connection,
    })
}

#[derive(Debug, Clone)]
enum AclRef {
    Named(usize),
    Anonymous(Box<AclTest>),
}

#[derive(Debug, Clone)]
struct Term {
    negate: bool,
    acl: AclRef,
}

/// `if|unless <terms>`: OR of AND-groups of (possibly negated) ACLs.
#[derive(Debug, Clone)]
pub struct Condition {
    unless: bool,
    groups: Vec<Vec<Term>>,
    source: String,
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}
impl Eq for Condition {}

impl Condition {
    /// Parses words starting with `if` or `unless`, resolving names in
    /// `acls` (a predefined ACL is added to it on first use).
    pub fn parse(words: &[String], acls: &mut AclSet) -> Result<Condition, String> {
        let (keyword, terms) = words
            .split_first()
            .ok_or_else(|| "expected \"if\" or \"unless\"".to_owned())?;
        let unless = match keyword.as_str() {
            "if" => false,
            "unless" => true,
            other => return Err(format!("expected \"if\" or \"unless\", found \"{other}\"")),
        };
        let mut groups: Vec<Vec<Term>> = vec![Vec::new()];
        let mut index = 0;
        let mut negate = false;
        while let Some(word) = terms.get(index) {
            index += 1;
            let mut word = word.as_str();
            if word == "or" || word == "||" {
                if negate || groups.last().is_some_and(Vec::is_empty) {
                    return Err(format!("\"{word}\" needs a term on each side"));
                }
                groups.push(Vec::new());
                continue;
            }
            if let Some(rest) = word.strip_prefix('!') {
                if negate || rest.starts_with('!') {
                    return Err("\"!\" twice in a row".into());
                }
                negate = true;
                if rest.is_empty() {
                    continue;
                }
                word = rest;
            }
            let acl = if word == "{" {
                let close = terms[index..]
                    .iter()
                    .position(|w| w == "}")
                    .ok_or_else(|| "anonymous acl \"{\" without its closing \"}\"".to_owned())?;
                let inner = &terms[index..index + close];
                index += close + 1;
                AclRef::Anonymous(Box::new(
                    AclTest::parse_with(inner, Some(&acls.files))
                        .map_err(|e| format!("in {{ }}: {e}"))?,
                ))
            } else if word == "}" {
                return Err("\"}\" without an opening \"{\"".into());
            } else {
                AclRef::Named(
                    acls.resolve(word)
                        .ok_or_else(|| format!("unknown acl \"{word}\""))?,
                )
            };
            if let Some(group) = groups.last_mut() {
                group.push(Term { negate, acl });
            }
            negate = false;
        }
        if negate {
            return Err("\"!\" at the end of the condition".into());
        }
        if groups.iter().any(Vec::is_empty) {
            return Err(format!(
                "\"{keyword}\" needs at least one acl on each side of \"or\""
            ));
        }
        Ok(Condition {
            unless,
            groups,
            source: words.join(" "),
        })
    }

    pub fn matches(&self, acls: &AclSet, view: &RequestView) -> bool {
        let any_group = self.groups.iter().any(|group| {
            group.iter().all(|term| {
                let matched = match &term.acl {
                    AclRef::Named(index) => acls.matches(*index, view),
                    AclRef::Anonymous(test) => test.matches(view),
                };
                matched != term.negate
            })
        });
        any_group != self.unless
    }

    /// The side this condition needs (request fetches cannot be evaluated
    /// in `mode tcp`, nor response fetches on a request).
    pub fn side(&self, acls: &AclSet) -> Side {
        widest(self.groups.iter().flatten().map(|term| match &term.acl {
            AclRef::Named(index) => acls.side(*index),
            AclRef::Anonymous(test) => test.fetch.side(),
        }))
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

/// Splits a rule into its action words and its condition (from the first
/// `if`/`unless`), as HAProxy does.
pub fn split_condition(words: &[String]) -> (&[String], Option<&[String]>) {
    match words.iter().position(|w| w == "if" || w == "unless") {
        Some(at) => (&words[..at], Some(&words[at..])),
        None => (words, None),
    }
}
