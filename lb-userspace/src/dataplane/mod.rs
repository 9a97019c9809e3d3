//! The data plane from userspace: loading the XDP object and pinning its
//! maps (`loader`), the desired state computed from configuration, health
//! and neighbours (`desired`), the map writes that make the kernel match it
//! (`programmer`, `maglev`), the collector of dead flows (`conntrack`) and
//! the backends' MACs (`neighbour`).
pub mod conntrack;
pub mod desired;
pub mod loader;
pub mod maglev;
pub mod neighbour;
pub mod programmer;
pub mod resolver;
pub mod settings;

pub use conntrack::{collect, monotonic_now_ns};
pub use loader::{
    embedded_object, ensure_bpffs, pin_dir, pinned_layout_matches, Dataplane, DataplaneError,
    LbMaps, MapSizes, BPFFS_ROOT, LINK_PIN, MAIN_PROGRAM, PASS_PROGRAM,
};
pub use maglev::{build_table, MaglevBackend};
pub use programmer::{
    map_address, BackendState, DesiredBackend, DesiredService, Programmer, Tunables,
};
