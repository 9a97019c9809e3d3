//! HAProxy's bind options for TLS termination, as written after the
//! address in a `bind` string (`:443 ssl crt site.pem alpn h2,http/1.1`)
//! and in `[global] ssl_default_bind_options`. Sans-IO: words in, options
//! out; the files they name are loaded by `server`.
use std::path::PathBuf;

/// A TLS protocol version lbd speaks (rustls has no TLS 1.0/1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    /// HAProxy's spelling, also what `ssl_fc_protocol` returns.
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }

    fn parse(word: &str) -> Result<TlsVersion, String> {
        match word {
            "TLSv1.2" => Ok(TlsVersion::Tls12),
            "TLSv1.3" => Ok(TlsVersion::Tls13),
            "SSLv3" | "TLSv1.0" | "TLSv1.1" => Err(format!(
                "{word} is not supported: it is broken and every current client speaks TLSv1.2; use TLSv1.2 or TLSv1.3"
            )),
            other => Err(format!(
                "\"{other}\" is not a TLS version (TLSv1.2, TLSv1.3)"
            )),
        }
    }
}

/// `verify none|optional|required` for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ClientVerify {
    #[default]
    None,
    /// Asked for; a client without one is accepted, a bad one refused.
    Optional,
    /// A client without a valid certificate is refused.
    Required,
}

/// `ca-ignore-err` / `crt-ignore-err`: verification errors (OpenSSL's
/// `X509_V_ERR_*` numbers, as `ssl_c_verify` returns them) that do not end
/// the handshake; `ssl_c_verify` then tells the rules what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum IgnoreErrors {
    #[default]
    None,
    All,
    Codes(Vec<u32>),
}

impl IgnoreErrors {
    fn parse(text: &str) -> Result<IgnoreErrors, String> {
        if text == "all" {
            return Ok(IgnoreErrors::All);
        }
        text.split(',')
            .map(|code| {
                code.trim().parse::<u32>().map_err(|_| {
                    format!(
                        "\"{code}\" is not a verify error number (all, or a list such as 10,20)"
                    )
                })
            })
            .collect::<Result<_, _>>()
            .map(IgnoreErrors::Codes)
    }

    pub fn ignores(&self, code: u32) -> bool {
        match self {
            IgnoreErrors::None => false,
            IgnoreErrors::All => true,
            IgnoreErrors::Codes(codes) => codes.contains(&code),
        }
    }
}

/// The options of one bind (or the global defaults). `None`/empty means
/// "not given here", so the global defaults can fill in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct BindOptions {
    /// `ssl`: terminate TLS on this bind.
    pub ssl: bool,
    /// `crt FILE|DIR`, in order; the first certificate loaded is the
    /// default one (no SNI, or no name matched).
    pub crts: Vec<PathBuf>,
    /// `alpn h2,http/1.1`.
    pub alpn: Option<Vec<String>>,
    pub min_version: Option<TlsVersion>,
    pub max_version: Option<TlsVersion>,
    /// `strict-sni`: refuse a handshake whose SNI matches no certificate.
    pub strict_sni: bool,
    pub verify: Option<ClientVerify>,
    /// `ca-file FILE`: CAs that sign acceptable client certificates.
    pub ca_file: Option<PathBuf>,
    /// `no-tls-tickets`: no session tickets (resumption from the cache only).
    pub no_tls_tickets: bool,
    /// `ca-ignore-err`: errors in the chain above the client certificate.
    pub ca_ignore_err: IgnoreErrors,
    /// `crt-ignore-err`: errors of the client certificate itself.
    pub crt_ignore_err: IgnoreErrors,
}

