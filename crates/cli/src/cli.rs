//! The command line's shape: every command, flag and environment variable of the contract in
//! DESIGN.md "The operator's command line". Parsing only; the work is in `commands`.

use curfew_core::hold::{HoldModes, Source};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use curfew_core::decision::Action;
use curfew_core::operation::Discovery;
use curfew_core::selector::Selector;

const TOP_HELP: &str = "\
Examples:
  curfew next --cron '0 19 * * 1-5' --tz Europe/Berlin --count 3
  eval \"$(curfew local up)\"
  curfew stop --select tag:env=dev,region=eu-west-1 --wait
  curfew dlq list
  curfew health

Environment (a flag overrides its variable):
  AWS_ENDPOINT_URL         --endpoint: an emulator; stop/start/trigger then run in-process
  AWS_REGION               --region: the hub's region (local mode: eu-west-1)
  CURFEW_TABLE             --table: the hub's DynamoDB state table
  CURFEW_ROUTER_QUEUE_URL  --router-queue-url: the router queue (local mode)
  CURFEW_TASK_QUEUE_URL    --task-queue-url: the task queue (local mode; and where `dlq redrive` sends)
  CURFEW_TASK_DLQ_URL      --task-dlq-url: the task dead-letter queue (`curfew dlq`)
  CURFEW_ROUTER_FUNCTION   --router-function: the router Lambda (AWS mode)
  CURFEW_NOTIFY_TOPIC_ARN  --notify-topic-arn: the SNS topic local mode publishes notices to, as the
                           Lambdas do (`local up` exports it; docs/NOTIFICATIONS.md); unset: none
  CURFEW_OUTPUT            --output: table or json
  CURFEW_MAX_CONCURRENCY   --max-concurrency: worker batches at once in local mode (default 50)
  CURFEW_CATCHUP_MINUTES   local poller: how far back missed fires are caught up (default 60, max 10080)
  CURFEW_DRIFT_MINUTES     local poller: start a drift check of the targets held asleep this often
                           (default 0: never; the hub stack sets 60; max 10080)
  CURFEW_ENFORCE_MINUTES   local poller: pass over each --enforce window schedule in its asleep time
                           this often (default 1: every tick; 0 never; max 10080)
  CURFEW_INVENTORY_MINUTES local router: trust the inventory cache this long (default 15, max 10080)
  CURFEW_LEASE_SECONDS     local worker: lease on a target if never released (1-86400; at least
                           CURFEW_WORKER_TIMEOUT_SECONDS + 60; default that or 900, the larger)
  CURFEW_WORKER_TIMEOUT_SECONDS
                           local worker: the longest a worker runs (default and maximum 900, as Lambda)
  CURFEW_TASK_MAX_RECEIVES local worker: the task queue's maxReceiveCount; on that receive a task still
                           waiting is dead-lettered (1-1000, default 5, as `local up` provisions it)
  CURFEW_STUCK_MINUTES     local worker: a node group UPDATING this long while a task waits on it sends a
                           stuck_updating notice (default 30, 0 never, max 10080)
  CURFEW_LOCAL_DIR         `curfew local up|down` state (default <project>/.curfew/local)
  CURFEW_LOG               diagnostics on stderr as JSON lines, a tracing filter such as info (default error)
  CURFEW_AUDIT_KEY         the hub's audit key (32+ bytes; the stack's AuditKey secret): `audit verify`
                           checks chain heads' signatures with it; changes made with it set are signed
  CURFEW_PRICES            `curfew ui --prices`: a price table for the savings page's money

Local mode:
  eval \"$(curfew local up)\"     start the emulator with a demo fleet and export its variables
  curfew local run              fire due schedules every minute on the real clock
  curfew local demo             the whole demo: a simulated day of stops and starts

Exit codes: 0 done, 1 failed at run time, 2 bad input or missing configuration.
Errors are one line on stderr starting with `error: `.";

/// curfew puts EKS managed node groups and EC2 Auto Scaling groups to sleep on cron schedules
/// and wakes them exactly as they were.
#[derive(Debug, Parser)]
// A missing subcommand is an error on one line (see `main`), not the whole help:
// `arg_required_else_help = false` here and on the command groups below.
#[command(
    name = "curfew",
    version,
    after_help = TOP_HELP,
    arg_required_else_help = false
)]
pub struct Cli {
    /// Where the hub is and how to print.
    #[command(flatten)]
    pub global: GlobalOpts,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How to print data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Tables for people.
    Table,
    /// JSON for scripts.
    Json,
}

