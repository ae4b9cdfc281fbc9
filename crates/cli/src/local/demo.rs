//! `curfew local demo` (what `make demo` runs): its own emulator, a hub, three spoke accounts,
//! 60 targets and two weekday schedules; then a simulated day in fast-forward. A demo clock
//! jumps to each due fire, the real poller fires it, and the local dispatcher drains the queues
//! through the real router and worker code. It ends with the fleet before the stop, after the
//! stop and after the start, checks that every target is exactly where it should be, and stops
//! the emulator on every path out (error and Ctrl-C included).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Datelike, Duration, TimeZone, Utc, Weekday};
use chrono_tz::Europe::Berlin;
use curfew_aws::local::emulator::Emulator;
use curfew_aws::local::{spoke_role_arn, FleetTarget};
use curfew_core::account::SpokeRole;
use curfew_core::calendar::{Calendar, Calendars};
use curfew_core::clock::{Clock, ManualClock};
use curfew_core::operation::{Operation, TaskStatus};
use curfew_core::ports::Override;
use curfew_core::schedule::{Schedule, ScheduleRecord};
use curfew_core::selector::Selector;
use curfew_core::service::{poller, Hub};
use curfew_core::target::{Sizes, Target};
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::cli::GlobalOpts;
use crate::connect::{self, Queues, LOCAL_REGION};
use crate::output::{self, outln};
use crate::progress;

const ZONE: &str = "Europe/Berlin";
const SELECT: &str = "tag:env=dev";
/// One dev ASG someone is still using tonight: an override keeps it awake until 21:00.
const KEPT_AWAKE: &str = "account=222222222222,region=eu-west-1,name=dev-web-02";
/// One sleep-window schedule: asleep weeknights and all weekend.
const SCHEDULE: &str = "dev-nights";
const ASLEEP: &str = "Mon-Fri 19:00-07:00, Sat-Sun all-day";
/// The holiday calendar the schedule skips: the Friday after the simulated day.
const CALENDAR: &str = "demo-holidays";

