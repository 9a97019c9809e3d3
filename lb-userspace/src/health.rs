//! Backend health: check configuration, hysteresis, and the checks.
pub mod checks;
pub mod config;
pub mod state;
