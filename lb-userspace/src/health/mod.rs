//! Backend health: check configuration, hysteresis, the checks, and the
//! driver that runs them; `proxy` checks the L7/TCP proxy's servers
//! (HAProxy's `check`, `option httpchk`, `http-check expect`).
pub mod checks;
pub mod driver;
pub mod proxy;
pub mod state;

pub use state::AdminState;
