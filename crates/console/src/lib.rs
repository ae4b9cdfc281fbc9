//! # curfew-console
//!
//! The web console `curfew ui` serves: the fleet, its schedules (with a week grid) and its
//! operations (with live progress), stop and start by selector with the plan shown first, and
//! a JSON API under `/api/` in the same shapes as `curfew ... --output json`
//! ([`curfew_core::view`]).
//!
//! The console is a view over a [`curfew_core::service::Hub`]: it reads through the hub's
//! ports and starts operations through the same code path as `curfew stop|start|trigger`
//! ([`Runner`]). It listens on loopback by default; every mutating request must carry the
//! per-run [`Token`] (the `X-Curfew-Token` header, or the cookie that opening the printed URL
//! sets), so no other web page can change the fleet through the operator's browser.
//!
//! ```no_run
//! # async fn example(hub: curfew_core::service::Hub, sdk: aws_config::SdkConfig) -> std::io::Result<()> {
//! use curfew_aws::changes::ChangeRecorder;
//! use curfew_console::{Console, Runner, Token};
//!
//! let token = Token::generate().expect("the OS has a random source");
//! let runner = Runner::ReadOnly("no queues configured".into());
//! let console = Console::new(hub, runner, ChangeRecorder::new(&sdk, None), token);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! println!("{}", console.url(listener.local_addr()?));
//! curfew_console::serve(listener, console, std::future::pending()).await
//! # }
//! ```
#![warn(missing_docs)]

mod api;
mod audit;
mod config;
mod console;
mod error;
pub mod fleet;
mod guard;
mod html;
mod pages;
pub mod prices;
pub mod savings;
mod token;
pub mod week;

use std::future::Future;

pub use config::ConfigError;
pub use console::{Console, RunError, Runner};
pub use token::Token;

/// The console's routes: pages, `/api/`, and the embedded assets.
pub fn app(console: Console) -> axum::Router {
    axum::Router::new()
        .merge(pages::routes())
        .nest("/api", api::routes())
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            guard::guard,
        ))
        .with_state(console)
}

/// Serves the console on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    console: Console,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(console))
        .with_graceful_shutdown(shutdown)
        .await
}