/// Runs the demo and stops its emulator whatever happens.
pub async fn run(opts: &GlobalOpts) -> Result<()> {
    let started = Instant::now();
    let root = super::project_root()?;
    let log = root.join(".curfew/demo/moto.log");
    step(
        "Starting the AWS emulator (moto on 127.0.0.1; the first run installs it into .venv-moto)",
    )?;
    let log_for_start = log.clone();
    // The watchdog (`die_with` our pid) stops moto even if this process is killed outright.
    let emulator = tokio::task::spawn_blocking(move || {
        Emulator::start(&root, &log_for_start, Some(std::process::id()))
    })
    .await
    .context("starting the emulator")??;
    let demo = async {
        outln!(
            "  moto on {} (pid {}, log {})",
            emulator.endpoint,
            emulator.pid,
            log.display()
        )?;
        day(&emulator, opts.max_concurrency).await
    };
    let result = tokio::select! {
        result = demo => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    // On a terminal the console stays up over the demo's hub until Ctrl-C; scripts and CI
    // (stdout not a terminal) end here, as before.
    let result = match result {
        Ok(after) if std::io::stdout().is_terminal() => console(after).await,
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    };
    // The watchdog shell's children (moto itself) are looked up by parent pid before the
    // watchdog is stopped, so the demo can wait for them to be gone.
    let server_pids = children(emulator.pid);
    emulator.stop();
    drop(emulator);
    wait_for_exit(&server_pids);
    match result {
        Err(e) if !output::stdout_closed(&e) => {
            eprintln!(
                "demo failed after {:.0?}; the emulator is stopped (its log: {})",
                started.elapsed(),
                log.display()
            );
            Err(e)
        }
        result => {
            // The emulator's log only matters when the demo went wrong.
            let _ = std::fs::remove_file(&log);
            if let Some(dir) = log.parent() {
                let _ = std::fs::remove_dir(dir);
            }
            result?;
            outln!(
                "\nDemo finished in {:.0?}; the emulator is stopped.",
                started.elapsed()
            )
        }
    }
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    std::process::Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// True while `pid` runs (a zombie, exited but not yet reaped, does not count).
fn running(pid: u32) -> bool {
    std::process::Command::new("ps")
        .args(["-o", "stat=", "-p", &pid.to_string()])
        .output()
        .is_ok_and(|out| {
            let stat = String::from_utf8_lossy(&out.stdout);
            out.status.success() && !stat.trim().is_empty() && !stat.trim().starts_with('Z')
        })
}

/// Waits (up to 15 seconds) for the emulator's processes to exit, so that nothing of it is
/// left running when the demo returns.
fn wait_for_exit(pids: &[u32]) {
    let deadline = Instant::now() + std::time::Duration::from_secs(15);
    while pids.iter().any(|&pid| running(pid)) && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn step(text: &str) -> Result<()> {
    outln!("\n== {text}")
}

/// Noon on the next Wednesday in Berlin: the simulated day runs to Thursday noon, through the
/// 19:00 stop and the 07:00 start.
fn demo_start(now: DateTime<Utc>) -> DateTime<Utc> {
    let mut day = now.with_timezone(&Berlin).date_naive() + Duration::days(1);
    while day.weekday() != Weekday::Wed {
        day += Duration::days(1);
    }
    Berlin
        .from_local_datetime(&day.and_hms_opt(12, 0, 0).expect("noon exists"))
        .single()
        .expect("noon is never skipped or repeated in Berlin")
        .with_timezone(&Utc)
}

/// `hour`:00 in Berlin on the local day of `day`.
fn at_berlin(day: DateTime<Utc>, hour: u32) -> DateTime<Utc> {
    let date = day.with_timezone(&Berlin).date_naive();
    Berlin
        .from_local_datetime(&date.and_hms_opt(hour, 0, 0).expect("a valid hour"))
        .earliest()
        .expect("the demo's hours exist on a Wednesday")
        .with_timezone(&Utc)
}

fn berlin(t: DateTime<Utc>) -> String {
    t.with_timezone(&Berlin)
        .format("%a %Y-%m-%d %H:%M %Z")
        .to_string()
}

/// What the demo leaves for the console: its hub, the dispatcher over its queues, and its clock.
struct AfterTheDay {
    hub: Hub,
    sdk: aws_config::SdkConfig,
    dispatcher: curfew_aws::dispatch::Dispatcher,
    clock: Arc<ManualClock>,
}

/// Serves the console over the demo's hub until Ctrl-C. The demo's clock runs on from the end
/// of the simulated day in real time, so what the console starts is newer than everything the
/// day did (operations are ordered by their creation time).
async fn console(after: AfterTheDay) -> Result<()> {
    let AfterTheDay {
        hub,
        sdk,
        dispatcher,
        clock,
    } = after;
    let ticking = tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            clock.advance(Duration::seconds(1));
        }
    });
    let token = curfew_console::Token::generate().context("drawing the console's token")?;
    let recorder = crate::commands::ui::recorder(&sdk)?;
    let runner = curfew_console::Runner::local(dispatcher);
    let console = curfew_console::Console::new(hub, runner, recorder, token);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("listening for the console on 127.0.0.1")?;
    let addr = listener.local_addr().context("the console's address")?;
    step("The console on the demo fleet (Ctrl-C stops it and the emulator)")?;
    outln!("  {}", console.url(addr))?;
    let served = curfew_console::serve(listener, console, crate::commands::ui::shutdown()).await;
    ticking.abort();
    served.context("serving the console")
}

