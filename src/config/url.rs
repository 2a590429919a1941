//! Just enough URL parsing for Vault and metadata addresses: scheme, host, port, base path.
//! No dependency needed for that, and the errors can say exactly what is wrong.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    /// Host as written, without brackets for IPv6 literals.
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash ("" for none).
    pub path: String,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, String> {
        let s = s.trim();
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("`{s}` is not an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(format!("`{s}`: credentials in the URL are not supported"));
        }
        if path.contains('?') || path.contains('#') {
            return Err(format!("`{s}`: a query or fragment is not allowed here"));
        }
        let (host, port) =
            split_host_port(authority).ok_or_else(|| format!("`{s}`: bad host or port"))?;
        let port = match port {
            Some(p) => p,
            None if https => 443,
            None => 80,
        };
        Ok(Url {
            https,
            host: host.to_string(),
            port,
            path: path.trim_end_matches('/').to_string(),
        })
    }

    pub fn host_for_url(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// `scheme://host:port/path` with no trailing slash; join API paths onto it.
    pub fn base(&self) -> String {
        self.base_with_host(&self.host_for_url())
    }

    pub fn base_with_host(&self, host: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{host}:{}{}", self.port, self.path)
    }
}

fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        match &rest[end + 1..] {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if !valid_host {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0)?),
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scheme_host_port_and_path() {
        let u = Url::parse("https://vault.example.com:8200").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (true, "vault.example.com", 8200, "")
        );
        assert_eq!(u.base(), "https://vault.example.com:8200");
        let u = Url::parse("http://169.254.169.254/1.0/meta-data/").unwrap();
        assert_eq!(
            (u.https, u.port, u.path.as_str()),
            (false, 80, "/1.0/meta-data")
        );
        assert_eq!(Url::parse("https://v").unwrap().port, 443);
    }

    #[test]
    fn ipv6_literals_keep_brackets_in_urls_only() {
        let u = Url::parse("https://[fd00::1]:8200/").unwrap();
        assert_eq!(u.host, "fd00::1");
        assert_eq!(u.base(), "https://[fd00::1]:8200");
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        for bad in [
            "vault:8200",
            "ftp://x",
            "https://",
            "https://a:b",
            "https://a:0",
            "https://u:p@h",
            "https://h/?x=1",
            "https://h h",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }
}
