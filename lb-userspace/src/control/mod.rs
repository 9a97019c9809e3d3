//! The control socket, `/run/lbd/<instance>.sock`: one JSON request per
//! line, one JSON reply per line. `lbd backend` and `lbd reload` are its
//! clients; the daemon's loop answers.
use crate::{cli::status::RUN_DIR, health::state::AdminState};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tokio::sync::oneshot;

mod client;
pub mod connection;
mod server;
pub mod server_state;

pub use client::{call, CallError};
pub use server::serve;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Request {
    Backend {
        service: String,
        /// "address" or "address:port".
        backend: String,
        state: AdminState,
    },
    Reload,
    /// Stop and tear the data plane down (detach, unpin).
    Stop,
    /// HAProxy's `set server GROUP/MEMBER state|weight`: a proxy
    /// backend's server, or an XDP service's backend (MEMBER = address or
    /// address:port). Without `target`, a proxy backend of that name wins.
    /// Kept in the server-state file: survives reload and restart.
    #[serde(rename = "set-server")]
    SetServer {
        group: String,
        member: String,
        #[serde(default)]
        target: Option<ServerTarget>,
        change: ServerChange,
    },
    /// HAProxy's `show servers state`: the runtime states and weights
    /// kept in the server-state file (the message is its JSON).
    #[serde(rename = "show-servers-state")]
    ShowServersState,
}

/// Which kind of row a `set server` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerTarget {
    Xdp,
    Proxy,
}

/// HAProxy's runtime states: `ready`, `drain`, `maint` (for an XDP
/// backend: enabled, drain, disabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeState {
    Ready,
    Drain,
    Maint,
}

impl RuntimeState {
    pub fn of_xdp(admin: AdminState) -> RuntimeState {
        match admin {
            AdminState::Enabled => RuntimeState::Ready,
            AdminState::Drain => RuntimeState::Drain,
            AdminState::Disabled => RuntimeState::Maint,
        }
    }
    pub fn xdp(self) -> AdminState {
        match self {
            RuntimeState::Ready => AdminState::Enabled,
            RuntimeState::Drain => AdminState::Drain,
            RuntimeState::Maint => AdminState::Disabled,
        }
    }
    pub fn proxy(self) -> crate::proxy::snapshot::AdminState {
        use crate::proxy::snapshot::AdminState as P;
        match self {
            RuntimeState::Ready => P::Ready,
            RuntimeState::Drain => P::Drain,
            RuntimeState::Maint => P::Maint,
        }
    }
    pub fn of_proxy(admin: crate::proxy::snapshot::AdminState) -> RuntimeState {
        use crate::proxy::snapshot::AdminState as P;
        match admin {
            P::Ready => RuntimeState::Ready,
            P::Drain => RuntimeState::Drain,
            P::Maint => RuntimeState::Maint,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerChange {
    State(RuntimeState),
    /// 0..=256 (HAProxy's range).
    Weight(u32),
    /// HAProxy's `enable health` (true) / `disable health` (false).
    Check(bool),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    pub message: String,
}

pub type Call = (Request, oneshot::Sender<Reply>);

/// The maps were programmed but the state file could not be written: the
/// action took effect, only `lbd status` lags behind.
#[derive(Debug, thiserror::Error)]
#[error("the state file could not be written ({0}); lbd status shows the previous state until the next write")]
pub struct StateNotWritten(#[source] pub std::io::Error);

impl Reply {
    /// The reply to an action that was recorded and then programmed with
    /// `result`: it tells what actually happened. A state file that could
    /// not be written does not undo the action, so that is a success with
    /// a warning; a failure to program the maps is a failure, and says the
    /// action stays recorded (the next successful programming applies it).
    pub fn after_apply(done: String, result: anyhow::Result<()>) -> Reply {
        match result {
            Ok(()) => Reply {
                ok: true,
                message: done,
            },
            Err(e) if e.downcast_ref::<StateNotWritten>().is_some() => Reply {
                ok: true,
                message: format!("{done} (applied; warning: {e:#})"),
            },
            Err(e) => Reply {
                ok: false,
                message: format!("{done}: recorded, but programming the maps failed: {e:#}"),
            },
        }
    }
}

pub fn socket_path(instance: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{instance}.sock"))
}
