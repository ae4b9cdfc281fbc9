use super::*;
use crate::clock::ManualClock;
use crate::decision::Action;
use crate::fakes::MemoryStore;
use crate::operation::{Discovery, OpCounts, OpSource, OpStatus};
use crate::schedule::{BrokenSchedule, Schedule, ScheduleRecord};
use crate::selector::Selector;
use chrono::TimeZone;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 1, 4, 9, 0, 0).unwrap()
}

fn minutes(n: i64) -> Duration {
    Duration::minutes(n)
}

fn reading(dead_letters: DeadLetters) -> QueueReading {
    QueueReading {
        url: "https://sqs/tasks".into(),
        depth: QueueDepth {
            visible: 3,
            in_flight: 2,
            delayed: 1,
        },
        dead_letters,
    }
}

fn dlq(total: u64) -> DeadLetters {
    DeadLetters::Queue {
        url: "https://sqs/tasks-dlq".into(),
        depth: QueueDepth {
            visible: total,
            in_flight: 0,
            delayed: 0,
        },
        max_receives: Some(5),
    }
}

#[test]
fn a_queue_with_an_empty_dead_letter_queue_is_green_whatever_its_depth() {
    let check = queue_check(HubQueue::Task, &reading(dlq(0)));
    assert_eq!(check.status, Light::Green);
    assert_eq!(check.check, "task-queue");
    assert!(check.detail.contains("3 waiting, 2 in flight, 1 delayed"));
    assert_eq!(check.data["dead_letters"], 0);
    assert_eq!(check.data["dead_letter_queue"], "https://sqs/tasks-dlq");
}

#[test]
fn any_message_in_a_dead_letter_queue_is_red_and_points_to_dlq_list() {
    let check = queue_check(HubQueue::Task, &reading(dlq(1)));
    assert_eq!(check.status, Light::Red);
    assert!(check.detail.contains("1 message in the dead-letter queue"));
    assert!(check.detail.contains("curfew dlq list"), "{}", check.detail);
    assert_eq!(check.data["dead_letters"], 1);
}

#[test]
fn a_message_in_flight_in_a_dead_letter_queue_counts_too() {
    let dead_letters = DeadLetters::Queue {
        url: "https://sqs/router-dlq".into(),
        depth: QueueDepth {
            visible: 0,
            in_flight: 1,
            delayed: 0,
        },
        max_receives: None,
    };
    let check = queue_check(HubQueue::Router, &reading(dead_letters));
    assert_eq!(check.status, Light::Red);
    assert_eq!(check.check, "router-queue");
    assert!(check.detail.contains("OPERATIONS.md"), "{}", check.detail);
}

#[test]
fn a_queue_without_a_redrive_policy_is_amber() {
    let check = queue_check(HubQueue::Router, &reading(DeadLetters::NoRedrivePolicy));
    assert_eq!(check.status, Light::Amber);
    assert!(check.detail.contains("no redrive policy"));
    assert_eq!(check.data["dead_letter_queue"], Value::Null);
}

#[test]
fn a_redrive_policy_naming_a_missing_queue_is_red() {
    let check = queue_check(
        HubQueue::Task,
        &reading(DeadLetters::Missing {
            arn: "arn:aws:sqs:eu-west-1:111111111111:gone".into(),
            problem: "QueueDoesNotExist".into(),
        }),
    );
    assert_eq!(check.status, Light::Red);
    assert!(check.detail.contains("gone") && check.detail.contains("cannot be found"));
}

fn tick(ago: Duration, lag: Duration) -> PollerTick {
    PollerTick::new(now() - ago, 1, Some(now() - ago - lag))
}

#[test]
fn a_tick_records_its_lag_behind_the_oldest_due_fire_or_none() {
    let t = PollerTick::new(now(), 2, Some(now() - Duration::seconds(75)));
    assert_eq!((t.lag_seconds, t.due), (75, 2));
    assert_eq!(PollerTick::new(now(), 0, None).lag_seconds, 0);
}

