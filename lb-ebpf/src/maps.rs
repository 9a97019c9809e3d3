//! Map definitions. The sizes here are defaults: `lbd` sets the real ones
//! from its configuration when it loads the program.
use aya_ebpf::{
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray},
    macros::btf_map,
};
use lb_common::{
    BackendInfo, ConnEntry, FlowKey, GlobalCounters, LbSettings, ReverseEntry, ServiceInfo,
    ServiceKey, TrafficCounters,
};

#[btf_map(name = "lb_services")]
pub static SERVICES: HashMap<ServiceKey, ServiceInfo, 64> = HashMap::new();

#[btf_map(name = "lb_backends")]
pub static BACKENDS: Array<BackendInfo, 1024> = Array::new();

/// All services' Maglev tables, two halves per service (see `ServiceInfo`).
#[btf_map(name = "lb_maglev")]
pub static MAGLEV: Array<u32, 1024> = Array::new();

#[btf_map(name = "lb_conntrack")]
pub static CONNTRACK: LruHashMap<FlowKey, ConnEntry, 65536> = LruHashMap::new();

/// Replies of `nat`/`fullnat` flows, keyed as the backend sends them. A
/// plain hash, not an LRU: an entry may only disappear once its flow is
/// dead (`lbd` collects those), or `fullnat` could hand its port to a
/// second live flow.
#[btf_map(name = "lb_nat_reverse")]
pub static NAT_REVERSE: HashMap<FlowKey, ReverseEntry, 65536> = HashMap::new();

#[btf_map(name = "lb_svc_stats")]
pub static SERVICE_STATS: PerCpuArray<TrafficCounters, 64> = PerCpuArray::new();

#[btf_map(name = "lb_backend_stats")]
pub static BACKEND_STATS: PerCpuArray<TrafficCounters, 1024> = PerCpuArray::new();

#[btf_map(name = "lb_global_stats")]
pub static GLOBAL_STATS: PerCpuArray<GlobalCounters, 1> = PerCpuArray::new();

/// Per-CPU scratch space: the parsed packet and the larger temporaries,
/// which do not fit on the 512-byte BPF stack of a call chain.
#[btf_map(name = "lb_scratch")]
pub static SCRATCH: PerCpuArray<Scratch, 1> = PerCpuArray::new();

pub struct Scratch {
    pub packet: crate::parse::Packet,
    /// The backend chosen for a `nat`/`fullnat` packet.
    pub choice: crate::lookup::BackendChoice,
    /// Key and value of a `lb_nat_reverse` update.
    pub reverse_key: FlowKey,
    pub reverse: ReverseEntry,
    pub fib: aya_ebpf::bindings::bpf_fib_lookup,
}

/// This CPU's scratch space.
#[inline(always)]
pub fn scratch() -> Option<&'static mut Scratch> {
    let scratch = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU value, used by one program invocation at a time
    // (XDP does not nest on a CPU).
    Some(unsafe { &mut *scratch })
}

#[btf_map(name = "lb_settings")]
pub static SETTINGS: Array<LbSettings, 1> = Array::new();