/// Options every command takes.
#[derive(Clone, Debug, Args)]
pub struct GlobalOpts {
    /// AWS endpoint URL (an emulator such as moto); set means local mode
    #[arg(
        long,
        env = "AWS_ENDPOINT_URL",
        global = true,
        hide_env_values = true,
        value_name = "URL"
    )]
    pub endpoint: Option<String>,
    /// The hub's AWS region
    #[arg(long, env = "AWS_REGION", global = true, hide_env_values = true)]
    pub region: Option<String>,
    /// The hub's DynamoDB state table
    #[arg(
        long,
        env = "CURFEW_TABLE",
        global = true,
        hide_env_values = true,
        value_name = "NAME"
    )]
    pub table: Option<String>,
    /// The router queue URL (local mode)
    #[arg(
        long,
        env = "CURFEW_ROUTER_QUEUE_URL",
        global = true,
        hide_env_values = true,
        value_name = "URL"
    )]
    pub router_queue_url: Option<String>,
    /// The task queue URL (local mode; `dlq redrive` sends to it)
    #[arg(
        long,
        env = "CURFEW_TASK_QUEUE_URL",
        global = true,
        hide_env_values = true,
        value_name = "URL"
    )]
    pub task_queue_url: Option<String>,
    /// The task dead-letter queue URL (`curfew dlq`)
    #[arg(
        long,
        env = "CURFEW_TASK_DLQ_URL",
        global = true,
        hide_env_values = true,
        value_name = "URL"
    )]
    pub task_dlq_url: Option<String>,
    /// The router Lambda's name or ARN (AWS mode)
    #[arg(
        long,
        env = "CURFEW_ROUTER_FUNCTION",
        global = true,
        hide_env_values = true,
        value_name = "NAME"
    )]
    pub router_function: Option<String>,
    /// The SNS topic notices go to (local mode; the Lambdas read the same variable)
    #[arg(
        long,
        env = "CURFEW_NOTIFY_TOPIC_ARN",
        global = true,
        hide_env_values = true,
        value_name = "ARN"
    )]
    pub notify_topic_arn: Option<String>,
    /// Tables for people or JSON for scripts
    #[arg(long, env = "CURFEW_OUTPUT", global = true, hide_env_values = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Worker batches in flight at once in local mode (the event source's maximum concurrency)
    #[arg(long, env = "CURFEW_MAX_CONCURRENCY", global = true, hide_env_values = true, default_value_t = 50,
          value_parser = clap::value_parser!(u16).range(1..=1000), value_name = "N")]
    pub max_concurrency: u16,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Preview a schedule: its next fire times in UTC and local time
    #[command(after_help = "\
Examples:
  curfew next --cron '30 2 * * *' --tz Europe/Berlin --after 2027-03-27T12:00:00Z --count 3
  curfew next --cron '0 19 * * 1-5' --tz Europe/Berlin --skip-calendar de-holidays
  curfew next --schedule dev-nights --count 10 --output json
  curfew next dev-nights                    # the same as --schedule dev-nights

Fixed-time schedules (no * in minute or hour) fire once right after a spring-forward jump and
once at the first occurrence of a repeated fall-back time; others follow real time. Fires on a
skipped date are listed too, marked skipped with the reason (`calendar de-holidays`); --count
counts the fires that happen.")]
    Next(NextArgs),
    /// Register, list and remove spoke accounts
    #[command(subcommand)]
    #[command(
        arg_required_else_help = false,
        after_help = "\
Examples:
  curfew account add 111111111111 --role arn:aws:iam::111111111111:role/curfew-spoke \\
      --regions eu-west-1
  curfew account list"
    )]
    Account(AccountCommand),
    /// Add, list, show, enable, disable and delete schedules
    #[command(subcommand)]
    #[command(
        arg_required_else_help = false,
        after_help = "\
Examples:
  curfew schedule add dev-nights --asleep 'Mon-Fri 19:00-07:00, Sat-Sun all-day' \\
      --tz Europe/Berlin --select tag:env=dev --skip-calendar de-holidays
  curfew schedule add dev-evening-stop --cron '0 19 * * 1-5' --tz Europe/Berlin \\
      --action stop --select tag:env=dev
  curfew schedule grid dev-nights
  curfew schedule list
  curfew schedule disable dev-evening-stop"
    )]
    Schedule(ScheduleCommand),
    /// Holiday calendars: dates schedules skip or stay awake on
    #[command(subcommand)]
    #[command(
        arg_required_else_help = false,
        after_help = "\
Examples:
  curfew calendar add de-holidays --dates 2027-12-24,2027-12-25,2027-12-26
  curfew calendar add de-holidays --file holidays.ics
  curfew calendar list
  curfew calendar show de-holidays
  curfew calendar delete de-holidays

A schedule refers to calendars by name (schedule add --skip-calendar, --awake-on-calendar);
a date is read in each schedule's own zone. A calendar a schedule uses cannot be deleted."
    )]
    Calendar(CalendarCommand),
    /// What a stop or start would change, target by target; changes nothing
    #[command(after_help = "\
Example:
  curfew plan --action stop --select kind=nodegroup,tag:env=dev

Writes nothing except the inventory cache (accounts never discovered are listed live).")]
    Plan(PlanArgs),
    /// Stop every target matching a selector now
    #[command(after_help = "\
