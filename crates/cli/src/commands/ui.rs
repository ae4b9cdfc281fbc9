//! `curfew ui`: serves the web console (`curfew-console`) until interrupted. The console reads
//! the hub the global options name and starts operations the way `curfew stop|start|trigger`
//! do: in-process through the local dispatcher against an emulator, through the router Lambda
//! against AWS.

use anyhow::{Context, Result};
use curfew_aws::changes::ChangeRecorder;
use curfew_console::prices::PriceTable;
use curfew_console::{Console, Runner, Token};

use crate::cli::{GlobalOpts, UiArgs};
use crate::connect::{self, Queues};
use crate::output::outln;

/// Runs `curfew ui`.
pub async fn run(args: UiArgs, opts: &GlobalOpts) -> Result<()> {
    // A bad price table stops here, before anything listens: nothing half-priced is served.
    let prices = args.prices.as_deref().map(PriceTable::load).transpose()?;
    let mut console = console(opts).await?;
    if let Some(prices) = prices {
        console = console.with_prices(prices);
    }
    let listener = tokio::net::TcpListener::bind((args.listen, args.port))
        .await
        .with_context(|| format!("listening on {}:{}", args.listen, args.port))?;
    let addr = listener
        .local_addr()
        .context("reading the listening address")?;
    if !args.listen.is_loopback() {
        eprintln!(
            "warning: listening on {addr}: the console is reachable from other machines (reads need no token; changes still do)"
        );
        console = console.any_host();
    }
    let shown = if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let url = console.url(shown);
    outln!("{url}")?;
    if args.open {
        open_browser(&url);
    }
    curfew_console::serve(listener, console, shutdown())
        .await
        .context("serving the console")
}

/// A console over the hub the options name, able to start operations when they say how.
pub async fn console(opts: &GlobalOpts) -> Result<Console> {
    let token = Token::generate().context("drawing the console's token")?;
    if opts.is_local() {
        if let Ok((router, task)) = opts.queues() {
            let (hub, sdk) = connect::hub(opts, true).await?;
            let dispatcher =
                connect::dispatcher(&hub, &sdk, &Queues { router, task }, opts.max_concurrency);
            let recorder = recorder(&sdk)?;
            return Ok(Console::new(
                hub,
                Runner::local(dispatcher),
                recorder,
                token,
            ));
        }
    }
    let (hub, sdk) = connect::hub(opts, false).await?;
    let runner = match (opts.is_local(), opts.router_function()) {
        (true, _) => Runner::ReadOnly(
            "no router and task queues: set CURFEW_ROUTER_QUEUE_URL and CURFEW_TASK_QUEUE_URL"
                .into(),
        ),
        (false, Ok(function)) => Runner::Lambda {
            client: aws_sdk_lambda::Client::new(&sdk),
            function: function.to_string(),
        },
        (false, Err(e)) => Runner::ReadOnly(e.to_string()),
    };
    Ok(Console::new(hub, runner, recorder(&sdk)?, token))
}

/// Records the console's configuration changes as the operator, signed with the audit key when
/// `CURFEW_AUDIT_KEY` is set.
pub fn recorder(sdk: &aws_config::SdkConfig) -> Result<ChangeRecorder> {
    Ok(ChangeRecorder::new(sdk, crate::changes::audit_key()?))
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// Opens `url` in the desktop's browser; a failure is a warning, the console still serves.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        eprintln!("warning: could not open a browser with {opener} ({e}); open the URL above");
    }
}
