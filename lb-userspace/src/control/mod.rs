//! The control socket, `/run/lbd/<instance>.sock`: one JSON request per
//! line, one JSON reply per line. `lbd backend` and `lbd reload` are its
//! clients; the daemon's loop answers.
use crate::{cli::status::RUN_DIR, health::state::AdminState};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tokio::sync::oneshot;

mod client;
mod server;

pub use client::call;
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

pub fn socket_path(instance: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{instance}.sock"))
}