Example:
  curfew stop --select tag:env=dev,region=eu-west-1 --wait

With an endpoint set the router and workers run in-process; against AWS the router Lambda is
invoked (see docs/INVOKE.md).")]
    Stop(RunArgs),
    /// Start every target matching a selector now, restoring its saved sizes
    #[command(after_help = "\
Examples:
  curfew start --select tag:env=dev --wait
  curfew start --select tag:env=dev --for 3h --wait

--for wakes the targets now and keeps them awake until then: one start operation, and an
override (see `curfew override list`) that scheduled stops skip until it expires. Then the next
scheduled stop applies, or, for an --enforce window schedule in its asleep time, the next
poller tick puts them back to sleep.")]
    Start(StartArgs),
    /// Run a schedule's action now
    #[command(after_help = "\
Example:
  curfew trigger dev-evening-stop --wait")]
    Trigger(TriggerArgs),
    /// List operations or show one with its tasks
    #[command(after_help = "\
Examples:
  curfew ops
  curfew ops show 20270104T1800Z-dev-evening-stop --watch")]
    Ops(OpsArgs),
    /// Keep matching targets awake: stops skip them until a time
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "\
Examples:
  curfew override add --select name=dev-web-01 --awake-until 3h
  curfew override add --select tag:team=data --awake-until 2027-01-04T22:00:00Z
  curfew override list
  curfew override remove 20270104T180000Z-4f2a9c0e1b7d

The flag forms `curfew override --select S --awake-until T`, `--list` and `--remove ID` are kept
as aliases of add, list and remove for one release."
    )]
    Override(OverrideArgs),
    /// The audit trail of finished operations: list, verify or export it
    #[command(after_help = "\
Examples:
  curfew audit list --limit 10 --output json
  curfew audit verify
  curfew audit export audit.jsonl

`verify` exits 1 when it finds a problem; `export` writes every finished operation.")]
    Audit(AuditArgs),
    /// Dead-lettered tasks: list the task dead-letter queue, or redrive it to resume them
    #[command(subcommand)]
    #[command(
        arg_required_else_help = false,
        after_help = "\
Examples:
  curfew dlq list
  curfew dlq list --output json
  curfew dlq redrive

A task whose message reached its last receive still waiting (a node group that stayed
UPDATING, a target leased by another operation, an error) is DEAD_LETTERED and its message is
in the task dead-letter queue (--task-dlq-url / CURFEW_TASK_DLQ_URL)."
    )]
    Dlq(DlqCommand),
    /// Traffic lights for the hub: queues and their DLQs, the poller, accounts, operations, schedules
    #[command(after_help = "\
Examples:
  curfew health
  curfew health --output json | jq -r '.checks[] | select(.status != \"green\") | .detail'
  curfew health --stuck-after 2h --lag-bound 10m

Checks (each green, amber or red):
  router-queue, task-queue  depth; red when its dead-letter queue (found from the queue's
                            RedrivePolicy) holds a message, amber without a redrive policy
  poller                    red when its last tick is older than --lag-bound while a schedule is
                            enabled; amber when it never ticked and none is, or ran late on a fire
  accounts                  red when an account's last contact (AssumeRole) failed; amber when
                            one was never contacted
  operations                red when one is PENDING or RUNNING longer than --stuck-after
  schedules                 red for every stored schedule that no longer reads (it never fires)

Needs the state table and both queue URLs (--router-queue-url, --task-queue-url). Exits 1 when a
light is red (the report is still printed). JSON:
  {\"status\": \"green|amber|red\", \"checks\": [{\"check\", \"status\", \"detail\", ...readings}]}")]
    Health(HealthArgs),
    /// The web console: fleet, schedules and operations in a browser, on 127.0.0.1
    #[command(after_help = "\
Examples:
  eval \"$(curfew local up)\" && curfew ui --open
  curfew ui --port 8080
  curfew ui --prices prices.toml    # savings in money, from a price per instance-hour per type
  curl -s \"http://127.0.0.1:8080/api/targets?select=tag:env=dev\"
  curl -s -X POST -H \"X-Curfew-Token: $TOKEN\" -d '{\"select\": \"tag:env=dev\"}' http://127.0.0.1:8080/api/stop

Prints one line on stdout as soon as it listens, the URL to open with this run's token:
  http://127.0.0.1:PORT/?token=TOKEN
and serves until Ctrl-C. Reading needs no token; every change (POST/PUT/DELETE) needs it, in the
X-Curfew-Token header or the cookie that opening the URL sets, and is refused with 403 without
it. Uses the same endpoint, table and queues as every other command (against an emulator,
stop/start/trigger run in-process; against AWS they invoke --router-function). docs/UI.md
documents the pages, the /api/ routes and the price table:
  currency = \"EUR\"
  [prices]
  \"m5.large\" = 0.107
