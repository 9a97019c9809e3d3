//! HTTP mode: hyper serves each client connection (HTTP/1.1 keep-alive,
//! h2c prior knowledge), `service` runs the request phases, `upstream`
//! holds the server connection pool, `headers` the forwarding and
//! connection-mode headers, `body` the streaming meters, `tunnel` the
//! WebSocket/Upgrade relay and `errors` HAProxy's error pages.
pub mod body;
pub mod conn;
mod connect;
pub mod errors;
pub mod headers;
mod origin;
mod service;
mod tunnel;
pub mod upstream;

pub use conn::serve;