async fn day(emulator: &Emulator, max_concurrency: u16) -> Result<AfterTheDay> {
    let sdk = connect::sdk_config(Some(&emulator.endpoint), Some(LOCAL_REGION)).await;
    step("Provisioning the hub: state table, router and task queues (each with a DLQ)")?;
    let config = curfew_aws::hub::provision(&sdk, "curfew-demo")
        .await
        .context("provisioning the hub")?;
    let start = demo_start(Utc::now());
    let clock = Arc::new(ManualClock::new(start));
    let queues = Queues {
        router: &config.router_queue_url,
        task: &config.task_queue_url,
    };
    let hub = connect::build_hub(&sdk, &config.table, Some(&queues), clock.clone())?;
    let dispatcher = connect::dispatcher(&hub, &sdk, &queues, max_concurrency);

    step("Registering 3 spoke accounts and seeding their fleet (through AssumeRole into each)")?;
    let accounts = super::register_demo_accounts(hub.store.as_ref()).await?;
    let fleet = super::seed_demo_fleet(&sdk).await?;
    let ids: Vec<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
    outln!("  accounts {} (role curfew-spoke each)", ids.join(", "))?;
    print_fleet_overview(&fleet)?;

    // The Friday after the simulated day is a holiday: the schedule skips both its fires.
    let holiday = (start + Duration::days(2))
        .with_timezone(&Berlin)
        .date_naive();
    let calendar =
        Calendar::new(CALENDAR, &[holiday.to_string()]).context("building the demo calendar")?;
    hub.store
        .create_calendar(&calendar, false)
        .await
        .context("creating the demo calendar")?;
    let calendars: Calendars = std::iter::once(calendar).collect();
    step(&format!(
        "Adding one sleep-window schedule in {ZONE}, skipping the holidays of calendar {CALENDAR}"
    ))?;
    let mut schedule = Schedule::try_from(ScheduleRecord {
        name: SCHEDULE.into(),
        cron: None,
        tz: ZONE.into(),
        action: None,
        asleep: Some(ASLEEP.into()),
        selector: SELECT.into(),
        enabled: true,
        dry_run: false,
        prewarm_minutes: 0,
        skip_dates: Vec::new(),
        skip_calendars: vec![CALENDAR.into()],
        awake_calendars: vec![],
        enforce: false,
        default_start: None,
        next_fire: None,
        hold: None,
    })
    .context("building the demo schedule")?;
    schedule.next_fire = schedule
        .next_fire_after(clock.now(), &calendars)
        .map(|f| f.time.utc);
    hub.store
        .create_schedule(&schedule)
        .await
        .with_context(|| format!("creating schedule {SCHEDULE}"))?;
    outln!("  {SCHEDULE}: asleep {ASLEEP}, select {SELECT}, skip calendar {CALENDAR} ({holiday})")?;
    outln!(
        "  (curfew calendar add {CALENDAR} --dates {holiday}; curfew schedule add {SCHEDULE} --asleep '{ASLEEP}' --tz {ZONE} --select {SELECT} --skip-calendar {CALENDAR})"
    )?;
    print_week(&schedule, &calendars, start)?;

    let kept_awake = Selector::parse(KEPT_AWAKE).context("the demo override's selector")?;
    let awake_until = at_berlin(start, 21);
    hub.store
        .put_override(&Override {
            id: "demo-keep-awake".into(),
            selector: kept_awake.clone(),
            awake_until,
            created_at: start,
        })
        .await
        .context("storing the demo override")?;
    outln!(
        "  override: {KEPT_AWAKE} stays awake until {} (curfew override add --select ... --awake-until ...)",
        berlin(awake_until)
    )?;

    let targets: Vec<Target> = fleet.iter().map(FleetTarget::target).collect();
    let mut snapshots = vec![snapshot(&hub, &targets).await?];
    let mut ops = Vec::new();
    let end = start + Duration::days(1);
    step(&format!(
        "A simulated day in fast-forward: {} to {} (the poller runs at each due fire)",
        berlin(start),
        berlin(end)
    ))?;
    outln!(
        "  fleet at {}: {} targets running",
        berlin(start),
        targets.len()
    )?;
    while let Some(due) = next_due(&hub).await?.filter(|t| *t <= end) {
        clock.set(due);
        let report = poller::tick(&hub).await.context("running the poller")?;
        outln!(
            "\n  >> {}: the poller fired {}",
            berlin(due),
            if report.created.is_empty() {
                "nothing".to_string()
            } else {
                report.created.join(", ")
            }
        )?;
        let began = Instant::now();
        let bar = progress::bar("draining");
        let op_id = report.created.first().cloned().unwrap_or_default();
        let drained =
            progress::while_running(hub.store.as_ref(), &op_id, &bar, dispatcher.drain()).await;
        bar.finish_and_clear();
        let drained = drained.context("draining the queues through the router and worker")?;
        for cause in &drained.rejected {
            outln!("  warning: a queue message was rejected: {cause}")?;
        }
        for id in &report.created {
            let op = progress::load(hub.store.as_ref(), id).await?;
            outln!(
                "     {} {} of {SELECT}: {} in {:.1?} ({} task messages, {} retried); {} changed, {} skipped, {} failed, {} dead-lettered",
                id,
                op.action,
                op.status,
                began.elapsed(),
                drained.task_messages,
                drained.retries,
                op.counts.succeeded,
                op.counts.skipped,
                op.counts.failed,
                op.counts.dead_lettered
            )?;
            let tasks = hub
                .store
                .list_tasks(id)
                .await
                .with_context(|| format!("listing the tasks of {id}"))?;
            for task in tasks.iter().filter(|t| t.status != TaskStatus::Succeeded) {
                outln!(
                    "       {} {} {} {}: {}",
                    task.status,
                    task.target.account,
                    task.target.region,
                    task.target.display_name(),
                    task.reason.as_deref().unwrap_or("")
                )?;
            }
            ops.push(op);
        }
        snapshots.push(snapshot(&hub, &targets).await?);
    }

    print_results(&ops)?;
    check_and_print(&targets, &snapshots, &kept_awake)?;
    print_holiday(&schedule, &calendars, end)?;
    outln!(
        "\nTry it yourself, with curfew on your PATH (README, \"The command line\"):\n  eval \"$(curfew local up)\"; curfew plan --action stop --select {SELECT}"
    )?;
    Ok(AfterTheDay {
        hub,
        sdk,
        dispatcher,
        clock,
    })
}

