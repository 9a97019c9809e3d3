//! What a bench-l7 keep-alive run cost, per request: the proxy's CPU time
//! (and its user-space share), and besides it the proxy's context
//! switches, the load balancer namespace's TCP segments and the machine's
//! idle time. Two proxies that spend different kernel time on the same
//! requests differ in one of these (session 14: the wire was the same for
//! lbd and HAProxy, two segments in and two out per request, and the proxy
//! that ran longer per request was preempted more often); the bench prints
//! them beside each run's rate.
use anyhow::Context;
use lb_tests::topology::DsrLab;

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
    idle_ticks: u64,
    all_ticks: u64,
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
        let (idle_ticks, all_ticks) = machine_ticks()?;
        // Last: the nearest to the run it is read for.
        let (user_ticks, system_ticks) = crate::bench_l7::cpu_times(pid)?;
        Ok(RunFacts {
            user_ticks,
            system_ticks,
            voluntary_switches,
            involuntary_switches,
            segments_in: counter("TcpInSegs")?,
            segments_out: counter("TcpOutSegs")?,
            delayed_acks: counter("TcpExtDelayedACKs")?,
            idle_ticks,
            all_ticks,
        })
    }

    /// The proxy's CPU time (user and system) and its user time alone
    /// between `before` and `self`, in microseconds per request; NaN
    /// without requests.
    pub(crate) fn cpu_us_per_request(&self, before: &RunFacts, requests: f64) -> (f64, f64) {
        if requests <= 0.0 {
            return (f64::NAN, f64::NAN);
        }
        // USER_HZ, the unit of /proc/PID/stat, is 100 on every Linux port.
        let us = |ticks: u64| ticks as f64 / 100.0 * 1e6 / requests;
        let user = self.user_ticks.saturating_sub(before.user_ticks);
        let system = self.system_ticks.saturating_sub(before.system_ticks);
        (us(user + system), us(user))
    }

    /// One line: what happened between `before` and `self`, per request.
    pub(crate) fn since(&self, before: &RunFacts, requests: f64) -> String {
        let per = |after: u64, before: u64| after.saturating_sub(before) as f64 / requests.max(1.0);
        let idle = self.idle_ticks.saturating_sub(before.idle_ticks) as f64
            / self.all_ticks.saturating_sub(before.all_ticks).max(1) as f64;
        format!(
            "per request {:.3} voluntary and {:.3} involuntary context switches of the proxy, \
             {:.3} TCP segments in and {:.3} out, {:.4} delayed ACKs; machine idle {:.1}%",
            per(self.voluntary_switches, before.voluntary_switches),
            per(self.involuntary_switches, before.involuntary_switches),
            per(self.segments_in, before.segments_in),
            per(self.segments_out, before.segments_out),
            per(self.delayed_acks, before.delayed_acks),
            idle * 100.0,
        )
    }
}

/// Voluntary and involuntary context switches of every thread of `pid`.
fn context_switches(pid: u32) -> anyhow::Result<(u64, u64)> {
    let mut total = (0, 0);
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
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

/// The machine's idle (idle + iowait) and total CPU ticks, from /proc/stat.
fn machine_ticks() -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .context("empty /proc/stat")?
        .split_whitespace()
        .skip(1)
        .filter_map(|field| field.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is
    // already in user).
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    Ok((idle, ticks.iter().take(8).sum()))
}
