//! The command line's side: what each command does (`commands`), and the
//! readers behind `lbd status` and `lbd flows`, which open the pinned maps
//! and the state file of a running instance and render them.
pub mod commands;
pub mod flows;
pub mod status;

pub use flows::FlowStatus;
pub use status::{format_mac, BackendStatus, ServiceStatus, StatusReport};