#[test]
fn a_recent_tick_is_green() {
    let last = tick(minutes(1), Duration::seconds(20));
    let check = poller_check(Some(&last), 3, now(), minutes(5));
    assert_eq!(check.status, Light::Green, "{}", check.detail);
    assert_eq!(check.data["lag_seconds"], 20);
    assert_eq!(check.data["age_seconds"], 60);
    assert_eq!(
        check.detail,
        "last tick 1m ago, 20s late on its oldest due fire; 3 enabled schedules"
    );
    let quiet = PollerTick::new(now() - minutes(2), 0, None);
    let check = poller_check(Some(&quiet), 1, now(), minutes(5));
    assert_eq!(
        check.detail,
        "last tick 2m ago, nothing was due; 1 enabled schedule"
    );
}

#[test]
fn a_stale_tick_is_red_while_a_schedule_is_enabled() {
    let last = tick(minutes(6), Duration::zero());
    let check = poller_check(Some(&last), 1, now(), minutes(5));
    assert_eq!(check.status, Light::Red);
    assert!(check.detail.contains("6m ago"), "{}", check.detail);
    assert!(
        check
            .detail
            .contains("with 1 enabled schedule: schedules are not firing"),
        "{}",
        check.detail
    );
}

#[test]
fn a_stale_tick_is_amber_when_no_schedule_is_enabled() {
    let last = tick(minutes(60), Duration::zero());
    let check = poller_check(Some(&last), 0, now(), minutes(5));
    assert_eq!(check.status, Light::Amber);
    assert!(check.detail.contains("nothing is missed"));
}

#[test]
fn a_poller_that_never_ticked_is_red_with_schedules_enabled_and_amber_without() {
    let red = poller_check(None, 2, now(), minutes(5));
    assert_eq!(red.status, Light::Red);
    assert!(red.detail.contains("never ticked"));
    let amber = poller_check(None, 0, now(), minutes(5));
    assert_eq!(amber.status, Light::Amber);
    assert!(
        amber.detail.contains("no schedule is enabled"),
        "{}",
        amber.detail
    );
    assert_eq!(amber.data["last_tick"], Value::Null);
}

#[test]
fn a_recent_tick_that_ran_late_on_a_fire_is_amber() {
    let last = tick(minutes(1), minutes(20));
    let check = poller_check(Some(&last), 1, now(), minutes(5));
    assert_eq!(check.status, Light::Amber);
    assert!(check.detail.contains("20m late"), "{}", check.detail);
}

fn contact(account: &str, outcome: ContactOutcome) -> AccountContact {
    AccountContact {
        account: account.into(),
        at: now(),
        outcome,
        error: (outcome != ContactOutcome::Reachable)
            .then(|| "assuming arn:aws:iam::2:role/x: AccessDenied".to_string()),
    }
}

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[test]
fn accounts_all_reachable_at_last_contact_are_green() {
    let check = accounts_check(
        &ids(&["1", "2"]),
        &[
            contact("1", ContactOutcome::Reachable),
            contact("2", ContactOutcome::Reachable),
        ],
    );
    assert_eq!(check.status, Light::Green);
    assert_eq!(check.data["reachable"], 2);
}

#[test]
fn an_account_whose_last_contact_was_denied_is_red_with_its_error() {
    let check = accounts_check(
        &ids(&["1", "2"]),
        &[
            contact("1", ContactOutcome::Reachable),
            contact("2", ContactOutcome::Denied),
        ],
    );
    assert_eq!(check.status, Light::Red);
    assert!(
        check.detail.contains("2 denied at 2027-01-04T09:00:00Z"),
        "{}",
        check.detail
    );
    assert!(check.detail.contains("AccessDenied"));
    assert_eq!(check.data["unreachable"][0]["account"], "2");
    assert_eq!(check.data["unreachable"][0]["outcome"], "denied");
}

