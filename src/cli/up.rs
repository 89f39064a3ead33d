//! `custody up`: initialise on first run, run the nodes in the foreground.

use std::path::PathBuf;

use clap::Args;

use super::init::{self, InitArgs};
use super::local::LocalCluster;
use super::Failure;

#[derive(Args)]
pub struct UpArgs {
    #[arg(long, default_value = "./custody-data")]
    pub dir: PathBuf,
    /// Used on first run only (when DIR holds no cluster yet).
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Node N listens on 127.0.0.1:(base-port + N - 1). Used on first run only.
    #[arg(long, default_value_t = 7101)]
    pub base_port: u16,
    /// Replace the 15-day/365-day retention periods with S and 2·S seconds, so that
    /// purge can be tried (tests and trials only). Used on first run only.
    #[arg(long, value_name = "S")]
    pub dev_retention_secs: Option<u64>,
}

/// The clip `up` writes on first run, so that the README's walkthrough has one to deposit.
pub const SAMPLE_CLIP: &str = "sample-clip.mp4";

pub async fn run(a: UpArgs) -> Result<(), Failure> {
    if !a.dir.join("cluster.toml").exists() {
        let done = init::init(&InitArgs::local(&a.dir, a.nodes, a.base_port, a.dev_retention_secs))?;
        eprintln!("{}", done.summary());
        let sample = a.dir.join(SAMPLE_CLIP);
        super::demo::write_sample(&sample, 6)?;
        eprintln!("  a sample clip to deposit: {}", sample.display());
    } else if a.dev_retention_secs.is_some() {
        eprintln!(
            "warning: {} already holds a cluster: --dev-retention-secs is used only when a cluster is initialised; ignoring it",
            a.dir.display()
        );
    }
    let mut cluster = LocalCluster::new(&a.dir);
    cluster.check_ports_free()?;
    cluster.start_all()?;
    eprintln!("nodes {:?} running; logs in {}/nodeN/node.log", cluster.node_ids(), a.dir.display());
    eprintln!("this terminal stays with the cluster: run commands in another one, e.g.");
    eprintln!("  custody --profile {}/profiles/admin.toml cluster status", a.dir.display());
    eprintln!("Ctrl-C stops the cluster");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => eprintln!("stopping"),
        id = cluster.any_exit() => match id {
            Some(id) => eprintln!("node {id} exited (see {}/node{id}/node.log); stopping the others", a.dir.display()),
            None => eprintln!("a node exited; stopping the others"),
        },
    }
    cluster.stop_all().await;
    Ok(())
}
