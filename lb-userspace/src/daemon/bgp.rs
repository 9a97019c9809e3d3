//! The daemon's side of BGP: after each plan and VRRP change it hands the
//! announce rule's answer to the BGP task; on stop it withdraws and waits
//! the drain time before anything is torn down.
use super::events::Running;
use crate::{
    bgp::{
        announce::{desired, usable_vips, vip_facts},
        NodeFacts,
    },
    config::Config,
    dataplane::programmer::DesiredService,
};
use std::time::Duration;
use tracing::{info, warn};

impl Running {
    /// After a plan: which VIPs have a backend for new flows.
    pub(super) fn note_usable_vips(&mut self, planned: &[DesiredService]) {
        if self.bgp.is_some() {
            self.usable_vips = usable_vips(planned);
            self.sync_bgp();
        }
    }

    /// Hands the BGP task what the node should announce now.
    pub(super) fn sync_bgp(&mut self) {
        let (Some(bgp), Some(config)) = (&self.bgp, &self.config.bgp) else {
            return;
        };
        let vrrp = self.vrrp.as_ref().map(|t| t.status()).unwrap_or_default();
        let node = NodeFacts {
            attached: self.state.xdp_mode.is_some(),
            stopping: self.stopping,
        };
        bgp.want(desired(
            config,
            node,
            &vip_facts(&self.config, &self.usable_vips, &vrrp),
        ));
        self.state.bgp = Some(bgp.status());
    }

    /// Before a stop tears anything down: withdraw every prefix, then
    /// give the routers `drain_time` to move the flows elsewhere (the
    /// data plane keeps forwarding meanwhile).
    pub(super) async fn withdraw_and_drain(&mut self) {
        self.stopping = true;
        let Some(bgp) = self.bgp.as_mut() else { return };
        let drain = self
            .config
            .bgp
            .as_ref()
            .map_or(Duration::ZERO, |c| c.drain_time);
        if bgp.withdraw_all(Duration::from_secs(5)).await {
            info!(?drain, "bgp: every prefix withdrawn; draining");
        } else {
            warn!("bgp: gobgpd did not confirm the withdrawals; draining anyway");
        }
        tokio::time::sleep(drain).await;
        if let Some(bgp) = self.bgp.take() {
            bgp.stop().await;
        }
    }
}

/// A reload may change the VIPs and their policies; the speaker's own
/// settings (AS, router id, neighbours, ports) need a restart.
pub(super) fn check_bgp_reload(old: &Config, new: &Config) -> anyhow::Result<()> {
    let speaker = |c: &Config| {
        c.bgp.as_ref().map(|b| {
            (
                b.asn,
                b.router_id,
                b.listen_port,
                b.api,
                b.gobgpd.clone(),
                b.neighbors.clone(),
            )
        })
    };
    anyhow::ensure!(
        speaker(old) == speaker(new),
        "the [bgp] section's speaker settings (asn, router_id, listen_port, api, gobgpd, neighbors) changed; that needs a restart of lbd"
    );
    Ok(())
}
