//! Which Redis the `redis` setting names (SPEC.md §18.6): one instance
//! (`redis://…`, `redis+unix://…`) or a Redis Cluster
//! (`redis+cluster://[user:password@]host:port,host:port,…/`, the seed
//! nodes the cluster's topology is read from).
//!
//! A cluster URL is split into one `redis://` URL per seed node, each with
//! the same user-info, path and query; the error never repeats the URL (it
//! may hold a password).
//!
//! Not owned here: connecting (redis.rs, limits/shared.rs).

/// The scheme of a Redis Cluster URL.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// Why a `redis` setting is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Neither `redis://`, `redis+unix://` nor `redis+cluster://`.
    #[error("redis must be a redis://, redis+unix:// or redis+cluster:// URL")]
    Scheme,
    /// A cluster URL without a seed node, or with an empty one.
    #[error("a redis+cluster:// URL needs host:port seed nodes separated by commas")]
    Seeds,
}

/// One Redis or the seed nodes of a Redis Cluster.
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    /// One instance, by its URL.
    Single(String),
    /// A Redis Cluster, by `redis://` URLs of its seed nodes.
    Cluster(Vec<String>),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URLs may hold a password.
        match self {
            Self::Single(_) => f.write_str("Target::Single"),
            Self::Cluster(seeds) => write!(f, "Target::Cluster({} seeds)", seeds.len()),
        }
    }
}

impl Target {
    /// Reads a `redis` setting.
    ///
    /// # Errors
    /// [`TargetError`].
    pub fn parse(url: &str) -> Result<Self, TargetError> {
        if url.starts_with("redis://") || url.starts_with("redis+unix://") {
            return Ok(Self::Single(url.to_owned()));
        }
        let rest = url
            .strip_prefix(CLUSTER_SCHEME)
            .ok_or(TargetError::Scheme)?;
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (user_info, hosts) = match authority.rfind('@') {
            Some(at) => authority.split_at(at + 1),
            None => ("", authority),
        };
        let tail = if tail.is_empty() { "/" } else { tail };
        let seeds: Vec<String> = hosts
            .split(',')
            .map(|host| {
                if host.is_empty() || host.contains(['@', ' ']) {
                    Err(TargetError::Seeds)
                } else {
                    Ok(format!("redis://{user_info}{host}{tail}"))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self::Cluster(seeds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_split_into_seed_urls() {
        assert_eq!(
            Target::parse("redis://h:1/"),
            Ok(Target::Single("redis://h:1/".to_owned()))
        );
        assert_eq!(
            Target::parse("redis+cluster://:pw@a:7000,b:7001"),
            Ok(Target::Cluster(vec![
                "redis://:pw@a:7000/".to_owned(),
                "redis://:pw@b:7001/".to_owned()
            ]))
        );
        assert_eq!(
            Target::parse("redis+cluster://a:1/?protocol=3"),
            Ok(Target::Cluster(vec!["redis://a:1/?protocol=3".to_owned()]))
        );
        for bad in [
            "redis+cluster://",
            "redis+cluster://a:1,,b:2/",
            "redis+cluster:///",
        ] {
            assert_eq!(Target::parse(bad), Err(TargetError::Seeds), "{bad}");
        }
        assert_eq!(Target::parse("http://x"), Err(TargetError::Scheme));
        let debug = format!(
            "{:?}",
            Target::parse("redis+cluster://:secret@a:1").unwrap()
        );
        assert!(!debug.contains("secret"), "{debug}");
    }
}
