//! Interface facts and backend MAC resolution. Users never type MACs: the
//! kernel's neighbour table is read first, and a backend it does not know is
//! asked directly with an ARP request.
use futures::TryStreamExt;
use pnet_datalink::{Channel, Config as ChannelConfig, DataLinkReceiver};
use pnet_packet::{
    arp::{ArpHardwareTypes, ArpOperations, ArpPacket, MutableArpPacket},
    ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket},
    MutablePacket, Packet,
};
use rtnetlink::packet_route::{
    address::AddressAttribute,
    link::LinkAttribute,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState},
};
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

#[derive(Debug, thiserror::Error)]
pub enum NeighbourError {
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    #[error("interface {0} not found")]
    NoInterface(String),
    #[error("interface {0} has no MAC address")]
    NoMac(String),
    #[error("raw socket on {interface}: {source}")]
    Socket {
        interface: String,
        source: std::io::Error,
    },
}

/// What the balancer needs to know about its interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
    /// IPv4 addresses with their prefix lengths.
    pub ipv4: Vec<(Ipv4Addr, u8)>,
    /// IPv6 addresses with their prefix lengths (link-local included).
    pub ipv6: Vec<(std::net::Ipv6Addr, u8)>,
}

impl InterfaceInfo {
    /// The interface's IPv6 link-local address (fe80::/10), VRRP's source
    /// over IPv6.
    pub fn link_local(&self) -> Option<std::net::Ipv6Addr> {
        self.ipv6
            .iter()
            .map(|(a, _)| *a)
            .find(|a| a.segments()[0] & 0xffc0 == 0xfe80)
    }

    /// Our address on the subnet that holds `target`, if it is on-link.
    pub fn source_for(&self, target: Ipv4Addr) -> Option<Ipv4Addr> {
        self.ipv4
            .iter()
            .find(|(addr, prefix)| same_subnet(*addr, target, *prefix))
            .map(|(addr, _)| *addr)
    }
}

fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    u32::from(a) & mask == u32::from(b) & mask
}

pub async fn interface_info(
    handle: &rtnetlink::Handle,
    name: &str,
) -> Result<InterfaceInfo, NeighbourError> {
    let link = handle
        .link()
        .get()
        .match_name(name.to_owned())
        .execute()
        .try_next()
        .await
        .map_err(|_| NeighbourError::NoInterface(name.to_owned()))?
        .ok_or_else(|| NeighbourError::NoInterface(name.to_owned()))?;
    let mac = link
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(bytes) if bytes.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(bytes);
                Some(mac)
            }
            _ => None,
        })
        .ok_or_else(|| NeighbourError::NoMac(name.to_owned()))?;
    let index = link.header.index;
    let mut ipv4 = Vec::new();
    let mut ipv6 = Vec::new();
    let mut addresses = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    while let Some(message) = addresses.try_next().await? {
        for attribute in &message.attributes {
            match attribute {
                AddressAttribute::Address(IpAddr::V4(addr)) => {
                    ipv4.push((*addr, message.header.prefix_len))
                }
                AddressAttribute::Address(IpAddr::V6(addr)) => {
                    ipv6.push((*addr, message.header.prefix_len))
                }
                _ => {}
            }
        }
    }
    Ok(InterfaceInfo {
        name: name.to_owned(),
        index,
        mac,
        ipv4,
        ipv6,
    })
}

/// IPv4 neighbours on `ifindex` whose MAC the kernel currently believes.
pub async fn kernel_neighbours(
    handle: &rtnetlink::Handle,
    ifindex: u32,
) -> Result<HashMap<Ipv4Addr, [u8; 6]>, NeighbourError> {
    let mut found = HashMap::new();
    let mut stream = handle.neighbours().get().execute();
    while let Some(message) = stream.try_next().await? {
        if message.header.ifindex != ifindex {
            continue;
        }
        let usable = matches!(
            message.header.state,
            NeighbourState::Reachable
                | NeighbourState::Stale
                | NeighbourState::Delay
                | NeighbourState::Probe
                | NeighbourState::Permanent
        );
        if !usable {
            continue;
        }
        let mut ip = None;
        let mut mac = None;
        for attribute in &message.attributes {
            match attribute {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(addr)) => ip = Some(*addr),
                NeighbourAttribute::LinkLayerAddress(bytes) if bytes.len() == 6 => {
                    let mut m = [0u8; 6];
                    m.copy_from_slice(bytes);
                    mac = Some(m);
                }
                _ => {}
            }
        }
        if let (Some(ip), Some(mac)) = (ip, mac) {
            found.insert(ip, mac);
        }
    }
    Ok(found)
}

