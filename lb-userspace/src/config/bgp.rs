//! `[bgp]`: announcing the VIPs over BGP through gobgpd (MetalLB's and
//! Katran's active-active scale-out), with its validation. The section
//! says who we are (AS, router id), whom we talk to (`[[bgp.neighbor]]`),
//! and per VIP when to announce it and with which attributes
//! (`[[bgp.vip]]`, defaults in `[bgp]`).
use super::validate::Validator;
use serde::Deserialize;
use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};
use toml::Spanned;

/// The RFC 4271 default hold time (gobgpd's and BIRD's too).
pub const DEFAULT_HOLD_TIME: u16 = 90;
pub const DEFAULT_DRAIN_TIME: f64 = 5.0;
pub const DEFAULT_API: &str = "127.0.0.1:50051";
pub const DEFAULT_GOBGPD: &str = "/usr/bin/gobgpd";
pub const DEFAULT_LOCAL_PREF: u32 = 100;
/// What a backup adds to the MED (`always` policy, `backup_med` unset).
pub const BACKUP_MED_PENALTY: u32 = 100;
/// What a backup takes off the local preference (`backup_local_pref` unset).
pub const BACKUP_LOCAL_PREF_PENALTY: u32 = 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpConfig {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// gobgpd's BGP port; `None`: it only connects out (gobgpd's -1).
    pub listen_port: Option<u16>,
    /// gobgpd's gRPC API (`--api-hosts`), which lbd drives.
    pub api: SocketAddr,
    pub gobgpd: PathBuf,
    /// How long `lbd stop` (and SIGTERM) waits between withdrawing the
    /// routes and detaching the data plane, so routers move the flows.
    pub drain_time: Duration,
    pub neighbors: Vec<Neighbor>,
    /// Every service VIP, each with its policy (a `[[bgp.vip]]` entry or
    /// the section's defaults).
    pub vips: Vec<VipPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor {
    pub address: IpAddr,
    pub remote_as: u32,
    /// Seconds; 0 = no keepalives (RFC 4271), else at least 3.
    pub hold_time: u16,
    /// TCP MD5 signature (RFC 2385), as gobgpd's `auth-password`.
    pub password: Option<String>,
}

/// When a node announces a VIP that a VRRP instance also covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Announce {
    /// Only while master of that instance (or always without VRRP).
    MasterOnly,
    /// Also as backup, with the backup MED and local preference.
    Always,
    /// Never announced.
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub med: Option<u32>,
    pub local_pref: u32,
    /// RFC 1997 communities, each as its 32-bit value.
    pub communities: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipPolicy {
    pub vip: IpAddr,
    pub announce: Announce,
    pub attributes: Attributes,
    /// Sent instead as a VRRP backup under [`Announce::Always`].
    pub backup: Attributes,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBgp {
    asn: Spanned<u32>,
    router_id: Spanned<String>,
    listen_port: Option<Spanned<u32>>,
    api: Option<Spanned<String>>,
    gobgpd: Option<Spanned<String>>,
    hold_time: Option<Spanned<u32>>,
    drain_time: Option<Spanned<f64>>,
    announce: Option<Spanned<Announce>>,
    med: Option<Spanned<u32>>,
    local_pref: Option<Spanned<u32>>,
    communities: Option<Vec<Spanned<String>>>,
    backup_med: Option<Spanned<u32>>,
    backup_local_pref: Option<Spanned<u32>>,
    #[serde(default)]
    neighbor: Vec<Spanned<RawNeighbor>>,
    #[serde(default)]
    vip: Vec<Spanned<RawVip>>,
}

struct RawAttributes {
    announce: Option<Spanned<Announce>>,
    med: Option<Spanned<u32>>,
    local_pref: Option<Spanned<u32>>,
    communities: Option<Vec<Spanned<String>>>,
    backup_med: Option<Spanned<u32>>,
    backup_local_pref: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeighbor {
    address: Spanned<String>,
    remote_as: Spanned<u32>,
    hold_time: Option<Spanned<u32>>,
    password: Option<Spanned<String>>,
    bfd: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVip {
    address: Spanned<String>,
    announce: Option<Spanned<Announce>>,
    med: Option<Spanned<u32>>,
    local_pref: Option<Spanned<u32>>,
    communities: Option<Vec<Spanned<String>>>,
    backup_med: Option<Spanned<u32>>,
    backup_local_pref: Option<Spanned<u32>>,
}

/// The attribute fields `[bgp]` and `[[bgp.vip]]` share (spelt out in both:
/// serde's `flatten` would lose the spans that errors need).
macro_rules! attributes_of {
    ($raw:expr) => {
        RawAttributes {
            announce: $raw.announce,
            med: $raw.med,
            local_pref: $raw.local_pref,
            communities: $raw.communities,
            backup_med: $raw.backup_med,
            backup_local_pref: $raw.backup_local_pref,
        }
    };
}

/// A resolved set of defaults: the section's, then a VIP's over them.
#[derive(Clone)]
struct Defaults {
    announce: Announce,
    med: Option<u32>,
    local_pref: u32,
    communities: Vec<u32>,
    backup_med: Option<u32>,
    backup_local_pref: Option<u32>,
}

impl Defaults {
    fn policy(&self, vip: IpAddr) -> VipPolicy {
        let backup_med = self
            .backup_med
            .unwrap_or(self.med.unwrap_or(0).saturating_add(BACKUP_MED_PENALTY));
        let backup_local_pref = self
            .backup_local_pref
            .unwrap_or(self.local_pref.saturating_sub(BACKUP_LOCAL_PREF_PENALTY));
        VipPolicy {
            vip,
            announce: self.announce,
            attributes: Attributes {
                med: self.med,
                local_pref: self.local_pref,
                communities: self.communities.clone(),
            },
            backup: Attributes {
                med: Some(backup_med),
                local_pref: backup_local_pref,
                communities: self.communities.clone(),
            },
        }
    }
}

/// "65000:100" or a well-known name (RFC 1997, RFC 3765) as its value.
pub fn parse_community(text: &str) -> Result<u32, String> {
    match text.to_ascii_lowercase().as_str() {
        "no-export" => return Ok(0xFFFF_FF01),
        "no-advertise" => return Ok(0xFFFF_FF02),
        "no-export-subconfed" | "local-as" => return Ok(0xFFFF_FF03),
        "no-peer" => return Ok(0xFFFF_FF04),
        "blackhole" => return Ok(0xFFFF_029A),
        _ => {}
    }
    let (high, low) = text.split_once(':').ok_or_else(|| {
        format!("\"{text}\" is not a community (ASN:VALUE or a well-known name such as no-export)")
    })?;
    let part = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("\"{text}\": {p} is not a number in 0..=65535"))
    };
    Ok((u32::from(part(high)?) << 16) | u32::from(part(low)?))
}

impl Validator<'_> {
    /// `service_vips`: the VIPs of the `[[service]]`s, in file order.
    pub(super) fn validate_bgp(
        &mut self,
        raw: Spanned<RawBgp>,
        service_vips: &[IpAddr],
    ) -> BgpConfig {
        let section = raw.span();
        let raw = raw.into_inner();
        if *raw.asn.get_ref() == 0 {
            self.error(&raw.asn, "bgp.asn", "AS 0 is reserved (RFC 7607)");
        }
        let router_id = match raw.router_id.get_ref().parse::<Ipv4Addr>() {
            Ok(id) if !id.is_unspecified() => id,
            _ => {
                let text = raw.router_id.get_ref().clone();
                self.error(
                    &raw.router_id,
                    "bgp.router_id",
                    format!("\"{text}\" is not a non-zero IPv4 address (a BGP identifier)"),
                );
                Ipv4Addr::UNSPECIFIED
            }
        };
        let listen_port = match raw.listen_port.as_ref().map(|p| *p.get_ref()) {
            None => Some(179),
            Some(0) => None,
            Some(p) => match u16::try_from(p) {
                Ok(p) => Some(p),
                Err(_) => {
                    self.error(
                        raw.listen_port.as_ref().expect("checked above"),
                        "bgp.listen_port",
                        format!("{p} is not a port (0 = do not listen)"),
                    );
                    None
                }
            },
        };
        let api = match &raw.api {
            None => DEFAULT_API.parse().expect("a valid default"),
            Some(text) => match text.get_ref().parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    let t = text.get_ref().clone();
                    self.error(
                        text,
                        "bgp.api",
                        format!("\"{t}\" is not an address:port (gobgpd's --api-hosts)"),
                    );
                    DEFAULT_API.parse().expect("a valid default")
                }
            },
        };
        let gobgpd = raw.gobgpd.map_or(PathBuf::from(DEFAULT_GOBGPD), |p| {
            PathBuf::from(p.into_inner())
        });
        let hold_time = self.hold_time(&raw.hold_time, "bgp.hold_time", DEFAULT_HOLD_TIME);
        let drain_time = self.seconds(
            &raw.drain_time,
            "bgp.drain_time",
            DEFAULT_DRAIN_TIME,
            (0.0, 3600.0),
        );
        let neighbors = self.validate_neighbors(raw.neighbor, hold_time);
        let vip_entries = raw.vip;
        if neighbors.is_empty() {
            let line = self.line_of(section.start);
            self.error_at(
                line,
                "bgp.neighbor",
                "at least one [[bgp.neighbor]] is needed",
            );
        }
        let base = Defaults {
            announce: Announce::MasterOnly,
            med: None,
            local_pref: DEFAULT_LOCAL_PREF,
            communities: Vec::new(),
            backup_med: None,
            backup_local_pref: None,
        };
        let defaults = self.attributes(&attributes_of!(raw), &base, "bgp");
        let mut vips: Vec<VipPolicy> = Vec::new();
        let mut listed = HashSet::new();
        for entry in vip_entries {
            let entry = entry.into_inner();
            let Some(vip) = self.address(&entry.address, "bgp.vip.address") else {
                continue;
            };
            if !service_vips.contains(&vip) {
                self.error(
                    &entry.address,
                    "bgp.vip.address",
                    format!("{vip} is not the vip of any [[service]]"),
                );
                continue;
            }
            if !listed.insert(vip) {
                self.error(
                    &entry.address,
                    "bgp.vip.address",
                    format!("{vip} has a [[bgp.vip]] entry already"),
                );
                continue;
            }
            let resolved = self.attributes(&attributes_of!(entry), &defaults, "bgp.vip");
            vips.push(resolved.policy(vip));
        }
        for vip in service_vips {
            if !listed.contains(vip) && !vips.iter().any(|p| p.vip == *vip) {
                vips.push(defaults.policy(*vip));
            }
        }
        BgpConfig {
            asn: *raw.asn.get_ref(),
            router_id,
            listen_port,
            api,
            gobgpd,
            drain_time,
            neighbors,
            vips,
        }
    }

    fn hold_time(&mut self, value: &Option<Spanned<u32>>, field: &str, default: u16) -> u16 {
        match value {
            None => default,
            Some(v) => match *v.get_ref() {
                0 => 0,
                t @ 3..=65535 => t as u16,
                t => {
                    self.error(
                        v,
                        field,
                        format!("{t} s: a hold time is 0 or 3..=65535 seconds (RFC 4271)"),
                    );
                    default
                }
            },
        }
    }

    fn validate_neighbors(
        &mut self,
        raw: Vec<Spanned<RawNeighbor>>,
        default_hold: u16,
    ) -> Vec<Neighbor> {
        let mut seen = HashSet::new();
        let mut neighbors = Vec::new();
        for entry in raw {
            let entry = entry.into_inner();
            let address = self.address(&entry.address, "bgp.neighbor.address");
            if *entry.remote_as.get_ref() == 0 {
                self.error(
                    &entry.remote_as,
                    "bgp.neighbor.remote_as",
                    "AS 0 is reserved",
                );
            }
            if let Some(bfd) = &entry.bfd {
                if *bfd.get_ref() {
                    self.error(
                        bfd,
                        "bgp.neighbor.bfd",
                        "gobgpd (the speaker lbd drives) has no BFD; use a short hold_time instead",
                    );
                }
            }
            let hold_time =
                self.hold_time(&entry.hold_time, "bgp.neighbor.hold_time", default_hold);
            let Some(address) = address else { continue };
            if !seen.insert(address) {
                self.error(
                    &entry.address,
                    "bgp.neighbor.address",
                    format!("neighbor {address} is listed twice"),
                );
                continue;
            }
            neighbors.push(Neighbor {
                address,
                remote_as: *entry.remote_as.get_ref(),
                hold_time,
                password: entry.password.map(Spanned::into_inner),
            });
        }
        neighbors
    }

    fn attributes(&mut self, raw: &RawAttributes, base: &Defaults, section: &str) -> Defaults {
        let communities = match &raw.communities {
            None => base.communities.clone(),
            Some(list) => list
                .iter()
                .filter_map(|c| match parse_community(c.get_ref()) {
                    Ok(value) => Some(value),
                    Err(message) => {
                        self.error(c, format!("{section}.communities"), message);
                        None
                    }
                })
                .collect(),
        };
        Defaults {
            announce: raw
                .announce
                .as_ref()
                .map_or(base.announce, |a| *a.get_ref()),
            med: raw.med.as_ref().map(|m| *m.get_ref()).or(base.med),
            local_pref: raw
                .local_pref
                .as_ref()
                .map_or(base.local_pref, |l| *l.get_ref()),
            communities,
            backup_med: raw
                .backup_med
                .as_ref()
                .map(|m| *m.get_ref())
                .or(base.backup_med),
            backup_local_pref: raw
                .backup_local_pref
                .as_ref()
                .map(|l| *l.get_ref())
                .or(base.backup_local_pref),
        }
    }
}

#[cfg(test)]
mod tests;
