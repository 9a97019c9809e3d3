//! The TOML shapes of the proxy sections, as written. Every field keeps its
//! span so errors name the line; unknown fields are errors.
use serde::{
    de::{self, MapAccess, Visitor},
    Deserialize, Deserializer,
};
use std::fmt;
use toml::Spanned;

/// The proxy sections of a file; the top-level config holds the same five
/// fields and hands them over in this struct.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    pub global: Option<Spanned<RawGlobal>>,
    pub defaults: Option<Spanned<RawDefaults>>,
    #[serde(default)]
    pub frontend: Vec<Spanned<RawFrontend>>,
    #[serde(default)]
    pub backend: Vec<Spanned<RawSection>>,
    #[serde(default)]
    pub listen: Vec<Spanned<RawSection>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGlobal {
    pub maxconn: Option<Spanned<i64>>,
    #[serde(default)]
    pub log: Vec<Spanned<RawLogTarget>>,
    pub ssl_default_bind_options: Option<Spanned<String>>,
    /// `crt-base`: the directory of relative `crt` paths.
    pub crt_base: Option<Spanned<String>>,
    /// `ca-base`: the directory of relative `ca_file` paths.
    pub ca_base: Option<Spanned<String>>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawLogTarget {
    pub target: Spanned<String>,
    pub facility: Option<Spanned<String>>,
    pub format: Option<Spanned<String>>,
    pub level: Option<Spanned<String>>,
    /// Longest datagram (HAProxy's `len`).
    pub len: Option<Spanned<i64>>,
    pub minlevel: Option<Spanned<String>>,
}

/// A section's `log`: `true` (`log global`), `false` (`no log`), or a list
/// of HAProxy's `log` lines, each `"global"`, a line such as
/// `"127.0.0.1:514 local2 info"`, or a table like `[[global.log]]`'s.
#[derive(Clone)]
pub enum RawLog {
    Enabled(bool),
    Lines(Vec<Spanned<RawLogLine>>),
}

#[derive(Clone)]
pub enum RawLogLine {
    /// `"global"` or `"<target> [len N] [format F] <facility> [level]"`.
    Text(String),
    Table(Box<RawLogTarget>),
}

impl<'de> Deserialize<'de> for RawLogLine {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LineVisitor;
        impl<'de> Visitor<'de> for LineVisitor {
            type Value = RawLogLine;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"global\", \"<target> <facility> [level]\", or a table { target = ..., facility = ... }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawLogLine, E> {
                Ok(RawLogLine::Text(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawLogLine, A::Error> {
                RawLogTarget::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|t| RawLogLine::Table(Box::new(t)))
            }
        }
        deserializer.deserialize_any(LineVisitor)
    }
}

impl<'de> Deserialize<'de> for RawLog {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LogVisitor;
        impl<'de> Visitor<'de> for LogVisitor {
            type Value = RawLog;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true (log global), false, or a list of log lines such as [\"global\", \"127.0.0.1:514 local2\"]")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawLog, E> {
                Ok(RawLog::Enabled(v))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<RawLog, A::Error> {
                Vec::<Spanned<RawLogLine>>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(RawLog::Lines)
            }
        }
        deserializer.deserialize_any(LogVisitor)
    }
}

/// `redispatch = true | false` (`option redispatch`), or the interval of
/// HAProxy's `option redispatch <interval>` as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawRedispatch {
    Flag(bool),
    Interval(i64),
}

impl<'de> Deserialize<'de> for RawRedispatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RedispatchVisitor;
        impl Visitor<'_> for RedispatchVisitor {
            type Value = RawRedispatch;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or an integer interval (option redispatch <interval>)")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawRedispatch, E> {
                Ok(RawRedispatch::Flag(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawRedispatch, E> {
                Ok(RawRedispatch::Interval(v))
            }
        }
        deserializer.deserialize_any(RedispatchVisitor)
    }
}

/// `[defaults]`, `[[frontend]]`, `[[backend]]` and `[[listen]]` share one
/// shape; which fields each kind of section takes is checked by the
/// validator, so that `balance` in a frontend gets a message that says why.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSection {
    pub name: Option<Spanned<String>>,
    pub bind: Option<Spanned<Vec<Spanned<String>>>>,
    pub mode: Option<Spanned<String>>,
    pub acl: Option<Spanned<Vec<Spanned<String>>>>,
    pub use_backend: Option<Spanned<Vec<Spanned<String>>>>,
    pub default_backend: Option<Spanned<String>>,
    pub http_request: Option<Spanned<Vec<Spanned<String>>>>,
    pub http_response: Option<Spanned<Vec<Spanned<String>>>>,
    pub tcp_request: Option<Spanned<Vec<Spanned<String>>>>,
    pub maxconn: Option<Spanned<i64>>,
    pub timeout: Option<Spanned<RawTimeouts>>,
    pub log: Option<Spanned<RawLog>>,
    pub log_format: Option<Spanned<String>>,
    pub dontlognull: Option<Spanned<bool>>,
    pub http_connection_mode: Option<Spanned<String>>,
    pub forwardfor: Option<Spanned<RawForwardFor>>,
    pub forwarded: Option<Spanned<bool>>,
    pub redispatch: Option<Spanned<RawRedispatch>>,
    pub retries: Option<Spanned<i64>>,
    pub balance: Option<Spanned<String>>,
    pub httpchk: Option<Spanned<RawHttpChk>>,
    pub http_check_expect: Option<Spanned<String>>,
    pub tcp_check: Option<Spanned<bool>>,
    pub allbackups: Option<Spanned<bool>>,
    pub default_server: Option<Spanned<RawServerDefaults>>,
    #[serde(default)]
    pub server: Vec<Spanned<RawServer>>,
}

