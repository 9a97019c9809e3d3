//! TLS in the proxy. Client side and passthrough (issue 13): `clienthello`
//! (a sans-IO ClientHello reader), `passthrough` (`tcp_request` rules and
//! the peek that feeds `req.ssl_sni` routing in tcp mode), `client` (TLS to
//! servers: `ssl`, `verify`, `ca_file`, `sni`, `crt`, `check_ssl`).
pub mod client;
pub mod clienthello;
pub mod passthrough;

#[cfg(test)]
mod config_tests;
