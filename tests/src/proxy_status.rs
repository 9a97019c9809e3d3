//! A frontend or backend of the proxy's status, by name: what the proxy
//! tests assert their counters on. Panics (with the names there are) when
//! it is missing, since the tests configured it.
use lbd::proxy::status::{BackendStatus, FrontendStatus, ProxyStatus};

pub fn frontend(status: ProxyStatus, name: &str) -> FrontendStatus {
    named(status.frontends, name, "frontend", |f| &f.name)
}

pub fn backend(status: ProxyStatus, name: &str) -> BackendStatus {
    named(status.backends, name, "backend", |b| &b.name)
}

fn named<T>(items: Vec<T>, name: &str, what: &str, name_of: fn(&T) -> &String) -> T {
    let names: Vec<&String> = items.iter().map(name_of).collect();
    let Some(index) = names.iter().position(|n| *n == name) else {
        panic!("no {what} {name} among {names:?}");
    };
    items.into_iter().nth(index).expect("the index was found")
}
