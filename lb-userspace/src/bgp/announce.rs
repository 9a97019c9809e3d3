//! The announce rule, sans IO: from what the node knows (data plane
//! attached, stopping, each VIP's usable backends and VRRP state) to the
//! prefixes it should announce with their attributes, and the difference
//! from what the speaker announces now.
use crate::{
    config::{
        bgp::{Announce, Attributes, BgpConfig},
        Config,
    },
    dataplane::programmer::{BackendState, DesiredService},
    vrrp::{State, VrrpStatus},
};
use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

/// The VRRP state of the instance covering a VIP, as the rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Backup,
    /// Initialize or Fault: this node cannot take the VIP.
    Unable,
}

/// What the node knows about one VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipFacts {
    /// Some service on the VIP has a backend that takes new flows.
    pub usable: bool,
    /// `None`: no VRRP instance covers the VIP.
    pub vrrp: Option<Role>,
}

/// What the node knows about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeFacts {
    /// The XDP program is attached and the maps programmed.
    pub attached: bool,
    /// `lbd stop` or SIGTERM: withdraw everything first.
    pub stopping: bool,
}

/// Prefix (a VIP as /32 or /128) to its attributes.
pub type Announcements = BTreeMap<IpAddr, Attributes>;

/// The prefixes this node should announce now.
pub fn desired(
    config: &BgpConfig,
    node: NodeFacts,
    vips: &HashMap<IpAddr, VipFacts>,
) -> Announcements {
    if !node.attached || node.stopping {
        return Announcements::new();
    }
    config
        .vips
        .iter()
        .filter_map(|policy| {
            let facts = vips.get(&policy.vip)?;
            if !facts.usable {
                return None;
            }
            let attributes = match (facts.vrrp, policy.announce) {
                (_, Announce::Never) => return None,
                (None | Some(Role::Master), _) => &policy.attributes,
                (Some(Role::Backup), Announce::Always) => &policy.backup,
                (Some(Role::Backup), Announce::MasterOnly) | (Some(Role::Unable), _) => {
                    return None
                }
            };
            Some((policy.vip, attributes.clone()))
        })
        .collect()
}

/// What to send the speaker to go from `current` to `wanted`: a changed
/// attribute is a new announcement (it replaces the old path).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub announce: Vec<(IpAddr, Attributes)>,
    pub withdraw: Vec<IpAddr>,
}

pub fn difference(current: &Announcements, wanted: &Announcements) -> Changes {
    Changes {
        announce: wanted
            .iter()
            .filter(|(vip, attributes)| current.get(vip) != Some(attributes))
            .map(|(vip, attributes)| (*vip, attributes.clone()))
            .collect(),
        withdraw: current
            .keys()
            .filter(|vip| !wanted.contains_key(vip))
            .copied()
            .collect(),
    }
}

/// Per VIP, whether some service on it has a backend that takes new
/// flows, from the plan the maps were programmed with.
pub fn usable_vips(planned: &[DesiredService]) -> HashMap<IpAddr, bool> {
    let mut usable: HashMap<IpAddr, bool> = HashMap::new();
    for service in planned {
        let serving = service.backends.iter().any(|b| {
            b.state == BackendState::Serving
                && b.weight > 0
                // dsr needs the MAC; nat and fullnat route with the FIB.
                && (b.mac.is_some() || service.mode != lb_common::MODE_DSR)
        });
        *usable.entry(service.vip).or_default() |= serving;
    }
    usable
}

/// Each VIP's facts: `usable` (from [`usable_vips`]) and the state of the
/// VRRP instance covering it, if one does.
pub fn vip_facts(
    config: &Config,
    usable: &HashMap<IpAddr, bool>,
    vrrp: &[VrrpStatus],
) -> HashMap<IpAddr, VipFacts> {
    usable
        .iter()
        .map(|(vip, usable)| {
            let covering = config
                .vrrp
                .iter()
                .find(|instance| instance.virtual_ipaddress.contains(vip));
            let role = covering.map(|instance| {
                match vrrp
                    .iter()
                    .find(|s| s.name == instance.name)
                    .map(|s| s.state)
                {
                    Some(State::Master) => Role::Master,
                    Some(State::Backup) => Role::Backup,
                    _ => Role::Unable,
                }
            });
            (
                *vip,
                VipFacts {
                    usable: *usable,
                    vrrp: role,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
