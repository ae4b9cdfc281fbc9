//! `curfew audit verify [--file FILE]`: re-hashes every chain of the audit trail (or of an
//! export), then checks every finished operation against its task records and the saved
//! baselines. The rules are pure functions in `curfew_core::trail` and `curfew_core::audit`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use curfew_core::audit_verify::{check_chains, verify_store, VerifyReport};
use curfew_core::trail::{AuditKey, AuditRecord, ChainHead, ChainProblem};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::ExportLine;
use crate::changes::audit_key;
use crate::cli::{GlobalOpts, Output};
use crate::connect;
use crate::output::{self, outln};

/// What `verify --file FILE --output json` prints.
#[derive(Serialize)]
struct FileJson<'a> {
    path: String,
    sha256: String,
    chains: u64,
    records: u64,
    signatures_checked: bool,
    chain_problems: &'a [ChainProblem],
}

fn chain_table(problems: &[ChainProblem]) -> String {
    let mut table = output::table(["chain", "record", "problem"]);
    for p in problems {
        table.add_row(vec![p.chain.clone(), p.seq.to_string(), p.problem.clone()]);
    }
    table.to_string()
}

fn signature_note(key: Option<&AuditKey>) {
    if key.is_none() {
        eprintln!("note: CURFEW_AUDIT_KEY is not set: chain heads' signatures were not checked");
    }
}

/// Verifies an export offline: every chain in the file against its head in the file.
pub fn verify_file(file: &Path, opts: &GlobalOpts) -> Result<()> {
    let key = audit_key()?;
    let path = file.display().to_string();
    let bytes = std::fs::read(file).with_context(|| format!("reading {path}"))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let text =
        String::from_utf8(bytes).map_err(|_| anyhow!("{path} is not UTF-8 text: not an export"))?;
    let mut records: BTreeMap<String, Vec<AuditRecord>> = BTreeMap::new();
    let mut heads: BTreeMap<String, ChainHead> = BTreeMap::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let parsed: ExportLine = serde_json::from_str(line).map_err(|e| {
            anyhow!(
                "{path} line {}: not a line of `curfew audit export`: {e}",
                n + 1
            )
        })?;
        match parsed {
            ExportLine::Record(r) => records.entry(r.chain.clone()).or_default().push(r),
            ExportLine::Head(h) => {
                records.entry(h.chain.clone()).or_default();
                heads.insert(h.chain.clone(), h);
            }
        }
    }
    let problems = check_chains(
        records
            .iter()
            .map(|(chain, r)| (chain.as_str(), heads.get(chain), r.as_slice())),
        key.as_ref(),
    );
    let count: u64 = records.values().map(|r| r.len() as u64).sum();
    let summary = format!(
        "verified {} in {} of {path} (sha256 {sha256}): {}",
        output::count(count, "record"),
        output::count(records.len() as u64, "chain"),
        match problems.len() {
            0 => "no problems".to_string(),
            n => output::count(n as u64, "broken chain"),
        }
    );
    match opts.output {
        Output::Json => output::print_json(&FileJson {
            path: path.clone(),
            sha256,
            chains: records.len() as u64,
            records: count,
            signatures_checked: key.is_some(),
            chain_problems: &problems,
        })?,
        Output::Table => {
            signature_note(key.as_ref());
            if problems.is_empty() {
                outln!("{summary}")?;
            } else {
                outln!("{}", chain_table(&problems))?;
            }
        }
    }
    match problems.first() {
        None => Ok(()),
        Some(first) => Err(anyhow!(
            "{summary}; first: chain {} record {}: {}",
            first.chain,
            first.seq,
            first.problem
        )),
    }
}

pub async fn verify(opts: &GlobalOpts) -> Result<()> {
    let key = audit_key()?;
    let store = connect::store(opts).await?;
    let report = verify_store(store.as_ref(), key.as_ref())
        .await
        .context("reading the audit trail, the operations and the baselines")?;
    let VerifyReport {
        chains,
        records,
        chain_problems,
        operations,
        tasks,
        problems,
        in_flight,
        ..
    } = &report;
    let (records, operations, tasks) = (*records, *operations, *tasks);
    let broken = chain_problems.len() + problems.len();
    let summary = format!(
        "verified {} in {}, {}, {}: {}",
        output::count(records, "audit record"),
        output::count(*chains, "chain"),
        output::count(operations, "operation"),
        output::count(tasks, "task"),
        match broken {
            0 => "no problems".to_string(),
            n => output::count(n as u64, "problem"),
        }
    );
    match opts.output {
        Output::Json => output::print_json(&report)?,
        Output::Table => {
            signature_note(key.as_ref());
            if !chain_problems.is_empty() {
                outln!("{}", chain_table(chain_problems))?;
            }
            if !problems.is_empty() {
                let mut table = output::table(["operation", "target", "problem"]);
                for p in problems {
                    table.add_row(vec![
                        p.operation.clone(),
                        p.target.clone().unwrap_or_else(|| "-".into()),
                        p.problem.clone(),
                    ]);
                }
                outln!("{table}")?;
            }
            let unchecked = *in_flight;
            if unchecked > 0 {
                eprintln!(
                    "note: {unchecked} targets with work in flight were not compared with their baseline"
                );
            }
            if broken == 0 {
                outln!("{summary}")?;
            }
        }
    }
    match chain_problems.first() {
        _ if broken == 0 => Ok(()),
        Some(first) => Err(anyhow!(
            "{summary}; first: chain {} record {}: {}",
            first.chain,
            first.seq,
            first.problem
        )),
        None => Err(anyhow!(summary)),
    }
}
