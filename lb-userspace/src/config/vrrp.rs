//! `[[vrrp]]` and `[[vrrp_script]]`: keepalived's `vrrp_instance` and
//! `vrrp_script`, in TOML. Validated by the main config validator.
use crate::vrrp::packet::Version;
use serde::Deserialize;
use std::{net::IpAddr, path::PathBuf, time::Duration};
use toml::Spanned;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpConfig {
    pub name: String,
    pub interface: String,
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    /// Centiseconds.
    pub advert_int_cs: u16,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub auth_pass: Option<String>,
    pub virtual_ipaddress: Vec<IpAddr>,
    /// `None`: the interface's primary address.
    pub unicast_src_ip: Option<IpAddr>,
    /// Empty: multicast (224.0.0.18 / ff02::12).
    pub unicast_peer: Vec<IpAddr>,
    pub garp: GarpConfig,
    pub notify: Option<PathBuf>,
    pub track_script: Vec<TrackScript>,
    pub track_interface: Vec<TrackNamed>,
    pub track_process: Vec<TrackNamed>,
    pub track_file: Vec<TrackFile>,
}

/// Gratuitous ARP / unsolicited NA on becoming master (keepalived's
/// `garp_master_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GarpConfig {
    /// Announcements sent at once.
    pub repeat: u32,
    /// Delay before the second burst (0: none).
    pub delay: Duration,
    /// Period of refresh bursts while master (0: none).
    pub refresh: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpScript {
    pub name: String,
    /// Run with `/bin/sh -c`.
    pub script: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub weight: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackScript {
    pub script: VrrpScript,
    /// The track entry's weight, else the script's.
    pub weight: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackNamed {
    pub name: String,
    pub weight: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackFile {
    pub path: PathBuf,
    pub weight: i32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVrrpScript {
    pub name: Spanned<String>,
    pub script: Spanned<String>,
    pub interval: Option<Spanned<f64>>,
    pub timeout: Option<Spanned<f64>>,
    pub rise: Option<Spanned<u32>>,
    pub fall: Option<Spanned<u32>>,
    pub weight: Option<Spanned<i32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrack {
    pub name: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub weight: Option<Spanned<i32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVrrp {
    pub name: Spanned<String>,
    pub interface: Option<Spanned<String>>,
    pub version: Option<Spanned<u8>>,
    pub vrid: Spanned<u16>,
    pub priority: Option<Spanned<u16>>,
    pub advert_int: Option<Spanned<f64>>,
    pub nopreempt: Option<Spanned<bool>>,
    pub preempt_delay: Option<Spanned<f64>>,
    pub auth_pass: Option<Spanned<String>>,
    pub virtual_ipaddress: Spanned<Vec<Spanned<String>>>,
    pub unicast_src_ip: Option<Spanned<String>>,
    #[serde(default)]
    pub unicast_peer: Vec<Spanned<String>>,
    pub garp_master_repeat: Option<Spanned<u32>>,
    pub garp_master_delay: Option<Spanned<f64>>,
    pub garp_master_refresh: Option<Spanned<f64>>,
    pub notify: Option<Spanned<String>>,
    #[serde(default)]
    pub track_script: Vec<Spanned<RawTrack>>,
    #[serde(default)]
    pub track_interface: Vec<Spanned<RawTrack>>,
    #[serde(default)]
    pub track_process: Vec<Spanned<RawTrack>>,
    #[serde(default)]
    pub track_file: Vec<Spanned<RawTrack>>,
}

/// keepalived's limits for `weight`.
pub(crate) const MAX_WEIGHT: i32 = 254;
