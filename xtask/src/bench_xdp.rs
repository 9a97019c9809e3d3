//! The XDP program's cost per packet, every path timed with fresh frames.
//!
//! BPF_PROG_TEST_RUN with `repeat` hands each run the previous run's
//! output, so a rewriting path would time something else after the first
//! run. Each batch therefore runs `lb_restore` (lb-ebpf/src/bench_restore.rs):
//! it copies the fresh frame back and tail-calls `lb_xdp`. The same wrapper
//! tail-calling `lb_pass` (which only returns XDP_PASS) is timed in the same
//! round and subtracted, so a row is what `lb_xdp` itself costs. After every
//! batch the counters must show that every run took the row's path (and,
//! for a SYN, created a new flow; for any other row, none). A row is the
//! median of [`ROUNDS`] rounds, with the lowest and highest beside it.
use anyhow::{bail, Context};
use aya::{
    maps::{Array, MapData, ProgramArray},
    programs::Xdp,
    Ebpf,
};
use etherparse::PacketBuilder;
use lb_common::{Outcome, MODE_DSR, MODE_FULLNAT, MODE_NAT, PROTO_TCP};
use lb_tests::{
    fixture::{
        backend, backend_mac, client, lb_addr, vip, Harness, CLIENT_MAC, LB_MAC, NAT_TCP_PORT,
    },
    predict::{flow_key, maglev_choice_for},
};
use lbd::dataplane::{MAIN_PROGRAM, PASS_PROGRAM};
use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    process::Command,
};

/// Rounds per row; each round times every row of a group once.
const ROUNDS: usize = 21;
/// Runs per batch. A SYN batch stays below 65,536 (the wrapper stamps a
/// 16-bit counter into the source port) and starts on an empty table.
const REPEAT: u32 = 100_000;
const REPEAT_SYN: u32 = 30_000;
/// Connection-table size, as in Katran's own configuration.
const CONNTRACK_ENTRIES: u32 = 262_144;
const BACKENDS: usize = 3;
/// Size of `lb_bench_frame`'s value (see bench_restore.rs).
const FRAME_VALUE: usize = 16 + 256;

/// One timed row.
pub struct XdpRow {
    pub name: String,
    /// Median, lowest and highest ns/packet over the rounds.
    pub median: f64,
    pub low: f64,
    pub high: f64,
    /// Katran's figure for the same path (issue 11), where there is one.
    pub katran: Option<f64>,
}

/// Instruction counts of the loaded `lb_xdp`, from bpftool.
pub struct ProgramSize {
    pub xlated_insns: u64,
    pub jited_bytes: u64,
    pub verified_insns: u64,
    pub functions: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// A new flow: every run stamps a new source port, table emptied first.
    Syn,
    /// A packet of an existing flow (primed once before timing).
    Hit,
    /// Not for a service.
    Pass,
}

struct Case {
    name: String,
    frame: Vec<u8>,
    outcome: Outcome,
    kind: Kind,
    /// Frames that create the flow before timing (run once each).
    prime: Vec<Vec<u8>>,
    katran: Option<f64>,
}

fn tcp(src: SocketAddr, dst: SocketAddr, syn: bool, macs: ([u8; 6], [u8; 6])) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(macs.0, macs.1);
    let ip = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => unreachable!("one family per frame"),
    };
    let tcp = ip.tcp(src.port(), dst.port(), 1000, 64240);
    let tcp = if syn { tcp.syn() } else { tcp.ack(1) };
    let mut out = Vec::new();
    tcp.write(&mut out, &[]).expect("valid frame");
    out
}

fn udp(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC);
    let ip = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => unreachable!("one family per frame"),
    };
    let mut out = Vec::new();
    ip.udp(src.port(), dst.port())
        .write(&mut out, b"query")
        .expect("valid frame");
    out
}

fn family(v6: bool) -> &'static str {
    if v6 {
        "IPv6"
    } else {
        "IPv4"
    }
}

