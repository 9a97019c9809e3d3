//! `[stats]`: the stats page, its users and `/metrics` (HAProxy's
//! `listen hastats` with `stats enable`, `stats uri`, `stats realm`,
//! `stats auth`, `stats refresh`, `stats admin`, `stats show-legends`,
//! `stats hide-version`). Validated once into types that cannot be
//! invalid.
use crate::proxy::config::{parse_duration, ErrorSink, RawDuration};
use serde::Deserialize;
use std::{net::SocketAddr, time::Duration};
use toml::Spanned;

pub const DEFAULT_BIND: &str = "127.0.0.1:8404";
pub const DEFAULT_REALM: &str = "lbd statistics";
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5);
/// Below this the page would poll faster than the daemon refreshes its
/// state file (once a second).
pub const MIN_REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStats {
    pub bind: Option<Spanned<String>>,
    pub uri: Option<Spanned<String>>,
    pub realm: Option<Spanned<String>>,
    pub refresh: Option<Spanned<RawDuration>>,
    #[serde(default)]
    pub admin: bool,
    pub show_legends: Option<bool>,
    #[serde(default)]
    pub hide_version: bool,
    pub metrics: Option<bool>,
    #[serde(default)]
    pub user: Vec<Spanned<RawUser>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: Spanned<String>,
    pub password: Option<Spanned<String>>,
    pub password_hash: Option<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsConfig {
    pub bind: SocketAddr,
    /// Starts with '/', no ';', '?' or '#'.
    pub uri: String,
    pub realm: String,
    pub refresh: Duration,
    pub admin: bool,
    pub show_legends: bool,
    pub hide_version: bool,
    pub metrics: bool,
    /// Empty: the page is open to whoever reaches `bind` (HAProxy without
    /// `stats auth`); then `admin` is refused.
    pub users: Vec<User>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub secret: Secret,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User").field("name", &self.name).finish()
    }
}

#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// Written in clear in the file (`stats auth admin:admin`): accepted,
    /// `lbd check` warns.
    Plain(String),
    /// A PHC string `$argon2id$...` (or argon2i/argon2d).
    Argon2(String),
    /// `$2b$...` (also $2a$, $2y$).
    Bcrypt(String),
}

impl StatsConfig {
    /// What `lbd check` warns about without refusing the file.
    pub fn warnings(&self) -> Vec<String> {
        self.users
            .iter()
            .filter(|u| matches!(u.secret, Secret::Plain(_)))
            .map(|u| {
                format!(
                    "stats.user {}: password in clear text; prefer password_hash (argon2 or bcrypt)",
                    u.name
                )
            })
            .collect()
    }

    /// The path of an export: `/stats;csv` as HAProxy's `stats uri /stats`.
    pub fn export_path(&self, suffix: &str) -> String {
        format!("{};{suffix}", self.uri)
    }
}

/// Validates `[stats]`; errors go to `sink` at their lines.
pub fn validate(raw: &Spanned<RawStats>, sink: &mut dyn ErrorSink) -> Option<StatsConfig> {
    let span = raw.span();
    let raw = raw.get_ref();
    let mut ok = true;
    let mut fail =
        |sink: &mut dyn ErrorSink, span: std::ops::Range<usize>, field: &str, m: String| {
            sink.report(span, field, m);
            ok = false;
        };
    let bind = match &raw.bind {
        None => DEFAULT_BIND.parse().ok(),
        Some(text) => match text.get_ref().parse::<SocketAddr>() {
            Ok(address) => Some(address),
            Err(_) => {
                fail(
                    sink,
                    text.span(),
                    "stats.bind",
                    format!("\"{}\" is not ADDRESS:PORT", text.get_ref()),
                );
                None
            }
        },
    };
    let uri = match &raw.uri {
        None => "/".to_owned(),
        Some(text) => {
            let uri = text.get_ref();
            if !uri.starts_with('/') || uri.contains([';', '?', '#', ' ']) || uri == "/metrics" {
                fail(
                    sink,
                    text.span(),
                    "stats.uri",
                    format!("\"{uri}\" must be a path starting with '/', without ';', '?', '#' or spaces, and not /metrics"),
                );
            }
            uri.trim_end_matches('/').to_owned()
        }
    };
    let uri = if uri.is_empty() { "/".to_owned() } else { uri };
    let realm = match &raw.realm {
        None => DEFAULT_REALM.to_owned(),
        Some(text)
            if text.get_ref().contains(['"', '\\'])
                || text.get_ref().chars().any(char::is_control) =>
        {
            fail(
                sink,
                text.span(),
                "stats.realm",
                "must not contain '\"', '\\' or control characters".into(),
            );
            String::new()
        }
        Some(text) => text.get_ref().clone(),
    };
    let refresh = match &raw.refresh {
        None => DEFAULT_REFRESH,
        Some(value) => match parse_duration(value.get_ref()) {
            Ok(d) if d >= MIN_REFRESH => d,
            Ok(_) => {
                fail(
                    sink,
                    value.span(),
                    "stats.refresh",
                    "must be at least 1s".into(),
                );
                DEFAULT_REFRESH
            }
            Err(message) => {
                fail(sink, value.span(), "stats.refresh", message);
                DEFAULT_REFRESH
            }
        },
    };
    let mut users: Vec<User> = Vec::new();
    for user in &raw.user {
        let name = user.get_ref().name.get_ref();
        if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
            fail(
                sink,
                user.get_ref().name.span(),
                "stats.user.name",
                format!("\"{name}\" is not a user name (no ':' or control characters)"),
            );
            continue;
        }
        if users.iter().any(|u| &u.name == name) {
            fail(
                sink,
                user.get_ref().name.span(),
                "stats.user.name",
                format!("user \"{name}\" is defined twice"),
            );
            continue;
        }
        let secret = match (&user.get_ref().password, &user.get_ref().password_hash) {
            (Some(plain), None) if !plain.get_ref().is_empty() => {
                Secret::Plain(plain.get_ref().clone())
            }
            (None, Some(hash)) => match super::auth::parse_hash(hash.get_ref()) {
                Ok(secret) => secret,
                Err(message) => {
                    fail(sink, hash.span(), "stats.user.password_hash", message);
                    continue;
                }
            },
            _ => {
                fail(sink, user.span(), "stats.user", format!("user \"{name}\" needs exactly one of password (not empty) or password_hash"));
                continue;
            }
        };
        users.push(User {
            name: name.clone(),
            secret,
        });
    }
    if raw.admin && raw.user.is_empty() {
        fail(
            sink,
            span.clone(),
            "stats.admin",
            "admin = true needs at least one [[stats.user]]: actions are never open to anyone"
                .into(),
        );
    }
    let config = StatsConfig {
        bind: bind?,
        uri,
        realm,
        refresh,
        admin: raw.admin,
        show_legends: raw.show_legends.unwrap_or(true),
        hide_version: raw.hide_version,
        metrics: raw.metrics.unwrap_or(true),
        users,
    };
    ok.then_some(config)
}

