//! What a bench-l7 keep-alive run cost, per request: the proxy's CPU time
//! (and its user-space share), and besides it the proxy's, the backends'
//! and the softirq threads' context switches, the load balancer
//! namespace's TCP segments, the whole machine's CPU time by kind, context
//! switches and idle share, and the client's (wrk's) CPU time and context
//! switches. Two proxies that spend different kernel time on the same
//! requests differ in one of these (session 14: the wire was the same for
//! lbd and HAProxy, two segments in and two out per request, and the proxy
//! that ran longer per request was preempted more often); the bench prints
//! them beside each run's rate.
use crate::bench_l7::USER_HZ;
use anyhow::Context;
use lb_tests::topology::DsrLab;
use std::path::Path;

/// Counters read before and after a run.
pub(crate) struct RunFacts {
    /// The proxy's CPU time (every thread), in clock ticks.
    user_ticks: u64,
    system_ticks: u64,
    voluntary_switches: u64,
    involuntary_switches: u64,
    segments_in: u64,
    segments_out: u64,
    delayed_acks: u64,
    machine: MachineTicks,
    /// Context switches (voluntary + involuntary) of every thread by
    /// command name, for the commands in [`WATCHED`].
    by_command: [u64; WATCHED.len()],
    /// What the bench's finished children used: across a run, the client
    /// (wrk, reaped when it ends) and one nstat of a few milliseconds.
    client: ChildrenUsage,
}

/// CPU time (microseconds) and context switches of the children this
/// process has reaped (getrusage(RUSAGE_CHILDREN)).
struct ChildrenUsage {
    user_us: u64,
    system_us: u64,
    switches: u64,
}

impl ChildrenUsage {
    fn now() -> anyhow::Result<ChildrenUsage> {
        use nix::sys::resource::{getrusage, UsageWho};
        let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
        let us = |t: nix::sys::time::TimeVal| (t.tv_sec() as u64) * 1_000_000 + t.tv_usec() as u64;
        Ok(ChildrenUsage {
            user_us: us(usage.user_time()),
            system_us: us(usage.system_time()),
            switches: (usage.voluntary_context_switches() + usage.involuntary_context_switches())
                as u64,
        })
    }
}

/// The other programs of a run whose context switches are counted from
/// /proc: the backends and the kernel's softirq threads (wrk has not
/// started at the first reading and has ended at the second: its own
/// come from getrusage, [`ChildrenUsage`]).
const WATCHED: [&str; 2] = ["nginx", "ksoftirqd"];

/// The whole machine's CPU time by kind, in clock ticks, and its context
/// switches (/proc/stat): what the proxy makes the client and the backends
/// spend shows here, not in the proxy's own time.
struct MachineTicks {
    user: u64,
    system: u64,
    softirq: u64,
    idle: u64,
    all: u64,
    context_switches: u64,
}

impl RunFacts {
    /// The counters of `pid` (every thread) and of the lab's load balancer
    /// namespace now.
    pub(crate) fn read(lab: &DsrLab, pid: u32) -> anyhow::Result<RunFacts> {
        let (voluntary_switches, involuntary_switches) = context_switches(pid)?;
        // -a: absolute values, -s: the history file stays as it is.
        let snmp = lab.lb().exec("nstat", &["-asz"])?;
        let counter = |name: &str| -> anyhow::Result<u64> {
            snmp.lines()
                .find_map(|line| {
                    let mut fields = line.split_whitespace();
                    (fields.next() == Some(name)).then(|| fields.next()?.parse().ok())
                })
                .flatten()
                .with_context(|| format!("no {name} in nstat's output"))
        };
        let by_command = switches_by_command()?;
        let machine = machine_ticks()?;
        // The proxy's time near the end: the nearest to the run.
        let (user_ticks, system_ticks) = crate::bench_l7::cpu_times(pid)?;
        Ok(RunFacts {
            user_ticks,
            system_ticks,
            voluntary_switches,
            involuntary_switches,
            segments_in: counter("TcpInSegs")?,
            segments_out: counter("TcpOutSegs")?,
            delayed_acks: counter("TcpExtDelayedACKs")?,
            machine,
            by_command,
            // Last: after this reading's nstat has been reaped.
            client: ChildrenUsage::now()?,
        })
    }

    /// The proxy's CPU time (user and system) and its user time alone
    /// between `before` and `self`, in microseconds per request; NaN
    /// without requests.
    pub(crate) fn cpu_us_per_request(&self, before: &RunFacts, requests: f64) -> (f64, f64) {
        if requests <= 0.0 {
            return (f64::NAN, f64::NAN);
        }
        let us = |ticks: u64| ticks as f64 / USER_HZ * 1e6 / requests;
        let user = self.user_ticks.saturating_sub(before.user_ticks);
        let system = self.system_ticks.saturating_sub(before.system_ticks);
        (us(user + system), us(user))
    }

