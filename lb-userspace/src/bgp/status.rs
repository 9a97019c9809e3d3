//! What `lbd status` shows of BGP: the speaker, its sessions and the
//! prefixes announced (written to the state file by the daemon).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BgpStatus {
    /// The running gobgpd, if one runs.
    pub speaker_pid: Option<u32>,
    /// How many times gobgpd was started (more than 1: it died and was
    /// restarted).
    pub speaker_starts: u64,
    /// Why lbd cannot drive the speaker right now, if it cannot.
    pub error: Option<String>,
    pub peers: Vec<PeerStatus>,
    pub announced: Vec<AnnouncedPrefix>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub address: String,
    pub remote_as: u32,
    /// "established", "active", "idle", ... (lower case, as gobgp shows).
    pub state: String,
    /// Seconds since the session was established (when it is).
    pub uptime_seconds: Option<u64>,
    /// Prefixes advertised to the peer, received from it, accepted.
    pub sent: u64,
    pub received: u64,
    pub accepted: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnouncedPrefix {
    /// "198.18.0.100/32"
    pub prefix: String,
    pub med: Option<u32>,
    pub local_pref: u32,
    /// "65000:100"
    pub communities: Vec<String>,
}

/// "65000:100" for a community's 32-bit value.
pub fn community_text(value: u32) -> String {
    format!("{}:{}", value >> 16, value & 0xFFFF)
}

impl AnnouncedPrefix {
    pub fn of(vip: std::net::IpAddr, attributes: &crate::config::bgp::Attributes) -> Self {
        let length = if vip.is_ipv4() { 32 } else { 128 };
        AnnouncedPrefix {
            prefix: format!("{vip}/{length}"),
            med: attributes.med,
            local_pref: attributes.local_pref,
            communities: attributes
                .communities
                .iter()
                .map(|c| community_text(*c))
                .collect(),
        }
    }
}

/// The lines `lbd status` prints for BGP.
pub fn render(status: &BgpStatus) -> String {
    let mut out = String::from("BGP (gobgpd");
    match status.speaker_pid {
        Some(pid) => out.push_str(&format!(" pid {pid}")),
        None => out.push_str(" not running"),
    }
    if status.speaker_starts > 1 {
        out.push_str(&format!(", restarted {} times", status.speaker_starts - 1));
    }
    out.push_str(")\n");
    if let Some(error) = &status.error {
        out.push_str(&format!("  error: {error}\n"));
    }
    for peer in &status.peers {
        let uptime = peer
            .uptime_seconds
            .map_or(String::new(), |s| format!(", up {s} s"));
        out.push_str(&format!(
            "  peer {} AS {}: {}{uptime}, {} sent, {} received ({} accepted)\n",
            peer.address, peer.remote_as, peer.state, peer.sent, peer.received, peer.accepted
        ));
    }
    if status.announced.is_empty() {
        out.push_str("  announced: nothing\n");
    }
    for prefix in &status.announced {
        let med = prefix.med.map_or(String::new(), |m| format!(" med {m}"));
        let communities = if prefix.communities.is_empty() {
            String::new()
        } else {
            format!(" communities {}", prefix.communities.join(" "))
        };
        out.push_str(&format!(
            "  announced {}{med} local-pref {}{communities}\n",
            prefix.prefix, prefix.local_pref
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_show_peers_and_prefixes() {
        let status = BgpStatus {
            speaker_pid: Some(42),
            speaker_starts: 2,
            error: None,
            peers: vec![PeerStatus {
                address: "198.18.0.254".into(),
                remote_as: 65000,
                state: "established".into(),
                uptime_seconds: Some(12),
                sent: 1,
                received: 0,
                accepted: 0,
            }],
            announced: vec![AnnouncedPrefix::of(
                "198.18.0.100".parse().unwrap(),
                &crate::config::bgp::Attributes {
                    med: Some(10),
                    local_pref: 100,
                    communities: vec![(65000 << 16) | 100],
                },
            )],
        };
        assert_eq!(
            render(&status),
            "BGP (gobgpd pid 42, restarted 1 times)\n  peer 198.18.0.254 AS 65000: established, up 12 s, 1 sent, 0 received (0 accepted)\n  announced 198.18.0.100/32 med 10 local-pref 100 communities 65000:100\n"
        );
    }
}
