//! `curfew next`: the schedule preview, with curfew's DST rules (see `curfew_core::cron`).

use anyhow::Result;
use chrono::Utc;
use curfew_core::cron::CronSpec;

use super::parse_instant;
use crate::cli::{NextArgs, Output};
use crate::error::bad_input;
use crate::output::{self, outln, FireJson};

/// Prints the next `--count` fire times strictly after `--after`.
pub fn run(args: &NextArgs, out: Output) -> Result<()> {
    let spec = CronSpec::parse(&args.cron, &args.tz)
        .map_err(|e| bad_input(format!("--{}: {e}", e.field())))?;
    let after = match &args.after {
        Some(value) => parse_instant(value, "--after")?,
        None => Utc::now(),
    };
    let fires = spec.upcoming(after, usize::from(args.count));
    match out {
        Output::Json => output::print_json(&fires.iter().map(FireJson::from).collect::<Vec<_>>()),
        Output::Table => {
            let zone = spec.zone();
            let mut table = output::table(["UTC", &format!("local ({})", spec.zone_name()), ""]);
            for fire in &fires {
                let local = fire.utc.with_timezone(&zone);
                table.add_row(vec![
                    output::utc(fire.utc),
                    output::local(fire.local),
                    local.format("%a %H:%M %Z").to_string(),
                ]);
            }
            outln!("{table}")?;
            let rule = if spec.is_fixed_time() {
                "fixed time: a skipped time fires right after the jump, a repeated one at its first occurrence"
            } else {
                "follows real time across daylight-saving changes"
            };
            outln!("{} in {} ({rule})", spec.expression(), spec.zone_name())?;
            if fires.is_empty() {
                outln!("no fire times before the year 5000")?;
            }
            Ok(())
        }
    }
}
