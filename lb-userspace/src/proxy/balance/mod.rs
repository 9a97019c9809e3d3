//! `balance`: HAProxy's algorithms over a backend's usable servers.
//!
//! Candidates first: the primary servers that are up (ready, health up,
//! weight > 0); when there is none, the first usable backup (or every
//! usable backup with `option allbackups`). Then the algorithm: a server at
//! its `maxconn` is skipped by the load-spreading algorithms and queued on
//! by the hashing ones (whose point is to keep a key on its server).
mod hash;
pub mod post;
mod rdp;
mod weighted;

#[cfg(test)]
mod tests;

pub use hash::uri_key;
pub use rdp::{connection_request as rdp_connection_request, rdp_cookie, RdpCookie};

use crate::proxy::acl::{authority_as_host, query_param_values};
use crate::proxy::config::{Backend, ServerId};
use crate::proxy::snapshot::BackendRuntime;
use hyper::http::{request, HeaderName};
use smallvec::SmallVec;
use std::{
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Mutex,
    },
};

/// A backend's `balance` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round robin; weights may change at runtime.
    RoundRobin,
    /// Weighted round robin on the configured weights.
    StaticRr,
    /// Fewest connections (per weight); ties in turn.
    LeastConn,
    /// The first server (in order) with a free slot.
    First,
    /// Hash of the client address.
    Source,
    /// Hash of the path (or path and query with `whole`).
    Uri(UriHash),
    /// Hash of a query-string parameter (or, with `check_post`, of a
    /// urlencoded POST body's parameter); round robin without it.
    UrlParam(UrlParam),
    /// Hash of a request header; round robin without it.
    Hdr(HdrHash),
    /// Hash of the RDP cookie (`mstshash` by default); round robin without.
    RdpCookie(String),
    /// Power of `draws` random choices (weighted), the least loaded wins.
    Random { draws: u32 },
}

/// `balance url_param <name> [check_post [<max_wait>]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParam {
    pub name: String,
    /// `check_post`: without the parameter in the query string, a POST
    /// with an `application/x-www-form-urlencoded` body is searched in its
    /// first this many bytes (never more are held back from the server).
    pub check_post: Option<usize>,
}

/// How many bytes of a POST body `check_post` looks into without an
/// explicit `<max_wait>` (HAProxy: one buffer; lbd's request head limit).
pub const CHECK_POST_DEFAULT: usize = 16 * 1024;
/// The largest `<max_wait>` accepted: the body bytes held back before
/// choosing a server stay bounded.
pub const CHECK_POST_MAX: usize = 1024 * 1024;

/// `balance hdr(<name>) [use_domain_only]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HdrHash {
    pub name: HeaderName,
    /// `use_domain_only`: hash only the main domain of a host name
    /// (`haproxy` of `www.haproxy.org`), as HAProxy does for `Host`.
    pub domain_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UriHash {
    /// Path and query instead of the path alone.
    pub whole: bool,
    /// Only the first `len` characters (0 = all).
    pub len: usize,
    /// Only the first `depth` directories (0 = all).
    pub depth: usize,
}

