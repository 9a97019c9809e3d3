//! `lbd`: the control plane of the XDP load balancer.
pub mod config;
pub mod maglev;
