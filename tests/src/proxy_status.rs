//! A frontend or backend of the proxy's status, by name: what the proxy
//! tests assert their counters on. Panics (with the names there are) when
//! it is missing, since the tests configured it.
use lbd::proxy::status::{BackendStatus, FrontendStatus, ProxyStatus};

pub fn frontend(status: ProxyStatus, name: &str) -> FrontendStatus {
    let names: Vec<String> = status.frontends.iter().map(|f| f.name.clone()).collect();
    status
        .frontends
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no frontend {name} among {names:?}"))
}

pub fn backend(status: ProxyStatus, name: &str) -> BackendStatus {
    let names: Vec<String> = status.backends.iter().map(|b| b.name.clone()).collect();
    status
        .backends
        .into_iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("no backend {name} among {names:?}"))
}