#[test]
fn an_account_never_contacted_is_amber_and_an_unreachable_one_outranks_it() {
    let amber = accounts_check(
        &ids(&["1", "2"]),
        &[contact("1", ContactOutcome::Reachable)],
    );
    assert_eq!(amber.status, Light::Amber);
    assert_eq!(amber.data["never_contacted"], json!(["2"]));
    let red = accounts_check(&ids(&["1", "2"]), &[contact("1", ContactOutcome::Failed)]);
    assert_eq!(red.status, Light::Red);
}

#[test]
fn contacts_of_accounts_no_longer_registered_are_ignored_and_no_account_is_amber() {
    let check = accounts_check(
        &ids(&["1"]),
        &[
            contact("1", ContactOutcome::Reachable),
            contact("9", ContactOutcome::Denied),
        ],
    );
    assert_eq!(check.status, Light::Green);
    let none = accounts_check(&[], &[]);
    assert_eq!(none.status, Light::Amber);
    assert!(none.detail.contains("no spoke account"));
}

fn operation(id: &str, status: OpStatus, age: Duration) -> Operation {
    Operation {
        id: id.into(),
        action: Action::Stop,
        selector: Selector::parse("name=*").unwrap(),
        source: OpSource::Manual,
        created_at: now() - age,
        dry_run: false,
        default_start: None,
        discovery: Discovery::Cached,
        hold: None,
        status,
        counts: OpCounts::default(),
        shards_total: None,
        shards_done: 0,
        notes: Vec::new(),
        check: false,
    }
}

#[test]
fn operations_unfinished_past_the_bound_are_red_and_named() {
    let ops = [
        operation("old-running", OpStatus::Running, minutes(45)),
        operation("old-pending", OpStatus::Pending, minutes(31)),
        operation("young", OpStatus::Running, minutes(5)),
        operation("old-done", OpStatus::Succeeded, minutes(600)),
    ];
    let check = operations_check(&ops, now(), minutes(30));
    assert_eq!(check.status, Light::Red);
    assert!(
        check.detail.contains("old-running RUNNING for 45m"),
        "{}",
        check.detail
    );
    assert!(check.detail.contains("old-pending"));
    assert!(!check.detail.contains("young") && !check.detail.contains("old-done"));
    assert_eq!(check.data["unfinished"], 3);
    assert_eq!(check.data["stuck"].as_array().unwrap().len(), 2);
}

#[test]
fn operations_within_the_bound_are_green() {
    let ops = [operation("young", OpStatus::Running, minutes(29))];
    let check = operations_check(&ops, now(), minutes(30));
    assert_eq!(check.status, Light::Green);
    assert!(check
        .detail
        .contains("1 operation unfinished, none older than 30m"));
}

fn schedule(name: &str, enabled: bool) -> Schedule {
    Schedule::try_from(ScheduleRecord {
        name: name.into(),
        cron: Some("0 19 * * *".into()),
        tz: "UTC".into(),
        action: Some("stop".into()),
        asleep: None,
        selector: "kind=asg".into(),
        enabled,
        dry_run: false,
        prewarm_minutes: 0,
        skip_dates: vec![],
        skip_calendars: vec![],
        awake_calendars: vec![],
        enforce: false,
        default_start: None,
        next_fire: None,
        hold: None,
    })
    .unwrap()
}

#[test]
fn every_broken_schedule_is_red_with_its_problem() {
    let list = ScheduleList {
        schedules: vec![schedule("good", true)],
        broken: vec![BrokenSchedule {
            name: "moon-nights".into(),
            problem: "unknown time zone \"Moon/Tranquility\"".into(),
        }],
    };
    let check = schedules_check(&list);
    assert_eq!(check.status, Light::Red);
    assert!(
        check.detail.contains("moon-nights: unknown time zone"),
        "{}",
        check.detail
    );
    assert_eq!(check.data["broken"][0]["name"], "moon-nights");
}

