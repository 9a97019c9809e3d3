//! The stats page, its exports and `/metrics` (`[stats]`): HAProxy's
//! `stats enable` page for the whole node (XDP services and backends, the
//! proxy's frontends, backends and servers, VRRP, the XDP outcomes), served
//! by the daemon on a thread of its own. `config` validates the section,
//! `auth` checks Basic credentials and the CSRF token, `sample` reads the
//! maps at most once per refresh period, `page` renders HTML (maud),
//! `export` the `;csv` and `;json` rows, `metrics` the Prometheus text, and
//! `server` is the axum driver.
pub mod auth;
pub mod config;
pub mod export;
pub mod metrics;
pub mod page;
pub mod sample;
pub mod server;

pub use config::StatsConfig;
pub use metrics::{LiveMetrics, SharedLive};
pub use server::StatsServer;

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) use tests::report as tests_report;