impl Balance {
    /// Parses HAProxy's `balance` arguments: "roundrobin", "uri whole len
    /// 20", "url_param id", "hdr(host)", "rdp-cookie(mstshash)", "random(3)".
    pub fn parse(text: &str) -> Result<Balance, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let Some((&first, rest)) = words.split_first() else {
            return Err("empty balance".into());
        };
        let (name, arg) = match first.split_once('(') {
            Some((name, rest)) => (
                name,
                Some(
                    rest.strip_suffix(')')
                        .ok_or_else(|| format!("\"{first}\": missing ')'"))?,
                ),
            ),
            None => (first, None),
        };
        let no_more = |b: Balance| {
            if rest.is_empty() && arg.is_none() {
                Ok(b)
            } else {
                Err(format!("\"{name}\" takes no arguments"))
            }
        };
        match name {
            "roundrobin" => no_more(Balance::RoundRobin),
            "static-rr" => no_more(Balance::StaticRr),
            "leastconn" => no_more(Balance::LeastConn),
            "first" => no_more(Balance::First),
            "source" => no_more(Balance::Source),
            "uri" if arg.is_none() => Ok(Balance::Uri(parse_uri_options(rest)?)),
            "url_param" if arg.is_none() => parse_url_param(rest).map(Balance::UrlParam),
            "hdr" => {
                let header = arg
                    .filter(|a| !a.is_empty())
                    .ok_or("expected \"hdr(<name>)\"")?;
                let domain_only = match rest {
                    [] => false,
                    ["use_domain_only"] => true,
                    _ => {
                        return Err(format!(
                            "hdr({header}): unknown option \"{}\" (use_domain_only)",
                            rest.join(" ")
                        ))
                    }
                };
                HeaderName::from_bytes(header.as_bytes())
                    .map(|name| Balance::Hdr(HdrHash { name, domain_only }))
                    .map_err(|_| format!("\"{header}\" is not a valid header name"))
            }
            "rdp-cookie" if rest.is_empty() => Ok(Balance::RdpCookie(
                arg.filter(|a| !a.is_empty()).unwrap_or("mstshash").to_owned(),
            )),
            "random" if rest.is_empty() => {
                let draws = match arg {
                    None => 2,
                    Some(n) => n
                        .parse::<u32>()
                        .ok()
                        .filter(|d| (1..=100).contains(d))
                        .ok_or_else(|| format!("random({n}): draws must be 1..=100"))?,
                };
                Ok(Balance::Random { draws })
            }
            _ => Err(format!(
                "unknown balance \"{text}\" (roundrobin static-rr leastconn first source uri url_param hdr(NAME) rdp-cookie random)"
            )),
        }
    }

    /// Whether the algorithm needs an HTTP request (`mode http`).
    pub fn needs_http(&self) -> bool {
        matches!(
            self,
            Balance::Uri(_) | Balance::UrlParam(_) | Balance::Hdr(_)
        )
    }

    /// Whether the algorithm maps a key onto a consistent-hash table.
    pub fn is_hash(&self) -> bool {
        matches!(
            self,
            Balance::Source
                | Balance::Uri(_)
                | Balance::UrlParam(_)
                | Balance::Hdr(_)
                | Balance::RdpCookie(_)
        )
    }
}

fn parse_url_param(words: &[&str]) -> Result<UrlParam, String> {
    let (name, check_post) = match words {
        [name] => (name, None),
        [name, "check_post"] => (name, Some(CHECK_POST_DEFAULT)),
        [name, "check_post", max_wait] => {
            let bytes = max_wait
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=CHECK_POST_MAX).contains(n))
                .ok_or_else(|| {
                    format!(
                        "url_param {name} check_post: \"{max_wait}\" is not a byte count 1..={CHECK_POST_MAX}"
                    )
                })?;
            (name, Some(bytes))
        }
        _ => return Err("expected \"url_param <name> [check_post [<max_wait>]]\"".into()),
    };
    Ok(UrlParam {
        name: (*name).to_owned(),
        check_post,
    })
}

/// HAProxy's `use_domain_only`: the label before the last dot (`haproxy`
/// of `www.haproxy.org`, `example` of `example.com:8080`), the whole value
/// when it has no dot.
pub fn main_domain(host: &[u8]) -> &[u8] {
    let Some(last_dot) = host.iter().rposition(|&b| b == b'.') else {
        return host;
    };
    let start = host[..last_dot]
        .iter()
        .rposition(|&b| b == b'.')
        .map_or(0, |dot| dot + 1);
    &host[start..last_dot]
}

fn parse_uri_options(words: &[&str]) -> Result<UriHash, String> {
    let mut uri = UriHash::default();
    let mut rest = words.iter();
    while let Some(&word) = rest.next() {
        match word {
            "whole" => uri.whole = true,
            "path-only" => {}
            "len" | "depth" => {
                let value = rest
                    .next()
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|v| *v > 0)
                    .ok_or_else(|| format!("uri {word} needs a positive number"))?;
                if word == "len" {
                    uri.len = value;
                } else {
                    uri.depth = value;
                }
            }
            other => {
                return Err(format!(
                    "unknown uri option \"{other}\" (whole, len N, depth N, path-only)"
                ))
            }
        }
    }
    Ok(uri)
}