/// The schedule's week as a grid, and its fires over the simulated day.
fn print_week(schedule: &Schedule, calendars: &Calendars, start: DateTime<Utc>) -> Result<()> {
    let window = schedule.window().expect("the demo schedule is a window");
    outln!("  its week ('#' asleep; curfew schedule grid {SCHEDULE}):")?;
    for line in window.week().to_grid()?.lines() {
        outln!("    {line}")?;
    }
    let (stops, starts) = window.crons();
    outln!(
        "  it fires as the cron pair stop '{}' / start '{}'; the next two: {}",
        stops.join("' '"),
        starts.join("' '"),
        schedule
            .fires_after(start, calendars)
            .take(2)
            .map(|f| format!("{} {}", f.action, berlin(f.time.utc)))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The fires after the simulated day, the holiday's marked skipped (`curfew next`).
fn print_holiday(schedule: &Schedule, calendars: &Calendars, end: DateTime<Utc>) -> Result<()> {
    step(&format!(
        "The holiday: curfew next --schedule {SCHEDULE} after the simulated day"
    ))?;
    let mut table = output::table(["local", "action", "note"]);
    for fire in schedule.upcoming(end, 3, calendars) {
        table.add_row(vec![
            berlin(fire.time.utc),
            fire.action.to_string(),
            fire.skipped
                .map(|s| format!("skipped: {s}"))
                .unwrap_or_default(),
        ]);
    }
    outln!("{table}")
}

/// The earliest next fire of any enabled schedule.
async fn next_due(hub: &Hub) -> Result<Option<DateTime<Utc>>> {
    let schedules = hub
        .store
        .list_schedules()
        .await
        .context("listing schedules")?;
    Ok(schedules
        .schedules
        .iter()
        .filter(|s| s.enabled)
        .filter_map(|s| s.next_fire)
        .min())
}

/// Every target's live sizes, read from its spoke the way the worker reads them.
async fn snapshot(hub: &Hub, targets: &[Target]) -> Result<Vec<Sizes>> {
    stream::iter(targets)
        .map(|t| async move {
            let role = SpokeRole {
                account: t.account.clone(),
                role_arn: spoke_role_arn(&t.account),
                external_id: None,
            };
            hub.spokes
                .live_state(&role, t)
                .await
                .map(|live| live.sizes)
                .with_context(|| format!("reading {}", t.key()))
        })
        .buffered(16)
        .try_collect()
        .await
}

fn print_fleet_overview(fleet: &[FleetTarget]) -> Result<()> {
    let mut rows: BTreeMap<(String, String), [usize; 4]> = BTreeMap::new();
    for t in fleet {
        let row = rows
            .entry((t.account.clone(), t.region.clone()))
            .or_default();
        let dev = t.target().tag("env") == Some("dev");
        let column = match (t.kind, dev) {
            (curfew_core::target::TargetKind::Asg, true) => 0,
            (curfew_core::target::TargetKind::Asg, false) => 1,
            (curfew_core::target::TargetKind::Nodegroup, true) => 2,
            (curfew_core::target::TargetKind::Nodegroup, false) => 3,
        };
        row[column] += 1;
    }
    let mut table = output::table([
        "account",
        "region",
        "ASGs env=dev",
        "ASGs env=prod",
        "node groups env=dev",
        "node groups env=prod",
    ]);
    for ((account, region), counts) in &rows {
        let mut row = vec![account.clone(), region.clone()];
        row.extend(counts.iter().map(usize::to_string));
        table.add_row(row);
    }
    outln!("{table}")?;
    outln!(
        "  {} targets; node groups carry env on their cluster (dev-cluster, prod-cluster)",
        fleet.len()
    )
}

fn print_results(ops: &[Operation]) -> Result<()> {
    step("The operations (curfew ops list)")?;
    let mut table = output::table(output::OPERATION_HEADER);
    for op in ops {
        table.add_row(output::operation_row(op));
    }
    outln!("{table}")
}

/// What a target should read after the stop and after the start.
fn expected(target: &Target, before: Sizes, kept_awake: &Selector) -> (Sizes, Sizes) {
    if target.tag("env") == Some("dev") && !kept_awake.matches(target) {
        (target.kind.stopped_sizes(before), before)
    } else {
        (before, before)
    }
}

fn check_and_print(
    targets: &[Target],
    snapshots: &[Vec<Sizes>],
    kept_awake: &Selector,
) -> Result<()> {
    let [before, after_stop, after_start] = snapshots else {
        bail!(
            "the simulated day fired {} operations, expected a stop and a start",
            snapshots.len().saturating_sub(1)
        );
    };
    step("The fleet: min/max/desired before the stop, after the stop, after the start")?;
    let mut table = output::table([
        "account",
        "region",
        "kind",
        "target",
        "env",
        "before",
        "after stop",
        "after start",
        "result",
    ]);
    let mut wrong = Vec::new();
    let mut stopped = 0;
    for (i, t) in targets.iter().enumerate() {
        let (want_stopped, want_started) = expected(t, before[i], kept_awake);
        let ok = after_stop[i] == want_stopped && after_start[i] == want_started;
        let result = if !ok {
            wrong.push(t.key());
            "WRONG"
        } else if kept_awake.matches(t) {
            "kept awake by the override"
        } else if t.tag("env") == Some("dev") {
            stopped += 1;
            "stopped, restored exactly"
        } else {
            "untouched"
        };
        table.add_row(vec![
            t.account.clone(),
            t.region.clone(),
            t.kind.to_string(),
            t.display_name(),
            t.tag("env").unwrap_or("-").to_string(),
            before[i].to_string(),
            after_stop[i].to_string(),
            after_start[i].to_string(),
            result.to_string(),
        ]);
    }
    outln!("{table}")?;
    if !wrong.is_empty() {
        bail!(
            "{} targets did not end where they should: {}",
            wrong.len(),
            wrong.join(", ")
        );
    }
    let kept = targets.iter().filter(|t| kept_awake.matches(t)).count();
    outln!(
        "  {stopped} env=dev targets stopped at 19:00 and restored to their exact sizes at 07:00; \
         {kept} kept awake by the override; {} env=prod targets untouched",
        targets.len() - stopped - kept
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulated_day_starts_at_noon_on_the_next_wednesday_in_berlin() {
        // Monday 2027-01-04.
        let now = Utc.with_ymd_and_hms(2027, 1, 4, 9, 0, 0).unwrap();
        assert_eq!(
            demo_start(now),
            Utc.with_ymd_and_hms(2027, 1, 6, 11, 0, 0).unwrap()
        );
        // On a Wednesday it is the next week's.
        let now = Utc.with_ymd_and_hms(2027, 1, 6, 9, 0, 0).unwrap();
        assert_eq!(
            demo_start(now),
            Utc.with_ymd_and_hms(2027, 1, 13, 11, 0, 0).unwrap()
        );
    }
}
