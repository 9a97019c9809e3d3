//! Matchers (`-m str|beg|end|sub|reg|dir|dom|len|int|ip|bool|found`) and
//! their patterns, compiled once when the configuration is validated.
use super::fetch::Sample;
use super::ipset::IpSet;
use ipnet::IpNet;
use regex::bytes::{Regex, RegexBuilder};
use std::collections::HashSet;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    Str,
    Beg,
    End,
    Sub,
    Reg,
    Dir,
    Dom,
    Len,
    Int,
    Ip,
    Bool,
    Found,
}

impl MatchKind {
    /// The `-m` argument names.
    pub fn parse(name: &str) -> Option<MatchKind> {
        Some(match name {
            "str" => MatchKind::Str,
            "beg" => MatchKind::Beg,
            "end" => MatchKind::End,
            "sub" => MatchKind::Sub,
            "reg" => MatchKind::Reg,
            "dir" => MatchKind::Dir,
            "dom" => MatchKind::Dom,
            "len" => MatchKind::Len,
            "int" => MatchKind::Int,
            "ip" => MatchKind::Ip,
            "bool" => MatchKind::Bool,
            "found" => MatchKind::Found,
            _ => return None,
        })
    }
}

/// An inclusive integer range; `eq`/`lt`/... operators become ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntRange {
    pub low: i64,
    pub high: i64,
}

/// A matcher with its compiled patterns.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// Byte-string patterns; `icase` patterns are stored lowercased.
    Text {
        kind: MatchKind,
        icase: bool,
        values: Vec<Vec<u8>>,
    },
    /// Exact strings (`str`) in a hash set: one lookup whatever the number
    /// of values (host lists); `icase` values are stored lowercased.
    Exact {
        icase: bool,
        values: HashSet<Vec<u8>>,
    },
    Reg(Vec<Regex>),
    /// `len`: the sample's length against integer ranges.
    Len(Vec<IntRange>),
    Int(Vec<IntRange>),
    Ip(IpSet),
    /// The sample, as a boolean, is true (non-zero, non-empty).
    Bool,
    /// The fetch produced a sample.
    Found,
}

impl Pattern {
    /// A pattern without values (an empty `-f` file): matches nothing.
    pub fn nothing() -> Pattern {
        Pattern::Exact {
            icase: false,
            values: HashSet::new(),
        }
    }

