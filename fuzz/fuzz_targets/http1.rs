//! lbd's HTTP/1 parsers on arbitrary bytes, from either side: the first
//! byte says whether the rest came from a client (pipelined request heads
//! and chunked bodies) or from a server (a response head and its chunked
//! body). They must return (never panic) and keep their promises.
#![no_main]
use lbd::proxy::http::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((side, bytes)) = data.split_first() else {
        return;
    };
    if side % 2 == 0 {
        fuzzing::client_bytes(bytes);
    } else {
        fuzzing::server_bytes(bytes);
    }
});
