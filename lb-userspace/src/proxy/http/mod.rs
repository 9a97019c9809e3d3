//! HTTP mode: `h1` serves each client connection's HTTP/1.x (keep-alive,
//! pipelining, upgrades) and hyper its HTTP/2 (ALPN h2, h2c prior
//! knowledge), `service` runs the request phases, `upstream`
//! holds the server connection pool, `headers` the forwarding and
//! connection-mode headers, `body` the streaming meters, `tunnel` the
//! WebSocket/Upgrade relay and `errors` HAProxy's error pages.
pub mod body;
pub mod conn;
mod connect;
pub mod errors;
#[doc(hidden)]
pub mod fuzzing;
mod h1;
pub mod headers;
mod hop;
mod origin;
mod service;
mod tunnel;
pub mod upstream;

pub use conn::serve;
