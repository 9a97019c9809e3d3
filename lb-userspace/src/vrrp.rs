//! VRRP, wire-compatible with keepalived: the wire format and a sans-IO
//! state machine; sockets and timers live in the daemon's driver.
pub mod config;
pub mod machine;
pub mod packet;
pub mod tracking;
