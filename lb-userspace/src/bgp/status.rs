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

/// The stats page's BGP table: the speaker, its sessions and the
/// announced prefixes (maud escapes every text).
pub fn html(status: &BgpStatus) -> maud::Markup {
    maud::html! {
        h2 { "BGP (gobgpd)" }
        p #bgp_speaker {
            @match status.speaker_pid {
                Some(pid) => { "speaker pid " (pid) }
                None => { "speaker not running" }
            }
            " · started " (status.speaker_starts) " times"
            @if let Some(error) = &status.error { " · error: " (error) }
        }
        table #bgp_peers {
            tr { th.name { "peer" } th { "AS" } th { "state" } th { "uptime" } th { "sent" } th { "received" } th { "accepted" } }
            @for peer in &status.peers {
                tr data-peer=(peer.address) class=(if peer.state == "established" { "active_up" } else { "active_down" }) {
                    td.name { (peer.address) }
                    td { (peer.remote_as) }
                    td data-col="state" { (peer.state) }
                    td { (peer.uptime_seconds.map_or(String::from("-"), |s| format!("{s}s"))) }
                    td data-col="sent" { (peer.sent) }
                    td data-col="received" { (peer.received) }
                    td data-col="accepted" { (peer.accepted) }
                }
            }
        }
        table #bgp_announced {
            tr { th.name { "announced prefix" } th { "MED" } th { "local-pref" } th { "communities" } }
            @if status.announced.is_empty() { tr { td.name { "nothing" } td {} td {} td {} } }
            @for prefix in &status.announced {
                tr data-prefix=(prefix.prefix) {
                    td.name { (prefix.prefix) }
                    td { (prefix.med.map_or(String::from("-"), |m| m.to_string())) }
                    td { (prefix.local_pref) }
                    td { (prefix.communities.join(" ")) }
                }
            }
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct PeerLabels {
    peer: String,
    remote_as: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct PeerStateLabels {
    peer: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct PrefixLabels {
    prefix: String,
}

/// Registers the BGP metrics of `status` (`lbd_bgp_*` under the
/// registry's prefix) for `/metrics`.
pub fn register_metrics(status: &BgpStatus, registry: &mut prometheus_client::registry::Registry) {
    use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
    let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let up = Gauge::<i64>::default();
    up.set(i64::from(status.speaker_pid.is_some()));
    registry.register("bgp_speaker_up", "1 while gobgpd runs", up);
    let starts = Counter::<u64>::default();
    starts.inc_by(status.speaker_starts);
    registry.register(
        "bgp_speaker_starts",
        "Times lbd started gobgpd (more than 1: restarted)",
        starts,
    );
    // One gauge per peer for each of these, from the peer's status.
    type PeerValue = fn(&PeerStatus) -> u64;
    let per_peer: [(&str, &str, PeerValue); 5] = [
        (
            "bgp_session_established",
            "1 while the BGP session with a peer is established",
            |p| u64::from(p.state == "established"),
        ),
        (
            "bgp_session_uptime_seconds",
            "Seconds since the session was established (0 when it is not)",
            |p| p.uptime_seconds.unwrap_or(0),
        ),
        ("bgp_prefixes_sent", "Prefixes advertised to a peer", |p| {
            p.sent
        }),
        (
            "bgp_prefixes_received",
            "Prefixes received from a peer",
            |p| p.received,
        ),
        (
            "bgp_prefixes_accepted",
            "Prefixes received from a peer and accepted",
            |p| p.accepted,
        ),
    ];
    for (name, help, value) in per_peer {
        let family = Family::<PeerLabels, Gauge>::default();
        for peer in &status.peers {
            let labels = PeerLabels {
                peer: peer.address.clone(),
                remote_as: peer.remote_as.to_string(),
            };
            family.get_or_create(&labels).set(gauge(value(peer)));
        }
        registry.register(name, help, family);
    }
    let state = Family::<PeerStateLabels, Gauge>::default();
    for peer in &status.peers {
        state
            .get_or_create(&PeerStateLabels {
                peer: peer.address.clone(),
                state: peer.state.clone(),
            })
            .set(1);
    }
    registry.register(
        "bgp_session_state",
        "1 for a BGP session's state (established, active, idle, ...)",
        state,
    );
    let announced = Family::<PrefixLabels, Gauge>::default();
    let med = Family::<PrefixLabels, Gauge>::default();
    let local_pref = Family::<PrefixLabels, Gauge>::default();
    for prefix in &status.announced {
        let labels = PrefixLabels {
            prefix: prefix.prefix.clone(),
        };
        announced.get_or_create(&labels).set(1);
        if let Some(m) = prefix.med {
            med.get_or_create(&labels).set(i64::from(m));
        }
        local_pref
            .get_or_create(&labels)
            .set(i64::from(prefix.local_pref));
    }
    registry.register(
        "bgp_announced",
        "1 for each prefix this node announces now",
        announced,
    );
    registry.register("bgp_announced_med", "The MED sent with a prefix", med);
    registry.register(
        "bgp_announced_local_pref",
        "The LOCAL_PREF sent with a prefix",
        local_pref,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_show_peers_and_prefixes() {
        let status = BgpStatus {
            announced: vec![AnnouncedPrefix::of(
                "198.18.0.100".parse().unwrap(),
                &crate::config::bgp::Attributes {
                    med: Some(10),
                    local_pref: 100,
                    communities: vec![(65000 << 16) | 100],
                },
            )],
            ..example()
        };
        assert_eq!(
            render(&status),
            "BGP (gobgpd pid 42, restarted 1 times)\n  peer 198.18.0.254 AS 65000: established, up 12 s, 1 sent, 0 received (0 accepted)\n  announced 198.18.0.100/32 med 10 local-pref 100 communities 65000:100\n"
        );
    }

    fn example() -> BgpStatus {
        BgpStatus {
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
            announced: vec![AnnouncedPrefix {
                prefix: "fd00:18::100/128".into(),
                med: Some(110),
                local_pref: 50,
                communities: vec!["<b>1:2</b>".into()],
            }],
        }
    }

    #[test]
    fn metrics_carry_sessions_and_prefixes() {
        let mut registry = prometheus_client::registry::Registry::with_prefix("lbd");
        register_metrics(&example(), &mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "lbd_bgp_speaker_up 1",
            "lbd_bgp_speaker_starts_total 2",
            "lbd_bgp_session_established{peer=\"198.18.0.254\",remote_as=\"65000\"} 1",
            "lbd_bgp_session_state{peer=\"198.18.0.254\",state=\"established\"} 1",
            "lbd_bgp_session_uptime_seconds{peer=\"198.18.0.254\",remote_as=\"65000\"} 12",
            "lbd_bgp_prefixes_sent{peer=\"198.18.0.254\",remote_as=\"65000\"} 1",
            "lbd_bgp_announced{prefix=\"fd00:18::100/128\"} 1",
            "lbd_bgp_announced_med{prefix=\"fd00:18::100/128\"} 110",
            "lbd_bgp_announced_local_pref{prefix=\"fd00:18::100/128\"} 50",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
        let mut registry = prometheus_client::registry::Registry::with_prefix("lbd");
        register_metrics(&BgpStatus::default(), &mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.lines().any(|l| l == "lbd_bgp_speaker_up 0"), "{text}");
        assert!(!text.contains("lbd_bgp_announced{"), "{text}");
    }

    #[test]
    fn page_table_shows_peers_and_escapes() {
        let page = html(&example()).into_string();
        assert!(page.contains("speaker pid 42"), "{page}");
        assert!(
            page.contains("<td data-col=\"state\">established</td>"),
            "{page}"
        );
        assert!(
            page.contains("<tr data-prefix=\"fd00:18::100/128\">"),
            "{page}"
        );
        assert!(page.contains("&lt;b&gt;1:2&lt;/b&gt;"), "{page}");
        assert!(!page.contains("<b>1:2"), "{page}");
        let empty = html(&BgpStatus::default()).into_string();
        assert!(empty.contains("speaker not running"), "{empty}");
        assert!(empty.contains(">nothing<"), "{empty}");
    }
}
