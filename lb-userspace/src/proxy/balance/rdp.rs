//! The RDP cookie of a Remote Desktop connection request (MS-RDPBCGR
//! 2.2.1.1): a TPKT header, an X.224 Connection Request, then
//! `Cookie: mstshash=<user>\r\n`. Pure parsing of untrusted bytes; never
//! panics, never reads past the TPKT length.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RdpCookie<'a> {
    Found(&'a [u8]),
    /// A complete connection request without that cookie.
    Absent,
    /// Fewer bytes than the TPKT header announces: read more.
    Incomplete,
    /// Not an RDP connection request.
    NotRdp,
}

const TPKT_HEADER: usize = 4;
/// TPKT header + the fixed part of the X.224 Connection Request.
const FIXED: usize = TPKT_HEADER + 7;
/// X.224 Connection Request TPDU code (high nibble).
const X224_CR: u8 = 0xe0;

/// Finds cookie `name` (HAProxy compares it without case) in `payload`.
pub fn rdp_cookie<'a>(payload: &'a [u8], name: &str) -> RdpCookie<'a> {
    let [version, reserved, high, low, ..] = *payload else {
        return if payload.first().is_some_and(|&v| v != 3) {
            RdpCookie::NotRdp
        } else {
            RdpCookie::Incomplete
        };
    };
    if version != 3 || reserved != 0 {
        return RdpCookie::NotRdp;
    }
    let length = usize::from(u16::from_be_bytes([high, low]));
    if length < FIXED {
        return RdpCookie::NotRdp;
    }
    let Some(pdu) = payload.get(..length) else {
        return RdpCookie::Incomplete;
    };
    let length_indicator = usize::from(pdu[TPKT_HEADER]);
    if pdu[TPKT_HEADER + 1] & 0xf0 != X224_CR || TPKT_HEADER + 1 + length_indicator > length {
        return RdpCookie::NotRdp;
    }
    let variable = &pdu[FIXED..];
    let Some(rest) = strip_prefix_ignore_case(variable, b"Cookie:") else {
        return RdpCookie::Absent;
    };
    let rest = trim_start_blanks(rest);
    let Some(rest) = strip_prefix_ignore_case(rest, name.as_bytes()) else {
        return RdpCookie::Absent;
    };
    let Some(rest) = rest.strip_prefix(b"=") else {
        return RdpCookie::Absent;
    };
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(0) | None => RdpCookie::Absent,
        Some(end) => RdpCookie::Found(&rest[..end]),
    }
}

fn strip_prefix_ignore_case<'a>(bytes: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = bytes.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &bytes[prefix.len()..])
}

fn trim_start_blanks(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// Builds a connection request as mstsc sends it (tests and benches).
pub fn connection_request(cookie: Option<&str>) -> Vec<u8> {
    let mut variable = Vec::new();
    if let Some(cookie) = cookie {
        variable.extend_from_slice(format!("Cookie: mstshash={cookie}\r\n").as_bytes());
    }
    // RDP_NEG_REQ: type 1, flags 0, length 8, TLS|CredSSP requested.
    variable.extend_from_slice(&[0x01, 0x00, 0x08, 0x00, 0x03, 0x00, 0x00, 0x00]);
    let length = FIXED + variable.len();
    let mut out = vec![3, 0];
    out.extend_from_slice(&(length as u16).to_be_bytes());
    out.push((length - TPKT_HEADER - 1) as u8);
    out.extend_from_slice(&[X224_CR, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&variable);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cookie_of_a_real_request() {
        let request = connection_request(Some("alice"));
        assert_eq!(rdp_cookie(&request, "mstshash"), RdpCookie::Found(b"alice"));
        assert_eq!(rdp_cookie(&request, "MSTSHASH"), RdpCookie::Found(b"alice"));
        assert_eq!(rdp_cookie(&request, "msts"), RdpCookie::Absent);
    }

    #[test]
    fn without_cookie_is_absent() {
        assert_eq!(
            rdp_cookie(&connection_request(None), "mstshash"),
            RdpCookie::Absent
        );
    }

    #[test]
    fn every_truncation_is_incomplete_never_a_panic() {
        let request = connection_request(Some("bob"));
        for cut in 0..request.len() {
            let result = rdp_cookie(&request[..cut], "mstshash");
            assert_eq!(result, RdpCookie::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn other_protocols_and_garbage_are_not_rdp() {
        assert_eq!(
            rdp_cookie(b"GET / HTTP/1.1\r\n\r\n", "mstshash"),
            RdpCookie::NotRdp
        );
        assert_eq!(
            rdp_cookie(&[3, 0, 0, 5, 0, 0], "mstshash"),
            RdpCookie::NotRdp
        );
        let mut wrong_tpdu = connection_request(Some("x"));
        wrong_tpdu[5] = 0xd0;
        assert_eq!(rdp_cookie(&wrong_tpdu, "mstshash"), RdpCookie::NotRdp);
        // Every byte pattern of a short buffer: no panic.
        for a in 0..=255u8 {
            for len in 0..16usize {
                let mut data = vec![3, 0, 0, len as u8];
                data.extend(std::iter::repeat_n(a, len));
                let _ = rdp_cookie(&data, "mstshash");
            }
        }
    }

    #[test]
    fn cookie_without_line_end_is_absent() {
        let mut request = connection_request(Some("carol"));
        // Overwrite "\r\n" inside the cookie line.
        let at = request.windows(2).position(|w| w == b"\r\n").unwrap();
        request[at] = b'x';
        request[at + 1] = b'y';
        assert_eq!(rdp_cookie(&request, "mstshash"), RdpCookie::Absent);
    }
}
