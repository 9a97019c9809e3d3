//! Interface facts and backend MAC resolution. Users never type MACs: the
//! kernel's neighbour table is read first, and a backend it does not know is
//! asked directly with an ARP request (IPv4) or a neighbour solicitation
//! (IPv6, RFC 4861).
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
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
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
    pub fn source_for(&self, target: IpAddr) -> Option<IpAddr> {
        match target {
            IpAddr::V4(target) => self
                .ipv4
                .iter()
                .find(|(addr, prefix)| {
                    same_subnet(
                        u32::from(*addr).into(),
                        u32::from(target).into(),
                        *prefix,
                        32,
                    )
                })
                .map(|(addr, _)| IpAddr::V4(*addr)),
            IpAddr::V6(target) => self
                .ipv6
                .iter()
                .find(|(addr, prefix)| {
                    same_subnet(u128::from(*addr), u128::from(target), *prefix, 128)
                })
                .map(|(addr, _)| IpAddr::V6(*addr)),
        }
    }

    /// The first address of each family that is not link-local: the
    /// default `fullnat` source addresses.
    pub fn primary_addresses(&self) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
        let v4 = self.ipv4.first().map(|(a, _)| *a);
        let v6 = self
            .ipv6
            .iter()
            .map(|(a, _)| *a)
            .find(|a| a.segments()[0] & 0xffc0 != 0xfe80);
        (v4, v6)
    }
}

fn same_subnet(a: u128, b: u128, prefix: u8, bits: u8) -> bool {
    let prefix = u32::from(prefix.min(bits));
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits) - prefix;
    (a >> shift) == (b >> shift)
}

/// The link named `name`, if it exists.
pub async fn link_by_name(
    handle: &rtnetlink::Handle,
    name: &str,
) -> Result<Option<rtnetlink::packet_route::link::LinkMessage>, rtnetlink::Error> {
    handle
        .link()
        .get()
        .match_name(name.to_owned())
        .execute()
        .try_next()
        .await
}

