//! `[[vrrp]]` and `[[vrrp_script]]`: keepalived's `vrrp_instance` and
//! `vrrp_script`, in TOML, with their validation.
use super::{validate::Validator, Environment, InstanceConfig};
use serde::Deserialize;
use std::{collections::HashSet, net::IpAddr, path::PathBuf, time::Duration};
use toml::Spanned;

/// The VRRP version: chosen here (keepalived's `version`), written and
/// checked on the wire by `vrrp::packet`, which re-exports it. It lives
/// with the configuration so that config/ imports no subsystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Version {
    V2,
    V3,
}

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

impl Validator<'_> {
    /// The `[[vrrp_script]]`s, then every `[[vrrp]]` instance (which may
    /// track them).
    pub(super) fn validate_vrrp_sections(
        &mut self,
        raw_scripts: Vec<Spanned<RawVrrpScript>>,
        raw_instances: Vec<Spanned<RawVrrp>>,
        instance: &InstanceConfig,
        env: &dyn Environment,
    ) -> Vec<VrrpConfig> {
        let scripts = self.validate_scripts(raw_scripts);
        let mut vrrp = Vec::new();
        let mut seen_vrrp = HashSet::new();
        for (index, raw_vrrp) in raw_instances.into_iter().enumerate() {
            let raw_vrrp = raw_vrrp.into_inner();
            let field = format!("vrrp[{index}]");
            if let Some(v) = self.validate_vrrp(&field, raw_vrrp, instance, &scripts, env) {
                if !seen_vrrp.insert((
                    v.interface.clone(),
                    v.vrid,
                    v.virtual_ipaddress[0].is_ipv4(),
                )) {
                    self.error_at(
                        1,
                        field,
                        format!("vrid {} is used twice on {}", v.vrid, v.interface),
                    );
                } else if vrrp.iter().any(|o: &VrrpConfig| o.name == v.name) {
                    self.error_at(1, field, format!("duplicate vrrp name \"{}\"", v.name));
                } else {
                    vrrp.push(v);
                }
            }
        }
        vrrp
    }

    fn weight(&mut self, value: &Option<Spanned<i32>>, field: &str) -> Option<i32> {
        let v = value.as_ref()?;
        if v.get_ref().abs() > MAX_WEIGHT {
            self.error(
                v,
                field,
                format!(
                    "weight {} is outside -{MAX_WEIGHT}..={MAX_WEIGHT}",
                    v.get_ref()
                ),
            );
            return Some(0);
        }
        Some(*v.get_ref())
    }

    fn validate_scripts(&mut self, raw: Vec<Spanned<RawVrrpScript>>) -> Vec<VrrpScript> {
        let mut scripts: Vec<VrrpScript> = Vec::new();
        for (index, raw) in raw.into_iter().enumerate() {
            let raw = raw.into_inner();
            let field = format!("vrrp_script[{index}]");
            let name = raw.name.get_ref().clone();
            if scripts.iter().any(|s| s.name == name) {
                self.error(
                    &raw.name,
                    format!("{field}.name"),
                    format!("duplicate vrrp_script \"{name}\""),
                );
                continue;
            }
            if raw.script.get_ref().trim().is_empty() {
                self.error(&raw.script, format!("{field}.script"), "empty command");
            }
            let interval = self.seconds(
                &raw.interval,
                &format!("{field}.interval"),
                1.0,
                (0.01, 3600.0),
            );
            let timeout = self.seconds(
                &raw.timeout,
                &format!("{field}.timeout"),
                interval.as_secs_f64(),
                (0.01, 3600.0),
            );
            let mut count = |v: &Option<Spanned<u32>>, name: &str| match v {
                Some(c) if *c.get_ref() == 0 => {
                    self.error(c, format!("{field}.{name}"), "must be at least 1");
                    1
                }
                Some(c) => *c.get_ref(),
                None => 1,
            };
            let rise = count(&raw.rise, "rise");
            let fall = count(&raw.fall, "fall");
            let weight = self
                .weight(&raw.weight, &format!("{field}.weight"))
                .unwrap_or(0);
            scripts.push(VrrpScript {
                name,
                script: raw.script.into_inner(),
                interval,
                timeout,
                rise,
                fall,
                weight,
            });
        }
        scripts
    }

    fn validate_vrrp(
        &mut self,
        field: &str,
        raw: RawVrrp,
        instance: &InstanceConfig,
        scripts: &[VrrpScript],
        env: &dyn Environment,
    ) -> Option<VrrpConfig> {
        let before = self.errors.len();
        let version = match raw.version.as_ref().map(|v| *v.get_ref()) {
            None | Some(2) => Version::V2,
            Some(3) => Version::V3,
            Some(other) => {
                let v = raw.version.as_ref()?;
                self.error(
                    v,
                    format!("{field}.version"),
                    format!("version {other}: only 2 and 3 exist"),
                );
                Version::V2
            }
        };
        let vrid = *raw.vrid.get_ref();
        if !(1..=255).contains(&vrid) {
            self.error(
                &raw.vrid,
                format!("{field}.vrid"),
                format!("vrid {vrid} is outside 1..=255"),
            );
        }
        let priority = raw.priority.as_ref().map_or(100, |p| *p.get_ref());
        if let Some(p) = &raw.priority {
            if !(1..=255).contains(p.get_ref()) {
                self.error(
                    p,
                    format!("{field}.priority"),
                    format!("priority {} is outside 1..=255", p.get_ref()),
                );
            }
        }
        let advert = raw.advert_int.as_ref().map_or(1.0, |a| *a.get_ref());
        let advert_int_cs = (advert * 100.0).round();
        let advert_ok = match version {
            Version::V2 => advert.fract() == 0.0 && (1.0..=255.0).contains(&advert),
            Version::V3 => {
                (1.0..=4095.0).contains(&advert_int_cs)
                    && (advert * 100.0 - advert_int_cs).abs() < 1e-6
            }
        };
        if !advert_ok {
            let line = raw.advert_int.as_ref().map_or_else(
                || self.line_of(raw.vrid.span().start),
                |a| self.line_of(a.span().start),
            );
            let allowed = match version {
                Version::V2 => "whole seconds 1..=255 for version 2",
                Version::V3 => "0.01..=40.95 seconds in steps of 0.01 for version 3",
            };
            self.error_at(
                line,
                format!("{field}.advert_int"),
                format!("{advert} is not allowed: {allowed}"),
            );
        }
        if let Some(pass) = &raw.auth_pass {
            if version == Version::V3 {
                self.error(
                    pass,
                    format!("{field}.auth_pass"),
                    "VRRPv3 has no authentication (RFC 5798); remove auth_pass or use version = 2",
                );
            }
        }
        let interface = raw
            .interface
            .as_ref()
            .map_or_else(|| instance.interface.clone(), |i| i.get_ref().clone());
        if let Some(i) = &raw.interface {
            if !env.interface_exists(i.get_ref()) {
                self.error(
                    i,
                    format!("{field}.interface"),
                    format!("unknown interface \"{}\"", i.get_ref()),
                );
            }
        }
        let mut vips = Vec::new();
        for (i, vip) in raw.virtual_ipaddress.get_ref().iter().enumerate() {
            if let Some(a) = self.address(vip, &format!("{field}.virtual_ipaddress[{i}]")) {
                vips.push(a);
            }
        }
        if raw.virtual_ipaddress.get_ref().is_empty() {
            self.error(
                &raw.virtual_ipaddress,
                format!("{field}.virtual_ipaddress"),
                "at least one address is needed",
            );
        }
        let family_v4 = vips.first().is_none_or(IpAddr::is_ipv4);
        if vips.iter().any(|a| a.is_ipv4() != family_v4) {
            self.error(
                &raw.virtual_ipaddress,
                format!("{field}.virtual_ipaddress"),
                "IPv4 and IPv6 addresses cannot share one VRRP instance",
            );
        }
        if !family_v4 && version == Version::V2 {
            self.error(
                &raw.virtual_ipaddress,
                format!("{field}.virtual_ipaddress"),
                "VRRPv2 is IPv4 only; use version = 3 for IPv6 addresses",
            );
        }
        let unicast_src_ip = match &raw.unicast_src_ip {
            Some(a) => self.address(a, &format!("{field}.unicast_src_ip")),
            None => None,
        };
        let mut unicast_peer = Vec::new();
        for (i, peer) in raw.unicast_peer.iter().enumerate() {
            if let Some(a) = self.address(peer, &format!("{field}.unicast_peer[{i}]")) {
                if a.is_ipv4() != family_v4 {
                    self.error(
                        peer,
                        format!("{field}.unicast_peer[{i}]"),
                        "address family differs from the virtual addresses",
                    );
                }
                unicast_peer.push(a);
            }
        }
        let mut track_script = Vec::new();
        for (i, track) in raw.track_script.iter().enumerate() {
            let tfield = format!("{field}.track_script[{i}]");
            let Some(name) = self.track_name(track, &tfield) else {
                continue;
            };
            match scripts.iter().find(|s| s.name == name) {
                Some(script) => {
                    let weight = self
                        .weight(&track.get_ref().weight, &format!("{tfield}.weight"))
                        .unwrap_or(script.weight);
                    track_script.push(TrackScript {
                        script: script.clone(),
                        weight,
                    });
                }
                None => self.error(track, tfield, format!("no vrrp_script named \"{name}\"")),
            }
        }
        let mut track_interface = Vec::new();
        for (i, track) in raw.track_interface.iter().enumerate() {
            let tfield = format!("{field}.track_interface[{i}]");
            let Some(name) = self.track_name(track, &tfield) else {
                continue;
            };
            if !env.interface_exists(&name) {
                self.error(
                    track,
                    tfield.clone(),
                    format!("unknown interface \"{name}\""),
                );
            }
            let weight = self
                .weight(&track.get_ref().weight, &format!("{tfield}.weight"))
                .unwrap_or(0);
            track_interface.push(TrackNamed { name, weight });
        }
        let mut track_process = Vec::new();
        for (i, track) in raw.track_process.iter().enumerate() {
            let tfield = format!("{field}.track_process[{i}]");
            let Some(name) = self.track_name(track, &tfield) else {
                continue;
            };
            let weight = self
                .weight(&track.get_ref().weight, &format!("{tfield}.weight"))
                .unwrap_or(0);
            track_process.push(TrackNamed { name, weight });
        }
        let mut track_file = Vec::new();
        for (i, track) in raw.track_file.iter().enumerate() {
            let tfield = format!("{field}.track_file[{i}]");
            match &track.get_ref().path {
                Some(path) => {
                    let weight = self
                        .weight(&track.get_ref().weight, &format!("{tfield}.weight"))
                        .unwrap_or(1);
                    track_file.push(TrackFile {
                        path: PathBuf::from(path.get_ref()),
                        weight,
                    });
                }
                None => self.error(track, tfield, "needs a path"),
            }
        }
        let preempt_delay = self.seconds(
            &raw.preempt_delay,
            &format!("{field}.preempt_delay"),
            0.0,
            (0.0, 1000.0),
        );
        let delay = self.seconds(
            &raw.garp_master_delay,
            &format!("{field}.garp_master_delay"),
            5.0,
            (0.0, 3600.0),
        );
        let refresh = self.seconds(
            &raw.garp_master_refresh,
            &format!("{field}.garp_master_refresh"),
            0.0,
            (0.0, 86400.0),
        );
        let repeat = raw.garp_master_repeat.as_ref().map_or(5, |r| *r.get_ref());
        if self.errors.len() > before {
            return None;
        }
        Some(VrrpConfig {
            name: raw.name.into_inner(),
            interface,
            version,
            vrid: vrid as u8,
            priority: priority as u8,
            advert_int_cs: advert_int_cs as u16,
            preempt: !raw.nopreempt.as_ref().is_some_and(|n| *n.get_ref()),
            preempt_delay,
            auth_pass: raw.auth_pass.map(Spanned::into_inner),
            virtual_ipaddress: vips,
            unicast_src_ip,
            unicast_peer,
            garp: GarpConfig {
                repeat,
                delay,
                refresh,
            },
            notify: raw.notify.map(|n| PathBuf::from(n.into_inner())),
            track_script,
            track_interface,
            track_process,
            track_file,
        })
    }

    fn track_name(&mut self, track: &Spanned<RawTrack>, field: &str) -> Option<String> {
        match &track.get_ref().name {
            Some(name) if !name.get_ref().is_empty() => Some(name.get_ref().clone()),
            _ => {
                self.error(track, field, "needs a name");
                None
            }
        }
    }
}
