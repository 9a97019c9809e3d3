//! Loading the XDP program, its maps, pinning and attaching.
use aya::{
    maps::{Array, HashMap, Map, MapData, PerCpuArray},
    programs::{links::FdLink, Xdp, XdpMode},
    Ebpf, EbpfLoader,
};
use lb_common::{
    map_names, BackendInfo, ConnEntry, FlowKey, GlobalCounters, LbSettings, ReverseEntry,
    ServiceInfo, ServiceKey, TrafficCounters,
};
use std::path::{Path, PathBuf};

/// Root of the BPF filesystem; each instance pins under `<root>/<instance>`.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("the XDP object {0} does not exist: run `cargo xtask build-ebpf`, then rebuild lbd")]
    ObjectMissing(&'static str),
    #[error(
        "the XDP object {0} is older than its sources (lb-ebpf, lb-common): run `cargo xtask build-ebpf`, then rebuild lbd"
    )]
    ObjectStale(&'static str),
    #[error("loading the XDP object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("XDP program {name}: {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("map {0} is missing from the XDP object")]
    MapMissing(&'static str),
    #[error("pinning {path}: {source}")]
    Pin {
        path: PathBuf,
        source: aya::pin::PinError,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The XDP object embedded at build time.
pub fn embedded_object() -> Result<&'static [u8], DataplaneError> {
    #[cfg(lb_ebpf_state = "embedded")]
    {
        Ok(aya::include_bytes_aligned!(env!("LB_EBPF_OBJECT_PATH")))
    }
    #[cfg(lb_ebpf_state = "stale")]
    {
        Err(DataplaneError::ObjectStale(env!("LB_EBPF_OBJECT_PATH")))
    }
    #[cfg(lb_ebpf_state = "missing")]
    {
        Err(DataplaneError::ObjectMissing(env!("LB_EBPF_OBJECT_PATH")))
    }
}

/// Map sizes, decided by the configuration at load time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapSizes {
    pub max_services: u32,
    pub max_backends: u32,
    pub ring_size: u32,
    pub conntrack_entries: u32,
}

impl MapSizes {
    pub fn from_config(instance: &crate::config::InstanceConfig) -> Self {
        MapSizes {
            max_services: instance.max_services,
            max_backends: instance.max_backends,
            ring_size: instance.maglev_table_size,
            conntrack_entries: instance.conntrack_entries,
        }
    }
}

pub const MAIN_PROGRAM: &str = "lb_xdp";
pub const PASS_PROGRAM: &str = "lb_pass";

/// A loaded (verified) XDP object.
pub struct Dataplane {
    ebpf: Ebpf,
}

impl Dataplane {
    /// Loads `object` with the given map sizes and loads both programs into
    /// the kernel (runs the verifier); nothing is attached yet.
    pub fn load(object: &[u8], sizes: &MapSizes) -> Result<Self, DataplaneError> {
        Self::load_with_pins(object, sizes, None)
    }

    /// As [`Dataplane::load`], with every map pinned under `pin_dir`: maps
    /// already pinned there are reused (their contents survive), missing
    /// ones are created and pinned. Check [`pinned_layout_matches`] first.
    pub fn load_with_pins(
        object: &[u8],
        sizes: &MapSizes,
        pin_dir: Option<&Path>,
    ) -> Result<Self, DataplaneError> {
        let maglev_entries = sizes.max_services * 2 * sizes.ring_size;
        let paths: Vec<(&'static str, PathBuf)> = pin_dir
            .map(|dir| map_names::ALL.iter().map(|n| (*n, dir.join(n))).collect())
            .unwrap_or_default();
        let mut loader = EbpfLoader::new();
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader
            .map_max_entries(map_names::SERVICES, sizes.max_services)
            .map_max_entries(map_names::SERVICE_STATS, sizes.max_services)
            .map_max_entries(map_names::BACKENDS, sizes.max_backends)
            .map_max_entries(map_names::BACKEND_STATS, sizes.max_backends)
            .map_max_entries(map_names::MAGLEV, maglev_entries)
            .map_max_entries(map_names::CONNTRACK, sizes.conntrack_entries)
            .map_max_entries(map_names::NAT_REVERSE, sizes.conntrack_entries)
            .load(object)?;
        for name in [MAIN_PROGRAM, PASS_PROGRAM] {
            program(&mut ebpf, name)?
                .load()
                .map_err(|source| DataplaneError::Program { name, source })?;
        }
        // aya 0.14's `EbpfLoader::new()` parses the kernel's BTF whatever
        // `.btf()` says later (lb-ebpf has no CO-RE relocation, so it is not
        // needed). Start-up sets lbd's peak RSS (bench-l7: "peak RSS before
        // traffic" equals the peak) and this parse is the suspect; avoiding
        // it takes a change in aya.
        // The loader parsed the kernel's BTF (5 MB+ of types, freed now):
        // give that heap back to the system instead of keeping it resident.
        drop(loader);
        // SAFETY: malloc_trim only releases free heap memory.
        unsafe { libc::malloc_trim(0) };
        Ok(Dataplane { ebpf })
    }

    pub fn program(&mut self, name: &'static str) -> Result<&mut Xdp, DataplaneError> {
        program(&mut self.ebpf, name)
    }

    /// Takes the maps out of the object, pinning each under `pin_dir` first
    /// when given.
    pub fn take_maps(&mut self, pin_dir: Option<&Path>) -> Result<LbMaps, DataplaneError> {
        let mut take = |name: &'static str| -> Result<Map, DataplaneError> {
            let map = self
                .ebpf
                .take_map(name)
                .ok_or(DataplaneError::MapMissing(name))?;
            if let Some(dir) = pin_dir {
                let path = dir.join(name);
                map.pin(&path)
                    .map_err(|source| DataplaneError::Pin { path, source })?;
            }
            Ok(map)
        };
        LbMaps::from_maps(&mut take)
    }

    /// Puts the main program into an XDP link a previous lbd pinned at
    /// `path`, atomically (no moment without a program). The link stays
    /// pinned: only a teardown that was asked for removes it.
    pub fn replace_pinned(&mut self, path: &Path) -> Result<FdLink, DataplaneError> {
        let pinned = aya::programs::links::PinnedLink::from_pin(path).map_err(|e| {
            DataplaneError::Io(std::io::Error::other(format!(
                "opening {}: {e}",
                path.display()
            )))
        })?;
        let link = aya::programs::xdp::XdpLink::try_from(FdLink::from(pinned))
            .map_err(|e| DataplaneError::Io(std::io::Error::other(e.to_string())))?;
        let program = self.program(MAIN_PROGRAM)?;
        let id = program
            .attach_to_link(link)
            .map_err(|source| DataplaneError::Program {
                name: MAIN_PROGRAM,
                source,
            })?;
        let link = program
            .take_link(id)
            .map_err(|source| DataplaneError::Program {
                name: MAIN_PROGRAM,
                source,
            })?;
        FdLink::try_from(link).map_err(|e| DataplaneError::Io(std::io::Error::other(e.to_string())))
    }

    /// Attaches the main program to `interface`. Returns the link (detached
    /// when dropped) and the mode that was used.
    ///
    /// A link unpinned just before (pins of another layout, removed) is
    /// released by the kernel asynchronously, after the unlink returned:
    /// until then the interface still has a program and the attach fails
    /// with EEXIST. Such an attach is retried for up to [`ATTACH_BUSY_WAIT`].
    pub fn attach(&mut self, interface: &str, mode: XdpMode) -> Result<FdLink, DataplaneError> {
        let program = self.program(MAIN_PROGRAM)?;
        let give_up = std::time::Instant::now() + ATTACH_BUSY_WAIT;
        let link_id = loop {
            match program.attach(interface, mode) {
                Ok(link_id) => break link_id,
                Err(source) if is_busy(&source) && std::time::Instant::now() < give_up => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(source) => {
                    return Err(DataplaneError::Program {
                        name: MAIN_PROGRAM,
                        source,
                    })
                }
            }
        };
        let link = program
            .take_link(link_id)
            .map_err(|source| DataplaneError::Program {
                name: MAIN_PROGRAM,
                source,
            })?;
        FdLink::try_from(link).map_err(|e| DataplaneError::Io(std::io::Error::other(e.to_string())))
    }
}

/// How long an attach waits for a just-released program to leave the
/// interface.
const ATTACH_BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The interface already has an XDP program (EEXIST somewhere in the chain).
fn is_busy(error: &aya::programs::ProgramError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::AlreadyExists {
                return true;
            }
        }
        source = error.source();
    }
    false
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp, DataplaneError> {
    let program = ebpf.program_mut(name).ok_or(DataplaneError::Program {
        name,
        source: aya::programs::ProgramError::NotLoaded,
    })?;
    program
        .try_into()
        .map_err(|source| DataplaneError::Program { name, source })
}

