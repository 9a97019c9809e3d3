//! BGP: lbd announces its VIPs through gobgpd so that routers spread flows
//! over several lbd nodes by ECMP. `announce` is the rule (sans IO);
//! `speaker` starts and supervises gobgpd; `api` is its gRPC client;
//! [`Bgp`] runs them as a task the daemon hands the wanted announcements.
pub mod announce;
#[cfg(bgp_api)]
mod api;
#[cfg(bgp_api)]
mod driver;
#[cfg(bgp_api)]
mod speaker;
pub mod status;

pub use announce::{Announcements, NodeFacts, VipFacts};
pub use status::BgpStatus;

#[cfg(bgp_api)]
pub use driver::Bgp;

/// Without the generated client (protoc or GoBGP's .proto files were
/// missing when lbd was built), a `[bgp]` section cannot be served.
#[cfg(not(bgp_api))]
pub struct Bgp;

#[cfg(not(bgp_api))]
impl Bgp {
    pub fn start(_: &crate::config::bgp::BgpConfig) -> anyhow::Result<Self> {
        anyhow::bail!(
            "[bgp] is configured but this lbd was built without BGP: protoc or GoBGP's .proto files were missing at build time (cargo xtask setup installs them)"
        )
    }
    pub fn want(&self, _: Announcements) {}
    pub fn status(&self) -> BgpStatus {
        BgpStatus::default()
    }
    pub async fn withdraw_all(&mut self, _: std::time::Duration) -> bool {
        true
    }
    pub async fn stop(self) {}
}