/// What a choice may look at.
#[derive(Debug, Clone, Copy)]
pub struct BalanceInput<'a> {
    pub src: IpAddr,
    /// The request head (`mode http`).
    pub request: Option<&'a request::Parts>,
    /// The first bytes from the client (`mode tcp`, for `rdp-cookie`).
    pub payload: &'a [u8],
    /// The first bytes of a POST body (`url_param ... check_post`); empty
    /// when the request has none or the body was not looked into.
    pub body: &'a [u8],
    /// A server not to pick again (`option redispatch` after a failure).
    pub exclude: Option<ServerId>,
}

impl<'a> BalanceInput<'a> {
    pub fn new(src: IpAddr) -> Self {
        BalanceInput {
            src,
            request: None,
            payload: &[],
            body: &[],
            exclude: None,
        }
    }
}

/// What `choose` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Server(ServerId),
    /// Every candidate is at its maxconn: wait (`timeout queue`) on this
    /// server (hashing algorithms) or on any server of the backend.
    Queue(Option<ServerId>),
    /// No usable server: 503.
    NoServer,
}

/// Per-snapshot balancing state of one backend.
#[derive(Debug)]
pub struct Balancer {
    /// Smooth round robin's current weights, by server.
    smooth: Mutex<Vec<i64>>,
    /// static-rr's sequence over configured weights, and its cursor.
    static_order: Vec<ServerId>,
    cursor: AtomicUsize,
    /// Consistent-hash table over the current candidates.
    table: hash::TableCache,
    /// xorshift state for `random`.
    rng: AtomicU64,
}

impl Balancer {
    pub fn new(backend: &Backend) -> Balancer {
        Balancer {
            smooth: Mutex::new(vec![0; backend.servers.len()]),
            static_order: weighted::static_sequence(
                &backend.servers.iter().map(|s| s.weight).collect::<Vec<_>>(),
            ),
            cursor: AtomicUsize::new(0),
            table: hash::TableCache::default(),
            rng: AtomicU64::new(0x9e37_79b9_7f4a_7c15 ^ backend.name.len() as u64),
        }
    }

    fn next_random(&self) -> u64 {
        // xorshift64*: a lock-free, good-enough spread for choosing servers.
        let mut x = self.rng.load(Ordering::Relaxed);
        loop {
            let mut next = x;
            next ^= next >> 12;
            next ^= next << 25;
            next ^= next >> 27;
            match self
                .rng
                .compare_exchange_weak(x, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next.wrapping_mul(0x2545_f491_4f6c_dd1d),
                Err(current) => x = current,
            }
        }
    }
}

/// The servers eligible now: usable primaries, else backups.
/// Server ids of one choice: held inline for the usual backend of a few
/// servers (a choice is made per request; two vectors cost two
/// allocations), on the heap beyond.
type ServerIds = SmallVec<[ServerId; 16]>;

fn candidates(config: &Backend, runtime: &BackendRuntime, exclude: Option<ServerId>) -> ServerIds {
    let up =
        |id: &ServerId| Some(*id) != exclude && runtime.servers.get(*id).is_some_and(|s| s.is_up());
    let primaries: ServerIds = (0..config.servers.len())
        .filter(|id| !config.servers[*id].backup)
        .filter(up)
        .collect();
    if !primaries.is_empty() {
        return primaries;
    }
    let backups = (0..config.servers.len())
        .filter(|id| config.servers[*id].backup)
        .filter(up);
    if config.allbackups {
        backups.collect()
    } else {
        backups.take(1).collect()
    }
}

