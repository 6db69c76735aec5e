//! The `bgops` binary: parse, connect, run, print, exit with a meaningful code.

use std::io::Write as _;

use bgops_cli::{
    Cli, CliError, Command, ConnectOptions, ExitCode, SagasCommand, connect, run, watch_saga,
};
use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bgops: error: cannot start the async runtime: {error}");
            return std::process::ExitCode::from(ExitCode::Store as u8);
        }
    };
    let code = match runtime.block_on(execute(&cli)) {
        Ok(()) => ExitCode::Ok,
        Err(error) => {
            if cli.json {
                let body = serde_json::json!({
                    "error": error.to_string(),
                    "exit_code": error.exit_code() as u8,
                });
                eprintln!("{body}");
            } else {
                eprintln!("bgops: error: {error}");
            }
            error.exit_code()
        }
    };
    std::process::ExitCode::from(code as u8)
}

async fn execute(cli: &Cli) -> Result<(), CliError> {
    let Some(url) = cli.url.clone() else {
        return Err(CliError::Usage(
            "no store URL: pass --url or set BGOPS_URL (e.g. redis://127.0.0.1:6379)".into(),
        ));
    };
    let options = ConnectOptions {
        url,
        prefix: cli.prefix.clone(),
        timeout: cli.connect_timeout,
    };
    let storage = connect(&options).await?;
    if let Command::Sagas(SagasCommand::Watch {
        id,
        interval,
        forever,
    }) = &cli.command
    {
        // Streams: printed as the events come, not gathered into one report.
        let mut stdout = std::io::stdout();
        return watch_saga(
            storage.as_ref(),
            id,
            *interval,
            *forever,
            cli.json,
            &mut stdout,
        )
        .await;
    }
    let report = run(storage.as_ref(), &cli.command).await?;
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`bgops … | head`) is not an error worth a message.
    let _ = if cli.json {
        writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&report.json).unwrap_or_default()
        )
    } else {
        write!(stdout, "{}", report.text)
    };
    Ok(())
}
