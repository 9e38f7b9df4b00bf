//! Finding the recommendations replicas: the addresses `RECOMMENDATIONS_HOST`
//! resolves to, from DNS (a headless Service answers with every ready pod)
//! or from a hosts file that the caller controls.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use anyhow::{Context, bail};

/// Resolves one host name and port to every address it stands for.
#[derive(Clone, Debug)]
pub struct Resolver {
    host: String,
    port: u16,
    hosts_file: Option<PathBuf>,
}

impl Resolver {
    /// Resolves `host` with DNS (the system resolver), or only from
    /// `hosts_file` (hosts(5) format) when one is given.
    pub fn new(host: &str, port: u16, hosts_file: Option<PathBuf>) -> Self {
        Self {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            hosts_file,
        }
    }

    /// Every address of the host. An IP address resolves to itself.
    pub async fn resolve(&self) -> anyhow::Result<BTreeSet<SocketAddr>> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(BTreeSet::from([SocketAddr::new(ip, self.port)]));
        }
        let addresses: BTreeSet<SocketAddr> = match &self.hosts_file {
            Some(path) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .with_context(|| format!("cannot read the hosts file {}", path.display()))?;
                hosts_entries(&text, &self.host)
                    .map(|ip| SocketAddr::new(ip, self.port))
                    .collect()
            }
            None => tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .with_context(|| format!("cannot resolve {}", self.host))?
                .collect(),
        };
        if addresses.is_empty() {
            bail!("{} resolves to no address", self.host);
        }
        Ok(addresses)
    }
}

/// The addresses `name` has in a hosts file.
fn hosts_entries<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = IpAddr> + 'a {
    text.lines().filter_map(move |line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let ip = fields.next()?.parse().ok()?;
        fields
            .any(|alias| alias.eq_ignore_ascii_case(name))
            .then_some(ip)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hosts_file_may_list_one_name_on_several_lines() {
        let text = "127.0.0.1 localhost\n\
                    127.0.0.2 recommendations # first\n\
                    # 127.0.0.9 recommendations\n\
                    127.0.0.3\tother recommendations\n";

        let ips: Vec<IpAddr> = hosts_entries(text, "recommendations").collect();

        assert_eq!(
            ips,
            [IpAddr::from([127, 0, 0, 2]), IpAddr::from([127, 0, 0, 3])]
        );
    }

    #[tokio::test]
    async fn an_ip_address_resolves_to_itself() {
        let resolver = Resolver::new("[::1]", 7, None);

        let addresses = resolver.resolve().await.expect("no lookup needed");

        let ipv6_loopback = SocketAddr::new(IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]), 7);
        assert_eq!(addresses.into_iter().collect::<Vec<_>>(), [ipv6_loopback]);
    }

    #[tokio::test]
    async fn a_name_missing_from_the_hosts_file_is_an_error() {
        let file = std::env::temp_dir().join(format!("hosts-{}", std::process::id()));
        std::fs::write(&file, "127.0.0.1 localhost\n").expect("writable temp dir");
        let resolver = Resolver::new("recommendations", 1, Some(file.clone()));

        let error = resolver.resolve().await.expect_err("no entry");

        assert!(
            error.to_string().contains("resolves to no address"),
            "{error}"
        );
        let _ = std::fs::remove_file(file);
    }
}
