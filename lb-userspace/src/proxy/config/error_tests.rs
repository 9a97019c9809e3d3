//! `lbd check`'s messages for the proxy sections: one bad file per case.
use super::tests::errors;

/// Each case: a file, then the one error it must produce (a prefix:
/// "lb.toml:LINE: field: message start").
#[test]
fn errors_name_file_line_and_field() {
    let cases: &[(&str, &str)] = &[
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\ndefault_backend = \"nope\"\n",
            "lb.toml:4: frontend[0].default_backend: unknown backend \"nope\"",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"http\"\nuse_backend = [\"x if { path / }\"]\n",
            "lb.toml:5: frontend[0].use_backend[0]: unknown backend \"x\"",
        ),
        (
            "[[backend]]\nname = \"a\"\n[[backend]]\nname = \"a\"\n",
            "lb.toml:4: backend[1].name: duplicate name \"a\" (also backend[0])",
        ),
        (
            "[[backend]]\nname = \"a\"\n[[listen]]\nname = \"a\"\nbind = [\":80\"]\n",
            "lb.toml:4: listen[0].name: duplicate name \"a\" (also backend[0])",
        ),
        (
            "[defaults]\ntimeout = { client = \"10 s\" }\n",
            "lb.toml:2: defaults.timeout.client: \"10 s\": unknown unit \" s\"",
        ),
        (
            "[defaults]\ntimeout = { connect = \"5x\" }\n",
            "lb.toml:2: defaults.timeout.connect: \"5x\": unknown unit \"x\"",
        ),
        (
            "[defaults]\ntimeout = { server = 0 }\n",
            "lb.toml:2: defaults.timeout.server: must be greater than 0",
        ),
        (
            "[defaults]\ntimeout = { server = \"30d\" }\n",
            "lb.toml:2: defaults.timeout.server: is longer than HAProxy's limit",
        ),
        (
            "[defaults]\ntimeout = { sever = \"1s\" }\n",
            "lb.toml:2: syntax: unknown field `sever`",
        ),
        (
            "[defaults]\nmode = \"http\"\nforwardfor = { except = [\"10.0.0.0/40\"] }\n",
            "lb.toml:3: defaults.forwardfor.except[0]: \"10.0.0.0/40\" is not an address",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"http\"\nacl = [\"bad path_reg ([a-z\"]\n",
            "lb.toml:5: frontend[0].acl[0]: path_reg: bad regex",
        ),
        (
            "[[backend]]\nname = \"b\"\nbalance = \"weighted\"\n",
            "lb.toml:3: backend[0].balance: unknown balance \"weighted\"",
        ),
        (
            "[[backend]]\nname = \"b\"\nmode = \"tcp\"\nbalance = \"uri\"\n",
            "lb.toml:4: backend[0].balance: \"uri\" needs mode http",
        ),
        (
            "[[backend]]\nname = \"b\"\nmode = \"http\"\nbalance = \"rdp-cookie\"\n",
            "lb.toml:4: backend[0].balance: rdp-cookie needs mode tcp",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"http\"\ndefault_backend = \"b\"\n[[backend]]\nname = \"b\"\nmode = \"tcp\"\n",
            "lb.toml:5: frontend[0].mode: frontend \"f\" is mode http but backend \"b\" is mode tcp",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\"80\"]\n",
            "lb.toml:3: frontend[0].bind[0]: \"80\" is not a bind address",
        ),
        (
            "[[frontend]]\nname = \"f\"\nmode = \"http\"\nbind = [\":443 ssl crt /nonexistent/lbd/cert.pem\"]\n",
            "lb.toml:4: frontend[0].bind[0]: cannot read /nonexistent/lbd/cert.pem: No such file or directory",
        ),
        (
            "[[frontend]]\nname = \"f\"\nmode = \"http\"\nbind = [\":443 ssl crt /x.pem ssl-min-ver TLSv1.0\"]\n",
            "lb.toml:4: frontend[0].bind[0]: TLSv1.0 is not supported",
        ),
        (
            "[[frontend]]\nname = \"f\"\nmode = \"tcp\"\nbind = [\":443 ssl crt /x.pem\"]\n",
            "lb.toml:4: frontend[0].bind[0]: \"ssl\" terminates TLS for mode http frontends",
        ),
        (
            "[global]\nssl_default_bind_options = \"ssl-min-ver TLSv1.1\"\n",
            "lb.toml:2: global.ssl_default_bind_options: TLSv1.1 is not supported",
        ),
        (
            "[global]\ncrt_base = \"certs\"\n",
            "lb.toml:2: global.crt_base: \"certs\" is not an absolute directory",
        ),
        (
            "[global]\ncrt_base = \"/nonexistent/lbd\"\n[[frontend]]\nname = \"f\"\nmode = \"http\"\nbind = [\":443 ssl crt cert.pem\"]\n",
            "lb.toml:6: frontend[0].bind[0]: cannot read /nonexistent/lbd/cert.pem",
        ),
        (
            "[global]\nca_base = \"/nonexistent/ca\"\n[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.1:443\"\nssl = true\nca_file = \"ca.pem\"\n",
            "lb.toml:9: backend[0].server[0].ca_file: /nonexistent/ca/ca.pem: No such file",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\"1.2.3.4:0\"]\n",
            "lb.toml:3: frontend[0].bind[0]: \"1.2.3.4:0\": port 0 cannot be bound",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\"*:http\"]\n",
            "lb.toml:3: frontend[0].bind[0]: \"*:http\": \"http\" is not a port",
        ),
        (
            "[[frontend]]\nname = \"f\"\n",
            "lb.toml:2: frontend[0].bind: a frontend needs at least one bind address",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\n[[frontend]]\nname = \"g\"\nbind = [\"*:80\"]\n",
            "lb.toml:6: frontend[1].bind: 0.0.0.0:80 is already bound by frontend \"f\"",
        ),
        (
            "[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.1:80\"\nweight = 257\n",
            "lb.toml:6: backend[0].server[0].weight: 257 is outside 0..=256",
        ),
        (
            "[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.1:80\"\nweight = -1\n",
            "lb.toml:6: backend[0].server[0].weight: -1 is outside 0..=256",
        ),
        (
            "[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.1\"\n",
            "lb.toml:5: backend[0].server[0].address: \"198.18.0.1\" needs a port",
        ),
        (
            "[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"web1:80\"\n",
            "lb.toml:5: backend[0].server[0].address: \"web1:80\" is not an address:port",
        ),
        (
            "[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.1:80\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.2:80\"\n",
            "lb.toml:7: backend[0].server[1].name: duplicate server name \"s\"",
        ),
        (
            "[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.1:80\"\nrise = 0\n",
            "lb.toml:6: backend[0].server[0].rise: 0 is outside 1..=1000",
        ),
        (
            "[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.1:80\"\ninter = \"fast\"\n",
            "lb.toml:6: backend[0].server[0].inter: \"fast\" is not a duration",
        ),
        (
            "[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.1:80\"\nmaxconn = -5\n",
            "lb.toml:6: backend[0].server[0].maxconn: -5 is outside 0..=1000000",
        ),
        (
            "[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"s\"\naddress = \"198.18.0.1:80\"\nslowstart = 1\n",
            "lb.toml:6: syntax: unknown field `slowstart`",
        ),
        ("[[backend]]\nname = \"b\"\nretries = 101\n", "lb.toml:3: backend[0].retries: 101 is outside 0..=100"),
        ("[[backend]]\nname = \"b\"\nredispatch = 101\n", "lb.toml:3: backend[0].redispatch: 101 is outside 1..=100"),
        ("[[backend]]\nname = \"b\"\nretries = 2\nredispatch = -3\n", "lb.toml:4: backend[0].redispatch: -3: there is no retry 3 before the last with retries = 2"),
        ("[[backend]]\nname = \"b\"\nredispatch = \"often\"\n", "lb.toml:3: syntax: invalid type: string \"often\", expected true, false or an integer interval"),
        ("[global]\nmaxconn = 0\n", "lb.toml:2: global.maxconn: 0 is outside 1..=10000000"),
        (
            "[[global.log]]\ntarget = \"logs.example:514\"\n",
            "lb.toml:2: global.log[0].target: \"logs.example:514\" is neither ip[:port]",
        ),
        (
            "[[global.log]]\ntarget = \"/dev/log\"\nfacility = \"local9\"\n",
            "lb.toml:3: global.log[0].facility: unknown facility \"local9\"",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nbalance = \"source\"\n",
            "lb.toml:4: frontend[0].balance: balance is a backend setting",
        ),
        (
            "[[backend]]\nname = \"b\"\nmaxconn = 10\n",
            "lb.toml:3: backend[0].maxconn: maxconn limits a frontend's connections",
        ),
        (
            "[defaults]\nname = \"d\"\n",
            "lb.toml:2: defaults.name: name belongs in a frontend, backend or listen section",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\ntimeout = { server = \"1s\" }\n",
            "lb.toml:4: frontend[0].timeout.server: applies to the server side",
        ),
        (
            "[[backend]]\nname = \"b\"\ntimeout = { client = \"1s\" }\n",
            "lb.toml:3: backend[0].timeout.client: applies to the client side",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"tcp\"\nhttp_request = [\"deny\"]\n",
            "lb.toml:5: frontend[0].http_request[0]: http_request rules need mode http",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"tcp\"\nuse_backend = [\"b if { path / }\"]\n[[backend]]\nname = \"b\"\nmode = \"tcp\"\n",
            "lb.toml:5: frontend[0].use_backend[0]: a mode tcp frontend can only match connection facts",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"http\"\nhttp_request = [\"deny if { status 500 }\"]\n",
            "lb.toml:5: frontend[0].http_request[0]: the condition uses response fetches",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"http\"\nhttp_response = [\"del-header Server if { path / }\"]\n",
            "lb.toml:5: frontend[0].http_response[0]: the condition uses request fetches",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"http\"\nhttp_request = [\"deny if { status 500 }\"]\n",
            "lb.toml:5: frontend[0].http_request[0]: the condition uses response fetches",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"tcp\"\nforwardfor = true\n",
            "lb.toml:5: frontend[0].forwardfor: needs mode http",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"tcp\"\nlog_format = \"httplog\"\n",
            "lb.toml:5: frontend[0].log_format: httplog needs mode http",
        ),
        (
            "[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nmode = \"ftp\"\n",
            "lb.toml:4: frontend[0].mode: unknown mode \"ftp\"",
        ),
        (
            "[defaults]\nmode = \"http\"\nhttp_connection_mode = \"close\"\n",
            "lb.toml:3: defaults.http_connection_mode: unknown mode \"close\"",
        ),
        (
            "[[backend]]\nname = \"b\"\nhttpchk = \"GET / HTTP/2\"\n",
            "lb.toml:3: backend[0].httpchk: check version \"HTTP/2\" must be HTTP/1.0 or HTTP/1.1",
        ),
        (
            "[[backend]]\nname = \"b\"\nhttpchk = \"GET health\"\n",
            "lb.toml:3: backend[0].httpchk: check URI \"health\" must start with /",
        ),
        (
            "[[backend]]\nname = \"b\"\nhttp_check_expect = \"status 99\"\n",
            "lb.toml:3: backend[0].http_check_expect: \"99\" is not a status",
        ),
        (
            "[[backend]]\nname = \"b\"\nhttp_check_expect = \"rstring ([\"\n",
            "lb.toml:3: backend[0].http_check_expect: bad regex",
        ),
        (
            "[[backend]]\nname = \"b\"\nhttpchk = true\ntcp_check = true\n",
            "lb.toml:4: backend[0].tcp_check: choose httpchk or tcp_check, not both",
        ),
        (
            "[[backend]]\nname = \"bad name\"\n",
            "lb.toml:2: backend[0].name: \"bad name\" must be 1 to 64 characters",
        ),
        ("[[backend]]\nmode = \"tcp\"\n", "lb.toml:1: backend[0].name: a section needs a name"),
        ("[[frontend]]\nname = \"f\"\nbind = \":80\"\n", "lb.toml:3: syntax: invalid type"),
        ("[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nforwardfor = 1\n", "lb.toml:4: syntax: invalid type"),
        ("[[frontend]]\nname = \"f\"\nbind = [\":80\"]\nforwardfor = { excpt = [] }\n", "lb.toml:4: syntax: unknown field `excpt`"),
        ("[bogus]\n", "lb.toml:1: syntax: unknown field `bogus`"),
    ];
    for (text, expected) in cases {
        let errors = errors(text);
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "expected \"{expected}\"\n  got {errors:#?}\n  for:\n{text}"
        );
    }
}
