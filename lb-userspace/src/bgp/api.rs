//! gobgpd's gRPC API: the client tonic generated from GoBGP's .proto files
//! (build.rs), and the few calls lbd makes, in lbd's terms.
// Generated: most of GoBGP's API is unused here.
#[allow(dead_code, clippy::all, clippy::pedantic)]
mod apipb {
    tonic::include_proto!("apipb");
}

use super::status::PeerStatus;
use crate::config::bgp::{Attributes, BgpConfig};
use apipb::{family, gobgp_api_client::GobgpApiClient, peer_state, Family};
use prost::Message;
use std::{net::IpAddr, time::Duration};
use tonic::transport::{Channel, Endpoint};

/// One connection to gobgpd.
pub struct Api {
    client: GobgpApiClient<Channel>,
    /// The id gobgpd gave each path we added: withdrawn by it.
    uuids: std::collections::HashMap<IpAddr, Vec<u8>>,
}

fn any<M: Message>(name: &str, message: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("type.googleapis.com/apipb.{name}"),
        value: message.encode_to_vec(),
    }
}

fn family_of(ipv4: bool) -> Family {
    Family {
        afi: if ipv4 {
            family::Afi::Ip as i32
        } else {
            family::Afi::Ip6 as i32
        },
        safi: family::Safi::Unicast as i32,
    }
}

/// The path for `vip`/32 or /128 with `attributes`; the next hop is left
/// unspecified, so gobgpd puts its own address on the session.
fn path(vip: IpAddr, attributes: &Attributes) -> apipb::Path {
    let nlri = any(
        "IPAddressPrefix",
        &apipb::IpAddressPrefix {
            prefix_len: if vip.is_ipv4() { 32 } else { 128 },
            prefix: vip.to_string(),
        },
    );
    // IGP: the route originates here.
    let mut pattrs = vec![any(
        "OriginAttribute",
        &apipb::OriginAttribute { origin: 0 },
    )];
    if vip.is_ipv4() {
        pattrs.push(any(
            "NextHopAttribute",
            &apipb::NextHopAttribute {
                next_hop: "0.0.0.0".into(),
            },
        ));
    } else {
        pattrs.push(any(
            "MpReachNLRIAttribute",
            &apipb::MpReachNlriAttribute {
                family: Some(family_of(false)),
                next_hops: vec!["::".into()],
                nlris: vec![nlri.clone()],
            },
        ));
    }
    if let Some(med) = attributes.med {
        pattrs.push(any(
            "MultiExitDiscAttribute",
            &apipb::MultiExitDiscAttribute { med },
        ));
    }
    // gobgpd sends LOCAL_PREF to iBGP peers only (RFC 4271).
    pattrs.push(any(
        "LocalPrefAttribute",
        &apipb::LocalPrefAttribute {
            local_pref: attributes.local_pref,
        },
    ));
    if !attributes.communities.is_empty() {
        pattrs.push(any(
            "CommunitiesAttribute",
            &apipb::CommunitiesAttribute {
                communities: attributes.communities.clone(),
            },
        ));
    }
    apipb::Path {
        nlri: Some(nlri),
        pattrs,
        family: Some(family_of(vip.is_ipv4())),
        ..Default::default()
    }
}

