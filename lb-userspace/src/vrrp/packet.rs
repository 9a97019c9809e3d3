//! VRRP advertisements on the wire: VRRPv2 (RFC 3768, with simple-password
//! authentication as keepalived's `auth_type PASS`) and VRRPv3 (RFC 5798),
//! over IPv4 and IPv6. A checked view over bytes ([`VrrpPacket`]) and a
//! parsed representation ([`Advertisement`]), in the smoltcp style; parsing
//! never panics.
use std::net::IpAddr;

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// Hop limit / TTL every advertisement must carry.
pub const VRRP_TTL: u8 = 255;
const TYPE_ADVERTISEMENT: u8 = 1;
const HEADER_LEN: usize = 8;
const V2_AUTH_LEN: usize = 8;
const AUTH_NONE: u8 = 0;
const AUTH_SIMPLE: u8 = 1;

pub use crate::config::vrrp::Version;

/// Why a received packet was not accepted. Each has its own counter.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    thiserror::Error,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    #[error("shorter than its header or address list")]
    Truncated,
    #[error("TTL / hop limit is not 255")]
    Ttl,
    #[error("version differs from the instance's")]
    Version,
    #[error("not an advertisement")]
    Type,
    #[error("checksum mismatch")]
    Checksum,
    #[error("authentication type or password mismatch")]
    Auth,
    #[error("advertisement interval differs (VRRPv2 requires equal intervals)")]
    Interval,
    #[error("address count is zero or the list has the wrong address family")]
    AddressList,
}

/// A parsed advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertisement {
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    /// Advertisement interval in centiseconds (VRRPv2 carries whole
    /// seconds: 100 × its value).
    pub interval_cs: u16,
    /// VRRPv2 simple password (up to 8 bytes, zero padded); `None` = no
    /// authentication.
    pub password: Option<[u8; 8]>,
    pub addresses: Vec<IpAddr>,
}

/// A read-only view over the VRRP part of a packet (after the IP header).
pub struct VrrpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VrrpPacket<T> {
    /// Checks that the fixed header is present.
    pub fn new_checked(buffer: T) -> Result<Self, RejectReason> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(RejectReason::Truncated);
        }
        Ok(VrrpPacket { buffer })
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn version(&self) -> u8 {
        self.bytes()[0] >> 4
    }
    pub fn kind(&self) -> u8 {
        self.bytes()[0] & 0x0f
    }
    pub fn vrid(&self) -> u8 {
        self.bytes()[1]
    }
    pub fn priority(&self) -> u8 {
        self.bytes()[2]
    }
    pub fn address_count(&self) -> u8 {
        self.bytes()[3]
    }
    /// VRRPv2: auth type; VRRPv3: reserved bits + high bits of the interval.
    fn byte4(&self) -> u8 {
        self.bytes()[4]
    }
    fn byte5(&self) -> u8 {
        self.bytes()[5]
    }
    pub fn checksum(&self) -> u16 {
        u16::from_be_bytes([self.bytes()[6], self.bytes()[7]])
    }
}