/// Picks a server of `config`/`runtime` for `input`.
pub fn choose(config: &Backend, runtime: &BackendRuntime, input: &BalanceInput) -> Pick {
    let candidates = candidates(config, runtime, input.exclude);
    if candidates.is_empty() {
        return Pick::NoServer;
    }
    let maxconn = |id: ServerId| config.servers[id].maxconn;
    let not_full: ServerIds = candidates
        .iter()
        .copied()
        .filter(|&id| !runtime.servers[id].is_full(maxconn(id)))
        .collect();
    let balancer = &runtime.balancer;
    let spread = |pick: Option<ServerId>| pick.map_or(Pick::Queue(None), Pick::Server);
    let round_robin = || spread(weighted::smooth_pick(balancer, runtime, &not_full));
    match &config.balance {
        Balance::RoundRobin => round_robin(),
        Balance::StaticRr => spread(weighted::static_pick(balancer, &not_full)),
        Balance::LeastConn => spread(weighted::least_conn_pick(balancer, runtime, &not_full)),
        Balance::First => spread(not_full.first().copied()),
        Balance::Random { draws } => spread(hash::random_pick(
            balancer,
            config,
            runtime,
            &candidates,
            &not_full,
            *draws,
        )),
        balance => {
            let Some(key) = hash_key(balance, input) else {
                return round_robin();
            };
            match hash::table_pick(
                balancer,
                config,
                runtime,
                &candidates,
                hash::hash_bytes(&key),
            ) {
                Some(id) if runtime.servers[id].is_full(maxconn(id)) => Pick::Queue(Some(id)),
                Some(id) => Pick::Server(id),
                None => Pick::NoServer,
            }
        }
    }
}

/// Whether `check_post` looks into this request's body: a POST with an
/// urlencoded form (HAProxy also requires the content type).
pub fn post_body_is_searched(request: &request::Parts) -> bool {
    request.method == hyper::http::Method::POST
        && request
            .headers
            .get(hyper::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| {
                t.split(';').next().is_some_and(|m| {
                    m.trim()
                        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                })
            })
}

/// How many body bytes a request must offer before `choose` for `balance`:
/// `Some(n)` for `url_param ... check_post` on a urlencoded POST whose
/// query lacks the parameter, else `None` (choose at once).
pub fn body_wanted(balance: &Balance, request: &request::Parts) -> Option<usize> {
    let Balance::UrlParam(param) = balance else {
        return None;
    };
    let limit = param.check_post?;
    let in_query = query_param_values(request.uri.query(), &param.name).any(|v| !v.is_empty());
    (!in_query && post_body_is_searched(request)).then_some(limit)
}

/// The bytes a hashing algorithm hashes; `None` when the request has none
/// (HAProxy then falls back to round robin).
fn hash_key(balance: &Balance, input: &BalanceInput) -> Option<Vec<u8>> {
    match balance {
        Balance::Source => Some(match input.src {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.octets().to_vec(),
                None => v6.octets().to_vec(),
            },
        }),
        Balance::Uri(options) => input
            .request
            .map(|r| uri_key(&r.uri, *options).into_bytes()),
        Balance::UrlParam(param) => {
            let request = input.request?;
            // HAProxy hashes a value: `id` or `id=` alone means absent.
            let in_query = query_param_values(request.uri.query(), &param.name)
                .find(|v| !v.is_empty())
                .map(|v| v.as_bytes().to_vec());
            in_query.or_else(|| {
                let limit = param.check_post?;
                if !post_body_is_searched(request) {
                    return None;
                }
                let body = &input.body[..input.body.len().min(limit)];
                let body = std::str::from_utf8(body).ok().or_else(|| {
                    // A cut multi-byte character at the end: search before it.
                    let valid = std::str::from_utf8(body).err()?.valid_up_to();
                    std::str::from_utf8(&body[..valid]).ok()
                })?;
                query_param_values(Some(body), &param.name)
                    .find(|v| !v.is_empty())
                    .map(|v| v.as_bytes().to_vec())
            })
        }
        Balance::Hdr(hdr) => {
            let request = input.request?;
            let value = match authority_as_host(request, &hdr.name) {
                Some(host) => host.as_bytes(),
                None => request.headers.get(&hdr.name)?.as_bytes().trim_ascii(),
            };
            let value = if hdr.domain_only {
                main_domain(value)
            } else {
                value
            };
            (!value.is_empty()).then(|| value.to_vec())
        }
        Balance::RdpCookie(name) => match rdp_cookie(input.payload, name) {
            RdpCookie::Found(value) => Some(value.to_vec()),
            RdpCookie::Absent | RdpCookie::Incomplete | RdpCookie::NotRdp => None,
        },
        _ => None,
    }
}