/// Sends one ARP request per target and collects the replies that arrive
/// within `wait`. Blocking: call it from a blocking thread.
pub fn arp_resolve(
    interface: &InterfaceInfo,
    targets: &[Ipv4Addr],
    wait: Duration,
) -> Result<HashMap<Ipv4Addr, [u8; 6]>, NeighbourError> {
    let (mut tx, mut rx) = open_channel(interface, Some(Duration::from_millis(50)))?;
    for &target in targets {
        let Some(source) = interface.source_for(target) else {
            continue;
        };
        let frame = arp_request(interface.mac, source, target);
        if let Some(Err(e)) = tx.send_to(&frame, None) {
            return Err(NeighbourError::Socket {
                interface: interface.name.clone(),
                source: e,
            });
        }
    }
    Ok(collect_replies(rx.as_mut(), targets, wait))
}

/// Sends raw Ethernet frames out of `interface` (gratuitous ARP).
pub fn send_frames(interface: &InterfaceInfo, frames: &[Vec<u8>]) -> Result<(), NeighbourError> {
    let (mut tx, _) = open_channel(interface, None)?;
    for frame in frames {
        if let Some(Err(source)) = tx.send_to(frame, None) {
            return Err(NeighbourError::Socket {
                interface: interface.name.clone(),
                source,
            });
        }
    }
    Ok(())
}

type EthernetChannel = (
    Box<dyn pnet_datalink::DataLinkSender>,
    Box<dyn DataLinkReceiver>,
);

/// A raw Ethernet channel on `interface` (AF_PACKET).
fn open_channel(
    interface: &InterfaceInfo,
    read_timeout: Option<Duration>,
) -> Result<EthernetChannel, NeighbourError> {
    let socket_error = |source| NeighbourError::Socket {
        interface: interface.name.clone(),
        source,
    };
    let datalink = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == interface.name)
        .ok_or_else(|| NeighbourError::NoInterface(interface.name.clone()))?;
    let config = ChannelConfig {
        read_timeout,
        ..ChannelConfig::default()
    };
    match pnet_datalink::channel(&datalink, config) {
        Ok(Channel::Ethernet(tx, rx)) => Ok((tx, rx)),
        Ok(_) => Err(socket_error(std::io::Error::other(
            "not an Ethernet channel",
        ))),
        Err(e) => Err(socket_error(e)),
    }
}

fn collect_replies(
    rx: &mut dyn DataLinkReceiver,
    targets: &[Ipv4Addr],
    wait: Duration,
) -> HashMap<Ipv4Addr, [u8; 6]> {
    let deadline = Instant::now() + wait;
    let mut found = HashMap::new();
    while Instant::now() < deadline && found.len() < targets.len() {
        let Ok(frame) = rx.next() else {
            continue; // read timeout: check the deadline again
        };
        if let Some((ip, mac)) = parse_arp_reply(frame) {
            if targets.contains(&ip) {
                found.insert(ip, mac);
            }
        }
    }
    found
}

const ETHERNET_HEADER_LEN: usize = 14;
const ARP_PACKET_LEN: usize = 28;

/// A broadcast "who has `target`? tell `source`" frame.
pub fn arp_request(our_mac: [u8; 6], source: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut frame = vec![0u8; ETHERNET_HEADER_LEN + ARP_PACKET_LEN];
    if let Some(mut eth) = MutableEthernetPacket::new(&mut frame) {
        eth.set_destination([0xff; 6].into());
        eth.set_source(our_mac.into());
        eth.set_ethertype(EtherTypes::Arp);
        if let Some(mut arp) = MutableArpPacket::new(eth.payload_mut()) {
            arp.set_hardware_type(ArpHardwareTypes::Ethernet);
            arp.set_protocol_type(EtherTypes::Ipv4);
            arp.set_hw_addr_len(6);
            arp.set_proto_addr_len(4);
            arp.set_operation(ArpOperations::Request);
            arp.set_sender_hw_addr(our_mac.into());
            arp.set_sender_proto_addr(source);
            arp.set_target_hw_addr([0; 6].into());
            arp.set_target_proto_addr(target);
        }
    }
    frame
}