/// Parses the VRRP part of a packet received from `source` to
/// `destination` (needed for the VRRPv3 pseudo-header checksum).
pub fn parse(
    bytes: &[u8],
    source: IpAddr,
    destination: IpAddr,
) -> Result<Advertisement, RejectReason> {
    let packet = VrrpPacket::new_checked(bytes)?;
    let version = match packet.version() {
        2 if source.is_ipv4() => Version::V2,
        3 => Version::V3,
        _ => return Err(RejectReason::Version),
    };
    if packet.kind() != TYPE_ADVERTISEMENT {
        return Err(RejectReason::Type);
    }
    let count = usize::from(packet.address_count());
    let address_len = if source.is_ipv4() { 4 } else { 16 };
    let auth_len = if version == Version::V2 {
        V2_AUTH_LEN
    } else {
        0
    };
    let length = HEADER_LEN + count * address_len + auth_len;
    if bytes.len() < length {
        return Err(RejectReason::Truncated);
    }
    // Checksum over exactly the advertisement (trailing bytes excluded).
    let message = &bytes[..length];
    let valid = match version {
        Version::V2 => internet_checksum(&[message]) == 0,
        Version::V3 => {
            internet_checksum(&[&pseudo_header(source, destination, length), message]) == 0
        }
    };
    if !valid {
        return Err(RejectReason::Checksum);
    }
    if count == 0 || source.is_ipv4() != destination.is_ipv4() {
        return Err(RejectReason::AddressList);
    }
    let addresses = message[HEADER_LEN..HEADER_LEN + count * address_len]
        .chunks_exact(address_len)
        .map(|chunk| match <[u8; 4]>::try_from(chunk) {
            Ok(v4) => IpAddr::from(v4),
            Err(_) => {
                let mut v6 = [0u8; 16];
                v6.copy_from_slice(chunk);
                IpAddr::from(v6)
            }
        })
        .collect();
    let (interval_cs, password) = match version {
        Version::V2 => {
            let password = match packet.byte4() {
                AUTH_NONE => None,
                AUTH_SIMPLE => {
                    let mut pw = [0u8; 8];
                    pw.copy_from_slice(&message[length - V2_AUTH_LEN..]);
                    Some(pw)
                }
                _ => return Err(RejectReason::Auth),
            };
            (u16::from(packet.byte5()) * 100, password)
        }
        Version::V3 => (
            u16::from_be_bytes([packet.byte4() & 0x0f, packet.byte5()]),
            None,
        ),
    };
    Ok(Advertisement {
        version,
        vrid: packet.vrid(),
        priority: packet.priority(),
        interval_cs,
        password,
        addresses,
    })
}

impl Advertisement {
    /// The VRRP part of the packet, checksum included, as sent from
    /// `source` to `destination`.
    pub fn emit(&self, source: IpAddr, destination: IpAddr) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.addresses.len() * 16 + V2_AUTH_LEN);
        let version: u8 = match self.version {
            Version::V2 => 2,
            Version::V3 => 3,
        };
        out.push(version << 4 | TYPE_ADVERTISEMENT);
        out.push(self.vrid);
        out.push(self.priority);
        out.push(self.addresses.len().min(255) as u8);
        match self.version {
            Version::V2 => {
                out.push(if self.password.is_some() {
                    AUTH_SIMPLE
                } else {
                    AUTH_NONE
                });
                out.push((self.interval_cs / 100).min(255) as u8);
            }
            Version::V3 => out.extend_from_slice(&(self.interval_cs & 0x0fff).to_be_bytes()),
        }
        out.extend_from_slice(&[0, 0]);
        for address in self.addresses.iter().take(255) {
            match address {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
        if self.version == Version::V2 {
            out.extend_from_slice(&self.password.unwrap_or([0; 8]));
        }
        let checksum = match self.version {
            Version::V2 => internet_checksum(&[&out]),
            Version::V3 => {
                internet_checksum(&[&pseudo_header(source, destination, out.len()), &out])
            }
        };
        out[6..8].copy_from_slice(&checksum.to_be_bytes());
        out
    }
}

/// A VRRPv2 password as carried on the wire: the first 8 bytes, zero
/// padded (keepalived truncates longer ones the same way).
pub fn password_bytes(password: &str) -> [u8; 8] {
    let mut out = [0u8; 8];
    for (slot, byte) in out.iter_mut().zip(password.bytes()) {
        *slot = byte;
    }
    out
}

fn pseudo_header(source: IpAddr, destination: IpAddr, length: usize) -> Vec<u8> {
    let mut header = Vec::with_capacity(40);
    match (source, destination) {
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            header.extend_from_slice(&s.octets());
            header.extend_from_slice(&d.octets());
            header.extend_from_slice(&(length as u32).to_be_bytes());
            header.extend_from_slice(&[0, 0, 0, IPPROTO_VRRP]);
        }
        (s, d) => {
            for address in [s, d] {
                if let IpAddr::V4(a) = address {
                    header.extend_from_slice(&a.octets());
                }
            }
            header.extend_from_slice(&[0, IPPROTO_VRRP]);
            header.extend_from_slice(&(length as u16).to_be_bytes());
        }
    }
    header
}

/// RFC 1071 checksum over the concatenation of `parts` (each even-length
/// except possibly the last).
fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for pair in &mut chunks {
            sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
#[path = "packet_tests.rs"]
mod tests;