/// Validates the `[stats]` of a whole file, for tests.
#[cfg(test)]
pub fn tests_parse(text: &str) -> Result<StatsConfig, Vec<String>> {
    #[derive(Deserialize)]
    struct File {
        stats: Spanned<RawStats>,
    }
    struct Errors(Vec<String>);
    impl ErrorSink for Errors {
        fn report(&mut self, _: std::ops::Range<usize>, field: &str, message: String) {
            self.0.push(format!("{field}: {message}"));
        }
    }
    let file: File = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
    let mut errors = Errors(Vec::new());
    match validate(&file.stats, &mut errors) {
        Some(config) if errors.0.is_empty() => Ok(config),
        _ => Err(errors.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_haproxys_with_a_loopback_bind() {
        let c = tests_parse("[stats]\n").unwrap();
        assert_eq!(c.bind, "127.0.0.1:8404".parse().unwrap());
        assert_eq!(
            (
                c.uri.as_str(),
                c.refresh,
                c.admin,
                c.show_legends,
                c.metrics
            ),
            ("/", DEFAULT_REFRESH, false, true, true)
        );
        assert!(c.users.is_empty() && c.warnings().is_empty());
        let c = tests_parse("[stats]\nuri = \"/hastat/\"\nrefresh = \"10s\"\n[[stats.user]]\nname = \"admin\"\npassword = \"admin\"\n").unwrap();
        assert_eq!(
            (c.uri.as_str(), c.refresh),
            ("/hastat", Duration::from_secs(10))
        );
        assert_eq!(c.export_path("csv"), "/hastat;csv");
        assert_eq!(c.warnings().len(), 1, "a clear password is warned about");
    }

    #[test]
    fn bad_sections_are_refused_with_the_field() {
        let cases = [
            ("[stats]\nbind = \"8404\"\n", "stats.bind"),
            ("[stats]\nuri = \"stats\"\n", "stats.uri"),
            ("[stats]\nuri = \"/a;b\"\n", "stats.uri"),
            ("[stats]\nrefresh = \"100ms\"\n", "stats.refresh"),
            ("[stats]\nrefresh = \"5 parsecs\"\n", "stats.refresh"),
            ("[stats]\nadmin = true\n", "stats.admin"),
            ("[stats]\n[[stats.user]]\nname = \"a:b\"\npassword = \"x\"\n", "stats.user.name"),
            ("[stats]\n[[stats.user]]\nname = \"a\"\n", "stats.user"),
            ("[stats]\n[[stats.user]]\nname = \"a\"\npassword = \"x\"\npassword_hash = \"$2b$04$x\"\n", "stats.user"),
            ("[stats]\n[[stats.user]]\nname = \"a\"\npassword_hash = \"md5:abc\"\n", "stats.user.password_hash"),
            ("[stats]\n[[stats.user]]\nname = \"a\"\npassword = \"x\"\n[[stats.user]]\nname = \"a\"\npassword = \"y\"\n", "stats.user.name"),
            ("[stats]\nrealm = \"a\\\"b\"\n", "stats.realm"),
        ];
        for (text, field) in cases {
            let errors = tests_parse(text).expect_err(text);
            assert!(
                errors.iter().any(|e| e.starts_with(&format!("{field}:"))),
                "{text}: {errors:?}"
            );
        }
    }
}