    /// One line: what happened between `before` and `self`, per request.
    pub(crate) fn since(&self, before: &RunFacts, requests: f64) -> String {
        let per = |after: u64, before: u64| after.saturating_sub(before) as f64 / requests.max(1.0);
        // Clock ticks to microseconds per request.
        let us = |after: u64, before: u64| per(after, before) * 1e6 / USER_HZ;
        let (now, then) = (&self.machine, &before.machine);
        let idle = now.idle.saturating_sub(then.idle) as f64
            / now.all.saturating_sub(then.all).max(1) as f64;
        format!(
            "per request {:.3} voluntary and {:.3} involuntary context switches of the proxy \
             ({}), {:.3} TCP segments in and {:.3} out, {:.4} delayed ACKs; machine: {:.1} us \
             user, {:.1} us system, {:.1} us softirq, {:.2} context switches per request, idle \
             {:.1}%; client (wrk): {:.1} us user, {:.1} us system, {:.3} context switches",
            per(self.voluntary_switches, before.voluntary_switches),
            per(self.involuntary_switches, before.involuntary_switches),
            WATCHED
                .iter()
                .zip(self.by_command.iter().zip(&before.by_command))
                .map(|(name, (after, before))| format!("{name} {:.3}", per(*after, *before)))
                .collect::<Vec<_>>()
                .join(", "),
            per(self.segments_in, before.segments_in),
            per(self.segments_out, before.segments_out),
            per(self.delayed_acks, before.delayed_acks),
            us(now.user, then.user),
            us(now.system, then.system),
            us(now.softirq, then.softirq),
            per(now.context_switches, then.context_switches),
            idle * 100.0,
            per(self.client.user_us, before.client.user_us),
            per(self.client.system_us, before.client.system_us),
            per(self.client.switches, before.client.switches),
        )
    }
}

/// Voluntary and involuntary context switches of every thread of `pid`.
fn context_switches(pid: u32) -> anyhow::Result<(u64, u64)> {
    threads_switches(Path::new(&format!("/proc/{pid}")))
}

/// Context switches (voluntary and involuntary together) of every thread
/// of every process named in [`WATCHED`] (`ksoftirqd/0` counts as
/// `ksoftirqd`).
fn switches_by_command() -> anyhow::Result<[u64; WATCHED.len()]> {
    let mut totals = [0; WATCHED.len()];
    for process in std::fs::read_dir("/proc")? {
        let path = process?.path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        let name = comm.trim().split('/').next().unwrap_or("");
        let Some(index) = WATCHED.iter().position(|w| *w == name) else {
            continue;
        };
        // A process that ended since the listing counts nothing.
        if let Ok((voluntary, involuntary)) = threads_switches(&path) {
            totals[index] += voluntary + involuntary;
        }
    }
    Ok(totals)
}

/// Voluntary and involuntary context switches of every thread of the
/// process at `process` (a /proc/PID directory).
fn threads_switches(process: &Path) -> anyhow::Result<(u64, u64)> {
    let mut total = (0, 0);
    for task in std::fs::read_dir(process.join("task"))? {
        // A thread that ended since the listing has nothing left to count.
        let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
            continue;
        };
        for line in status.lines() {
            let count = |rest: &str| rest.trim().parse::<u64>().unwrap_or(0);
            if let Some(rest) = line.strip_prefix("voluntary_ctxt_switches:") {
                total.0 += count(rest);
            } else if let Some(rest) = line.strip_prefix("nonvoluntary_ctxt_switches:") {
                total.1 += count(rest);
            }
        }
    }
    Ok(total)
}

/// The machine's CPU ticks by kind and its context switches, from
/// /proc/stat.
fn machine_ticks() -> anyhow::Result<MachineTicks> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .context("empty /proc/stat")?
        .split_whitespace()
        .skip(1)
        .filter_map(|field| field.parse().ok())
        .collect();
    let tick = |i: usize| ticks.get(i).copied().unwrap_or(0);
    let context_switches = stat
        .lines()
        .find_map(|line| line.strip_prefix("ctxt "))
        .and_then(|count| count.trim().parse().ok())
        .context("no ctxt in /proc/stat")?;
    // user nice system idle iowait irq softirq steal (guest time is
    // already in user).
    Ok(MachineTicks {
        user: tick(0) + tick(1),
        system: tick(2),
        softirq: tick(6),
        idle: tick(3) + tick(4),
        all: ticks.iter().take(8).sum(),
        context_switches,
    })
}
