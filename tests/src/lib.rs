//! Test kit: network-namespace topologies, process guards and traffic, used
//! by the integration tests and by `cargo xtask lab`.
pub mod adverts;
pub mod bgp_lab;
pub mod browser;
pub mod fixture;
pub mod ha;
pub mod lbd_status;
pub mod leaks;
pub mod modes_lab;
pub mod netns;
pub mod nft;
pub mod nginx;
pub mod predict;
pub mod process;
pub mod proxy_status;
pub mod rsyslog;
pub mod servers;
pub mod topology;
pub mod traffic;