A price file that does not read stops it before it listens (exit 1, naming the line and field).")]
    Ui(UiArgs),
    /// The embedded emulator and demo fleet
    #[command(subcommand)]
    #[command(
        arg_required_else_help = false,
        after_help = "\
Examples:
  eval \"$(curfew local up)\"
  curfew local demo
  eval \"$(curfew local down)\""
    )]
    Local(LocalCommand),
}

/// `curfew next`.
#[derive(Debug, Args)]
pub struct NextArgs {
    /// A stored schedule's name: the same as --schedule NAME
    #[arg(value_name = "SCHEDULE", conflicts_with_all = ["schedule", "cron", "tz", "skip_calendar", "skip_dates"])]
    pub name: Option<String>,
    /// A 5-field cron expression (L, W and # supported)
    #[arg(
        long,
        value_name = "EXPR",
        required_unless_present_any = ["schedule", "name"],
        requires = "tz"
    )]
    pub cron: Option<String>,
    /// An IANA time zone, e.g. Europe/Berlin
    #[arg(long, value_name = "ZONE", required_unless_present_any = ["schedule", "name"])]
    pub tz: Option<String>,
    /// A stored schedule instead of --cron/--tz: its fires, both kinds for a window, with the
    /// dates and calendars it skips (reads the state table)
    #[arg(long, value_name = "NAME", conflicts_with_all = ["cron", "tz", "skip_calendar", "skip_dates"])]
    pub schedule: Option<String>,
    /// Mark fires on this calendar's dates as skipped (reads the state table; repeatable)
    #[arg(long, value_name = "NAME")]
    pub skip_calendar: Vec<String>,
    /// Mark fires on these local dates as skipped, comma-separated YYYY-MM-DD
    #[arg(long, value_delimiter = ',', value_name = "DATES")]
    pub skip_dates: Vec<String>,
    /// Fire times strictly after this RFC 3339 instant (default: now)
    #[arg(long, value_name = "RFC3339")]
    pub after: Option<String>,
    /// How many fire times
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000), value_name = "N", allow_negative_numbers = true)]
    pub count: u16,
}

/// `curfew account ...`.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Register (or replace) a spoke account
    #[command(after_help = "\
Example:
  curfew account add 111111111111 --role arn:aws:iam::111111111111:role/curfew-spoke \\
      --external-id curfew-hub --regions eu-west-1,us-east-1")]
    Add {
        /// The 12-digit account id
        #[arg(value_name = "ACCOUNT_ID")]
        account_id: String,
        /// The spoke role the hub assumes, in that account
        #[arg(long, value_name = "ROLE_ARN")]
        role: String,
        /// The ExternalId the role's trust policy requires
        #[arg(long, value_name = "ID")]
        external_id: Option<String>,
        /// Regions curfew manages there, comma-separated
        #[arg(long, value_delimiter = ',', required = true, num_args = 1.., value_name = "r1,r2")]
        regions: Vec<String>,
    },
    /// List spoke accounts
    #[command(after_help = "Example:\n  curfew account list --output json")]
    List,
    /// Remove a spoke account (its targets are no longer scheduled)
    #[command(after_help = "Example:\n  curfew account remove 111111111111")]
    Remove {
        /// The 12-digit account id
        #[arg(value_name = "ACCOUNT_ID")]
        account_id: String,
    },
}

/// `curfew schedule ...`.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Add a schedule (validated in full before anything is written)
    #[command(after_help = "\
Example:
  curfew schedule add dev-evening-stop --cron '0 19 * * 1-5' --tz Europe/Berlin \\
      --action stop --select tag:env=dev --skip-dates 2027-12-24,2027-12-31")]
    Add(Box<ScheduleAddArgs>),
    /// List schedules with their next fire time
    #[command(after_help = "Example:\n  curfew schedule list --output json")]
    List,
    /// Show a schedule, its week (for a window) and its next fire times
    #[command(after_help = "Example:\n  curfew schedule show dev-nights")]
    Show {
        /// Schedule name
        name: String,
    },
    /// Print a window schedule's week as a grid: 7 rows Mon..Sun, '#' asleep, '.' awake
    #[command(after_help = "\
Examples:
  curfew schedule grid dev-nights > week.txt
  curfew schedule add dev-copy --grid week.txt --tz Europe/Berlin --select tag:env=dev

Hours (24 cells a row), or half hours (48) when the window changes on a half hour; the text
reads back with --grid. --output json prints the rows as a JSON array of 7 strings.")]
    Grid {
        /// Schedule name
        name: String,
    },
    /// Enable a schedule (its next fire is computed from now)
    #[command(after_help = "Example:\n  curfew schedule enable dev-evening-stop")]
    Enable {
        /// Schedule name
        name: String,
    },
    /// Disable a schedule (it never fires until enabled)
    #[command(after_help = "Example:\n  curfew schedule disable dev-evening-stop")]
    Disable {
        /// Schedule name
        name: String,
    },
    /// Delete a schedule
    #[command(after_help = "Example:\n  curfew schedule delete dev-evening-stop")]
    Delete {
        /// Schedule name
        name: String,
    },
}