impl Api {
    pub async fn connect(config: &BgpConfig) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(format!("http://{}", config.api))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .connect()
            .await?;
        Ok(Api {
            client: GobgpApiClient::new(channel),
            uuids: Default::default(),
        })
    }

    /// Whether gobgpd runs BGP already (a reconnection to a live one).
    pub async fn started(&mut self) -> anyhow::Result<bool> {
        let global = self
            .client
            .get_bgp(apipb::GetBgpRequest {})
            .await?
            .into_inner()
            .global;
        Ok(global.is_some_and(|g| g.asn != 0))
    }

    /// Starts BGP with our AS and router id, and adds the neighbours.
    pub async fn configure(&mut self, config: &BgpConfig) -> anyhow::Result<()> {
        self.client
            .start_bgp(apipb::StartBgpRequest {
                global: Some(apipb::Global {
                    asn: config.asn,
                    router_id: config.router_id.to_string(),
                    listen_port: config.listen_port.map_or(-1, i32::from),
                    ..Default::default()
                }),
            })
            .await?;
        let ipv6 = config.vips.iter().any(|v| v.vip.is_ipv6());
        for neighbor in &config.neighbors {
            let mut afi_safis = vec![afi_safi(true)];
            if ipv6 {
                afi_safis.push(afi_safi(false));
            }
            let hold = u64::from(neighbor.hold_time);
            let peer = apipb::Peer {
                conf: Some(apipb::PeerConf {
                    neighbor_address: neighbor.address.to_string(),
                    peer_asn: neighbor.remote_as,
                    auth_password: neighbor.password.clone().unwrap_or_default(),
                    ..Default::default()
                }),
                timers: Some(apipb::Timers {
                    config: Some(apipb::TimersConfig {
                        hold_time: hold,
                        keepalive_interval: hold / 3,
                        // gobgpd's default is 120 s: a session lost to a
                        // restart of the router would stay down that long.
                        connect_retry: 5,
                        ..Default::default()
                    }),
                    state: None,
                }),
                afi_safis,
                ..Default::default()
            };
            self.client
                .add_peer(apipb::AddPeerRequest { peer: Some(peer) })
                .await?;
        }
        Ok(())
    }

    pub async fn announce(&mut self, vip: IpAddr, attributes: &Attributes) -> anyhow::Result<()> {
        let added = self
            .client
            .add_path(apipb::AddPathRequest {
                table_type: apipb::TableType::Global as i32,
                vrf_id: String::new(),
                path: Some(path(vip, attributes)),
            })
            .await?
            .into_inner();
        self.uuids.insert(vip, added.uuid);
        Ok(())
    }

    pub async fn withdraw(&mut self, vip: IpAddr, attributes: &Attributes) -> anyhow::Result<()> {
        // By the id of the path we added (a reconnection to a live gobgpd
        // has none: by prefix then).
        let request = match self.uuids.remove(&vip) {
            Some(uuid) => apipb::DeletePathRequest {
                table_type: apipb::TableType::Global as i32,
                family: Some(family_of(vip.is_ipv4())),
                uuid,
                ..Default::default()
            },
            None => apipb::DeletePathRequest {
                table_type: apipb::TableType::Global as i32,
                family: Some(family_of(vip.is_ipv4())),
                path: Some(path(vip, attributes)),
                ..Default::default()
            },
        };
        self.client.delete_path(request).await?;
        Ok(())
    }

    pub async fn peers(&mut self) -> anyhow::Result<Vec<PeerStatus>> {
        let mut stream = self
            .client
            .list_peer(apipb::ListPeerRequest {
                address: String::new(),
                enable_advertised: true,
            })
            .await?
            .into_inner();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut peers = Vec::new();
        while let Some(response) = stream.message().await? {
            let Some(peer) = response.peer else { continue };
            let conf = peer.conf.unwrap_or_default();
            let state = peer.state.unwrap_or_default();
            let session = peer_state::SessionState::try_from(state.session_state)
                .unwrap_or(peer_state::SessionState::Unknown);
            let established = session == peer_state::SessionState::Established;
            let uptime = peer
                .timers
                .and_then(|t| t.state)
                .and_then(|s| s.uptime)
                .filter(|_| established)
                .map(|u| now.saturating_sub(u.seconds.max(0) as u64));
            let (mut sent, mut received, mut accepted) = (0, 0, 0);
            for afi_safi in peer.afi_safis {
                if let Some(s) = afi_safi.state {
                    sent += s.advertised;
                    received += s.received;
                    accepted += s.accepted;
                }
            }
            peers.push(PeerStatus {
                address: conf.neighbor_address,
                remote_as: conf.peer_asn,
                state: session.as_str_name().to_ascii_lowercase(),
                uptime_seconds: uptime,
                sent,
                received,
                accepted,
            });
        }
        Ok(peers)
    }
}

fn afi_safi(ipv4: bool) -> apipb::AfiSafi {
    apipb::AfiSafi {
        config: Some(apipb::AfiSafiConfig {
            family: Some(family_of(ipv4)),
            enabled: true,
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_carries_the_prefix_and_the_attributes() {
        let attributes = Attributes {
            med: Some(10),
            local_pref: 100,
            communities: vec![7],
        };
        let path = path("198.18.0.100".parse().unwrap(), &attributes);
        let nlri = path.nlri.unwrap();
        assert_eq!(nlri.type_url, "type.googleapis.com/apipb.IPAddressPrefix");
        let prefix = apipb::IpAddressPrefix::decode(nlri.value.as_slice()).unwrap();
        assert_eq!(
            (prefix.prefix.as_str(), prefix.prefix_len),
            ("198.18.0.100", 32)
        );
        let kinds: Vec<&str> = path
            .pattrs
            .iter()
            .map(|a| a.type_url.rsplit('.').next().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "OriginAttribute",
                "NextHopAttribute",
                "MultiExitDiscAttribute",
                "LocalPrefAttribute",
                "CommunitiesAttribute"
            ]
        );
        let v6 = super::path(
            "2001:db8::1".parse().unwrap(),
            &Attributes {
                med: None,
                local_pref: 100,
                communities: vec![],
            },
        );
        assert_eq!(v6.family.unwrap().afi, family::Afi::Ip6 as i32);
        assert!(v6
            .pattrs
            .iter()
            .any(|a| a.type_url.ends_with("MpReachNLRIAttribute")));
    }
}
