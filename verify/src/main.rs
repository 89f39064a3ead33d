//! `custody-verify BUNDLE --keys FILE [--file CLIP] [--witness-keys FILE
//! --min-witnesses N] [--json]`: the court's verifier, built without the vault.
//! Exit status: 0 valid, 1 invalid (a negative verdict), 2 usage or unreadable input.

use clap::Parser;

#[derive(Parser)]
#[command(name = "custody-verify", version, about = "Checks a custody proof bundle offline (docs/AUDIT_FORMATS.md)")]
struct Cli {
    #[command(flatten)]
    args: custody_verify::run::VerifyArgs,
    /// Print one JSON object on stdout: the report, or {"error", "exit_code"}.
    #[arg(long)]
    json: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if cli.args.page {
        print!("{}", custody_verify::page::html());
        return std::process::ExitCode::SUCCESS;
    }
    match custody_verify::run::verify(&cli.args) {
        Ok(report) => {
            if cli.json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                println!("{}", custody_verify::run::report_text(&report));
            }
            std::process::ExitCode::from(if report.valid { 0 } else { 1 })
        }
        Err(e) => {
            if cli.json {
                println!("{}", serde_json::json!({ "error": e.to_string(), "exit_code": 2 }));
            } else {
                eprintln!("error: {e}");
            }
            std::process::ExitCode::from(2)
        }
    }
}