/// `curfew schedule add`.
#[derive(Debug, Args)]
pub struct ScheduleAddArgs {
    /// Unique name: 1-64 letters, digits, '-' or '_'
    pub name: String,
    /// A 5-field cron expression (with --action)
    #[arg(long, value_name = "EXPR")]
    pub cron: Option<String>,
    /// An IANA time zone
    #[arg(long, value_name = "ZONE")]
    pub tz: String,
    /// stop or start (with --cron)
    #[arg(long, value_name = "stop|start")]
    pub action: Option<String>,
    /// The asleep part of the week, e.g. 'Mon-Fri 19:00-07:00, Sat-Sun all-day': one schedule
    /// that stops where sleep begins and starts where it ends (docs/SCHEDULES.md)
    #[arg(long, value_name = "WINDOW", conflicts_with = "grid")]
    pub asleep: Option<String>,
    /// The week as a 7x24 (or 7x48) grid, rows Mon..Sun, '#' asleep, '.' awake, as text or
    /// JSON, from a file or '-' for stdin: the same schedule as --asleep
    #[arg(long, value_name = "FILE|-")]
    pub grid: Option<PathBuf>,
    /// Do not fire on this calendar's dates (repeatable)
    #[arg(long, value_name = "NAME")]
    pub skip_calendar: Vec<String>,
    /// Keep the targets awake on this calendar's dates (repeatable)
    #[arg(long, value_name = "NAME")]
    pub awake_on_calendar: Vec<String>,
    /// In the window's asleep time, put back to sleep what is found awake without an override
    /// (every poller tick), recording it as drift; without it drift is only recorded
    #[arg(long)]
    pub enforce: bool,
    /// Which targets, e.g. kind=nodegroup,tag:env=dev
    #[arg(long, value_name = "SELECTOR")]
    pub select: String,
    /// Record what would change and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Fire this long before the cron time (e.g. 15m, 1h; at most 24h)
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub prewarm: Option<String>,
    /// Local dates on which it does not fire, comma-separated YYYY-MM-DD
    #[arg(long, value_delimiter = ',', value_name = "DATES")]
    pub skip_dates: Vec<String>,
    /// Start sizes MIN/MAX/DESIRED for targets with no saved baseline
    #[arg(long, value_name = "MIN/MAX/DESIRED")]
    pub default_start: Option<String>,
    /// Hold modes for node groups, comma-separated (ca-tags, ca-deployment, karpenter,
    /// workloads, or none); wins over their clusters' curfew/hold tags
    #[arg(long, value_parser = parse_hold, value_name = "MODES")]
    pub hold: Option<HoldModes>,
}

/// Where targets are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DiscoveryArg {
    /// The inventory cache (live where an account was never discovered)
    Cached,
    /// Describe every account and region now, refreshing the cache
    Live,
}

impl From<DiscoveryArg> for Discovery {
    fn from(d: DiscoveryArg) -> Self {
        match d {
            DiscoveryArg::Cached => Discovery::Cached,
            DiscoveryArg::Live => Discovery::Live,
        }
    }
}

fn parse_action(s: &str) -> Result<Action, String> {
    Action::parse(s).ok_or_else(|| "expected stop or start".to_string())
}

fn parse_hold(value: &str) -> Result<HoldModes, String> {
    HoldModes::parse(value, Source::Flag).map_err(|e| e.to_string())
}

fn parse_selector(s: &str) -> Result<Selector, String> {
    Selector::parse(s).map_err(|e| e.to_string())
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    curfew_core::schedule::parse_duration(s)
        .and_then(|d| d.to_std().ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "expected a duration such as 90s, 10m or 1h".to_string())
}

/// `curfew plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// stop or start
    #[arg(long, value_parser = parse_action, value_name = "stop|start")]
    pub action: Action,
    /// Which targets
    #[arg(long, value_parser = parse_selector, value_name = "SELECTOR")]
    pub select: Selector,
    /// Where targets are read from
    #[arg(long, value_enum, default_value_t = DiscoveryArg::Cached)]
    pub discovery: DiscoveryArg,
    /// Hold modes for node groups, as `stop --hold` would use them
    #[arg(long, value_parser = parse_hold, value_name = "MODES")]
    pub hold: Option<HoldModes>,
}

/// How long to wait for an operation, and whether to.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Show progress and wait until the operation is final, then print it with its tasks
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long
    #[arg(long, value_parser = parse_timeout, default_value = "30m", value_name = "DURATION")]
    pub timeout: std::time::Duration,
}

