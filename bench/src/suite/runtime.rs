//! The runtime phase: the homepage under each runtime choice (tokio's
//! current-thread scheduler, the multi-thread one with 2 and 4 workers),
//! with both services confined to 1 CPU (wrk on another) and to 2 CPUs
//! (shared with wrk, as on a developer's machine or in docker compose), on
//! 16 and 64 connections. Each choice is measured in every round, in an
//! order that turns round, and the medians say whether the default at each
//! CPU count is the best choice or within 5 % of it (issue 17).

use std::{num::NonZeroUsize, time::Duration};

use super::{Placement, Suite};
use crate::report::{Figures, RuntimeChoice};

/// The worker counts tried (1 is the current-thread scheduler).
const WORKERS: [usize; 3] = [1, 2, 4];

/// The CPU counts tried, where the machine has them.
const CPUS: [usize; 3] = [1, 2, 4];

/// A user's page load and the suite's usual one.
const CONNECTIONS: [u32; 2] = [16, 64];

/// At most this long per measurement and this many rounds: twelve
/// settings are measured, each on freshly started services.
const MAX_TIME: Duration = Duration::from_secs(5);
const MAX_WARMUP: Duration = Duration::from_secs(1);
const MAX_ROUNDS: usize = 3;

/// One setting: services on `cpus` CPUs with `workers` workers each,
/// loaded on `connections`.
#[derive(Clone, Copy, Debug)]
struct Setting {
    cpus: usize,
    workers: usize,
    connections: u32,
}

impl Suite {
    /// Every setting's medians, with the default's marked.
    pub async fn runtime(&self) -> anyhow::Result<Vec<RuntimeChoice>> {
        let machine = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        let settings: Vec<Setting> = CPUS
            .into_iter()
            .filter(|&cpus| cpus <= machine)
            .flat_map(|cpus| {
                CONNECTIONS.into_iter().flat_map(move |connections| {
                    WORKERS.into_iter().map(move |workers| Setting {
                        cpus,
                        workers,
                        connections,
                    })
                })
            })
            .collect();
        let times = (
            self.plan.warmup_time.min(MAX_WARMUP),
            self.plan.page_time.min(MAX_TIME),
        );
        let rounds = self.plan.rounds.min(MAX_ROUNDS);
        let mut figures = vec![Vec::new(); settings.len()];
        for round in 0..rounds {
            eprintln!("bench: round {}, runtime choices", round + 1);
            let mut order: Vec<usize> = (0..settings.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                figures[i].push(self.runtime_run(settings[i], machine, times).await?);
            }
        }
        Ok(settings
            .iter()
            .zip(figures)
            .map(|(s, rounds)| RuntimeChoice {
                cpus: s.cpus,
                workers: s.workers,
                connections: s.connections,
                default: NonZeroUsize::new(s.cpus)
                    .map(service_kit::runtime::default_workers)
                    .is_some_and(|default| default.get() == s.workers),
                figures: Figures::median(&rounds),
            })
            .collect())
    }

    /// Both services started for `setting`, the homepage measured, both
    /// stopped.
    async fn runtime_run(
        &self,
        setting: Setting,
        machine: usize,
        times: (Duration, Duration),
    ) -> anyhow::Result<Figures> {
        let placement = placement(setting, machine);
        eprintln!(
            "bench:   {} CPU(s), {} worker(s), {} connections",
            setting.cpus, setting.workers, setting.connections
        );
        let (recommendations, grpc, grpc_admin) = self
            .start_recommendations("recommendations-runtime", &placement, None)
            .await?;
        let (marketplace, web, web_admin) = self.start_marketplace(&placement, grpc, &[]).await?;
        let servers = [&marketplace, &recommendations];
        let admins = Some((web_admin, grpc_admin));
        let figures = self
            .http_run(
                &servers,
                web,
                admins,
                &placement,
                setting.connections,
                times,
            )
            .await;
        marketplace.stop().await?;
        recommendations.stop().await?;
        figures
    }
}

/// The services on the machine's last `cpus` CPUs; wrk on CPU 0 when that
/// is not one of them, else sharing theirs.
fn placement(setting: Setting, machine: usize) -> Placement {
    let first = machine - setting.cpus;
    let servers = if setting.cpus == 1 {
        first.to_string()
    } else {
        format!("{first}-{}", machine - 1)
    };
    let load = if first == 0 {
        servers.clone()
    } else {
        "0".to_owned()
    };
    Placement {
        workers: NonZeroUsize::new(setting.workers),
        servers: Some(servers),
        load: Some(load),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(cpus: usize, machine: usize) -> (Option<String>, Option<String>) {
        let setting = Setting {
            cpus,
            workers: 1,
            connections: 16,
        };
        let placement = placement(setting, machine);
        (placement.servers, placement.load)
    }

    #[test]
    fn the_load_has_a_cpu_of_its_own_unless_the_services_take_them_all() {
        let pinned = |servers: &str, load: &str| (Some(servers.into()), Some(load.into()));

        assert_eq!(on(1, 2), pinned("1", "0"));
        assert_eq!(on(2, 2), pinned("0-1", "0-1"));
        assert_eq!(on(2, 8), pinned("6-7", "0"));
        assert_eq!(on(4, 4), pinned("0-3", "0-3"));
    }
}