#[test]
fn schedules_that_all_read_are_green_and_counted() {
    let list = ScheduleList {
        schedules: vec![schedule("a", true), schedule("b", false)],
        broken: vec![],
    };
    let check = schedules_check(&list);
    assert_eq!(check.status, Light::Green);
    assert_eq!(check.detail, "2 schedules (1 enabled), none broken");
}

#[test]
fn the_report_takes_the_worst_light_and_serializes_each_check_flat() {
    let report = HealthReport::new(vec![
        schedules_check(&ScheduleList::default()),
        poller_check(None, 0, now(), minutes(5)),
    ]);
    assert_eq!(report.status, Light::Amber);
    assert_eq!(report.red().count(), 0);
    let value = serde_json::to_value(&report).unwrap();
    assert_eq!(value["status"], "amber");
    assert_eq!(value["checks"][0]["check"], "schedules");
    assert_eq!(value["checks"][0]["status"], "green");
    assert_eq!(value["checks"][0]["enabled"], 0);
    assert_eq!(value["checks"][1]["status"], "amber");
    let red = HealthReport::new(vec![unreadable(
        "accounts",
        &PortError::new(
            ErrorKind::AccessDenied,
            "reading the state table: AccessDenied",
        ),
    )]);
    assert_eq!(red.status, Light::Red);
    assert!(red.checks[0].detail.contains("could not be read"));
    assert_eq!(HealthReport::new(vec![]).status, Light::Green);
}

#[test]
fn durations_read_in_the_largest_two_units() {
    assert_eq!(human(Duration::seconds(45)), "45s");
    assert_eq!(human(Duration::seconds(725)), "12m 5s");
    assert_eq!(human(minutes(30)), "30m");
    assert_eq!(human(minutes(200)), "3h 20m");
    assert_eq!(human(Duration::hours(52)), "2d 4h");
    assert_eq!(human(Duration::seconds(-5)), "0s");
}

fn recorder() -> (Arc<MemoryStore>, Arc<ManualClock>, ContactRecorder) {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(now()));
    let recorder = ContactRecorder::new(store.clone(), clock.clone());
    (store, clock, recorder)
}

#[tokio::test]
async fn a_denied_assume_is_recorded_as_denied_with_its_error_and_a_success_replaces_it() {
    let (store, clock, recorder) = recorder();
    let denied = PortError::new(ErrorKind::AccessDenied, "assuming r: AccessDenied: no");
    recorder.record("111111111111", Err(&denied)).await;
    let contacts = store.account_contacts().await.unwrap();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].outcome, ContactOutcome::Denied);
    assert_eq!(
        contacts[0].error.as_deref(),
        Some("assuming r: AccessDenied: no")
    );
    assert_eq!(contacts[0].at, now());

    clock.advance(Duration::seconds(10));
    recorder.record("111111111111", Ok(())).await;
    let contacts = store.account_contacts().await.unwrap();
    assert_eq!(contacts[0].outcome, ContactOutcome::Reachable);
    assert_eq!(contacts[0].error, None);
}

#[tokio::test]
async fn a_failure_that_repeats_is_recorded_once_a_minute_not_once_per_task() {
    let (store, clock, recorder) = recorder();
    let failed = PortError::new(ErrorKind::Other, "assuming r: could not reach the service");
    recorder.record("1", Err(&failed)).await;
    clock.advance(Duration::seconds(30));
    recorder.record("1", Err(&failed)).await;
    let first = store.account_contacts().await.unwrap();
    assert_eq!(
        (first[0].outcome, first[0].at),
        (ContactOutcome::Failed, now())
    );

    clock.advance(Duration::seconds(31));
    recorder.record("1", Err(&failed)).await;
    let later = store.account_contacts().await.unwrap();
    assert_eq!(later[0].at, now() + Duration::seconds(61));
}
