//! `lbd`: the control plane of the XDP load balancer.
pub mod bgp;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod health;
pub mod import;
pub mod log;
pub mod proxy;
pub mod stats;
#[cfg(test)]
mod test_netns;
pub mod vrrp;