/// The dsr rows: SYN, ACK, UDP, pass (and ARP over IPv4), with Katran's
/// figures beside the IPv4 ones.
fn dsr_cases(v6: bool) -> Vec<Case> {
    let at = |ip: IpAddr, port| SocketAddr::new(ip, port);
    let to_lb = (CLIENT_MAC, LB_MAC);
    let other: IpAddr = if v6 {
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x50).into()
    } else {
        Ipv4Addr::new(198, 18, 0, 50).into()
    };
    // SYNs come from another client: their stamped ports must not meet
    // the primed flows.
    let syn_client: IpAddr = if v6 {
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3).into()
    } else {
        Ipv4Addr::new(198, 18, 0, 3).into()
    };
    let fam = family(v6);
    let katran = |figure: f64| if v6 { None } else { Some(figure) };
    let ack = tcp(at(client(v6), 40001), at(vip(v6), 80), false, to_lb);
    let query = udp(at(client(v6), 41000), at(vip(v6), 53));
    let mut cases = vec![
        Case {
            name: format!("dsr {fam} TCP SYN (new flow)"),
            frame: tcp(at(syn_client, 40000), at(vip(v6), 80), true, to_lb),
            outcome: Outcome::TxDsr,
            kind: Kind::Syn,
            prime: Vec::new(),
            katran: katran(649.0),
        },
        Case {
            name: format!("dsr {fam} TCP ACK (connection-table hit)"),
            frame: ack.clone(),
            outcome: Outcome::TxDsr,
            kind: Kind::Hit,
            prime: vec![ack],
            katran: katran(126.0),
        },
        Case {
            name: format!("dsr {fam} UDP (connection-table hit)"),
            frame: query.clone(),
            outcome: Outcome::TxDsr,
            kind: Kind::Hit,
            prime: vec![query],
            katran: katran(168.0),
        },
        Case {
            name: format!("{fam} TCP to a non-VIP address (pass)"),
            frame: tcp(at(client(v6), 40002), at(other, 80), false, to_lb),
            outcome: Outcome::PassNotService,
            kind: Kind::Pass,
            prime: Vec::new(),
            katran: katran(57.0),
        },
    ];
    if !v6 {
        cases.push(Case {
            name: "ARP (pass)".into(),
            frame: lb_tests::fixture::arp_request_for_vip(),
            outcome: Outcome::PassNotIp,
            kind: Kind::Pass,
            prime: Vec::new(),
            katran: Some(3.0),
        });
    }
    cases
}

/// `nat`/`fullnat`: a packet of an established TCP flow to the backend, and
/// the backend's reply to the client.
fn nat_cases(harness: &mut Harness, mode: u8, v6: bool) -> anyhow::Result<Vec<Case>> {
    let fullnat = mode == MODE_FULLNAT;
    let mode_name = if fullnat { "fullnat" } else { "nat" };
    let fam = family(v6);
    let client_at = SocketAddr::new(client(v6), 40000);
    let vip_at = SocketAddr::new(vip(v6), 80);
    let backends: Vec<SocketAddr> = (0..BACKENDS)
        .map(|i| SocketAddr::new(backend(v6, i), NAT_TCP_PORT))
        .collect();
    let chosen = maglev_choice_for(
        client(v6),
        40000,
        vip(v6),
        80,
        PROTO_TCP,
        &backends,
        lb_tests::fixture::RING,
    );
    let forward = tcp(client_at, vip_at, false, (CLIENT_MAC, LB_MAC));
    harness.run(&tcp(client_at, vip_at, true, (CLIENT_MAC, LB_MAC)))?;
    let entry = harness
        .maps
        .conntrack
        .get(&flow_key(client(v6), 40000, vip(v6), 80, PROTO_TCP), 0)
        .context("the primed flow's entry")?;
    let reply_to = if fullnat {
        SocketAddr::new(lb_addr(v6), entry.snat_port)
    } else {
        client_at
    };
    let reply = tcp(
        backends[chosen],
        reply_to,
        false,
        (backend_mac(chosen), LB_MAC),
    );
    Ok(vec![
        Case {
            name: format!("{mode_name} {fam} TCP to the backend (connection-table hit)"),
            frame: forward,
            outcome: Outcome::TxNat,
            kind: Kind::Hit,
            prime: Vec::new(),
            katran: None,
        },
        Case {
            name: format!("{mode_name} {fam} TCP reply to the client"),
            frame: reply,
            outcome: Outcome::TxNatReply,
            kind: Kind::Hit,
            prime: Vec::new(),
            katran: None,
        },
    ])
}

/// The restore wrapper, loaded from its own object.
struct Restore {
    ebpf: Ebpf,
}

impl Restore {
    fn load() -> anyhow::Result<Self> {
        let path =
            crate::workspace_root().join("target/bpfel-unknown-none/release/lb-bench-restore");
        let object = std::fs::read(&path).with_context(|| path.display().to_string())?;
        let mut ebpf = Ebpf::load(&object)?;
        let program: &mut Xdp = ebpf
            .program_mut("lb_restore")
            .context("lb_restore")?
            .try_into()?;
        program.load()?;
        Ok(Restore { ebpf })
    }

