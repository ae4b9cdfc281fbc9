//! `curfew account add | list | remove`: the spoke accounts the hub reaches.

use anyhow::{anyhow, Context, Result};
use curfew_core::account::Account;
use curfew_core::trail::ChangeKind;

use crate::changes;
use crate::cli::{AccountCommand, GlobalOpts, Output};
use crate::connect;
use crate::error::bad_input;
use crate::output::{self, outln};

/// The flag or argument an operator typed for an account field.
fn flag(field: &str) -> &'static str {
    match field {
        "account_id" => "ACCOUNT_ID",
        "role" => "--role",
        "external_id" => "--external-id",
        _ => "--regions",
    }
}

/// Runs an account command.
pub async fn run(command: AccountCommand, opts: &GlobalOpts) -> Result<()> {
    match command {
        AccountCommand::Add {
            account_id,
            role,
            external_id,
            regions,
        } => {
            let account = Account::new(&account_id, &role, external_id.as_deref(), &regions)
                .map_err(|e| bad_input(format!("{}: {e}", flag(e.field))))?;
            let store = connect::store(opts).await?;
            let before = store
                .get_account(&account.id)
                .await
                .with_context(|| format!("reading account {}", account.id))?;
            store
                .put_account(&account)
                .await
                .with_context(|| format!("registering account {}", account.id))?;
            changes::record(
                opts,
                store.as_ref(),
                ChangeKind::AccountAdded,
                &account.id,
                before.as_ref().and_then(changes::account_json),
                changes::account_json(&account),
            )
            .await?;
            match opts.output {
                Output::Json => output::print_json(&account),
                Output::Table => {
                    outln!(
                        "account {} registered: role {}, regions {}",
                        account.id,
                        account.role.role_arn,
                        account.regions.join(",")
                    )
                }
            }
        }
        AccountCommand::List => {
            let store = connect::store(opts).await?;
            let mut accounts = store.list_accounts().await.context("listing accounts")?;
            accounts.sort_by(|a, b| a.id.cmp(&b.id));
            match opts.output {
                Output::Json => output::print_json(&accounts),
                Output::Table => {
                    let mut table = output::table(["account", "role", "external id", "regions"]);
                    for a in &accounts {
                        table.add_row(vec![
                            a.id.clone(),
                            a.role.role_arn.clone(),
                            if a.role.external_id.is_some() {
                                "set"
                            } else {
                                "-"
                            }
                            .to_string(),
                            a.regions.join(","),
                        ]);
                    }
                    outln!("{table}")
                }
            }
        }
        AccountCommand::Remove { account_id } => {
            curfew_core::account::validate_account_id(&account_id)
                .map_err(|e| bad_input(format!("ACCOUNT_ID: {e}")))?;
            let store = connect::store(opts).await?;
            let before = store
                .get_account(&account_id)
                .await
                .with_context(|| format!("reading account {account_id}"))?;
            let removed = store
                .delete_account(&account_id)
                .await
                .with_context(|| format!("removing account {account_id}"))?;
            if !removed {
                return Err(anyhow!("no account {account_id} is registered"));
            }
            changes::record(
                opts,
                store.as_ref(),
                ChangeKind::AccountRemoved,
                &account_id,
                before.as_ref().and_then(changes::account_json),
                None,
            )
            .await?;
            match opts.output {
                Output::Json => output::print_json(&serde_json::json!({"removed": account_id})),
                Output::Table => {
                    outln!("account {account_id} removed")
                }
            }
        }
    }
}
