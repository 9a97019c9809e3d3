//! Map definitions. The sizes here are defaults: `lbd` sets the real ones
//! from its configuration when it loads the program.
use aya_ebpf::{
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray},
    macros::btf_map,
};
use lb_common::{
    BackendInfo, ConnEntry, FlowKey, GlobalCounters, LbSettings, ServiceInfo, ServiceKey,
    TrafficCounters,
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

#[btf_map(name = "lb_svc_stats")]
pub static SERVICE_STATS: PerCpuArray<TrafficCounters, 64> = PerCpuArray::new();

#[btf_map(name = "lb_backend_stats")]
pub static BACKEND_STATS: PerCpuArray<TrafficCounters, 1024> = PerCpuArray::new();

#[btf_map(name = "lb_global_stats")]
pub static GLOBAL_STATS: PerCpuArray<GlobalCounters, 1> = PerCpuArray::new();

#[btf_map(name = "lb_settings")]
pub static SETTINGS: Array<LbSettings, 1> = Array::new();
