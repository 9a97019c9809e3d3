//! What a stage decided, in a form that may cross a BPF function call.
//!
//! Functions that are not inlined appear in the program's BTF, and the
//! kernel rejects the BTF LLVM emits for Rust enums with data (`Result`,
//! `Option`: a union member at a non-zero offset). So those functions
//! return this plain struct; the code inside them uses `Result` and `?`.
use aya_ebpf::bindings::xdp_action;
use lb_common::Outcome;

/// `action` of a stage that did not finish the packet: go on.
pub const CONTINUE: u32 = u32::MAX;

/// `action << 32 | outcome`: one register. (A struct would be returned
/// through a hidden pointer argument, and BPF functions take at most five.)
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct Verdict(u64);

/// What happens to a packet that ends in `outcome` without being sent.
#[inline(always)]
pub fn action_for(outcome: Outcome) -> u32 {
    match outcome {
        Outcome::DropBadIpChecksum
        | Outcome::DropNoBackend
        | Outcome::DropNoBackendMac
        | Outcome::DropInternal => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
    }
}

impl Verdict {
    #[inline(always)]
    pub fn new(action: u32, outcome: Outcome) -> Self {
        Verdict((u64::from(action) << 32) | u64::from(outcome as u32))
    }

    #[inline(always)]
    pub fn action(self) -> u32 {
        (self.0 >> 32) as u32
    }

    #[inline(always)]
    pub fn outcome(self) -> Outcome {
        Outcome::from_index(self.0 as u32).unwrap_or(Outcome::DropInternal)
    }

    /// A finished packet: sent with `action`, or stopped by `Err`.
    #[inline(always)]
    pub fn finished(result: Result<(u32, Outcome), Outcome>) -> Self {
        match result {
            Ok((action, outcome)) => Verdict::new(action, outcome),
            Err(outcome) => Verdict::new(action_for(outcome), outcome),
        }
    }

    /// An intermediate step: `Ok` continues.
    #[inline(always)]
    pub fn step(result: Result<(), Outcome>) -> Self {
        match result {
            Ok(()) => Verdict::new(CONTINUE, Outcome::DropInternal),
            Err(outcome) => Verdict::new(action_for(outcome), outcome),
        }
    }

    /// Back to a `Result` for `?`.
    #[inline(always)]
    pub fn into_step(self) -> Result<(), Outcome> {
        if self.action() == CONTINUE {
            Ok(())
        } else {
            Err(self.outcome())
        }
    }

    #[inline(always)]
    pub fn into_finished(self) -> (u32, Outcome) {
        (self.action(), self.outcome())
    }
}
