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
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    #[arg(long, default_value_t = 7101)]
    pub base_port: u16,
}

pub async fn run(a: UpArgs) -> Result<(), Failure> {
    if !a.dir.join("cluster.toml").exists() {
        init::init(&InitArgs { dir: a.dir.clone(), nodes: a.nodes, base_port: a.base_port, dev_retention_secs: None })?;
        eprintln!("initialised a new {}-node cluster in {}", a.nodes, a.dir.display());
    }
    let mut cluster = LocalCluster::new(&a.dir);
    cluster.start_all()?;
    eprintln!("nodes {:?} running; logs in {}/nodeN/node.log", cluster.node_ids(), a.dir.display());
    eprintln!("try: custody --profile {}/profiles/admin.toml cluster status", a.dir.display());
    eprintln!("Ctrl-C stops the cluster");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => eprintln!("stopping"),
        id = cluster.any_exit() => eprintln!("node {id:?} exited; stopping the others"),
    }
    cluster.stop_all().await;
    Ok(())
}
