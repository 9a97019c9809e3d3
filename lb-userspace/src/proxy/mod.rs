//! The L7/TCP proxy (issue 12): HAProxy's frontends, backends and servers
//! inside lbd.
//!
//! Sans-IO core (config compile, ACLs, rules, balance, snapshot, route) and
//! the I/O drivers side by side: `listener` (binds, maxconn), `http` (hyper
//! per connection, the request phases, the upstream pool), `tcp` (byte
//! relay), `runtime` (the proxy's own tokio runtime, start/apply/stop),
//! `pass` (sends at the end of a worker's pass) and
//! `stats` (the counters `lbd status` shows).
pub mod batch;
pub mod http;
pub mod listener;
pub mod pass;
pub mod relay;
pub mod runtime;
pub mod stats;
pub mod status;
pub mod tcp;
pub mod tls;
// Sans-IO core (Helper CORE).
pub mod acl;
pub mod assign;
pub mod balance;
pub mod clock;
pub mod config;
pub mod queue;
pub mod retry;
pub mod route;
pub mod rules;
pub mod snapshot;
pub mod spread;
