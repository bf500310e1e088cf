//! Where webhooks may go (SPEC.md §18.5): an `http://` or `https://` URL
//! without credentials, and — unless the operator allows it with
//! `webhook_allow_private` — never an address inside the host or its
//! private networks (server-side request forgery: a webhook URL must not
//! become a way to reach the metadata service, a database or the admin
//! listener). A literal address is checked when the URL is parsed; a host
//! name on every connection, after resolving it ([`GuardedResolver`]), so
//! a name that later resolves inward is refused too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// A usable webhook URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookTarget {
    url: Url,
}

/// Why a webhook URL cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadWebhookUrl {
    /// Not a URL.
    #[error("webhook_url is not a URL")]
    Malformed,
    /// Another scheme than `http` or `https`, or no host.
    #[error("webhook_url must be http(s)://host[:port][/path]")]
    Scheme,
    /// `user:password@` in the URL (use `webhook_secret` to authenticate).
    #[error("webhook_url must not carry user:password@ (use webhook_secret)")]
    Credentials,
    /// A literal loopback, private, link-local or otherwise internal
    /// address while `webhook_allow_private` is off.
    #[error("webhook_url names the internal address {0} (set webhook_allow_private to allow it)")]
    PrivateAddress(IpAddr),
}

impl WebhookTarget {
    /// Parses `url`; `allow_private` lets it name internal addresses.
    ///
    /// # Errors
    /// [`BadWebhookUrl`].
    pub fn parse(url: &str, allow_private: bool) -> Result<Self, BadWebhookUrl> {
        let url = Url::parse(url).map_err(|_| BadWebhookUrl::Malformed)?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(BadWebhookUrl::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(BadWebhookUrl::Credentials);
        }
        let literal = url
            .host_str()
            .map(|host| host.trim_start_matches('[').trim_end_matches(']'))
            .and_then(|host| host.parse::<IpAddr>().ok());
        if let Some(ip) = literal
            && !allow_private
            && is_internal(ip)
        {
            return Err(BadWebhookUrl::PrivateAddress(ip));
        }
        Ok(Self { url })
    }

    /// The URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// `scheme://host:port/…`: where notices go, without the path (which
    /// may carry a gateway token), for logs and the startup banner.
    pub fn origin(&self) -> String {
        format!("{}/…", self.url.origin().ascii_serialization())
    }
}

/// Whether `ip` is inside the host or a private network: unspecified,
/// loopback, private (RFC 1918), shared (100.64/10), link-local,
/// multicast, broadcast, 0.0.0.0/8, IPv6 unique-local (fc00::/7), and the
/// IPv4 forms inside IPv6 (mapped, compatible, NAT64 well-known prefix).
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || a >= 240
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_internal_v4(v4);
    }
    // ::a.b.c.d (deprecated compatible form) and 64:ff9b::a.b.c.d (NAT64).
    if segments[..6] == [0, 0, 0, 0, 0, 0] || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., hi, lo] = segments;
        let v4 = Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
        return ip.is_unspecified() || ip.is_loopback() || is_internal_v4(v4);
    }
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00
        || (segments[0] & 0xffc0) == 0xfe80
}

/// Resolves host names for the webhook client and keeps only the
/// addresses it may connect to: with `allow_private` off, a name whose
/// addresses are all internal fails to resolve ("no permitted address"),
/// so no connection is ever opened to it.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    /// Let names resolve to internal addresses too.
    pub allow_private: bool,
}

/// Every address of a name was internal.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves to no permitted address (internal addresses need webhook_allow_private)")]
pub struct NoPermittedAddress(String);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| allow_private || !is_internal(addr.ip()))
                .collect();
            if found.is_empty() {
                return Err(Box::new(NoPermittedAddress(host)) as Box<_>);
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// The resolver as reqwest takes it.
pub fn resolver(allow_private: bool) -> Arc<GuardedResolver> {
    Arc::new(GuardedResolver { allow_private })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_are_refused() {
        let t = WebhookTarget::parse("https://gw.example:8443/push/v1?k=secret", false).unwrap();
        assert_eq!(t.origin(), "https://gw.example:8443/…");
        assert!(WebhookTarget::parse("http://gw.example", false).is_ok());
        assert_eq!(
            WebhookTarget::parse("ftp://gw.example/", false),
            Err(BadWebhookUrl::Scheme)
        );
        assert_eq!(
            WebhookTarget::parse("not a url", false),
            Err(BadWebhookUrl::Malformed)
        );
        assert_eq!(
            WebhookTarget::parse("https://u:p@gw.example/", false),
            Err(BadWebhookUrl::Credentials)
        );
        for internal in [
            "http://127.0.0.1:8080/",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[::ffff:192.168.0.1]/",
            "http://[fd00::1]/",
            "http://0.0.0.0/",
            "http://100.64.0.1/",
        ] {
            assert!(
                matches!(
                    WebhookTarget::parse(internal, false),
                    Err(BadWebhookUrl::PrivateAddress(_))
                ),
                "{internal}"
            );
            assert!(WebhookTarget::parse(internal, true).is_ok(), "{internal}");
        }
        assert!(WebhookTarget::parse("http://93.184.216.34/", false).is_ok());
        assert!(WebhookTarget::parse("http://[2606:2800:220:1::1]/", false).is_ok());
    }

    #[test]
    fn internal_ranges() {
        for ip in [
            "172.16.0.1",
            "192.168.1.1",
            "224.0.0.1",
            "255.255.255.255",
            "fe80::1",
            "64:ff9b::7f00:1",
            "::7f00:1",
            "240.0.0.1",
            "192.0.0.8",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2001:4860:4860::8888",
            "64:ff9b::808:808",
        ] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn the_resolver_drops_internal_addresses() {
        let name: Name = "localhost".parse().unwrap();
        assert!(
            GuardedResolver {
                allow_private: false
            }
            .resolve(name)
            .await
            .is_err()
        );
        let name: Name = "localhost".parse().unwrap();
        let addrs: Vec<SocketAddr> = GuardedResolver {
            allow_private: true,
        }
        .resolve(name)
        .await
        .unwrap()
        .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}
