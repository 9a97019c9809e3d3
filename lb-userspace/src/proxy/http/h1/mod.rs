//! lbd's HTTP/1 server side: hyper's h1 server allocated a read buffer per
//! request and ran a dispatcher around each exchange; here one loop per
//! connection reads heads into a buffer reused while the connection lives
//! and writes responses with their framing (HTTP/2 stays with hyper).
//!
//! - `request`: request heads, their body framing and persistence (sans-IO)
//! - `response`: response framing and head encoding (sans-IO)
//! - `wire`: the connection as the loop and the request body share it
//! - `server`: the connection loop
pub(super) mod request;
mod response;
mod server;
mod wire;

pub use server::{serve, Ended};
pub use wire::{ClientUpgrade, Prefixed};