    /// Compiles `values` for `kind`; `icase` is `-i`.
    pub fn compile(kind: MatchKind, icase: bool, values: &[String]) -> Result<Pattern, String> {
        let need_values = !matches!(kind, MatchKind::Bool | MatchKind::Found);
        if need_values && values.is_empty() {
            return Err("needs at least one value to match (or -m found)".into());
        }
        if !need_values && !values.is_empty() {
            return Err(format!("takes no value here, got \"{}\"", values.join(" ")));
        }
        Ok(match kind {
            MatchKind::Str => Pattern::Exact {
                icase,
                values: values
                    .iter()
                    .map(|v| {
                        let v = if icase {
                            v.to_ascii_lowercase()
                        } else {
                            v.clone()
                        };
                        v.into_bytes()
                    })
                    .collect(),
            },
            MatchKind::Beg | MatchKind::End | MatchKind::Sub | MatchKind::Dir | MatchKind::Dom => {
                Pattern::Text {
                    kind,
                    icase,
                    values: values
                        .iter()
                        .map(|v| {
                            let v = if icase {
                                v.to_ascii_lowercase()
                            } else {
                                v.clone()
                            };
                            v.into_bytes()
                        })
                        .collect(),
                }
            }
            MatchKind::Reg => Pattern::Reg(
                values
                    .iter()
                    .map(|v| {
                        RegexBuilder::new(v)
                            .case_insensitive(icase)
                            .build()
                            .map_err(|e| format!("bad regex \"{v}\": {e}"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            MatchKind::Len => Pattern::Len(int_ranges(values)?),
            MatchKind::Int => Pattern::Int(int_ranges(values)?),
            MatchKind::Ip => Pattern::Ip(IpSet::new(
                &values
                    .iter()
                    .map(|v| parse_net(v))
                    .collect::<Result<Vec<_>, _>>()?,
            )),
            MatchKind::Bool => Pattern::Bool,
            MatchKind::Found => Pattern::Found,
        })
    }

    pub fn matches(&self, sample: &Sample) -> bool {
        match (self, sample) {
            (Pattern::Found, _) => true,
            (Pattern::Bool, Sample::Bool(b)) => *b,
            (Pattern::Bool, Sample::Int(i)) => *i != 0,
            (Pattern::Bool, Sample::Bytes(b)) => !b.is_empty(),
            (Pattern::Bool, Sample::Ip(_)) => true,
            (
                Pattern::Text {
                    kind,
                    icase,
                    values,
                },
                Sample::Bytes(bytes),
            ) => values.iter().any(|p| text_matches(*kind, *icase, bytes, p)),
            (Pattern::Exact { icase, values }, Sample::Bytes(bytes)) => {
                if *icase && bytes.iter().any(u8::is_ascii_uppercase) {
                    values.contains(&bytes.to_ascii_lowercase())
                } else {
                    values.contains(bytes.as_ref())
                }
            }
            (Pattern::Exact { values, .. }, Sample::Int(i)) => {
                values.contains(i.to_string().as_bytes())
            }
            (Pattern::Text { kind, values, .. }, Sample::Int(i)) => {
                let text = i.to_string();
                values
                    .iter()
                    .any(|p| text_matches(*kind, false, text.as_bytes(), p))
            }
            (Pattern::Reg(regexes), Sample::Bytes(bytes)) => {
                regexes.iter().any(|r| r.is_match(bytes))
            }
            (Pattern::Len(ranges), Sample::Bytes(bytes)) => in_ranges(ranges, bytes.len() as i64),
            (Pattern::Int(ranges), Sample::Int(i)) => in_ranges(ranges, *i),
            (Pattern::Int(ranges), Sample::Bool(b)) => in_ranges(ranges, i64::from(*b)),
            (Pattern::Int(ranges), Sample::Bytes(bytes)) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .is_some_and(|i| in_ranges(ranges, i)),
            (Pattern::Ip(set), Sample::Ip(ip)) => set.contains(*ip),
            (Pattern::Ip(set), Sample::Bytes(bytes)) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|s| s.trim().parse::<IpAddr>().ok())
                .is_some_and(|ip| set.contains(ip)),
            _ => false,
        }
    }
}

/// Compares without allocating; `icase` patterns are stored lowercased
/// and compared ignoring ASCII case.
fn text_matches(kind: MatchKind, icase: bool, sample: &[u8], pattern: &[u8]) -> bool {
    let eq = |a: &[u8]| {
        if icase {
            a.eq_ignore_ascii_case(pattern)
        } else {
            a == pattern
        }
    };
    let n = pattern.len();
    match kind {
        MatchKind::Str => eq(sample),
        MatchKind::Beg => sample.len() >= n && eq(&sample[..n]),
        MatchKind::End => sample.len() >= n && eq(&sample[sample.len() - n..]),
        MatchKind::Sub => n == 0 || sample.windows(n).any(eq),
        MatchKind::Dir => word_match(sample, pattern, icase, |b| b == b'/' || b == b'?'),
        MatchKind::Dom => word_match(sample, pattern, icase, |b| {
            matches!(b, b'/' | b'?' | b'.' | b':')
        }),
        _ => false,
    }
}

/// HAProxy's `dir`/`dom`: the pattern (without its own leading/trailing
/// delimiters) appears in the sample bounded by delimiters or the ends.
fn word_match(sample: &[u8], pattern: &[u8], icase: bool, is_delim: fn(u8) -> bool) -> bool {
    let start = pattern.iter().position(|&b| !is_delim(b));
    let end = pattern.iter().rposition(|&b| !is_delim(b));
    let (Some(start), Some(end)) = (start, end) else {
        // A pattern made only of delimiters matches any sample holding one.
        return sample.iter().any(|&b| is_delim(b));
    };
    let word = &pattern[start..=end];
    if word.len() > sample.len() {
        return false;
    }
    let eq = |a: &[u8]| {
        if icase {
            a.eq_ignore_ascii_case(word)
        } else {
            a == word
        }
    };
    (0..=sample.len() - word.len()).any(|at| {
        eq(&sample[at..at + word.len()])
            && (at == 0 || is_delim(sample[at - 1]))
            && (at + word.len() == sample.len() || is_delim(sample[at + word.len()]))
    })
}

fn in_ranges(ranges: &[IntRange], value: i64) -> bool {
    ranges.iter().any(|r| (r.low..=r.high).contains(&value))
}

/// "10.0.0.0/8", "198.18.0.1" (a /32), "fd00::/8".
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("\"{text}\" is not an address or network (CIDR)"))
}

/// Integer patterns: `80`, `1024:65535`, `:1023`, `1024:`, or one operator
/// (`eq ne lt le gt ge`) followed by a value.
fn int_ranges(values: &[String]) -> Result<Vec<IntRange>, String> {
    let int = |v: &str| {
        v.parse::<i64>()
            .map_err(|_| format!("\"{v}\" is not an integer"))
    };
    const OPERATORS: &[&str] = &["eq", "ne", "lt", "le", "gt", "ge"];
    if let Some(op) = values.first().filter(|v| OPERATORS.contains(&v.as_str())) {
        let [_, value] = values else {
            return Err(format!("operator \"{op}\" needs exactly one value"));
        };
        let v = int(value)?;
        let range = |low, high| IntRange { low, high };
        return Ok(match op.as_str() {
            "eq" => vec![range(v, v)],
            "ne" => vec![
                range(i64::MIN, v.saturating_sub(1)),
                range(v.saturating_add(1), i64::MAX),
            ],
            "lt" => vec![range(i64::MIN, v.saturating_sub(1))],
            "le" => vec![range(i64::MIN, v)],
            "gt" => vec![range(v.saturating_add(1), i64::MAX)],
            // "ge", the last of OPERATORS.
            _ => vec![range(v, i64::MAX)],
        });
    }
    values
        .iter()
        .map(|v| match v.split_once(':') {
            Some((low, high)) => {
                let low = if low.is_empty() { i64::MIN } else { int(low)? };
                let high = if high.is_empty() {
                    i64::MAX
                } else {
                    int(high)?
                };
                if low > high {
                    return Err(format!("range \"{v}\" is empty"));
                }
                Ok(IntRange { low, high })
            }
            None => int(v).map(|i| IntRange { low: i, high: i }),
        })
        .collect()
}
