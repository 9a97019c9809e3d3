//! `lbd`: the control plane of the XDP load balancer.
pub mod config;
pub mod dataplane;
pub mod flows;
pub mod health;
pub mod status;
pub mod vrrp;