/// `curfew stop` and `curfew start`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Which targets
    #[arg(long, value_parser = parse_selector, value_name = "SELECTOR")]
    pub select: Selector,
    /// Record what would change and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Where targets are read from
    #[arg(long, value_enum, default_value_t = DiscoveryArg::Cached)]
    pub discovery: DiscoveryArg,
    /// Hold modes for node groups, comma-separated (ca-tags, ca-deployment, karpenter,
    /// workloads, or none); wins over their clusters' curfew/hold tags
    #[arg(long, value_parser = parse_hold, value_name = "MODES")]
    pub hold: Option<HoldModes>,
    /// Waiting.
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `curfew start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// What to start and how.
    #[command(flatten)]
    pub run: RunArgs,
    /// Keep the targets awake this long (e.g. 3h, 90m; at most 7d): scheduled stops skip them
    /// until then
    #[arg(long = "for", value_name = "DURATION", allow_hyphen_values = true)]
    pub awake_for: Option<String>,
}

/// `curfew calendar ...`.
#[derive(Debug, Subcommand)]
pub enum CalendarCommand {
    /// Add a calendar of dates (validated in full before anything is written)
    #[command(after_help = "\
Examples:
  curfew calendar add de-holidays --dates 2027-12-24,2027-12-25,2027-12-26
  curfew calendar add de-holidays --file dates.txt     # one YYYY-MM-DD per line, # comments
  curfew calendar add de-holidays --file holidays.ics  # all-day events of an iCalendar file
  curfew calendar add de-holidays --file holidays-2028.ics --replace")]
    Add(CalendarAddArgs),
    /// List calendars with their date counts and the schedules that use them
    #[command(after_help = "Example:\n  curfew calendar list --output json")]
    List,
    /// Show a calendar's dates
    #[command(after_help = "Example:\n  curfew calendar show de-holidays")]
    Show {
        /// Calendar name
        name: String,
    },
    /// Delete a calendar (refused while a schedule uses it)
    #[command(after_help = "Example:\n  curfew calendar delete de-holidays")]
    Delete {
        /// Calendar name
        name: String,
    },
}

/// `curfew calendar add`.
#[derive(Debug, Args)]
pub struct CalendarAddArgs {
    /// Unique name: 1-64 letters, digits, '-' or '_'
    pub name: String,
    /// Dates, comma-separated YYYY-MM-DD (with the year)
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "DATES",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub dates: Vec<String>,
    /// A file of dates: one YYYY-MM-DD per line, or an iCalendar (.ics) file whose all-day
    /// events are the dates ('-' for stdin)
    #[arg(long, value_name = "FILE|-")]
    pub file: Option<PathBuf>,
    /// Replace the calendar of that name (the schedules that use it move their next fire)
    #[arg(long)]
    pub replace: bool,
}

/// `curfew trigger`.
#[derive(Debug, Args)]
pub struct TriggerArgs {
    /// Schedule name
    pub name: String,
    /// Waiting.
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `curfew ops`.
#[derive(Debug, Args)]
pub struct OpsArgs {
    /// list (the default) or show
    #[command(subcommand)]
    pub command: Option<OpsCommand>,
    /// Follow operations that are still running with a progress bar until they end
    #[arg(long, global = true)]
    pub watch: bool,
    /// Give up watching after this long
    #[arg(long, global = true, value_parser = parse_timeout, default_value = "30m", value_name = "DURATION")]
    pub timeout: std::time::Duration,
}

/// `curfew ops ...`.
#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// Operations, newest first
    #[command(after_help = "Example:\n  curfew ops list --limit 5 --output json")]
    List {
        /// How many
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000), value_name = "N")]
        limit: u16,
    },
    /// One operation and its tasks (status, reason, sizes before and after)
    #[command(after_help = "Example:\n  curfew ops show 20270104T1800Z-dev-evening-stop")]
    Show {
        /// The operation id
        #[arg(value_name = "OP_ID")]
        op_id: String,
    },
}

/// `curfew override`.
#[derive(Debug, Args)]
pub struct OverrideArgs {
    /// add, list or remove (or the flags below, kept as their aliases for one release)
    #[command(subcommand)]
    pub command: Option<OverrideCommand>,
    /// Which targets stay awake
    #[arg(long, value_parser = parse_selector, value_name = "SELECTOR",
          required_unless_present_any = ["list", "remove"], requires = "awake_until")]
    pub select: Option<Selector>,
    /// Until when: an RFC 3339 time or a duration from now (e.g. 3h, 90m)
    #[arg(
        long,
        value_name = "RFC3339|DURATION",
        required_unless_present_any = ["list", "remove"],
        requires = "select",
        allow_hyphen_values = true
    )]
    pub awake_until: Option<String>,
    /// List the overrides in force instead
    #[arg(long, conflicts_with_all = ["select", "awake_until"])]
    pub list: bool,
    /// End the override with this id now (ids are in `--list`); stops no longer skip its targets
    #[arg(long, value_name = "ID", conflicts_with_all = ["select", "awake_until", "list"])]
    pub remove: Option<String>,
}

/// `curfew override ...`.
#[derive(Debug, Subcommand)]
pub enum OverrideCommand {
    /// Keep targets awake until a time: stops skip them with a reason
    #[command(after_help = "\
Examples:
  curfew override add --select name=dev-web-01 --awake-until 3h
  curfew override add --select tag:team=data --awake-until 2027-01-04T22:00:00Z --output json")]
    Add {
        /// Which targets stay awake
        #[arg(long, value_parser = parse_selector, value_name = "SELECTOR")]
        select: Selector,
        /// Until when: an RFC 3339 time or a duration from now (e.g. 3h, 90m)
        #[arg(long, value_name = "RFC3339|DURATION", allow_hyphen_values = true)]
        awake_until: String,
    },
    /// The overrides in force, soonest to expire first
    #[command(after_help = "Example:\n  curfew override list --output json")]
    List,
    /// End an override now (ids are in `override list`): stops no longer skip its targets
    #[command(after_help = "Example:\n  curfew override remove 20270104T180000Z-4f2a9c0e1b7d")]
    Remove {
        /// The override's id
        #[arg(value_name = "ID")]
        id: String,
    },
}

/// `curfew audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// list (the default)
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
}