    /// The frame to restore before every run; `stamp`: offset of the
    /// 16-bit counter (0: none).
    fn set_frame(&mut self, frame: &[u8], stamp: usize) -> anyhow::Result<()> {
        if frame.len() > FRAME_VALUE - 16 {
            bail!("frame of {} bytes is too long to restore", frame.len());
        }
        let mut value = [0u8; FRAME_VALUE];
        value[0..4].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        value[4..8].copy_from_slice(&(stamp as u32).to_ne_bytes());
        value[16..16 + frame.len()].copy_from_slice(frame);
        let mut map: Array<&mut MapData, [u8; FRAME_VALUE]> =
            Array::try_from(self.ebpf.map_mut("lb_bench_frame").context("frame map")?)?;
        map.set(0, value, 0)?;
        Ok(())
    }

    /// Makes `program` the one the wrapper tail-calls.
    fn jump_to(&mut self, program: &Xdp) -> anyhow::Result<()> {
        let mut jump: ProgramArray<&mut MapData> =
            ProgramArray::try_from(self.ebpf.map_mut("lb_bench_jump").context("jump map")?)?;
        jump.set(0, program.fd()?, 0)?;
        Ok(())
    }

    fn program(&self) -> anyhow::Result<&Xdp> {
        Ok(self
            .ebpf
            .program("lb_restore")
            .context("lb_restore")?
            .try_into()?)
    }
}

/// One harness (mode and family), its rows and its restore wrapper.
struct Group {
    harness: Harness,
    cases: Vec<Case>,
    restore: Restore,
    samples: Vec<Vec<f64>>,
}

impl Group {
    fn new(mut harness: Harness, cases: Vec<Case>) -> anyhow::Result<Self> {
        for frame in cases.iter().flat_map(|c| &c.prime) {
            harness.run(frame)?;
        }
        Ok(Group {
            harness,
            samples: vec![Vec::new(); cases.len()],
            cases,
            restore: Restore::load()?,
        })
    }

    /// Times every row once (one round), wrapper subtracted.
    fn round(&mut self) -> anyhow::Result<()> {
        let harness = &mut self.harness;
        let restore = &mut self.restore;
        for (case, samples) in self.cases.iter().zip(&mut self.samples) {
            let syn = case.kind == Kind::Syn;
            let repeat = if syn { REPEAT_SYN } else { REPEAT };
            // The source port: after the Ethernet and IP headers.
            let ip_header = if case.frame[12..14] == [0x86, 0xdd] {
                40
            } else {
                20
            };
            restore.set_frame(&case.frame, if syn { 14 + ip_header } else { 0 })?;
            restore.jump_to(harness.dataplane.program(PASS_PROGRAM)?)?;
            let (action, empty) = harness.time_program(restore.program()?, &case.frame, repeat)?;
            if action != lb_tests::fixture::XDP_PASS {
                bail!("{}: the wrapper alone returned {action}", case.name);
            }
            if syn {
                clear_flows(harness)?;
                // The other rows' flows again.
                for frame in self.cases.iter().flat_map(|c| &c.prime) {
                    harness.run(frame)?;
                }
            }
            let mut before = harness.global()?;
            let new_before = new_flows(harness)?;
            restore.jump_to(harness.dataplane.program(MAIN_PROGRAM)?)?;
            let (_, took) = harness.time_program(restore.program()?, &case.frame, repeat)?;
            let mut after = harness.global()?;
            let all = counted_runs(&after) - counted_runs(&before);
            let counted = *after.counter_mut(case.outcome) - *before.counter_mut(case.outcome);
            if counted != u64::from(repeat) || all != u64::from(repeat) {
                bail!(
                    "{}: {counted} of {repeat} runs counted {:?} ({all} counted in all)",
                    case.name,
                    case.outcome
                );
            }
            let created = new_flows(harness)? - new_before;
            let want = if syn { u64::from(repeat) } else { 0 };
            if created != want {
                bail!("{}: {created} new flows in {repeat} runs", case.name);
            }
            samples.push(took.as_nanos() as f64 - empty.as_nanos() as f64);
        }
        Ok(())
    }
}

/// Runs counted under any outcome (each run counts exactly one).
fn counted_runs(counters: &lb_common::GlobalCounters) -> u64 {
    counters.fields().iter().map(|(_, n)| n).sum()
}

/// New flows counted by every service of the harness.
fn new_flows(harness: &Harness) -> anyhow::Result<u64> {
    let mut total = 0;
    for service in &harness.programmer.snapshot().services {
        total += harness.service_counters(service.id)?.new_flows;
    }
    Ok(total)
}

