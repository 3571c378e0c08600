//! Exact origins: the one form a browser's `Origin` header takes, so that
//! a byte comparison is the whole check (S48).

/// Checks that `text` is an origin exactly as a browser sends it:
/// `http` or `https`, `://`, a lowercase ASCII host (punycode for IDNs, or
/// a bracketed IPv6 address), an optional port that is not the scheme's
/// default, and nothing else: no path, no trailing slash, no wildcard, no
/// user info. Anything else would never match, or match too much.
///
/// # Errors
///
/// A short reason.
pub(crate) fn check_exact_origin(text: &str) -> Result<(), &'static str> {
    if text.contains('*') {
        return Err("wildcards are not origins; list each origin");
    }
    let (rest, default_port) = if let Some(rest) = text.strip_prefix("https://") {
        (rest, "443")
    } else if let Some(rest) = text.strip_prefix("http://") {
        (rest, "80")
    } else {
        return Err("an origin starts with http:// or https://");
    };
    if rest.contains(['/', '?', '#']) {
        return Err("an origin has no path, query, fragment or trailing slash");
    }
    if rest.contains('@') {
        return Err("an origin has no user info");
    }
    let (host, port) = split_port(rest)?;
    if host.is_empty() {
        return Err("an origin names a host");
    }
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !v6.is_empty()
            && v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    } else {
        host.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !host_ok {
        return Err("an origin's host is lowercase ASCII (punycode for international names)");
    }
    if host.contains(|c: char| c.is_ascii_uppercase()) {
        return Err("browsers send the host in lowercase");
    }
    if let Some(port) = port {
        let numeric = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && !port.starts_with('0')
            && port.parse::<u16>().is_ok();
        if !numeric {
            return Err("an origin's port is a number from 1 to 65535 without leading zeros");
        }
        if port == default_port {
            return Err("browsers omit the scheme's default port");
        }
    }
    Ok(())
}

/// `host[:port]`, where an IPv6 host is bracketed.
fn split_port(rest: &str) -> Result<(&str, Option<&str>), &'static str> {
    if rest.starts_with('[') {
        let end = rest.find(']').ok_or("an unclosed IPv6 bracket")?;
        let (host, after) = rest.split_at(end + 1);
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if after.is_empty() => Ok((host, None)),
            None => Err("characters after the IPv6 address"),
        };
    }
    Ok(match rest.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    })
}

#[cfg(test)]
mod tests {
    use super::check_exact_origin;

    #[test]
    fn accepts_browser_origins() {
        for ok in [
            "https://example.com",
            "http://localhost:3000",
            "https://xn--exmple-cua.com",
            "https://[::1]:8443",
            "http://127.0.0.1:8080",
        ] {
            assert_eq!(check_exact_origin(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_what_never_matches_or_matches_too_much() {
        for bad in [
            "*",
            "https://*.example.com",
            "https://example.com/",
            "https://example.com/app",
            "https://Example.com",
            "https://example.com:443",
            "http://example.com:80",
            "https://example.com:0443",
            "https://example.com:99999",
            "example.com",
            "ftp://example.com",
            "null",
            "https://user@example.com",
            "https://",
            "https://exämple.com",
        ] {
            assert!(check_exact_origin(bad).is_err(), "{bad}");
        }
    }
}