/// An unsolicited neighbour advertisement (RFC 4861 7.2.6) for `target`
/// with the override flag and our MAC: the ICMPv6 message only (a raw
/// ICMPv6 socket adds the checksum).
pub fn unsolicited_na(our_mac: [u8; 6], target: std::net::Ipv6Addr) -> Vec<u8> {
    let mut message = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    message.extend_from_slice(&target.octets());
    // Option: target link-layer address (type 2, 1 × 8 bytes).
    message.extend_from_slice(&[2, 1]);
    message.extend_from_slice(&our_mac);
    message
}

/// (sender IP, sender MAC) of an ARP reply; `None` for anything else.
pub fn parse_arp_reply(frame: &[u8]) -> Option<(Ipv4Addr, [u8; 6])> {
    let eth = EthernetPacket::new(frame)?;
    if eth.get_ethertype() != EtherTypes::Arp {
        return None;
    }
    let arp = ArpPacket::new(eth.payload())?;
    if arp.get_operation() != ArpOperations::Reply
        || arp.get_hw_addr_len() != 6
        || arp.get_proto_addr_len() != 4
    {
        return None;
    }
    Some((
        arp.get_sender_proto_addr(),
        arp.get_sender_hw_addr().octets(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_through_the_parser_as_a_reply() {
        let mut frame = arp_request(
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(198, 18, 0, 1),
            Ipv4Addr::new(198, 18, 0, 11),
        );
        assert_eq!(frame.len(), 42);
        assert_eq!(&frame[..6], &[0xff; 6]);
        // A request is not a reply.
        assert_eq!(parse_arp_reply(&frame), None);
        frame[21] = 2; // operation = reply
        assert_eq!(
            parse_arp_reply(&frame),
            Some((Ipv4Addr::new(198, 18, 0, 1), [2, 0, 0, 0, 0, 1]))
        );
    }

    #[test]
    fn unsolicited_na_layout() {
        let na = unsolicited_na([2, 0, 0, 0, 0, 1], "fd00::100".parse().unwrap());
        assert_eq!(na.len(), 32);
        assert_eq!(
            &na[..8],
            &[136, 0, 0, 0, 0x20, 0, 0, 0],
            "type NA, override flag"
        );
        assert_eq!(
            &na[8..24],
            &"fd00::100".parse::<std::net::Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(
            &na[24..],
            &[2, 1, 2, 0, 0, 0, 0, 1],
            "target link-layer address option"
        );
    }

    #[test]
    fn truncated_or_foreign_frames_are_ignored() {
        let frame = arp_request(
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(198, 18, 0, 1),
            Ipv4Addr::new(198, 18, 0, 11),
        );
        for len in 0..frame.len() {
            let mut short = frame[..len].to_vec();
            if len > 21 {
                short[21] = 2;
            }
            assert_eq!(parse_arp_reply(&short), None, "length {len}");
        }
        let mut ipv4 = frame.clone();
        ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(parse_arp_reply(&ipv4), None);
    }

    #[test]
    fn on_link_source_is_chosen_by_prefix() {
        let info = InterfaceInfo {
            name: "eth0".into(),
            index: 2,
            mac: [0; 6],
            ipv4: vec![
                (Ipv4Addr::new(198, 19, 0, 1), 24),
                (Ipv4Addr::new(198, 18, 0, 1), 24),
            ],
            ipv6: vec![
                ("fd00::1".parse().unwrap(), 64),
                ("fe80::1".parse().unwrap(), 64),
            ],
        };
        assert_eq!(info.link_local(), Some("fe80::1".parse().unwrap()));
        assert_eq!(
            info.source_for(Ipv4Addr::new(198, 18, 0, 11)),
            Some(Ipv4Addr::new(198, 18, 0, 1))
        );
        assert_eq!(info.source_for(Ipv4Addr::new(198, 20, 0, 11)), None);
    }
}
