//! Header values of `set-header`/`add-header`: literal text with HAProxy's
//! `%[fetch]` sample expressions (`%[src]`, `%[hdr(host)]`, `%[dst_port]`)
//! and `%%` for a percent sign.
use crate::proxy::acl::{Fetch, RequestView, Sample};
use hyper::http::header::HeaderValue;

#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Fetch(Fetch),
}

#[derive(Debug, Clone)]
pub struct HeaderFormat {
    parts: Vec<Part>,
    /// Set when the value is all literal: rendered once here.
    fixed: Option<HeaderValue>,
    source: String,
}

impl PartialEq for HeaderFormat {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}
impl Eq for HeaderFormat {}

impl HeaderFormat {
    pub fn parse(text: &str) -> Result<HeaderFormat, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('%') {
            literal.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            if let Some(after) = rest.strip_prefix('%') {
                literal.push('%');
                rest = after;
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after
                    .find(']')
                    .ok_or_else(|| format!("\"{text}\": %[ without its closing ]"))?;
                // A fetch argument may hold its own ')' but not ']'.
                let expression = &after[..end];
                let (fetch, _) = Fetch::parse(expression.trim())?;
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(Part::Fetch(fetch));
                rest = &after[end + 1..];
            } else {
                return Err(format!(
                    "\"{text}\": only %[fetch] expressions and %% are supported in header values"
                ));
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        let all_literal = parts.iter().all(|p| matches!(p, Part::Literal(_)));
        let fixed = if all_literal {
            let value: String = parts
                .iter()
                .map(|p| match p {
                    Part::Literal(s) => s.as_str(),
                    Part::Fetch(_) => "",
                })
                .collect();
            Some(
                HeaderValue::from_str(&value)
                    .map_err(|_| format!("\"{text}\" is not a valid header value"))?,
            )
        } else {
            None
        };
        Ok(HeaderFormat {
            parts,
            fixed,
            source: text.to_owned(),
        })
    }

    /// The value for this request; `None` only when a fetched sample holds
    /// bytes a header cannot carry.
    pub fn render(&self, view: &RequestView) -> Option<HeaderValue> {
        if let Some(fixed) = &self.fixed {
            return Some(fixed.clone());
        }
        HeaderValue::from_bytes(&self.render_bytes(view)).ok()
    }

    /// The rendered bytes: literals as written, each `%[fetch]` replaced by
    /// its first sample (nothing when the sample is absent).
    pub fn render_bytes(&self, view: &RequestView) -> Vec<u8> {
        let mut out: Vec<u8> = Vec::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.extend_from_slice(text.as_bytes()),
                Part::Fetch(fetch) => {
                    // The first sample, as HAProxy's converters-free %[ ].
                    fetch.samples(view, &mut |sample| {
                        match sample {
                            Sample::Bytes(b) => out.extend_from_slice(&b),
                            Sample::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
                            Sample::Ip(ip) => out.extend_from_slice(ip.to_string().as_bytes()),
                            Sample::Bool(b) => out.push(if b { b'1' } else { b'0' }),
                        }
                        true
                    });
                }
            }
        }
        out
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}
