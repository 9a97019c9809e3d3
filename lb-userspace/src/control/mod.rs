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
