//! `use_backend`, `http-request` and `http-response` rules: parsed from
//! HAProxy's own syntax, evaluated in order against a request or response
//! head. Header edits apply at once, so a later rule's condition sees them
//! (as in HAProxy); `deny` and `redirect` end the evaluation.
use crate::proxy::acl::{split_condition, split_words, AclSet, Condition, ConnInfo, RequestView};
use crate::proxy::config::BackendId;
use hyper::http::{header::HeaderValue, request, response, HeaderName};

mod format;
pub use format::HeaderFormat;

#[cfg(test)]
mod tests;

/// `use_backend <name> [if|unless <cond>]`, the name already resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UseBackend {
    pub backend: BackendId,
    pub condition: Option<Condition>,
}

impl UseBackend {
    /// Parses a rule; `resolve` maps a backend name to its id.
    pub fn parse(
        line: &str,
        acls: &mut AclSet,
        resolve: &dyn Fn(&str) -> Option<BackendId>,
    ) -> Result<UseBackend, String> {
        let words = split_words(line)?;
        let (action, condition) = split_condition(&words);
        let [name] = action else {
            return Err("expected \"<backend> [if|unless <condition>]\"".into());
        };
        if name.contains("%[") {
            return Err("dynamic backend names (%[...]) are not supported".into());
        }
        let backend = resolve(name).ok_or_else(|| format!("unknown backend \"{name}\""))?;
        Ok(UseBackend {
            backend,
            condition: condition.map(|c| Condition::parse(c, acls)).transpose()?,
        })
    }
}

