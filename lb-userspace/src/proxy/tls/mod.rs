//! TLS for the proxy (issue 13). Termination: `options` parses HAProxy's
//! bind options, `pem` loads and checks certificate bundles, `server`
//! terminates TLS on a bind (certificate store with SNI selection, rustls
//! configuration, handshake and the facts the `ssl_*` fetches read).
//! Client side and passthrough: `clienthello` (a sans-IO ClientHello
//! reader), `passthrough` (`tcp_request` rules and the peek that feeds
//! `req.ssl_sni` routing in tcp mode), `client` (TLS to servers: `ssl`,
//! `verify`, `ca_file`, `sni`, `crt`, `check_ssl`).
pub mod client;
pub mod clienthello;
pub mod options;
pub mod passthrough;
pub mod pem;
pub mod server;

#[cfg(test)]
mod config_tests;
#[cfg(test)]
mod pem_tests;

use crate::proxy::config::{Global, Mode};
use std::sync::Arc;

/// The TLS side of a `bind` string (the words after the address), with
/// `[global] ssl_default_bind_options` filled in and the certificates
/// loaded; `None` for a plain bind.
pub fn bind_tls(
    text: &str,
    mode: Mode,
    global: &Global,
) -> Result<Option<Arc<server::TlsBind>>, String> {
    let Some((_, words)) = text.trim().split_once(char::is_whitespace) else {
        return Ok(None);
    };
    let options = options::BindOptions::parse(words, false)?.over(&global.ssl_default_bind);
    options.check()?;
    if !options.ssl {
        return Ok(None);
    }
    if mode == Mode::Tcp {
        return Err(
            "\"ssl\" terminates TLS for mode http frontends; a mode tcp frontend passes TLS through (route it with req.ssl_sni)".into(),
        );
    }
    let bind = server::TlsBind::load(options)?;
    for warning in &bind.warnings {
        tracing::warn!("{warning}");
    }
    Ok(Some(Arc::new(bind)))
}
