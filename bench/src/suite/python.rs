//! The Python phase: the homepage of this project, as its defaults run it
//! (a runtime worker per two CPUs, at least one), beside the tutorial's own Python services
//! serving the same page (`bench/python`: grpcio with ten threads, Flask
//! under gunicorn with four workers), both loaded by wrk on 16 keep-alive
//! connections, in alternating rounds. The headline of a Rust rewrite,
//! measured rather than quoted (issue 17).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, ensure};
use tokio::process::Command;

use super::{Placement, Suite, alternating};
use crate::{
    process::{self, Server},
    report::{Comparison, Figures},
};

/// As issue 17 measured the tutorial's services.
const CONNECTIONS: u32 = 16;

/// The tutorial deploys the marketplace under gunicorn; four workers.
const GUNICORN_WORKERS: &str = "4";

impl Suite {
    /// This project's homepage (the `service` side of the comparison)
    /// against the Python peer's (its `ceiling` side).
    pub async fn python(&self) -> anyhow::Result<Comparison> {
        let workspace = workspace()?;
        let stubs = self.python_stubs(&workspace).await?;
        let python = workspace.join("bench/python");
        let pythonpath = ("PYTHONPATH", stubs.display().to_string());

        let py_grpc = process::free_port()?;
        let mut py_recommendations = Server::start(
            "python-recommendations",
            Path::new("python3"),
            &[
                python.join("recommendations.py").display().to_string(),
                py_grpc.port().to_string(),
                workspace
                    .join("recommendations/data/catalog.csv")
                    .display()
                    .to_string(),
            ],
            std::slice::from_ref(&pythonpath),
            &self.work,
            None,
        )?;
        py_recommendations
            .wait_for_port(py_grpc, Duration::from_secs(20))
            .await?;
        let py_web = process::free_port()?;
        let mut py_marketplace = Server::start(
            "python-marketplace",
            Path::new("python3"),
            &[
                "-m".to_owned(),
                "gunicorn".to_owned(),
                "--workers".to_owned(),
                GUNICORN_WORKERS.to_owned(),
                "--bind".to_owned(),
                py_web.to_string(),
                "--chdir".to_owned(),
                python.display().to_string(),
                "marketplace:app".to_owned(),
            ],
            &[
                pythonpath,
                ("RECOMMENDATIONS_HOST", py_grpc.ip().to_string()),
                ("RECOMMENDATIONS_PORT", py_grpc.port().to_string()),
            ],
            &self.work,
            None,
        )
        .context("is gunicorn installed? (`pip install flask gunicorn grpcio`)")?
        .with_children();
        py_marketplace
            .wait_for_port(py_web, Duration::from_secs(20))
            .await?;
        let py_page = self.homepage(py_web).await?;

        let defaults = Placement::new(None, false);
        let (recommendations, grpc, grpc_admin) = self
            .start_recommendations("recommendations-for-pages", &defaults, None)
            .await?;
        let (marketplace, web, web_admin) = self.start_marketplace(&defaults, grpc, &[]).await?;
        let page = self.homepage(web).await?;

        let mut rounds = Vec::new();
        let times = self.plan.page_times();
        for round in 0..self.plan.rounds {
            eprintln!("bench: round {}, homepage beside Python", round + 1);
            let (py_servers, servers) = (
                [&py_marketplace, &py_recommendations],
                [&marketplace, &recommendations],
            );
            let admins = Some((web_admin, grpc_admin));
            let ours = self.http_run(&servers, web, admins, &defaults, CONNECTIONS, times);
            let theirs = self.http_run(&py_servers, py_web, None, &defaults, CONNECTIONS, times);
            let pair = alternating(round, ours, theirs).await?;
            rounds.push(pair);
        }
        marketplace.stop().await?;
        recommendations.stop().await?;
        py_marketplace.stop().await?;
        py_recommendations.stop().await?;

        Ok(Comparison {
            scenario: "Homepage beside the tutorial's Python services".to_owned(),
            load: format!(
                "wrk, {CONNECTIONS} keep-alive connections, {} s per round, {} rounds, alternating; nothing pinned; the pages are {} and {} bytes",
                self.plan.page_time.as_secs(),
                self.plan.rounds,
                page.len(),
                py_page.len()
            ),
            service: "marketplace + recommendations, defaults".to_owned(),
            ceiling: format!(
                "Flask under gunicorn ({GUNICORN_WORKERS} workers) + grpcio (10 threads)"
            ),
            service_figures: Figures::median(&rounds.iter().map(|r| r.0).collect::<Vec<_>>()),
            ceiling_figures: Figures::median(&rounds.iter().map(|r| r.1).collect::<Vec<_>>()),
            rounds,
            checked: "no response other than 2xx from either; ours: every page counted as 200, none degraded, one OK Recommend per page; CPU is both services' together, gunicorn's workers included".to_owned(),
        })
    }

    /// The Python stubs of the v1 contract, generated into the work
    /// directory by grpcio-tools: the directory to put on PYTHONPATH.
    async fn python_stubs(&self, workspace: &Path) -> anyhow::Result<PathBuf> {
        let stubs = self.work.join("python");
        std::fs::create_dir_all(&stubs)
            .with_context(|| format!("cannot create {}", stubs.display()))?;
        let output = Command::new("python3")
            .args(["-m", "grpc_tools.protoc", "-I"])
            .arg(workspace.join("protobufs"))
            .arg(format!("--python_out={}", stubs.display()))
            .arg(format!("--grpc_python_out={}", stubs.display()))
            .arg("bookstore/recommendations/v1/recommendations.proto")
            .output()
            .await
            .context("cannot run python3")?;
        ensure!(
            output.status.success(),
            "generating the Python stubs failed (is grpcio-tools installed? `pip install grpcio-tools`):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(stubs)
    }
}

/// The repository, which holds the Python peer and the contract.
fn workspace() -> anyhow::Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("the bench crate sits in the workspace")
}