pub async fn interface_info(
    handle: &rtnetlink::Handle,
    name: &str,
) -> Result<InterfaceInfo, NeighbourError> {
    let link = link_by_name(handle, name)
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

/// Neighbours on `ifindex` whose MAC the kernel currently believes.
pub async fn kernel_neighbours(
    handle: &rtnetlink::Handle,
    ifindex: u32,
) -> Result<HashMap<IpAddr, [u8; 6]>, NeighbourError> {
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
                NeighbourAttribute::Destination(NeighbourAddress::Inet(addr)) => {
                    ip = Some(IpAddr::V4(*addr))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(addr)) => {
                    ip = Some(IpAddr::V6(*addr))
                }
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

/// Adds (or refreshes) `ip` -> `mac` in the kernel's neighbour table as
/// "stale": usable at once, and verified by the kernel itself the next
/// time it sends there.
pub async fn teach_kernel(
    handle: &rtnetlink::Handle,
    ifindex: u32,
    ip: IpAddr,
    mac: [u8; 6],
) -> Result<(), NeighbourError> {
    handle
        .neighbours()
        .add(ifindex, ip)
        .link_layer_address(&mac)
        .state(NeighbourState::Stale)
        .replace()
        .execute()
        .await?;
    Ok(())
}

/// Sends one ARP request (IPv4) or neighbour solicitation (IPv6) per
/// target and collects the answers that arrive within `wait`. Blocking:
/// call it from a blocking thread.
pub fn solicit(
    interface: &InterfaceInfo,
    targets: &[IpAddr],
    wait: Duration,
) -> Result<HashMap<IpAddr, [u8; 6]>, NeighbourError> {
    let (mut tx, mut rx) = open_channel(interface, Some(Duration::from_millis(50)))?;
    for &target in targets {
        let frame = match (target, interface.source_for(target)) {
            (IpAddr::V4(target), Some(IpAddr::V4(source))) => {
                arp_request(interface.mac, source, target)
            }
            (IpAddr::V6(target), Some(_)) => {
                // Solicitations come from the link-local address (RFC 4861
                // 7.2.2 allows any of ours; link-local always exists).
                let Some(source) = interface.link_local() else {
                    continue;
                };
                neighbour_solicitation(interface.mac, source, target)
            }
            _ => continue,
        };
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
    targets: &[IpAddr],
    wait: Duration,
) -> HashMap<IpAddr, [u8; 6]> {
    let deadline = Instant::now() + wait;
    let mut found = HashMap::new();
    while Instant::now() < deadline && found.len() < targets.len() {
        let Ok(frame) = rx.next() else {
            continue; // read timeout: check the deadline again
        };
        let answer = parse_arp_reply(frame)
            .map(|(ip, mac)| (IpAddr::V4(ip), mac))
            .or_else(|| parse_neighbour_advert(frame).map(|(ip, mac)| (IpAddr::V6(ip), mac)));
        if let Some((ip, mac)) = answer {
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

const IPV6_HEADER_LEN: usize = 40;
const ICMPV6: u8 = 58;
const NDP_SOLICIT: u8 = 135;
const NDP_ADVERT: u8 = 136;

/// A neighbour solicitation for `target` (RFC 4861 4.3): to its
/// solicited-node multicast address, hop limit 255, with our MAC as the
/// source link-layer option.
pub fn neighbour_solicitation(our_mac: [u8; 6], source: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let mut icmp = vec![NDP_SOLICIT, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&t);
    icmp.extend_from_slice(&[1, 1]); // source link-layer address, 8 bytes
    icmp.extend_from_slice(&our_mac);
    let checksum = icmpv6_checksum(source, group, &icmp);
    icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
    let mut frame = Vec::with_capacity(ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + icmp.len());
    let g = group.octets();
    frame.extend_from_slice(&[0x33, 0x33, g[12], g[13], g[14], g[15]]);
    frame.extend_from_slice(&our_mac);
    frame.extend_from_slice(&[0x86, 0xdd]);
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[ICMPV6, 255]);
    frame.extend_from_slice(&source.octets());
    frame.extend_from_slice(&g);
    frame.extend_from_slice(&icmp);
    frame
}

/// The ICMPv6 checksum over the pseudo-header and `message` (whose own
/// checksum field must be zero).
fn icmpv6_checksum(source: Ipv6Addr, destination: Ipv6Addr, message: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            sum += u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    };
    add(&source.octets());
    add(&destination.octets());
    add(&(message.len() as u32).to_be_bytes());
    add(&[0, 0, 0, ICMPV6]);
    add(message);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// (target, target MAC) of a neighbour advertisement that carries the
/// target link-layer option; `None` for anything else.
pub fn parse_neighbour_advert(frame: &[u8]) -> Option<(Ipv6Addr, [u8; 6])> {
    let eth = EthernetPacket::new(frame)?;
    if eth.get_ethertype() != EtherTypes::Ipv6 {
        return None;
    }
    let ip = eth.payload();
    if ip.len() < IPV6_HEADER_LEN + 24 || ip[6] != ICMPV6 || ip[7] != 255 {
        return None;
    }
    let icmp = &ip[IPV6_HEADER_LEN..];
    if icmp[0] != NDP_ADVERT || icmp[1] != 0 {
        return None;
    }
    let target = Ipv6Addr::from(<[u8; 16]>::try_from(&icmp[8..24]).ok()?);
    let mut options = &icmp[24..];
    while options.len() >= 8 {
        let length = usize::from(options[1]) * 8;
        if length == 0 || length > options.len() {
            return None;
        }
        if options[0] == 2 {
            let mac = <[u8; 6]>::try_from(&options[2..8]).ok()?;
            return Some((target, mac));
        }
        options = &options[length..];
    }
    None
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
#[path = "neighbour_tests.rs"]
mod tests;
