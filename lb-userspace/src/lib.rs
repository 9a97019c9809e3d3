//! `lbd`: the control plane of the XDP load balancer.
pub mod config;
pub mod conntrack;
pub mod dataplane;
pub mod desired;
pub mod flows;
pub mod health;
pub mod log;
pub mod maglev;
pub mod neighbour;
pub mod programmer;
pub mod proxy;
pub mod status;
pub mod vrrp;