/// `curfew audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The audit trail: every change curfew made, newest first, with who, before and after
    #[command(after_help = "\
Examples:
  curfew audit list
  curfew audit list --since 24h --actor alice
  curfew audit list --target '111111111111#eu-west-1#asg#web' --output json
  curfew audit list --operation manual-20270104T180000Z-1a2b3c --since 30d

Each record is one change: a target a stop scaled to zero or a start restored (by the worker,
with its operation and task), or a schedule, account or override an operator changed (with
the caller's IAM principal). --since and --until take an RFC 3339 time or a duration ago
(`90m`, `24h`, `7d`); without --since, the last 7 days (with --target, the target's whole
chain). JSON: an array of {\"chain\", \"seq\", \"hash\", \"at\", \"actor\", \"kind\",
\"subject\", \"operation\", \"task\", \"before\", \"after\", \"detail\"}.")]
    List {
        /// Records from this time on (RFC 3339, or a duration ago such as 24h)
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Records up to this time (RFC 3339, or a duration ago)
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// One target's changes (its key, as `audit list` prints it)
        #[arg(long, value_name = "TARGET_KEY")]
        target: Option<String>,
        /// One operation's changes
        #[arg(long, value_name = "OP_ID")]
        operation: Option<String>,
        /// Changes by actors whose IAM principal contains this text
        #[arg(long, value_name = "TEXT")]
        actor: Option<String>,
        /// How many records at most
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=10000), value_name = "N")]
        limit: u16,
    },
    /// Check the trail's hash chains and the operations' records; exit 1 on a problem
    #[command(after_help = "\
Examples:
  curfew audit verify
  curfew audit verify --output json
  curfew audit verify --file audit.jsonl     an export, offline: no AWS access needed

Every chain is read and re-hashed: an edited, deleted, inserted or reordered record, records
cut off its end, or a head that does not name its last record is reported with the first bad
record and its chain. With CURFEW_AUDIT_KEY set (the hub's audit key), each chain head's
signature is checked too, so a rewritten chain and head show as well.

Then every finished operation is checked against its task records: its counts equal its task
records, its status follows from its counts, no task is left pending, each stop ended at its
kind's stopped sizes and no start shrank desired; and each target's last successful change
must agree with the saved state (after a stop a baseline is saved, after a start none is).
JSON: {\"chains\", \"records\", \"signatures_checked\", \"chain_problems\": [{\"chain\",
\"seq\", \"problem\"}], \"operations\", \"tasks\", \"problems\": [{\"operation\",
\"target\", \"problem\"}]} (with --file: the chain fields and \"sha256\" of the file).")]
    Verify {
        /// Verify an export written by `curfew audit export` instead of the table
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Write the whole trail to FILE as JSON Lines, then print its SHA-256 and the chain heads
    #[command(after_help = "\
Examples:
  curfew audit export audit.jsonl
  curfew audit export audit.jsonl --output json
  curfew audit verify --file audit.jsonl

One line per record ({\"type\": \"record\", \"chain\", \"seq\", \"prev\", \"hash\", \"body\"}, each
chain in order), then one per chain head ({\"type\": \"head\", \"chain\", \"seq\", \"hash\",
\"last_key\", \"signature\"}). docs/OPERATIONS.md gives the recipe to re-check it without curfew.
The file is written beside FILE and renamed into place, so a failed export leaves no partial
file. The summary (SHA-256 and heads) goes to stdout, or to stderr when FILE is -. JSON:
{\"path\", \"sha256\", \"records\", \"chains\", \"heads\": [...]}.")]
    Export {
        /// Where to write (`-` for stdout)
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

fn parse_bound(s: &str) -> Result<chrono::Duration, String> {
    curfew_core::schedule::parse_duration(s)
        .filter(|d| *d > chrono::Duration::zero())
        .ok_or_else(|| "expected a duration such as 90s, 10m or 1h".to_string())
}

/// `curfew health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// An operation still PENDING or RUNNING this long after it was created is red
    #[arg(long, value_parser = parse_bound, default_value = "30m", value_name = "DURATION")]
    pub stuck_after: chrono::Duration,
    /// The poller is red when its last tick is older than this (while a schedule is enabled),
    /// and amber when a tick ran this late on a due fire
    #[arg(long, value_parser = parse_bound, default_value = "5m", value_name = "DURATION")]
    pub lag_bound: chrono::Duration,
}

/// `curfew ui`.
#[derive(Debug, Args)]
pub struct UiArgs {
    /// Port to listen on (0: any free port)
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub port: u16,
    /// Address to listen on; anything but a loopback address is reachable from other machines
    /// (a warning says so)
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub listen: std::net::IpAddr,
    /// Open the URL in the default browser (xdg-open / open)
    #[arg(long)]
    pub open: bool,
    /// A price table (TOML: `currency` and a `[prices]` table of instance type = price per
    /// instance-hour) to show what the savings page's hours saved; without it, hours only
    #[arg(long, value_name = "FILE", env = "CURFEW_PRICES")]
    pub prices: Option<std::path::PathBuf>,
}

/// `curfew dlq ...`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// The messages in the task dead-letter queue with their tasks; deletes nothing
    #[command(after_help = "\
Examples:
  curfew dlq list
  curfew dlq list --limit 500 --output json

SQS cannot show a message without receiving it: each message is received with a 30 s
visibility timeout (so it is read once) and made visible again as soon as the listing ends,
none deleted. The receive count includes the receives in the task queue and the listing's own.
JSON: an array of {\"message_id\", \"receive_count\", \"op_id\", \"target\", \"action\",
\"task_status\", \"reason\", \"problem\"} (null where a message is not a task message).")]
    List {
        /// How many messages at most
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=10000), value_name = "N")]
        limit: u16,
    },
    /// Move every message back to the task queue, reopening each dead-lettered task
    #[command(after_help = "\