/// The maps, typed.
pub struct LbMaps {
    pub services: HashMap<MapData, ServiceKey, ServiceInfo>,
    pub backends: Array<MapData, BackendInfo>,
    pub maglev: Array<MapData, u32>,
    pub conntrack: HashMap<MapData, FlowKey, ConnEntry>,
    pub nat_reverse: HashMap<MapData, FlowKey, ReverseEntry>,
    pub service_stats: PerCpuArray<MapData, TrafficCounters>,
    pub backend_stats: PerCpuArray<MapData, TrafficCounters>,
    pub global_stats: PerCpuArray<MapData, GlobalCounters>,
    pub settings: Array<MapData, LbSettings>,
}

impl LbMaps {
    /// Opens the maps an instance pinned under `dir`.
    pub fn from_pins(dir: &Path) -> Result<Self, DataplaneError> {
        let mut open = |name: &'static str| -> Result<Map, DataplaneError> {
            let data = MapData::from_pin(dir.join(name))
                .map_err(|source| DataplaneError::Map { name, source })?;
            Map::from_map_data(data).map_err(|source| DataplaneError::Map { name, source })
        };
        LbMaps::from_maps(&mut open)
    }

    fn from_maps(
        get: &mut dyn FnMut(&'static str) -> Result<Map, DataplaneError>,
    ) -> Result<Self, DataplaneError> {
        fn typed<T: TryFrom<Map, Error = aya::maps::MapError>>(
            name: &'static str,
            get: &mut dyn FnMut(&'static str) -> Result<Map, DataplaneError>,
        ) -> Result<T, DataplaneError> {
            T::try_from(get(name)?).map_err(|source| DataplaneError::Map { name, source })
        }
        Ok(LbMaps {
            services: typed(map_names::SERVICES, get)?,
            backends: typed(map_names::BACKENDS, get)?,
            maglev: typed(map_names::MAGLEV, get)?,
            conntrack: typed(map_names::CONNTRACK, get)?,
            nat_reverse: typed(map_names::NAT_REVERSE, get)?,
            service_stats: typed(map_names::SERVICE_STATS, get)?,
            backend_stats: typed(map_names::BACKEND_STATS, get)?,
            global_stats: typed(map_names::GLOBAL_STATS, get)?,
            settings: typed(map_names::SETTINGS, get)?,
        })
    }
}

/// Name of the pinned XDP link a stopping lbd leaves for its successor.
pub const LINK_PIN: &str = "lb_link";

/// Why pinned maps cannot be re-adopted, if they cannot: a different map
/// type, key or value size (a new layout), or different sizes (a changed
/// `[instance]`). `Ok(())` when all of them match.
pub fn pinned_layout_matches(dir: &Path, sizes: &MapSizes) -> Result<(), String> {
    use std::mem::size_of;
    let maglev = sizes.max_services * 2 * sizes.ring_size;
    let expected: [(&str, u32, u32, u32); 9] = [
        (
            map_names::SERVICES,
            size_of::<ServiceKey>() as u32,
            size_of::<ServiceInfo>() as u32,
            sizes.max_services,
        ),
        (
            map_names::BACKENDS,
            4,
            size_of::<BackendInfo>() as u32,
            sizes.max_backends,
        ),
        (map_names::MAGLEV, 4, 4, maglev),
        (
            map_names::CONNTRACK,
            size_of::<FlowKey>() as u32,
            size_of::<ConnEntry>() as u32,
            sizes.conntrack_entries,
        ),
        (
            map_names::NAT_REVERSE,
            size_of::<FlowKey>() as u32,
            size_of::<ReverseEntry>() as u32,
            sizes.conntrack_entries,
        ),
        (
            map_names::SERVICE_STATS,
            4,
            size_of::<TrafficCounters>() as u32,
            sizes.max_services,
        ),
        (
            map_names::BACKEND_STATS,
            4,
            size_of::<TrafficCounters>() as u32,
            sizes.max_backends,
        ),
        (
            map_names::GLOBAL_STATS,
            4,
            size_of::<GlobalCounters>() as u32,
            1,
        ),
        (map_names::SETTINGS, 4, size_of::<LbSettings>() as u32, 1),
    ];
    for (name, key, value, entries) in expected {
        let data = MapData::from_pin(dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
        let info = data.info().map_err(|e| format!("{name}: {e}"))?;
        let found = (info.key_size(), info.value_size(), info.max_entries());
        if found != (key, value, entries) {
            return Err(format!(
                "{name} has key/value/entries {found:?}, this build needs {:?}",
                (key, value, entries)
            ));
        }
    }
    Ok(())
}

/// Where an instance pins its maps.
pub fn pin_dir(instance: &str) -> PathBuf {
    Path::new(BPFFS_ROOT).join(instance)
}

/// Mounts the BPF filesystem at [`BPFFS_ROOT`] unless one is mounted there.
pub fn ensure_bpffs() -> Result<(), DataplaneError> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let root = Path::new(BPFFS_ROOT);
    if let Ok(stat) = nix::sys::statfs::statfs(root) {
        if stat.filesystem_type().0 == BPF_FS_MAGIC {
            return Ok(());
        }
    }
    std::fs::create_dir_all(root)?;
    nix::mount::mount(
        Some("bpf"),
        root,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| std::io::Error::other(format!("mounting bpffs at {BPFFS_ROOT}: {e}")))?;
    Ok(())
}

impl super::programmer::MapWriter for LbMaps {
    type Error = aya::maps::MapError;

    fn set_settings(&mut self, settings: &LbSettings) -> Result<(), Self::Error> {
        self.settings.set(0, settings, 0)
    }
    fn set_backend(&mut self, id: u32, info: &BackendInfo) -> Result<(), Self::Error> {
        self.backends.set(id, info, 0)
    }
    fn set_maglev_slot(&mut self, index: u32, backend_id: u32) -> Result<(), Self::Error> {
        self.maglev.set(index, backend_id, 0)
    }
    fn set_service(&mut self, key: &ServiceKey, info: &ServiceInfo) -> Result<(), Self::Error> {
        self.services.insert(key, info, 0)
    }
    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), Self::Error> {
        self.services.remove(key)
    }
    fn reset_service_stats(&mut self, id: u32) -> Result<(), Self::Error> {
        self.service_stats.set(id, zeroed_per_cpu()?, 0)
    }
    fn reset_backend_stats(&mut self, id: u32) -> Result<(), Self::Error> {
        self.backend_stats.set(id, zeroed_per_cpu()?, 0)
    }
}

fn zeroed_per_cpu<T: aya::Pod + Default + Clone>(
) -> Result<aya::maps::PerCpuValues<T>, aya::maps::MapError> {
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| {
        aya::maps::MapError::SyscallError(aya::sys::SyscallError {
            call: "nr_cpus",
            io_error: e,
        })
    })?;
    aya::maps::PerCpuValues::try_from(vec![T::default(); cpus]).map_err(|e| {
        aya::maps::MapError::SyscallError(aya::sys::SyscallError {
            call: "per_cpu_values",
            io_error: e,
        })
    })
}
