//! The control socket, `/run/lbd/<instance>.sock`: one JSON request per
//! line, one JSON reply per line. `lbd backend` and `lbd reload` are its
//! clients; the daemon's loop answers.
use crate::health::state::AdminState;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tokio::sync::oneshot;

mod client;
pub mod connection;
mod server;
pub mod server_state;
pub mod state_file;

pub use client::{call, CallError};
pub use server::{serve, ServeError};
use state_file::RUN_DIR;

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
    /// `result`'s error is read through its chain of causes (the daemon's
    /// errors carry context), and written out as all of them.
    pub fn after_apply<E>(done: String, result: Result<(), E>) -> Reply
    where
        E: AsRef<dyn std::error::Error + Send + Sync + 'static>,
    {
        let Err(error) = result else {
            return Reply {
                ok: true,
                message: done,
            };
        };
        let causes = || {
            std::iter::successors(Some(error.as_ref() as &dyn std::error::Error), |e| {
                e.source()
            })
        };
        let text = causes()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": ");
        if causes().any(|e| e.is::<StateNotWritten>()) {
            Reply {
                ok: true,
                message: format!("{done} (applied; warning: {text})"),
            }
        } else {
            Reply {
                ok: false,
                message: format!("{done}: recorded, but programming the maps failed: {text}"),
            }
        }
    }
}

pub fn socket_path(instance: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{instance}.sock"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn state_not_written() -> anyhow::Result<()> {
        Err(StateNotWritten(std::io::Error::other("disk full")).into())
    }

    #[test]
    fn after_apply_tells_a_success_a_warning_and_a_failure_apart() {
        let ok = Reply::after_apply("web: drain".into(), anyhow::Ok(()));
        assert!(ok.ok);
        assert_eq!(ok.message, "web: drain");

        let warned = Reply::after_apply("web: drain".into(), state_not_written());
        assert!(warned.ok, "{}", warned.message);
        assert_eq!(
            warned.message,
            "web: drain (applied; warning: the state file could not be written (disk full); \
             lbd status shows the previous state until the next write: disk full)"
        );
        // Under the daemon's context it is still only a warning.
        let wrapped = Reply::after_apply(
            "reloaded".into(),
            state_not_written().context("applying the reload"),
        );
        assert!(wrapped.ok, "{}", wrapped.message);
        assert!(
            wrapped
                .message
                .starts_with("reloaded (applied; warning: applying the reload: the state file"),
            "{}",
            wrapped.message
        );

        let failed = Reply::after_apply(
            "web: drain".into(),
            Err(anyhow::anyhow!("map full")).context("programming service web"),
        );
        assert!(!failed.ok);
        assert_eq!(
            failed.message,
            "web: drain: recorded, but programming the maps failed: programming service web: map full"
        );
    }
}