Examples:
  curfew dlq redrive
  curfew dlq redrive --output json

Fix the cause first (see `curfew dlq list`). For each batch of messages: each dead-lettered
task is reopened (PENDING again; a change under way stays marked on the target's lease, so
the task shows APPLYING and is resumed; no longer counted as dead-lettered; its operation RUNNING again if it had ended), the batch is sent to the task
queue (--task-queue-url / CURFEW_TASK_QUEUE_URL), then deleted from the dead-letter queue. The
workers resume the tasks and the operations end again. In local mode the queues are then
drained through the worker here. Safe to run again after a failure.
An account plan (an account whose targets were never listed) is moved as it is and planned
again. JSON: {\"moved\": N, \"reopened\": [{\"op_id\", \"target\"}], \"plans\": N, \"not_tasks\": N}.")]
    Redrive,
}

/// `curfew local ...`.
#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Start the emulator, provision a hub and a demo fleet, print shell exports
    #[command(after_help = "\
Example:
  eval \"$(curfew local up)\"

Prints only `export NAME=VALUE` lines on stdout (progress goes to stderr). If one is already
running, prints its exports again. Unless --no-poller is given, a background `curfew local run`
fires schedules on the real clock (its log: <state dir>/poller.log); `local down` stops it.")]
    Up {
        /// A hub with no accounts and no fleet
        #[arg(long)]
        empty: bool,
        /// Do not start the background poller (`curfew local run`)
        #[arg(long)]
        no_poller: bool,
        /// Where the state (pid, log, exports) is kept
        #[arg(long, env = "CURFEW_LOCAL_DIR", value_name = "DIR")]
        local_dir: Option<PathBuf>,
    },
    /// Stop the emulator started by `local up` (by its pid) and remove its state
    #[command(after_help = "\
Example:
  eval \"$(curfew local down)\"

Prints `unset NAME` lines for the variables `local up` exported.")]
    Down {
        /// Where the state (pid, log, exports) is kept
        #[arg(long, env = "CURFEW_LOCAL_DIR", value_name = "DIR")]
        local_dir: Option<PathBuf>,
    },
    /// Run the poller on the real clock: each minute fire due schedules and drain the queues
    #[command(after_help = "\
Example:
  eval \"$(curfew local up)\"
  curfew schedule add every-5 --cron '*/5 * * * *' --tz UTC --action stop --select kind=asg
  curfew local run

Stands in for EventBridge (the poller every minute) and the SQS event source mappings (the
local dispatcher, --max-concurrency) until Ctrl-C. --once ticks and drains once.")]
    Run {
        /// Tick and drain once, then exit
        #[arg(long)]
        once: bool,
    },
    /// The whole demo: emulator, hub, 3 accounts, 60 targets, a simulated day of stop and start
    #[command(after_help = "\
Example:
  curfew local demo

Starts its own emulator and stops it at the end, even on failure.")]
    Demo,
}