impl BindOptions {
    /// Parses the words after the bind address. `global` is true for
    /// `ssl_default_bind_options`, which takes only protocol settings.
    pub fn parse(text: &str, global: bool) -> Result<BindOptions, String> {
        let mut options = BindOptions::default();
        let mut words = text.split_whitespace();
        while let Some(word) = words.next() {
            let mut value = |what: &str| {
                words
                    .next()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("\"{word}\" needs {what}"))
            };
            let bind_only = matches!(
                word,
                "ssl"
                    | "crt"
                    | "strict-sni"
                    | "verify"
                    | "ca-file"
                    | "alpn"
                    | "ca-ignore-err"
                    | "crt-ignore-err"
            );
            if global && bind_only {
                return Err(format!(
                    "\"{word}\" is a bind option, not a default (ssl_default_bind_options takes ssl-min-ver, ssl-max-ver, no-tls-tickets, no-tlsv12, no-tlsv13)"
                ));
            }
            match word {
                "ssl" => options.ssl = true,
                "crt" => options.crts.push(PathBuf::from(value("a file or directory")?)),
                "alpn" => {
                    let list = value("a protocol list such as h2,http/1.1")?;
                    let protocols: Vec<String> = list.split(',').map(str::to_owned).collect();
                    if let Some(bad) = protocols.iter().find(|p| !matches!(p.as_str(), "h2" | "http/1.1")) {
                        return Err(format!(
                            "alpn \"{bad}\" is not supported (h2, http/1.1)"
                        ));
                    }
                    options.alpn = Some(protocols);
                }
                "ssl-min-ver" => {
                    options.min_version = Some(TlsVersion::parse(&value("a version")?)?)
                }
                "ssl-max-ver" => {
                    options.max_version = Some(TlsVersion::parse(&value("a version")?)?)
                }
                "strict-sni" => options.strict_sni = true,
                "verify" => {
                    options.verify = Some(match value("none, optional or required")?.as_str() {
                        "none" => ClientVerify::None,
                        "optional" => ClientVerify::Optional,
                        "required" => ClientVerify::Required,
                        other => {
                            return Err(format!(
                                "verify \"{other}\" is not none, optional or required"
                            ))
                        }
                    })
                }
                "ca-file" => options.ca_file = Some(PathBuf::from(value("a file")?)),
                "no-tls-tickets" => options.no_tls_tickets = true,
                "ca-ignore-err" => {
                    options.ca_ignore_err = IgnoreErrors::parse(&value("all or error numbers")?)?
                }
                "crt-ignore-err" => {
                    options.crt_ignore_err = IgnoreErrors::parse(&value("all or error numbers")?)?
                }
                // TLS 1.0/1.1 and SSLv3 are never offered: nothing to turn off.
                "no-sslv3" | "no-tlsv10" | "no-tlsv11" => {}
                "no-tlsv12" => options.min_version = Some(TlsVersion::Tls13),
                "no-tlsv13" => options.max_version = Some(TlsVersion::Tls12),
                "force-tlsv12" => {
                    options.min_version = Some(TlsVersion::Tls12);
                    options.max_version = Some(TlsVersion::Tls12);
                }
                "force-tlsv13" => {
                    options.min_version = Some(TlsVersion::Tls13);
                    options.max_version = Some(TlsVersion::Tls13);
                }
                "force-sslv3" | "force-tlsv10" | "force-tlsv11" => {
                    return Err(format!(
                        "\"{word}\": SSLv3, TLSv1.0 and TLSv1.1 are not supported"
                    ))
                }
                other => {
                    return Err(format!(
                        "unknown bind option \"{other}\" (ssl, crt, alpn, ssl-min-ver, ssl-max-ver, strict-sni, verify, ca-file, ca-ignore-err, crt-ignore-err, no-tls-tickets)"
                    ))
                }
            }
        }
        Ok(options)
    }

    /// Fills what this bind does not set from `defaults` (HAProxy's
    /// `ssl-default-bind-options`).
    pub fn over(mut self, defaults: &BindOptions) -> BindOptions {
        self.min_version = self.min_version.or(defaults.min_version);
        self.max_version = self.max_version.or(defaults.max_version);
        self.no_tls_tickets |= defaults.no_tls_tickets;
        self
    }

    /// Checks the combination; the files are checked when loaded.
    pub fn check(&self) -> Result<(), String> {
        if !self.ssl {
            let tls_only = [
                (!self.crts.is_empty()).then_some("crt"),
                self.alpn.is_some().then_some("alpn"),
                self.strict_sni.then_some("strict-sni"),
                self.verify.is_some().then_some("verify"),
                self.ca_file.is_some().then_some("ca-file"),
                (self.ca_ignore_err != IgnoreErrors::None).then_some("ca-ignore-err"),
                (self.crt_ignore_err != IgnoreErrors::None).then_some("crt-ignore-err"),
            ];
            if let Some(word) = tls_only.into_iter().flatten().next() {
                return Err(format!("\"{word}\" needs \"ssl\" on the same bind"));
            }
            return Ok(());
        }
        if self.crts.is_empty() {
            return Err("\"ssl\" needs a certificate: crt FILE|DIR".into());
        }
        if let (Some(min), Some(max)) = (self.min_version, self.max_version) {
            if min > max {
                return Err(format!(
                    "ssl-min-ver {} is above ssl-max-ver {}",
                    min.name(),
                    max.name()
                ));
            }
        }
        match (self.verify.unwrap_or_default(), &self.ca_file) {
            (ClientVerify::None, _) => {}
            (_, None) => {
                return Err(
                    "verify optional|required needs ca-file FILE (the CAs that sign client certificates)"
                        .into(),
                )
            }
            (_, Some(_)) => {}
        }
        Ok(())
    }

    /// The ALPN protocols offered, most preferred first: `alpn` as given,
    /// else h2 then http/1.1 (HAProxy 2.8's default for http frontends).
    pub fn alpn_protocols(&self) -> Vec<Vec<u8>> {
        match &self.alpn {
            Some(list) => list.iter().map(|p| p.as_bytes().to_vec()).collect(),
            None => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }

    /// The versions offered: min..=max, default TLS 1.2 ..= TLS 1.3.
    pub fn versions(&self) -> (TlsVersion, TlsVersion) {
        (
            self.min_version.unwrap_or(TlsVersion::Tls12),
            self.max_version.unwrap_or(TlsVersion::Tls13),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_options_table() {
        let ok: &[(&str, &str)] = &[
            ("ssl crt /a.pem", "crt"),
            (
                "ssl crt /a.pem crt /dir alpn h2,http/1.1 ssl-min-ver TLSv1.3",
                "two",
            ),
            ("ssl crt /a.pem verify required ca-file /ca.pem", "verify"),
            (
                "ssl crt /a.pem strict-sni no-tls-tickets no-tlsv10 no-sslv3",
                "flags",
            ),
        ];
        for (text, what) in ok {
            let options = BindOptions::parse(text, false).expect(what);
            assert!(options.check().is_ok(), "{what}: {:?}", options.check());
        }
        let options = BindOptions::parse(ok[1].0, false).expect("two");
        assert_eq!(options.crts.len(), 2);
        assert_eq!(options.versions(), (TlsVersion::Tls13, TlsVersion::Tls13));
        assert_eq!(options.alpn_protocols()[0], b"h2");
        let ignoring = BindOptions::parse(
            "ssl crt /a.pem verify optional ca-file /ca.pem ca-ignore-err all crt-ignore-err 10,20",
            false,
        )
        .expect("ignore-err");
        assert!(ignoring.ca_ignore_err.ignores(7));
        assert!(ignoring.crt_ignore_err.ignores(20));
        assert!(!ignoring.crt_ignore_err.ignores(7));
    }

    #[test]
    fn refusals_name_the_problem() {
        let bad: &[(&str, &str)] = &[
            (
                "ssl crt /a.pem ssl-min-ver TLSv1.0",
                "TLSv1.0 is not supported",
            ),
            (
                "ssl crt /a.pem ssl-min-ver TLSv1.1",
                "TLSv1.1 is not supported",
            ),
            ("ssl crt /a.pem force-tlsv10", "not supported"),
            ("ssl crt", "\"crt\" needs a file or directory"),
            (
                "ssl crt /a.pem alpn spdy/3",
                "alpn \"spdy/3\" is not supported",
            ),
            (
                "ssl crt /a.pem verify sometimes",
                "not none, optional or required",
            ),
            ("ssl crt /a.pem npn h2", "unknown bind option \"npn\""),
            (
                "ssl crt /a.pem ssl-min-ver TLSv1.3 ssl-max-ver TLSv1.2",
                "above ssl-max-ver",
            ),
            ("ssl", "needs a certificate"),
            ("crt /a.pem", "needs \"ssl\""),
            ("ssl crt /a.pem verify required", "needs ca-file"),
            (
                "ssl crt /a.pem crt-ignore-err ten",
                "not a verify error number",
            ),
            ("crt-ignore-err all", "needs \"ssl\""),
        ];
        for (text, expected) in bad {
            let error = BindOptions::parse(text, false)
                .and_then(|o| o.check())
                .expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn global_defaults_fill_what_a_bind_leaves() {
        let defaults = BindOptions::parse("ssl-min-ver TLSv1.3 no-tls-tickets", true).expect("g");
        let bind = BindOptions::parse("ssl crt /a.pem", false).expect("b");
        let merged = bind.over(&defaults);
        assert_eq!(merged.versions().0, TlsVersion::Tls13);
        assert!(merged.no_tls_tickets);
        let own = BindOptions::parse("ssl crt /a.pem ssl-min-ver TLSv1.2", false).expect("b");
        assert_eq!(own.over(&defaults).versions().0, TlsVersion::Tls12);
        let error = BindOptions::parse("ssl crt /a.pem", true).expect_err("global ssl");
        assert!(error.contains("is a bind option"), "{error}");
    }
}
