//! VRRP adverts as they cross the wire, with the kernel's receive
//! timestamps (SO_TIMESTAMPNS), so a test measures the gaps between a
//! master's adverts independently of its own scheduling.
use crate::netns::Netns;
use anyhow::Context;
use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, IpMembershipRequest, MsgFlags, SockaddrIn,
};
use std::{
    net::Ipv4Addr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

const IPPROTO_VRRP: i32 = 112;
const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

/// A raw VRRP socket in a namespace, joined to 224.0.0.18.
pub struct AdvertCapture {
    socket: OwnedFd,
}

impl AdvertCapture {
    /// Opens the socket in `ns`, joined on the interface holding `local`.
    pub fn open(ns: &Netns, local: Ipv4Addr) -> anyhow::Result<Self> {
        ns.run_in(|| -> anyhow::Result<Self> {
            // SAFETY: plain socket(2); the descriptor is owned below.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, IPPROTO_VRRP) };
            anyhow::ensure!(
                fd >= 0,
                "raw VRRP socket: {}",
                std::io::Error::last_os_error()
            );
            // SAFETY: fd is a fresh descriptor nobody else owns.
            let socket = unsafe { OwnedFd::from_raw_fd(fd) };
            setsockopt(
                &socket,
                sockopt::IpAddMembership,
                &IpMembershipRequest::new(GROUP, Some(local)),
            )
            .context("joining 224.0.0.18")?;
            setsockopt(&socket, sockopt::ReceiveTimestampns, &true)?;
            setsockopt(
                &socket,
                sockopt::ReceiveTimeout,
                &nix::sys::time::TimeVal::new(0, 50_000),
            )?;
            Ok(AdvertCapture { socket })
        })?
    }

    /// Receives for `duration`: the kernel's arrival time of every advert
    /// from `source` (since the epoch), in order.
    pub fn collect(&self, source: Ipv4Addr, duration: Duration) -> Vec<Duration> {
        let end = Instant::now() + duration;
        let mut times = Vec::new();
        let mut buffer = [0u8; 2048];
        while Instant::now() < end {
            let mut iov = [std::io::IoSliceMut::new(&mut buffer)];
            let mut space = nix::cmsg_space!(nix::sys::time::TimeSpec);
            let Ok(message) = recvmsg::<SockaddrIn>(
                self.socket.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::empty(),
            ) else {
                continue; // the receive timeout: look at the clock again
            };
            if message.address.map(|a| a.ip()) != Some(source) {
                continue;
            }
            let Ok(cmsgs) = message.cmsgs() else {
                continue;
            };
            for cmsg in cmsgs {
                if let ControlMessageOwned::ScmTimestampns(ts) = cmsg {
                    times.push(Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32));
                }
            }
        }
        times
    }
}

/// The longest interval between consecutive times.
pub fn largest_gap(times: &[Duration]) -> Duration {
    times
        .windows(2)
        .map(|pair| pair[1].saturating_sub(pair[0]))
        .max()
        .unwrap_or_default()
}
