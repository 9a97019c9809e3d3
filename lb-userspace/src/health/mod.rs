//! Backend health: check configuration, hysteresis, the checks, and the
//! driver that runs them.
pub mod checks;
pub mod driver;
pub mod state;

pub use state::AdminState;
