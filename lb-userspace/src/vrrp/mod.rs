//! VRRP, wire-compatible with keepalived: the wire format and a sans-IO
//! state machine; sockets and timers live in the driver beside them.
pub mod driver;
pub mod machine;
pub mod packet;
mod sockets;
mod trackers;
pub mod tracking;
pub mod status {
    //! What `lbd status` shows per VRRP instance.
    use super::{machine::Counters, machine::State, packet::Version};
    use std::net::IpAddr;

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct VrrpStatus {
        pub name: String,
        pub vrid: u8,
        pub version: Version,
        pub state: State,
        pub priority: u8,
        /// Priority plus tracking weights: what is advertised.
        pub effective_priority: u8,
        /// The current master (ourselves when master), if known.
        pub master: Option<IpAddr>,
        pub local_address: IpAddr,
        pub seconds_in_state: f64,
        /// Cause of the last transition.
        pub last_transition: String,
        pub counters: Counters,
    }
}
pub use machine::State;
pub use status::VrrpStatus;