/// Empties the connection and reply tables, so that every SYN of the next
/// batch is a new flow.
fn clear_flows(harness: &mut Harness) -> anyhow::Result<()> {
    let keys: Vec<_> = harness.maps.conntrack.keys().collect::<Result<_, _>>()?;
    for key in keys {
        harness.maps.conntrack.remove(&key)?;
    }
    let keys: Vec<_> = harness.maps.nat_reverse.keys().collect::<Result<_, _>>()?;
    for key in keys {
        harness.maps.nat_reverse.remove(&key)?;
    }
    Ok(())
}

/// Every row, and `lb_xdp`'s size as the kernel loaded it. The rounds go
/// over every group in turn, so that a burst of load elsewhere on the
/// machine spreads over all rows instead of landing on a few.
pub fn measure() -> anyhow::Result<(Vec<XdpRow>, ProgramSize)> {
    let mut groups = Vec::new();
    let mut size = None;
    for (mode, v6) in [
        (MODE_DSR, false),
        (MODE_DSR, true),
        (MODE_NAT, false),
        (MODE_NAT, true),
        (MODE_FULLNAT, false),
        (MODE_FULLNAT, true),
    ] {
        let mut harness = Harness::with_conntrack(mode, v6, BACKENDS, CONNTRACK_ENTRIES)?;
        if size.is_none() {
            size = Some(program_size(harness.dataplane.program(MAIN_PROGRAM)?)?);
        }
        let cases = if mode == MODE_DSR {
            dsr_cases(v6)
        } else {
            nat_cases(&mut harness, mode, v6)?
        };
        groups.push(Group::new(harness, cases)?);
    }
    for round in 0..ROUNDS {
        println!("bench: XDP round {} of {ROUNDS}", round + 1);
        for group in &mut groups {
            group.round()?;
        }
    }
    let mut rows = Vec::new();
    for group in groups {
        for (case, mut values) in group.cases.into_iter().zip(group.samples) {
            values.sort_by(f64::total_cmp);
            rows.push(XdpRow {
                name: case.name,
                median: values[values.len() / 2],
                low: values[0],
                high: values[values.len() - 1],
                katran: case.katran,
            });
        }
    }
    Ok((rows, size.context("no harness")?))
}

/// bpftool's view of a loaded program: xlated and jited size and the
/// number of BPF functions (from its BTF); the verified instruction count
/// from the kernel's program info (bpftool 7.1 does not print it).
fn program_size(program: &Xdp) -> anyhow::Result<ProgramSize> {
    let info = program.info()?;
    let id = info.id().to_string();
    let show = Command::new("bpftool")
        .args(["--json", "prog", "show", "id", &id])
        .output()
        .context("bpftool")?;
    let json: serde_json::Value = serde_json::from_slice(&show.stdout).with_context(|| {
        format!(
            "bpftool prog show: {}",
            String::from_utf8_lossy(&show.stderr)
        )
    })?;
    let number = |field: &str| {
        json[field]
            .as_u64()
            .with_context(|| format!("bpftool: {field}"))
    };
    let dump = Command::new("bpftool")
        .args(["prog", "dump", "xlated", "id", &id])
        .output()
        .context("bpftool")?;
    // Each BPF function starts with its BTF signature, e.g. `int lb_xdp(...):`.
    let functions = String::from_utf8_lossy(&dump.stdout)
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with(';') && l.ends_with("):"))
        .count();
    Ok(ProgramSize {
        xlated_insns: number("bytes_xlated")? / 8,
        jited_bytes: number("bytes_jited")?,
        verified_insns: info
            .verified_instruction_count()
            .map(u64::from)
            .context("verified instruction count")?,
        functions,
    })
}

/// The rows and the size as markdown.
pub fn render(rows: &[XdpRow], size: &ProgramSize) -> String {
    let mut out = String::from(
        "| path | ns/packet (median) | range of rounds | Katran (issue 11) |\n|---|---:|---:|---:|\n",
    );
    for row in rows {
        let katran = row.katran.map_or_else(String::new, |k| format!("{k:.0}"));
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0}-{:.0} | {katran} |",
            row.name, row.median, row.low, row.high
        );
    }
    let _ = writeln!(
        out,
        "\n`lb_xdp` as loaded (bpftool): {} xlated instructions, {} bytes jited, {} instructions verified, {} BPF functions.",
        size.xlated_insns, size.jited_bytes, size.verified_insns, size.functions
    );
    out
}
