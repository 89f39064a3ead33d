//! `witness init` and `witness serve`: a witness a court runs on its own
//! machine (docs/AUDIT_FORMATS.md, "Witnesses"). It needs no profile, no
//! certificate and nothing of the vault but the logs' verifier keys.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::{emit, Failure};
use crate::witness::{state, Cosigner, Witness};

#[derive(Subcommand)]
pub enum WitnessCmd {
    /// Make a witness key (mode 0600) and a state directory; print its verifier key.
    Init(InitArgs),
    /// Serve `POST /add-checkpoint` (C2SP tlog-witness) over plain HTTP until stopped.
    Serve(ServeArgs),
}

#[derive(Args)]
pub struct InitArgs {
    /// Where to write the private key (never overwritten).
    #[arg(long)]
    pub key: PathBuf,
    /// The witness's name, a schema-less URL that identifies it, e.g. `witness.court.example/w1`.
    #[arg(long)]
    pub name: String,
    /// The state directory to make: `logs` (to fill in) and `state.json`.
    #[arg(long)]
    pub state: PathBuf,
}

#[derive(Args)]
pub struct ServeArgs {
    #[arg(long)]
    pub key: PathBuf,
    /// The directory `witness init` made, with its `logs` file filled in.
    #[arg(long)]
    pub state: PathBuf,
    /// Address to listen on, e.g. `127.0.0.1:7380`.
    #[arg(long)]
    pub listen: std::net::SocketAddr,
}

pub async fn run(cmd: WitnessCmd, json: bool) -> Result<(), Failure> {
    match cmd {
        WitnessCmd::Init(a) => init(a, json),
        WitnessCmd::Serve(a) => serve(a).await,
    }
}

fn init(a: InitArgs, json: bool) -> Result<(), Failure> {
    let seed = crate::crypto::random_bytes::<32>()?;
    let text = state::private_key_text(&a.name, &seed).map_err(|e| Failure::new(2, format!("--name: {e}")))?;
    let signer = crate::audit::Signer::from_private_key_text(&text)?;
    let cosigner = Cosigner::new(signer)?;
    if a.key.exists() {
        return Err(state::StateError::Exists(a.key.clone()).into());
    }
    // The state directory first: if it exists already, no key is written either.
    state::init_dir(&a.state)?;
    state::write_key(&a.key, &text)?;
    let v = crate::wire::WitnessInitOutput {
        name: a.name.clone(),
        verifier_key: cosigner.key().to_string(),
        key_file: a.key.clone(),
        state_dir: a.state.clone(),
    };
    emit(json, &serde_json::to_value(&v)?, || {
        format!(
            "{}\n(secret key written to {}, mode 0600; list the logs to cosign in {})",
            v.verifier_key,
            a.key.display(),
            a.state.join(state::LOGS_FILE).display()
        )
    });
    Ok(())
}

async fn serve(a: ServeArgs) -> Result<(), Failure> {
    let witness = Arc::new(Witness::open(&a.key, &a.state)?);
    let listener = tokio::net::TcpListener::bind(a.listen).await.map_err(|e| Failure::new(2, format!("listen on {}: {e}", a.listen)))?;
    let origins: Vec<&str> = witness.origins().collect();
    tracing::info!(key = %witness.key(), listen = %a.listen, ?origins, "witness serving");
    eprintln!("witness {} listening on http://{} for {}", witness.key(), a.listen, origins.join(", "));
    tokio::select! {
        r = crate::api::witness::serve(witness.clone(), listener) => r.map_err(|e| Failure::new(2, format!("serve: {e}"))),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
