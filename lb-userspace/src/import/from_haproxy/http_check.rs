//! `http-check send`: the health check request.
use super::*;

/// `http-check send [meth M] [uri U] [ver V] [hdr NAME VALUE]...`: the
/// check request, written into `httpchk` in HAProxy's older single-line
/// form (what lbd takes), over what `option httpchk` said.
pub(super) fn http_check_send(cx: &mut Ctx, d: &Directive, p: &mut ProxyOut) {
    let base = match p.table.get("httpchk") {
        Some(Value::Str(s)) => s.clone(),
        _ => String::new(),
    };
    let mut base_words = base.split_whitespace();
    let mut method = base_words.next().unwrap_or("OPTIONS").to_string();
    let mut uri = base_words.next().unwrap_or("/").to_string();
    let mut version = base_words.next().unwrap_or("HTTP/1.0").to_string();
    let mut headers = String::new();
    let escape = |text: &str| text.replace('\\', "\\\\").replace(' ', "\\ ");
    let mut words = d.words[2..].iter();
    while let Some(w) = words.next() {
        let mut value = || words.next().cloned();
        match w.as_str() {
            "meth" => method = value().unwrap_or_default(),
            "uri" => uri = value().unwrap_or_default(),
            "ver" => version = value().unwrap_or_default(),
            "hdr" => {
                let (Some(name), Some(v)) = (value(), value()) else {
                    cx.error(d.line, "http-check send: hdr needs a name and a value");
                    return;
                };
                headers.push_str(&format!("\\r\\n{name}:\\ {}", escape(&v)));
            }
            other => {
                cx.unsupported(
                    d,
                    format!("lbd's check request has no \"{other}\" (body, uri-lf, comment...)"),
                );
                return;
            }
        }
    }
    if method.is_empty() || uri.is_empty() || version.is_empty() {
        cx.error(d.line, "http-check send: meth, uri and ver need a value");
        return;
    }
    let request = format!(
        "{} {} {}{headers}",
        escape(&method),
        escape(&uri),
        escape(&version)
    );
    p.table.remove("tcp_check");
    p.table.set("httpchk", Value::Str(request), None);
    cx.mapped(
        d,
        "httpchk (the request as one string: METHOD URI VERSION\\r\\nHeader:\\ value)",
    );
}