/// A frontend is a section like any other.
pub type RawFrontend = RawSection;
/// `[defaults]` is a section without a name, binds, rules or servers.
pub type RawDefaults = RawSection;

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub http_request: Option<Spanned<RawDuration>>,
    pub queue: Option<Spanned<RawDuration>>,
    pub connect: Option<Spanned<RawDuration>>,
    pub client: Option<Spanned<RawDuration>>,
    pub server: Option<Spanned<RawDuration>>,
    pub http_keep_alive: Option<Spanned<RawDuration>>,
    pub check: Option<Spanned<RawDuration>>,
    pub tunnel: Option<Spanned<RawDuration>>,
}

impl RawTimeouts {
    /// Field by field: `self` (the section's) over `defaults`.
    pub fn over(self, defaults: &RawTimeouts) -> RawTimeouts {
        let d = defaults.clone();
        RawTimeouts {
            http_request: self.http_request.or(d.http_request),
            queue: self.queue.or(d.queue),
            connect: self.connect.or(d.connect),
            client: self.client.or(d.client),
            server: self.server.or(d.server),
            http_keep_alive: self.http_keep_alive.or(d.http_keep_alive),
            check: self.check.or(d.check),
            tunnel: self.tunnel.or(d.tunnel),
        }
    }
}

/// The settings a `server` and `default_server` share, listed once: both
/// structs get them, `default_server` merges them field by field
/// ([`RawServerDefaults::over`]) and a server hands its own over
/// ([`RawServer::settings`]).
macro_rules! server_settings {
    ($($(#[$doc:meta])* $field:ident: $ty:ty,)*) => {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RawServer {
            pub name: Spanned<String>,
            pub address: Spanned<String>,
            pub backup: Option<Spanned<bool>>,
            pub disabled: Option<Spanned<bool>>,
            $($(#[$doc])* pub $field: Option<Spanned<$ty>>,)*
        }

        /// `default_server`: HAProxy's `default-server`, settings every
        /// server of the section takes unless it sets its own.
        #[derive(Deserialize, Default, Clone, Debug)]
        #[serde(deny_unknown_fields)]
        pub struct RawServerDefaults {
            $($(#[$doc])* pub $field: Option<Spanned<$ty>>,)*
        }

        impl RawServerDefaults {
            /// Field by field: `self` (the section's) over `defaults`.
            pub fn over(self, defaults: &RawServerDefaults) -> RawServerDefaults {
                let d = defaults.clone();
                RawServerDefaults {
                    $($field: self.$field.or(d.$field),)*
                }
            }
        }

        impl RawServer {
            /// The settings this server writes itself (not its name,
            /// address, `backup` or `disabled`).
            pub fn settings(&self) -> RawServerDefaults {
                RawServerDefaults {
                    $($field: self.$field.clone(),)*
                }
            }
        }
    };
}

server_settings! {
    weight: i64,
    check: bool,
    inter: RawDuration,
    rise: i64,
    fall: i64,
    maxconn: i64,
    ssl: bool,
    check_ssl: bool,
    verify: String,
    /// `verifyhost`: the name the server's certificate must carry.
    verifyhost: String,
    ca_file: String,
    sni: String,
    /// `check-sni`: the SNI of TLS health checks.
    check_sni: String,
    /// `alpn`: the protocols offered to the server.
    alpn: String,
    crt: String,
}

/// A duration as HAProxy writes it: a bare number is milliseconds, a
/// string carries a unit (`us`, `ms`, `s`, `m`, `h`, `d`).
#[derive(Debug, Clone, PartialEq)]
pub enum RawDuration {
    Millis(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration: milliseconds as a number, or a string such as \"10s\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawDuration, E> {
                Ok(RawDuration::Millis(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawDuration, E> {
                Ok(RawDuration::Millis(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// `forwardfor = true` or `forwardfor = { except = [...], header = "...",
/// if_none = true }`.
pub enum RawForwardFor {
    Enabled(bool),
    Options(RawForwardForOptions),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwardForOptions {
    #[serde(default)]
    pub except: Vec<Spanned<String>>,
    pub header: Option<Spanned<String>>,
    pub if_none: Option<Spanned<bool>>,
}

impl<'de> Deserialize<'de> for RawForwardFor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ForwardForVisitor;
        impl<'de> Visitor<'de> for ForwardForVisitor {
            type Value = RawForwardFor;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "true, false, or a table { except = [...], header = \"...\", if_none = true }",
                )
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawForwardFor, E> {
                Ok(RawForwardFor::Enabled(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawForwardFor, A::Error> {
                RawForwardForOptions::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawForwardFor::Options)
            }
        }
        deserializer.deserialize_any(ForwardForVisitor)
    }
}

/// `httpchk = true` (`option httpchk` alone: OPTIONS / HTTP/1.0), `false`,
/// or HAProxy's arguments as a string.
pub enum RawHttpChk {
    Enabled(bool),
    Request(String),
}

impl<'de> Deserialize<'de> for RawHttpChk {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HttpChkVisitor;
        impl Visitor<'_> for HttpChkVisitor {
            type Value = RawHttpChk;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false, or \"METHOD URI [VERSION]\"")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawHttpChk, E> {
                Ok(RawHttpChk::Enabled(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawHttpChk, E> {
                Ok(RawHttpChk::Request(v.to_owned()))
            }
        }
        deserializer.deserialize_any(HttpChkVisitor)
    }
}