/// HAProxy's codes for `deny_status` (those it has an error page for).
const DENY_STATUSES: &[u16] = &[
    200, 400, 401, 403, 404, 405, 407, 408, 410, 413, 425, 429, 500, 501, 502, 503, 504,
];
const REDIRECT_CODES: &[u16] = &[301, 302, 303, 307, 308];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectTarget {
    /// `location <fmt>`: exactly this, `%[fetch]` expressions rendered.
    Location(HeaderFormat),
    /// `prefix <fmt>`: the rendered prefix, then the request's path and
    /// query.
    Prefix(HeaderFormat),
    /// `scheme <s>`: `<s>://<host><path and query>`.
    Scheme(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub target: RedirectTarget,
    /// 301 302 303 307 308; default 302.
    pub code: u16,
    /// `drop-query`: leave the query string out (prefix and scheme).
    pub drop_query: bool,
    /// `append-slash`: add `/` to a path without one (with drop-query).
    pub append_slash: bool,
    /// `ignore-empty`: a location or prefix that renders
    /// empty skips the rule instead of redirecting to "".
    pub ignore_empty: bool,
}

impl Redirect {
    /// The `Location` value for this request; `None` when `ignore-empty`
    /// skips the rule.
    pub fn location(&self, view: &RequestView, request: &request::Parts) -> Option<String> {
        let uri = &request.uri;
        let mut tail = uri.path().to_owned();
        if self.append_slash && !tail.ends_with('/') {
            tail.push('/');
        }
        if !self.drop_query {
            if let Some(query) = uri.query() {
                tail.push('?');
                tail.push_str(query);
            }
        }
        let rendered = |format: &HeaderFormat| {
            let text = String::from_utf8_lossy(&format.render_bytes(view)).into_owned();
            (!(text.is_empty() && self.ignore_empty)).then_some(text)
        };
        Some(match &self.target {
            RedirectTarget::Location(location) => rendered(location)?,
            RedirectTarget::Prefix(prefix) => match rendered(prefix)? {
                // HAProxy: a prefix of "/" means "the same URI, relative".
                prefix if prefix == "/" => tail,
                prefix => format!("{prefix}{tail}"),
            },
            RedirectTarget::Scheme(scheme) => {
                let host = request
                    .headers
                    .get(hyper::http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .or_else(|| uri.authority().map(|a| a.as_str()))
                    .unwrap_or("");
                format!("{scheme}://{host}{tail}")
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Replace every occurrence.
    Set(HeaderName, HeaderFormat),
    /// Append one more occurrence.
    Add(HeaderName, HeaderFormat),
    /// Remove every occurrence.
    Del(HeaderName),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestAction {
    /// Stop evaluating `http-request` rules; the request goes on.
    Allow,
    Deny {
        status: u16,
    },
    Redirect(Redirect),
    Header(HeaderEdit),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRule {
    pub action: RequestAction,
    pub condition: Option<Condition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseRule {
    pub edit: HeaderEdit,
    pub condition: Option<Condition>,
}

/// What the `http-request` rules decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestVerdict {
    /// Go on (possibly after `allow`).
    Continue,
    Deny {
        status: u16,
    },
    Redirect {
        code: u16,
        location: String,
    },
}

impl RequestRule {
    pub fn parse(line: &str, acls: &mut AclSet) -> Result<RequestRule, String> {
        let words = split_words(line)?;
        let (action, condition) = split_condition(&words);
        let action = match action {
            [verb] if verb == "allow" => RequestAction::Allow,
            [verb, rest @ ..] if verb == "deny" => RequestAction::Deny {
                status: parse_deny(rest)?,
            },
            [verb, rest @ ..] if verb == "redirect" => {
                RequestAction::Redirect(parse_redirect(rest)?)
            }
            [verb, rest @ ..] => RequestAction::Header(parse_header_edit(verb, rest)?),
            [] => return Err("empty rule".into()),
        };
        Ok(RequestRule {
            action,
            condition: condition.map(|c| Condition::parse(c, acls)).transpose()?,
        })
    }
}

impl ResponseRule {
    pub fn parse(line: &str, acls: &mut AclSet) -> Result<ResponseRule, String> {
        let words = split_words(line)?;
        let (action, condition) = split_condition(&words);
        let edit = match action {
            [verb, rest @ ..] => parse_header_edit(verb, rest)?,
            [] => return Err("empty rule".into()),
        };
        Ok(ResponseRule {
            edit,
            condition: condition.map(|c| Condition::parse(c, acls)).transpose()?,
        })
    }
}

fn parse_deny(words: &[String]) -> Result<u16, String> {
    match words {
        [] => Ok(403),
        [keyword, code] if keyword == "deny_status" => {
            let code: u16 = code
                .parse()
                .map_err(|_| format!("deny_status \"{code}\" is not a status code"))?;
            if DENY_STATUSES.contains(&code) {
                Ok(code)
            } else {
                Err(format!(
                    "deny_status {code} is not one of {DENY_STATUSES:?}"
                ))
            }
        }
        _ => Err(format!(
            "expected \"deny [deny_status <code>]\", found \"deny {}\"",
            words.join(" ")
        )),
    }
}

fn parse_redirect(words: &[String]) -> Result<Redirect, String> {
    let [kind, value, options @ ..] = words else {
        return Err("expected \"redirect location|prefix|scheme <value> [code <n>]\"".into());
    };
    let format = || {
        if !value.contains('%') && HeaderValue::from_str(value).is_err() {
            return Err(format!("\"{value}\" cannot be a Location header value"));
        }
        HeaderFormat::parse(value).map_err(|e| e.replace("in header values", "in redirects"))
    };
    let target = match kind.as_str() {
        "location" => RedirectTarget::Location(format()?),
        "prefix" => RedirectTarget::Prefix(format()?),
        "scheme" => RedirectTarget::Scheme(value.clone()),
        other => {
            return Err(format!(
                "unknown redirect type \"{other}\" (location prefix scheme)"
            ))
        }
    };
    if matches!(target, RedirectTarget::Scheme(_)) && HeaderValue::from_str(value).is_err() {
        return Err(format!("\"{value}\" cannot be a Location header value"));
    }
    let mut redirect = Redirect {
        target,
        code: 302,
        drop_query: false,
        append_slash: false,
        ignore_empty: false,
    };
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        match option.as_str() {
            "code" => {
                let code = rest.next().ok_or("code needs a value")?;
                redirect.code = code
                    .parse()
                    .ok()
                    .filter(|c| REDIRECT_CODES.contains(c))
                    .ok_or_else(|| {
                        format!("redirect code \"{code}\" is not one of {REDIRECT_CODES:?}")
                    })?;
            }
            "drop-query" => redirect.drop_query = true,
            "append-slash" => redirect.append_slash = true,
            "ignore-empty" if !matches!(redirect.target, RedirectTarget::Scheme(_)) => {
                redirect.ignore_empty = true
            }
            other => {
                return Err(format!(
                    "unknown redirect option \"{other}\" (code, drop-query, append-slash, ignore-empty)"
                ))
            }
        }
    }
    Ok(redirect)
}

fn parse_header_edit(verb: &str, words: &[String]) -> Result<HeaderEdit, String> {
    let name = |n: &String| {
        HeaderName::from_bytes(n.as_bytes())
            .map_err(|_| format!("\"{n}\" is not a valid header name"))
    };
    match (verb, words) {
        ("set-header", [n, value]) => Ok(HeaderEdit::Set(name(n)?, HeaderFormat::parse(value)?)),
        ("add-header", [n, value]) => Ok(HeaderEdit::Add(name(n)?, HeaderFormat::parse(value)?)),
        ("del-header", [n]) => Ok(HeaderEdit::Del(name(n)?)),
        ("set-header" | "add-header", _) => Err(format!(
            "expected \"{verb} <name> <value>\" (quote a value that holds blanks)"
        )),
        ("del-header", _) => Err("expected \"del-header <name>\"".into()),
        (other, _) => Err(format!(
            "unknown action \"{other}\" (allow deny redirect set-header add-header del-header)"
        )),
    }
}

fn apply_edit(
    edit: &HeaderEdit,
    view: &RequestView,
) -> Option<(HeaderName, Option<HeaderValue>, bool)> {
    match edit {
        HeaderEdit::Set(name, format) => Some((name.clone(), format.render(view), true)),
        HeaderEdit::Add(name, format) => Some((name.clone(), format.render(view), false)),
        HeaderEdit::Del(name) => Some((name.clone(), None, true)),
    }
}

fn edit_headers(
    headers: &mut hyper::http::HeaderMap,
    change: (HeaderName, Option<HeaderValue>, bool),
) {
    let (name, value, replace) = change;
    if replace {
        headers.remove(&name);
    }
    if let Some(value) = value {
        headers.append(name, value);
    }
}

/// Runs `http-request` rules over `request`, editing its headers.
pub fn apply_request_rules(
    rules: &[RequestRule],
    acls: &AclSet,
    conn: &ConnInfo,
    request: &mut request::Parts,
) -> RequestVerdict {
    for rule in rules {
        let view = RequestView::request(conn, request);
        if let Some(condition) = &rule.condition {
            if !condition.matches(acls, &view) {
                continue;
            }
        }
        match &rule.action {
            RequestAction::Allow => return RequestVerdict::Continue,
            RequestAction::Deny { status } => return RequestVerdict::Deny { status: *status },
            RequestAction::Redirect(redirect) => {
                if let Some(location) = redirect.location(&view, request) {
                    return RequestVerdict::Redirect {
                        code: redirect.code,
                        location,
                    };
                }
            }
            RequestAction::Header(edit) => {
                if let Some(change) = apply_edit(edit, &view) {
                    edit_headers(&mut request.headers, change);
                }
            }
        }
    }
    RequestVerdict::Continue
}

/// Runs `http-response` rules over `response`, editing its headers.
pub fn apply_response_rules(
    rules: &[ResponseRule],
    acls: &AclSet,
    conn: &ConnInfo,
    response: &mut response::Parts,
) {
    for rule in rules {
        let view = RequestView {
            conn,
            request: None,
            response: Some(response),
        };
        if let Some(condition) = &rule.condition {
            if !condition.matches(acls, &view) {
                continue;
            }
        }
        if let Some(change) = apply_edit(&rule.edit, &view) {
            edit_headers(&mut response.headers, change);
        }
    }
}
