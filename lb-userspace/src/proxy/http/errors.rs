//! Responses the proxy makes itself, with HAProxy's status texts and bodies
//! (its built-in error pages), so clients and monitoring see what they saw
//! behind HAProxy.
use super::body::{full, ProxyBody};
use hyper::{header, Response, StatusCode};

/// HAProxy's body for `status` (`<html><body><h1>...</h1>\n...\n</body></html>`).
pub fn error_body(status: u16) -> String {
    let message = match status {
        200 => "Service ready.",
        400 => "Your browser sent an invalid request.",
        401 => "You need a valid user and password to access this content.",
        403 => "Request forbidden by administrative rules.",
        404 => "The resource could not be found.",
        405 => {
            "A request was made of a resource using a request method not supported by that resource"
        }
        407 => "You need a valid user and password to access this content.",
        408 => "Your browser didn't send a complete request in time.",
        410 => "The resource is no longer available and will not be available again.",
        413 => "The request is too large.",
        425 => "Your browser sent early data.",
        429 => "You have sent too many requests in a given amount of time.",
        500 => "An internal server error occurred.",
        501 => "The server does not support the functionality required to fulfill the request.",
        502 => "The server returned an invalid or incomplete response.",
        503 => "No server is available to handle this request.",
        504 => "The server didn't respond in time.",
        _ => "",
    };
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    format!("<html><body><h1>{status} {reason}</h1>\n{message}\n</body></html>\n")
}

/// A complete error response; `close` adds `Connection: close` (HAProxy
/// closes the client connection after 400, 408 and 5xx it generates on a
/// broken exchange).
pub fn error_response(status: u16, close: bool) -> Response<ProxyBody> {
    let mut response = Response::new(full(error_body(status)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html"),
    );
    if close {
        headers.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

/// `http-request redirect`: an empty body and the location.
pub fn redirect_response(code: u16, location: &str) -> Response<ProxyBody> {
    let mut response = Response::new(full(String::new()));
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::FOUND);
    if let Ok(value) = header::HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_haproxys() {
        assert_eq!(
            error_body(503),
            "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n"
        );
        assert!(error_body(504).contains("504 Gateway Timeout"));
        assert!(error_body(502).contains("invalid or incomplete response"));
    }

    #[test]
    fn error_response_sets_status_and_close() {
        let response = error_response(403, true);
        assert_eq!(response.status(), 403);
        assert_eq!(response.headers()[header::CONNECTION], "close");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/html");
    }
}
